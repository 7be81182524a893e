"""CLEAR MOT metrics: MOTA, MOTP, ID switches, fragmentations and MT/PT/ML.

Bernardin and Stiefelhagen, "Evaluating Multiple Object Tracking Performance: the CLEAR
MOT Metrics", 2008. The frame-by-frame matching and every counting rule follow TrackEval
1.3.0 (``metrics/clear.py``), so the numbers agree with it to float precision:

- a pair can match only if its similarity is at least 0.5 (less a float epsilon);
- the Hungarian matching first keeps the pairs matched in the previous frame (a bonus of
  1000 on their score), then maximises the summed similarity;
- an ID switch is a ground-truth id matched to another track than at its last match, however
  many frames back; a fragmentation is a ground-truth id that becomes tracked again after a
  scored frame in which it was not (frames where the ground truth or the tracker is empty
  are not scored and leave this state alone);
- mostly tracked: matched in more than 80 % of its frames; mostly lost: in less than 20 %;
- a single sequence without ground truth scores MOTA = MODA = 0 (TrackEval returns early),
  but combined results are always recomputed from the summed counts, giving ``-FP``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import astuple, dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from visionkit.metrics._mot_data import DenseSequence

THRESHOLD = 0.5
EPS = np.finfo(float).eps
CONTINUATION_BONUS = 1000.0


@dataclass(frozen=True)
class ClearStats:
    """Summable CLEAR counts of one sequence, or of several added together (``combined``)."""

    tp: int
    fn: int
    fp: int
    id_switches: int
    mostly_tracked: int
    partially_tracked: int
    mostly_lost: int
    fragmentations: int
    motp_sum: float
    combined: bool = False


def evaluate(seq: DenseSequence) -> ClearStats:
    """CLEAR counts of one sequence, matching frame by frame as described in the module."""
    gt_frames = np.zeros(seq.num_gt_ids)  # frames in which each gt id is present
    gt_matched = np.zeros(seq.num_gt_ids)  # frames in which it is matched
    gt_starts = np.zeros(seq.num_gt_ids)  # times it went from not tracked to tracked
    last_match = np.full(seq.num_gt_ids, np.nan)  # track id at its last match, any frame back
    prev_match = np.full(seq.num_gt_ids, np.nan)  # track id in the previous scored frame
    tp = fn = fp = id_switches = 0
    motp_sum = 0.0
    for gt, pred, sim in zip(seq.gt_ids, seq.pred_ids, seq.similarity, strict=True):
        gt_frames[gt] += 1
        if len(gt) == 0 or len(pred) == 0:
            fn, fp = fn + len(gt), fp + len(pred)
            continue
        rows, cols = _match(sim, prev_match[gt][:, None] == pred[None, :])
        matched_gt, matched_pred = gt[rows], pred[cols]
        previous = last_match[matched_gt]
        id_switches += int(np.sum(~np.isnan(previous) & (previous != matched_pred)))
        gt_matched[matched_gt] += 1
        was_tracked = ~np.isnan(prev_match)
        last_match[matched_gt] = matched_pred
        prev_match[:] = np.nan
        prev_match[matched_gt] = matched_pred
        gt_starts += ~was_tracked & ~np.isnan(prev_match)
        tp, fn, fp = tp + len(rows), fn + len(gt) - len(rows), fp + len(pred) - len(rows)
        motp_sum += float(sim[rows, cols].sum())
    tracked = gt_matched / np.maximum(gt_frames, 1)  # every relabelled id has a frame
    mostly_tracked = int(np.sum(tracked > 0.8))
    partially_tracked = int(np.sum(tracked >= 0.2)) - mostly_tracked
    return ClearStats(
        tp=tp,
        fn=fn,
        fp=fp,
        id_switches=id_switches,
        mostly_tracked=mostly_tracked,
        partially_tracked=partially_tracked,
        mostly_lost=seq.num_gt_ids - mostly_tracked - partially_tracked,
        fragmentations=int(np.sum(np.maximum(gt_starts - 1, 0))),
        motp_sum=motp_sum,
    )


def _match(sim: np.ndarray, continuing: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Matched (gt row, prediction column) pairs of one frame: continuations first, then IoU."""
    score = CONTINUATION_BONUS * continuing + sim
    score[sim < THRESHOLD - EPS] = 0
    rows, cols = linear_sum_assignment(-score)
    keep = score[rows, cols] > EPS
    return rows[keep], cols[keep]


def combine(stats: Sequence[ClearStats]) -> ClearStats:
    """Counts of several sequences added together (TrackEval's ``combine_sequences``)."""
    counts = zip(*(astuple(s)[:-1] for s in stats), strict=True)
    return ClearStats(*(sum(values) for values in counts), combined=True)


def summary(stats: ClearStats) -> dict[str, float | int]:
    """MOTA, MODA and MOTP (0-1) with the counts, under visionkit's key names."""
    gt_dets = stats.tp + stats.fn
    scored = gt_dets > 0 or stats.combined
    return {
        "mota": (stats.tp - stats.fp - stats.id_switches) / max(1, gt_dets) if scored else 0.0,
        "moda": (stats.tp - stats.fp) / max(1, gt_dets) if scored else 0.0,
        "motp": stats.motp_sum / max(1, stats.tp),
        "true_positives": stats.tp,
        "false_positives": stats.fp,
        "false_negatives": stats.fn,
        "id_switches": stats.id_switches,
        "fragmentations": stats.fragmentations,
        "mostly_tracked": stats.mostly_tracked,
        "partially_tracked": stats.partially_tracked,
        "mostly_lost": stats.mostly_lost,
    }
