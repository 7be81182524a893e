"""HOTA: higher order tracking accuracy, with its detection (DetA), association (AssA) and
localisation (LocA) parts, per localisation threshold alpha.

Luiten et al., "HOTA: A Higher Order Metric for Evaluating Multi-Object Tracking", IJCV
2021. Each step follows TrackEval 1.3.0 (``metrics/hota.py``), so the numbers agree with it
to float precision:

1. a global alignment score between every ground-truth id and track id: the sum over frames
   of each box pair's similarity normalised as a per-frame Jaccard of similarities, divided
   by ``|gt id| + |track id| - that sum``;
2. in each frame, one Hungarian matching maximising ``alignment x similarity``;
3. for each alpha in 0.05, 0.10, ..., 0.95, the matched pairs with similarity ``>= alpha``
   (less a float epsilon) are true positives; DetA = TP / (TP + FN + FP); AssA averages,
   over true positives, the Jaccard index of the two ids' matched-frame counts; LocA is the
   mean similarity of the true positives (1 where there are none);
4. HOTA = sqrt(DetA x AssA) per alpha; the reported scalars are means over alpha.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from visionkit.metrics._mot_data import DenseSequence

ALPHAS = np.arange(0.05, 0.99, 0.05)  # built as TrackEval builds it, for identical floats
EPS = np.finfo(float).eps
TINY = 1e-10  # LocA's guard: 1 where nothing is matched


@dataclass(frozen=True)
class HotaStats:
    """Per-alpha ``[19]`` HOTA ingredients of one sequence, or of several combined.

    ``tp``, ``fn`` and ``fp`` are summable counts; ``ass_a``, ``ass_re``, ``ass_pr`` and
    ``loca`` are averages over the true positives, combined weighted by ``tp``.
    """

    tp: np.ndarray
    fn: np.ndarray
    fp: np.ndarray
    ass_a: np.ndarray
    ass_re: np.ndarray
    ass_pr: np.ndarray
    loca: np.ndarray


def evaluate(seq: DenseSequence) -> HotaStats:
    """HOTA ingredients of one sequence, computed as described in the module."""
    gt_count = _id_count(seq.gt_ids, seq.num_gt_ids)
    pred_count = _id_count(seq.pred_ids, seq.num_pred_ids)
    alignment = _global_alignment(seq, gt_count, pred_count)
    gt, pred, sim = _frame_matches(seq, alignment)
    keep = sim[None, :] >= ALPHAS[:, None] - EPS  # [A, K]: true positives at each alpha
    tp = keep.sum(axis=1).astype(float)
    ass_a, ass_re, ass_pr = _association(gt, pred, keep, gt_count, pred_count, tp)
    return HotaStats(
        tp=tp,
        fn=seq.num_gt_dets - tp,
        fp=seq.num_pred_dets - tp,
        ass_a=ass_a,
        ass_re=ass_re,
        ass_pr=ass_pr,
        loca=np.maximum(TINY, (keep * sim).sum(axis=1)) / np.maximum(TINY, tp),
    )


def _id_count(frames: list[np.ndarray], num_ids: int) -> np.ndarray:
    """``[num_ids]`` number of frames in which each (relabelled) id appears."""
    ids = np.concatenate(frames) if frames else np.zeros(0, dtype=np.int64)
    return np.bincount(ids, minlength=num_ids).astype(float)


def _global_alignment(
    seq: DenseSequence, gt_count: np.ndarray, pred_count: np.ndarray
) -> np.ndarray:
    """``[G, T]`` alignment score of every gt id with every track id, before any matching."""
    potential = np.zeros((seq.num_gt_ids, seq.num_pred_ids))
    for gt, pred, sim in zip(seq.gt_ids, seq.pred_ids, seq.similarity, strict=True):
        denominator = sim.sum(0)[None, :] + sim.sum(1)[:, None] - sim
        normalised = np.zeros_like(sim)
        positive = denominator > EPS
        normalised[positive] = sim[positive] / denominator[positive]
        potential[gt[:, None], pred[None, :]] += normalised
    return potential / (gt_count[:, None] + pred_count[None, :] - potential)


def _frame_matches(
    seq: DenseSequence, alignment: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gt ids, track ids and similarities ``[K]`` of the pairs matched in every frame."""
    found = [(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(0))]
    for gt, pred, sim in zip(seq.gt_ids, seq.pred_ids, seq.similarity, strict=True):
        if len(gt) and len(pred):
            rows, cols = linear_sum_assignment(-(alignment[gt[:, None], pred[None, :]] * sim))
            found.append((gt[rows], pred[cols], sim[rows, cols]))
    gt_ids, pred_ids, sims = zip(*found, strict=True)
    return np.concatenate(gt_ids), np.concatenate(pred_ids), np.concatenate(sims)


def _association(
    gt: np.ndarray,
    pred: np.ndarray,
    keep: np.ndarray,
    gt_count: np.ndarray,
    pred_count: np.ndarray,
    tp: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-alpha AssA, AssRe and AssPr from the matched id pairs ``gt[k], pred[k]``.

    Each true positive scores its id pair's ``matches / (|gt id| + |track id| - matches)``
    (AssA), ``matches / |gt id|`` (AssRe) or ``matches / |track id|`` (AssPr).
    """
    pairs, inverse = np.unique(gt * len(pred_count) + pred, return_inverse=True)
    pair_gt, pair_pred = np.divmod(pairs, max(1, len(pred_count)))
    matches = np.stack([np.bincount(inverse, weights=k, minlength=len(pairs)) for k in keep])

    def average(denominator: np.ndarray) -> np.ndarray:
        scores = matches * matches / np.maximum(1, denominator)
        return scores.sum(axis=1) / np.maximum(1, tp)

    union = gt_count[pair_gt] + pred_count[pair_pred] - matches
    return average(union), average(gt_count[pair_gt]), average(pred_count[pair_pred])


def combine(stats: Sequence[HotaStats]) -> HotaStats:
    """Several sequences' ingredients combined as TrackEval's ``combine_sequences`` does."""
    tp = sum(s.tp for s in stats)

    def weighted(name: str) -> np.ndarray:
        return sum(getattr(s, name) * s.tp for s in stats) / np.maximum(1, tp)

    loca_sum = sum(s.loca * s.tp for s in stats)
    return HotaStats(
        tp=tp,
        fn=sum(s.fn for s in stats),
        fp=sum(s.fp for s in stats),
        ass_a=weighted("ass_a"),
        ass_re=weighted("ass_re"),
        ass_pr=weighted("ass_pr"),
        loca=np.maximum(TINY, loca_sum) / np.maximum(TINY, tp),
    )


def summary(stats: HotaStats) -> dict[str, float | np.ndarray]:
    """Scalars (means over alpha, 0-1) and the ``[19]`` per-alpha arrays, visionkit's keys."""
    det_re = stats.tp / np.maximum(1, stats.tp + stats.fn)
    det_pr = stats.tp / np.maximum(1, stats.tp + stats.fp)
    det_a = stats.tp / np.maximum(1, stats.tp + stats.fn + stats.fp)
    per_alpha = {
        "hota": np.sqrt(det_a * stats.ass_a),
        "deta": det_a,
        "assa": stats.ass_a,
        "loca": stats.loca,
        "detre": det_re,
        "detpr": det_pr,
        "assre": stats.ass_re,
        "asspr": stats.ass_pr,
    }
    scalars = {key: float(np.mean(values)) for key, values in per_alpha.items()}
    arrays = {f"{key}_alpha": per_alpha[key] for key in ("hota", "deta", "assa", "loca")}
    return scalars | arrays
