"""Identity metrics: IDF1, IDP, IDR from one global matching of ground-truth ids to tracks.

Ristani et al., "Performance Measures and a Data Set for Multi-Target, Multi-Camera
Tracking", ECCV 2016 workshops. As in TrackEval 1.3.0 (``metrics/identity.py``): a box pair
counts as overlapping when its similarity is at least 0.5; every ground-truth id is
matched to at most one track id (or to nothing) so that the sum of ID false negatives and
ID false positives is least, solved as one square assignment problem over ids and dummies.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import astuple, dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from visionkit.metrics._mot_data import DenseSequence

THRESHOLD = 0.5
FORBIDDEN = 1e10  # cost of pairing an id with another id's dummy


@dataclass(frozen=True)
class IdentityStats:
    """Summable identity counts of one sequence, or of several added together."""

    idtp: int
    idfn: int
    idfp: int


def evaluate(seq: DenseSequence) -> IdentityStats:
    """ID true positives, false negatives and false positives of one sequence."""
    if seq.num_pred_dets == 0:
        return IdentityStats(idtp=0, idfn=seq.num_gt_dets, idfp=0)
    if seq.num_gt_dets == 0:
        return IdentityStats(idtp=0, idfn=0, idfp=seq.num_pred_dets)
    overlap = np.zeros((seq.num_gt_ids, seq.num_pred_ids))
    for gt, pred, sim in zip(seq.gt_ids, seq.pred_ids, seq.similarity, strict=True):
        overlap[gt[:, None], pred[None, :]] += sim >= THRESHOLD  # ids are unique in a frame
    gt_count = np.bincount(np.concatenate(seq.gt_ids), minlength=seq.num_gt_ids)
    pred_count = np.bincount(np.concatenate(seq.pred_ids), minlength=seq.num_pred_ids)
    fn_cost, fp_cost = _costs(overlap, gt_count, pred_count)
    rows, cols = linear_sum_assignment(fn_cost + fp_cost)
    idfn = int(fn_cost[rows, cols].sum())
    return IdentityStats(
        idtp=int(gt_count.sum()) - idfn, idfn=idfn, idfp=int(fp_cost[rows, cols].sum())
    )


def _costs(
    overlap: np.ndarray, gt_count: np.ndarray, pred_count: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """ID false-negative and false-positive costs, ``[G + T, G + T]`` each.

    Rows are the ``G`` ground-truth ids then ``T`` dummies, columns the ``T`` track ids then
    ``G`` dummies. Pairing gt ``i`` with track ``j`` misses ``gt_count[i] - overlap[i, j]``
    boxes and adds ``pred_count[j] - overlap[i, j]`` false ones; pairing an id with its own
    dummy leaves all its boxes unmatched.
    """
    num_gt, num_pred = overlap.shape
    size = num_gt + num_pred
    gt_rows, pred_cols = np.arange(num_gt), np.arange(num_pred)
    fn_cost, fp_cost = np.zeros((size, size)), np.zeros((size, size))
    fn_cost[:num_gt, :num_pred] = gt_count[:, None] - overlap
    fn_cost[:num_gt, num_pred:] = FORBIDDEN
    fn_cost[gt_rows, num_pred + gt_rows] = gt_count
    fp_cost[:num_gt, :num_pred] = pred_count[None, :] - overlap
    fp_cost[num_gt:, :num_pred] = FORBIDDEN
    fp_cost[num_gt + pred_cols, pred_cols] = pred_count
    return fn_cost, fp_cost


def combine(stats: Sequence[IdentityStats]) -> IdentityStats:
    """Counts of several sequences added together (TrackEval's ``combine_sequences``)."""
    return IdentityStats(
        *(sum(values) for values in zip(*(astuple(s) for s in stats), strict=True))
    )


def summary(stats: IdentityStats) -> dict[str, float | int]:
    """IDF1, IDP and IDR (0-1) with the counts, under visionkit's key names."""
    return {
        "idf1": stats.idtp / max(1, stats.idtp + 0.5 * stats.idfp + 0.5 * stats.idfn),
        "idp": stats.idtp / max(1, stats.idtp + stats.idfp),
        "idr": stats.idtp / max(1, stats.idtp + stats.idfn),
        "idtp": stats.idtp,
        "idfp": stats.idfp,
        "idfn": stats.idfn,
    }
