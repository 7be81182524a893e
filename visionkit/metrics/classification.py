"""Classification metrics: top-k accuracy, per-class precision/recall/F1, calibration, groups.

:class:`ClassificationMetrics` streams batches of scores into counts (a confusion matrix,
top-k hits and calibration bins), kept apart for every group when the samples carry one,
so a bias audit gets every metric per group from the same pass. Adding batches one at a
time equals adding them at once, and ``compute()`` sums the counts over
``torch.distributed`` processes.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np

from visionkit.errors import ConfigError, DataError
from visionkit.metrics._streaming import (
    as_array,
    check_labels,
    divide,
    nan_mean,
    sum_across_processes,
)

# Rows without a negative entry whose sum is this close to 1 are taken as probabilities.
_SUM_TOLERANCE = 1e-3


class ClassificationMetrics:
    """Streaming multi-class classification metrics, overall and per group.

    Conventions:

    - The predicted class is the argmax of the scores; on a tie the lowest class index
      wins (``np.argmax``, ``torch.argmax``). Top-k is defined to agree: a sample is a
      top-k hit when fewer than ``k`` classes rank above its target, a class ranking above
      when it scores higher, or scores the same and has a lower index.
    - Precision, recall and F1 of a class without predictions (or targets) are 0
      (scikit-learn's ``zero_division=0``); the macro means average over the classes that
      occur in the targets or the predictions (scikit-learn's default labels; torchmetrics'
      ``average="macro"``).
    - Calibration uses the top probability: a row is taken as probabilities when it has no
      negative entry and sums to 1 (within 1e-3), else softmax is applied to it. ``ece``
      puts confidences in ``num_bins`` equal bins ``[i/n, (i+1)/n)``, a confidence of
      exactly 1 in a bin of its own, and sums ``|accuracy - confidence| * n_bin / N`` over
      the bins, as torchmetrics' ``MulticlassCalibrationError(norm="l1")``.

    ``compute()`` is collective under an initialised ``torch.distributed`` with two or more
    processes: call it on every process; the processes may have seen different groups.

    Args:
        num_classes: Number of classes ``C``; targets are ``0 .. C-1``.
        top_k: The ``k`` of the top-k accuracies; those above ``C`` are skipped, and
            ``accuracy_top1`` is always reported.
        num_bins: Number of equal-width confidence bins of ``ece``.

    Example:
        >>> metrics = ClassificationMetrics(3, top_k=(1, 2))
        >>> metrics.update(np.array([[2.0, 1.0, 0.0], [0.0, 1.0, 2.0]]), np.array([0, 1]))
        >>> metrics.compute()["accuracy_top2"]
        1.0
    """

    def __init__(
        self, num_classes: int, *, top_k: Sequence[int] = (1, 5), num_bins: int = 15
    ) -> None:
        if num_classes < 1:
            raise ConfigError(f"must be at least 1, got {num_classes}", field="num_classes")
        if any(int(k) != k or k < 1 for k in top_k):
            raise ConfigError(f"must be positive integers, got {list(top_k)}", field="top_k")
        if num_bins < 1:
            raise ConfigError(f"must be at least 1, got {num_bins}", field="num_bins")
        self.num_classes = num_classes
        self.top_k = tuple(sorted({int(k) for k in top_k if 1 < k <= num_classes}))
        self.num_bins = num_bins
        self._edges = np.linspace(0.0, 1.0, num_bins + 1)
        self.reset()

    def reset(self) -> None:
        """Forget every batch seen so far."""
        self._groups: dict[Hashable, dict[str, np.ndarray]] = {}
        self._grouped: bool | None = None
        self._samples = 0

    def update(self, logits_or_probs: Any, targets: Any, groups: Any = None) -> None:
        """Add one batch.

        Args:
            logits_or_probs: float ``[N, C]`` logits or probabilities (numpy or torch).
            targets: int ``[N]`` class ids in ``[0, C)``.
            groups: ``[N]`` group of each sample (ints or strings), or None. Give groups
                to every update or to none.

        Raises:
            ConfigError: Shapes do not fit, or groups are given to some updates only.
            DataError: A target is out of range or a score is not finite.
        """
        scores, targets = as_array(logits_or_probs), as_array(targets)
        self._check_shapes(scores, targets)
        check_labels(targets, self.num_classes, field="target", first_index=self._samples)
        finite = np.isfinite(scores).all(axis=1)
        if not finite.all():
            raise DataError(
                "scores must be finite",
                record=f"sample {self._samples + int(np.argmin(finite))}",
                field="logits_or_probs",
            )
        keys, codes = self._group_codes(groups, len(targets))
        batch = self._batch_counts(scores.astype(np.float64), targets, codes, len(keys))
        for index, key in enumerate(keys):
            state = self._groups.setdefault(key, self._empty_state())
            for name, counts in batch.items():
                state[name] += counts[index]
        self._samples += len(targets)

    def _check_shapes(self, scores: np.ndarray, targets: np.ndarray) -> None:
        if scores.ndim != 2 or scores.shape[1] != self.num_classes:
            raise ConfigError(
                f"must have shape [N, {self.num_classes}], got {list(scores.shape)}",
                field="logits_or_probs",
            )
        if targets.shape != scores.shape[:1]:
            raise ConfigError(
                f"must have shape [{len(scores)}] to match the scores, got {list(targets.shape)}",
                field="target",
            )

    def _group_codes(self, groups: Any, count: int) -> tuple[list[Hashable], np.ndarray]:
        """The distinct groups of a batch and each sample's index into them."""
        grouped = groups is not None
        if self._grouped is not None and grouped != self._grouped:
            raise ConfigError("give groups to every update or to none", field="groups")
        keys, codes = [None], np.zeros(count, np.int64)
        if grouped:
            groups = as_array(groups)
            if groups.shape != (count,):
                raise ConfigError(
                    f"must have shape [{count}] to match the targets, got {list(groups.shape)}",
                    field="groups",
                )
            unique, codes = np.unique(groups, return_inverse=True)
            keys, codes = unique.tolist(), codes.reshape(-1)
        self._grouped = grouped
        return keys, codes

    def _empty_state(self) -> dict[str, np.ndarray]:
        bins = self.num_bins + 1  # the last holds confidences of exactly 1
        return {
            "confusion": np.zeros((self.num_classes, self.num_classes), np.int64),
            "top_k": np.zeros(len(self.top_k), np.int64),
            "bin_count": np.zeros(bins, np.int64),
            "bin_correct": np.zeros(bins, np.int64),
            "bin_confidence": np.zeros(bins, np.float64),
        }

    def _batch_counts(
        self, scores: np.ndarray, targets: np.ndarray, codes: np.ndarray, num_groups: int
    ) -> dict[str, np.ndarray]:
        """Every count of the state for each group of the batch: arrays ``[G, ...]``."""
        classes, bins = self.num_classes, self.num_bins + 1
        preds = scores.argmax(axis=1)
        ranks = _target_ranks(scores, targets)
        top_k = np.zeros((num_groups, len(self.top_k)), np.int64)
        for column, k in enumerate(self.top_k):
            top_k[:, column] = np.bincount(codes[ranks < k], minlength=num_groups)
        confidence = _confidence(scores)
        binned = codes * bins + np.searchsorted(self._edges, confidence, side="right") - 1
        pairs = (codes * classes + targets) * classes + preds
        return {
            "confusion": _per_group(pairs, num_groups, classes * classes).reshape(
                -1, classes, classes
            ),
            "top_k": top_k,
            "bin_count": _per_group(binned, num_groups, bins),
            "bin_correct": _per_group(binned[preds == targets], num_groups, bins),
            "bin_confidence": _per_group(binned, num_groups, bins, weights=confidence),
        }

    def compute(self) -> dict[str, Any]:
        """The metrics of every batch added since the last :meth:`reset`, on a 0-1 scale.

        Returns:
            ``accuracy_top1`` and ``accuracy_top{k}`` for the other ``k``; ``ece``;
            ``precision_macro``, ``recall_macro``, ``f1_macro`` (floats, NaN without
            samples); ``precision_per_class``, ``recall_per_class``, ``f1_per_class``
            (float64 ``[C]``); ``confusion_matrix`` (int64 ``[C, C]``, rows true, columns
            predicted). With groups, also ``per_group`` (``{group: {the same keys}}``) and
            ``worst_group_accuracy`` (the lowest top-1 accuracy of a group).
        """
        flat = {(g, name): v for g, state in self._groups.items() for name, v in state.items()}
        groups: dict[Hashable, dict[str, np.ndarray]] = {}
        for (group, name), counts in sum_across_processes(flat).items():
            groups.setdefault(group, {})[name] = counts
        overall = self._empty_state()
        for state in groups.values():
            for name, counts in state.items():
                overall[name] += counts
        result = self._summary(overall)
        if None in groups and len(groups) > 1:
            raise ConfigError("some processes gave groups and some did not", field="groups")
        if groups and None not in groups:
            per_group = {g: self._summary(groups[g]) for g in sorted(groups, key=_group_order)}
            result["per_group"] = per_group
            result["worst_group_accuracy"] = min(m["accuracy_top1"] for m in per_group.values())
        return result

    def _summary(self, state: dict[str, np.ndarray]) -> dict[str, Any]:
        """Metrics from one set of counts (all samples, or one group's)."""
        confusion = state["confusion"]
        total = confusion.sum()
        hits, true, predicted = np.diag(confusion), confusion.sum(1), confusion.sum(0)
        occurring = np.where(true + predicted > 0, 1.0, np.nan)
        precision = divide(hits, predicted, empty=0.0)
        recall = divide(hits, true, empty=0.0)
        f1 = divide(2 * hits, true + predicted, empty=0.0)
        result: dict[str, Any] = {"accuracy_top1": float(divide(hits.sum(), total))}
        for k, count in zip(self.top_k, state["top_k"], strict=True):
            result[f"accuracy_top{k}"] = float(divide(count, total))
        calibration_gap = np.abs(state["bin_correct"] - state["bin_confidence"]).sum()
        result |= {
            "ece": float(divide(calibration_gap, total)),
            "precision_macro": nan_mean(precision * occurring),
            "recall_macro": nan_mean(recall * occurring),
            "f1_macro": nan_mean(f1 * occurring),
            "precision_per_class": precision,
            "recall_per_class": recall,
            "f1_per_class": f1,
            "confusion_matrix": confusion,
        }
        return result


def classification_metrics(
    logits_or_probs: Any,
    targets: Any,
    num_classes: int,
    *,
    groups: Any = None,
    top_k: Sequence[int] = (1, 5),
    num_bins: int = 15,
) -> dict[str, Any]:
    """One-shot :class:`ClassificationMetrics`: the metrics of one set of samples."""
    metrics = ClassificationMetrics(num_classes, top_k=top_k, num_bins=num_bins)
    metrics.update(logits_or_probs, targets, groups)
    return metrics.compute()


def _target_ranks(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """int ``[N]``: how many classes rank above the target (higher score, or tie and lower id)."""
    target_scores = scores[np.arange(len(targets)), targets][:, None]
    lower_id = np.arange(scores.shape[1])[None, :] < targets[:, None]
    return (scores > target_scores).sum(1) + ((scores == target_scores) & lower_id).sum(1)


def _confidence(scores: np.ndarray) -> np.ndarray:
    """float64 ``[N]``: each row's top probability, through softmax unless the row sums to 1."""
    top = scores.max(axis=1)
    softmax_top = 1.0 / np.exp(scores - top[:, None]).sum(axis=1)
    is_probability = (scores >= 0).all(axis=1) & (np.abs(scores.sum(axis=1) - 1) <= _SUM_TOLERANCE)
    return np.where(is_probability, top, softmax_top)


def _per_group(
    binned: np.ndarray, num_groups: int, bins: int, weights: np.ndarray | None = None
) -> np.ndarray:
    """``[G, bins]`` counts (or sums of ``weights``) of ``group * bins + bin`` indices."""
    counts = np.bincount(binned, weights=weights, minlength=num_groups * bins)
    return counts.reshape(num_groups, bins)


def _group_order(group: Hashable) -> tuple[bool, Any]:
    """Sort key for group names: numbers first, then strings."""
    return isinstance(group, str), group
