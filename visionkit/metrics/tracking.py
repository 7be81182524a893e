"""Tracking metrics: HOTA, CLEAR MOT and Identity for multi-object tracking, equal to
TrackEval 1.3.0, and the OTB success and precision measures for single-object tracking.

Everything takes plain arrays: a multi-object sequence is per-frame ids and ``xyxy`` boxes
(:class:`TrackingSequence`, or :class:`Tracks` per side), MOTChallenge files are read and
written at the edge (:func:`read_mot_file`, :func:`write_mot_file`). Values are on a 0-1
scale; how each metric is computed, and what of TrackEval's MOT preprocessing is and is not
applied, is written in the private modules ``_mot_hota``, ``_mot_clear``, ``_mot_identity``
and ``_mot_io``.

Example:
    >>> seq = TrackingSequence.from_boxes(
    ...     gt_ids=[[1], [1]], gt_boxes=[[[0, 0, 10, 10]], [[1, 0, 11, 10]]],
    ...     pred_ids=[[5], [5]], pred_boxes=[[[0, 0, 10, 10]], [[1, 0, 11, 10]]],
    ... )
    >>> result = evaluate_tracking({"seq": seq})
    >>> result["combined"]["hota"], result["combined"]["mota"], result["combined"]["idf1"]
    (1.0, 1.0, 1.0)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from visionkit.errors import ConfigError, DataError
from visionkit.metrics import _mot_clear, _mot_hota, _mot_identity, _mot_io
from visionkit.metrics._mot_data import TrackingSequence, Tracks, to_dense
from visionkit.metrics._mot_io import read_mot_file, write_mot_file
from visionkit.ops.boxes import paired_box_iou

HOTA_ALPHAS = _mot_hota.ALPHAS
"""The 19 localisation thresholds 0.05, 0.10, ..., 0.95 of the ``*_alpha`` arrays."""

METRICS: dict[str, ModuleType] = {
    "hota": _mot_hota,
    "clear": _mot_clear,
    "identity": _mot_identity,
}

__all__ = [
    "HOTA_ALPHAS",
    "METRICS",
    "TrackingSequence",
    "Tracks",
    "evaluate_mot_folders",
    "evaluate_tracking",
    "read_mot_file",
    "read_mot_folder",
    "sot_average_iou",
    "sot_precision",
    "sot_success",
    "write_mot_file",
]


def evaluate_tracking(
    sequences: Mapping[str, TrackingSequence],
    *,
    metrics: Iterable[str] = ("hota", "clear", "identity"),
) -> dict[str, Any]:
    """Score multi-object tracking sequences with HOTA, CLEAR MOT and Identity metrics.

    Equal to TrackEval 1.3.0's ``HOTA``, ``CLEAR`` and ``Identity`` on the same data. The
    combined result sums the counts of all sequences and recomputes the scores from them
    (HOTA: per alpha, AssA and LocA averaged weighted by true positives), as TrackEval's
    ``combine_sequences`` does: it is not a mean of the sequences' scores.

    Args:
        sequences: Sequences by name.
        metrics: Any of ``"hota"``, ``"clear"``, ``"identity"``.

    Returns:
        ``{"combined": scores, "per_sequence": {name: scores}}``, each ``scores`` a dict:

        - hota: ``hota, deta, assa, loca, detre, detpr, assre, asspr`` (floats, means over
          the 19 alphas of :data:`HOTA_ALPHAS`) and ``hota_alpha, deta_alpha, assa_alpha,
          loca_alpha`` (``[19]`` arrays);
        - clear: ``mota, moda, motp`` (floats) and the int counts ``true_positives,
          false_positives, false_negatives, id_switches, fragmentations, mostly_tracked,
          partially_tracked, mostly_lost``;
        - identity: ``idf1, idp, idr`` (floats) and ``idtp, idfp, idfn`` (ints).

    Raises:
        ConfigError: An unknown metric name, or no sequence at all.
    """
    modules = _metric_modules(metrics)
    if not sequences:
        raise ConfigError("no sequence to evaluate", field="sequences")
    stats = {}
    for name, seq in sequences.items():
        dense = to_dense(seq)
        stats[name] = [module.evaluate(dense) for module in modules]
    combined = [m.combine([s[i] for s in stats.values()]) for i, m in enumerate(modules)]
    return {
        "combined": _summary(modules, combined),
        "per_sequence": {name: _summary(modules, s) for name, s in stats.items()},
    }


def _metric_modules(metrics: Iterable[str]) -> list[ModuleType]:
    names = [metrics] if isinstance(metrics, str) else list(metrics)
    unknown = sorted(set(names) - set(METRICS))
    if unknown or not names:
        raise ConfigError(
            f"unknown tracking metrics {unknown}; choose from {sorted(METRICS)}", field="metrics"
        )
    return [METRICS[name] for name in dict.fromkeys(names)]


def _summary(modules: list[ModuleType], stats: list[Any]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for module, s in zip(modules, stats, strict=True):
        result |= module.summary(s)
    return result


def read_mot_folder(path: str | Path, *, ground_truth: bool = False) -> dict[str, Tracks]:
    """Read every sequence of a MOTChallenge folder into :class:`Tracks`, by sequence name.

    Two layouts are accepted: ``<path>/<seq>.txt`` (tracker output, flat ground truth) and
    ``<path>/<seq>/gt/gt.txt`` (MOT17-style ground truth, whose ``<seq>/seqinfo.ini``
    ``seqLength`` then sets the number of frames).

    Args:
        path: The folder.
        ground_truth: Drop lines whose ``conf`` is 0 (see :func:`read_mot_file`).

    Raises:
        DataError: The folder is missing or empty, or a file is bad (naming file and line).
    """
    return {
        name: read_mot_file(
            file, ground_truth=ground_truth, num_frames=_mot_io.sequence_length(file)
        )
        for name, file in _mot_io.sequence_files(path).items()
    }


def evaluate_mot_folders(
    gt_dir: str | Path,
    pred_dir: str | Path,
    *,
    metrics: Iterable[str] = ("hota", "clear", "identity"),
) -> dict[str, Any]:
    """Score a folder of tracker output against a folder of MOTChallenge ground truth.

    Sequences pair by name (layouts as :func:`read_mot_folder`). Every ground-truth
    sequence needs a prediction file and every prediction file a ground truth, as in
    TrackEval: a missing one is an error, not a silent zero. To score a sequence on which
    the tracker output nothing, give it an empty file.

    Returns:
        As :func:`evaluate_tracking`: ``{"combined": ..., "per_sequence": ...}``.

    Raises:
        DataError: A sequence on one side only, a missing folder, or a bad file.
    """
    gt_files = _mot_io.sequence_files(gt_dir)
    pred_files = _mot_io.sequence_files(pred_dir, allow_empty=True)
    unpaired = sorted(pred_files.keys() - gt_files.keys())
    if unpaired:
        raise DataError(
            f"no ground truth for sequence {unpaired[0]!r} in {gt_dir}",
            file=pred_files[unpaired[0]],
        )
    missing = sorted(gt_files.keys() - pred_files.keys())
    if missing:
        raise DataError(
            f"no prediction file for sequence {missing[0]!r}: expected "
            f"{Path(pred_dir) / missing[0]}.txt (an empty file scores a sequence without output)",
            file=gt_files[missing[0]],
        )
    sequences = {}
    for name, gt_file in gt_files.items():
        length = _mot_io.sequence_length(gt_file)
        gt = read_mot_file(gt_file, ground_truth=True, num_frames=length)
        pred = read_mot_file(pred_files[name], num_frames=length)
        sequences[name] = TrackingSequence.from_tracks(gt, pred)
    return evaluate_tracking(sequences, metrics=metrics)


def sot_average_iou(pred_boxes: Any, gt_boxes: Any) -> float:
    """Mean IoU between a single-object tracker's boxes and the ground truth.

    Frames where the target is absent (a ground-truth box all zeros or with a NaN) are left
    out, as GOT-10k and LaSOT do; a predicted box with a NaN (target lost) scores IoU 0.

    Args:
        pred_boxes: ``[N, 4]`` predicted ``xyxy`` boxes, one a frame.
        gt_boxes: ``[N, 4]`` ground-truth ``xyxy`` boxes.

    Raises:
        DataError: No frame has the target present.
        ConfigError: The shapes are not both ``[N, 4]``.
    """
    return float(np.mean(_sot_ious(pred_boxes, gt_boxes)))


def sot_success(
    pred_boxes: Any, gt_boxes: Any, thresholds: Any = None
) -> tuple[np.ndarray, np.ndarray, float]:
    """OTB success plot: the fraction of frames whose IoU exceeds each threshold, and its AUC.

    Wu, Lim and Yang, "Online Object Tracking: A Benchmark", CVPR 2013. Absent-target
    frames are handled as in :func:`sot_average_iou`.

    Args:
        pred_boxes: ``[N, 4]`` predicted ``xyxy`` boxes, one a frame.
        gt_boxes: ``[N, 4]`` ground-truth ``xyxy`` boxes.
        thresholds: IoU thresholds; default 21 values ``0, 0.05, ..., 1``.

    Returns:
        ``(thresholds [K], success rates [K] in [0, 1], AUC)``; the AUC is the mean success
        rate, as the OTB toolkit computes it. A frame succeeds when ``IoU > threshold``.

    Example:
        >>> gt = np.array([[0.0, 0, 10, 10], [0, 0, 10, 10]])
        >>> pred = np.array([[0.0, 0, 10, 10], [0, 0, 10, 5]])
        >>> _, rates, auc = sot_success(pred, gt, thresholds=[0.0, 0.5, 0.9])
        >>> rates.tolist(), auc
        ([1.0, 0.5, 0.5], 0.6666666666666666)
    """
    thresholds = np.linspace(0, 1, 21) if thresholds is None else np.asarray(thresholds, float)
    ious = _sot_ious(pred_boxes, gt_boxes)
    rates = (ious[None, :] > thresholds.reshape(-1)[:, None]).mean(axis=1)
    return thresholds, rates, float(rates.mean())


def sot_precision(pred_boxes: Any, gt_boxes: Any, threshold: float = 20.0) -> float:
    """OTB precision: the fraction of frames whose box centres lie within ``threshold`` pixels.

    A frame counts when the Euclidean distance of the centres is ``<= threshold`` (20 px
    in OTB). Absent-target frames are handled as in :func:`sot_average_iou`.
    """
    pred, gt = _sot_present(pred_boxes, gt_boxes)
    offset = (pred[:, :2] + pred[:, 2:]) / 2 - (gt[:, :2] + gt[:, 2:]) / 2
    centre_error = np.linalg.norm(offset, axis=1)
    return float(np.mean(np.nan_to_num(centre_error, nan=np.inf) <= threshold))


def _sot_ious(pred_boxes: Any, gt_boxes: Any) -> np.ndarray:
    """``[M]`` IoU of each frame's predicted and gt box, over the M target-present frames."""
    pred, gt = _sot_present(pred_boxes, gt_boxes)
    return np.nan_to_num(paired_box_iou(pred, gt), nan=0.0)  # a missing prediction scores 0


def _sot_present(pred_boxes: Any, gt_boxes: Any) -> tuple[np.ndarray, np.ndarray]:
    """Both ``[N, 4]`` box arrays, checked, restricted to the frames where the target is."""
    pred = np.asarray(pred_boxes, dtype=np.float64)
    gt = np.asarray(gt_boxes, dtype=np.float64)
    if pred.ndim != 2 or pred.shape[1:] != (4,) or pred.shape != gt.shape:
        raise ConfigError(
            f"pred_boxes and gt_boxes must both be [N, 4], got {list(pred.shape)} and "
            f"{list(gt.shape)}"
        )
    present = ~np.isnan(gt).any(axis=1) & (gt != 0).any(axis=1)
    if not present.any():
        raise DataError("the target is absent in every frame", field="gt_boxes")
    return pred[present], gt[present]
