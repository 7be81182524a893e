"""Tests for visionkit.metrics.classification, held to scikit-learn and torchmetrics."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    precision_recall_fscore_support,
    top_k_accuracy_score,
)
from torchmetrics.classification import MulticlassCalibrationError

from visionkit.errors import ConfigError, DataError
from visionkit.metrics.classification import ClassificationMetrics, classification_metrics

CLASSES = 8  # class 7 never occurs, in targets or predictions


def samples(seed: int, count: int = 300) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Logits ``[N, C]`` that favour the target, targets ``[N]`` and string groups ``[N]``."""
    rng = np.random.default_rng(seed)
    targets = rng.integers(0, CLASSES - 1, count)
    logits = rng.normal(size=(count, CLASSES)) * 1.5
    logits[np.arange(count), targets] += 1.5
    logits[:, CLASSES - 1] -= 20
    groups = rng.choice(np.array(["indoor", "night", "outdoor"]), count)
    return logits, targets, groups


def assert_same(result: dict, expected: dict, rtol: float = 1e-12) -> None:
    assert result.keys() == expected.keys()
    for key, value in expected.items():
        if key == "per_group":
            assert result[key].keys() == value.keys()
            for group, metrics in value.items():
                assert_same(result[key][group], metrics, rtol)
        else:
            np.testing.assert_allclose(result[key], value, rtol=rtol, err_msg=key)


def test_matches_sklearn() -> None:
    logits, targets, _ = samples(0)
    result = classification_metrics(logits, targets, CLASSES, top_k=(1, 3, 5, 20))
    preds = logits.argmax(1)
    assert result["accuracy_top1"] == pytest.approx(accuracy_score(targets, preds), abs=1e-12)
    for k in (3, 5):
        expected = top_k_accuracy_score(targets, logits, k=k, labels=range(CLASSES))
        assert result[f"accuracy_top{k}"] == pytest.approx(expected, abs=1e-12)
    assert "accuracy_top20" not in result  # k above the number of classes is skipped
    per_class = precision_recall_fscore_support(
        targets, preds, labels=range(CLASSES), average=None, zero_division=0
    )
    for name, expected in zip(("precision", "recall", "f1"), per_class, strict=False):
        np.testing.assert_allclose(result[f"{name}_per_class"], expected, atol=1e-12)
    macro = precision_recall_fscore_support(targets, preds, average="macro", zero_division=0)
    for name, expected in zip(("precision", "recall", "f1"), macro, strict=False):
        assert result[f"{name}_macro"] == pytest.approx(expected, abs=1e-12)
    assert result["precision_per_class"][7] == 0  # never predicted: zero_division=0
    expected = confusion_matrix(targets, preds, labels=range(CLASSES))
    np.testing.assert_array_equal(result["confusion_matrix"], expected)


@pytest.mark.parametrize("as_probabilities", [False, True])
def test_ece_matches_torchmetrics(as_probabilities: bool) -> None:
    logits, targets, _ = samples(1)
    scores = logits
    if as_probabilities:  # with rows of confidence exactly 1, right and wrong
        scores = torch.from_numpy(logits).softmax(1).numpy()
        scores[:5] = np.eye(CLASSES)[targets[:5] + np.array([0, 0, 0, 1, 1])]
        # Many right at 0.95: the top bin's gap has the other sign than the gap at exactly 1.
        scores[5:45] = np.where(
            np.eye(CLASSES, dtype=bool)[targets[5:45]], 0.95, 0.05 / (CLASSES - 1)
        )
    for bins in (15, 7):
        result = classification_metrics(scores, targets, CLASSES, num_bins=bins)
        reference = MulticlassCalibrationError(CLASSES, n_bins=bins, norm="l1")
        expected = reference(torch.from_numpy(scores), torch.from_numpy(targets)).item()
        assert 0.02 < result["ece"] < 0.5
        assert result["ece"] == pytest.approx(expected, abs=1e-6)


def test_hand_worked_ece_and_ties() -> None:
    probs = np.array([[0.5, 0.5, 0.0], [0.9, 0.1, 0.0], [0.0, 0.3, 0.7], [0.2, 0.2, 0.6]])
    result = classification_metrics(probs, np.array([1, 0, 2, 0]), 3, top_k=(1, 2), num_bins=2)
    # The tie in row 0 goes to class 0: a miss at top-1, a hit at top-2. In row 3 class 0 ties
    # with class 1 and wins it, so it ranks second.
    assert result["accuracy_top1"] == pytest.approx(2 / 4)
    assert result["accuracy_top2"] == pytest.approx(4 / 4)
    # Bins [0, 0.5) and [0.5, 1): the second holds all four, at accuracy 2/4 and mean
    # confidence (0.5 + 0.9 + 0.7 + 0.6) / 4.
    assert result["ece"] == pytest.approx(abs(2 / 4 - 2.7 / 4))


def test_logits_and_their_softmax_give_the_same_metrics() -> None:
    logits, targets, _ = samples(2)
    probs = torch.from_numpy(logits).double().softmax(1).numpy()
    assert_same(
        classification_metrics(logits, targets, CLASSES),
        classification_metrics(probs, targets, CLASSES),
        rtol=1e-9,
    )


def test_per_group_equals_the_subset() -> None:
    logits, targets, groups = samples(3)
    result = classification_metrics(logits, targets, CLASSES, groups=groups)
    assert list(result["per_group"]) == ["indoor", "night", "outdoor"]
    for group, metrics in result["per_group"].items():
        kept = groups == group
        assert_same(metrics, classification_metrics(logits[kept], targets[kept], CLASSES))
    accuracies = [m["accuracy_top1"] for m in result["per_group"].values()]
    assert len(set(accuracies)) == 3
    assert result["worst_group_accuracy"] == min(accuracies)
    overall = classification_metrics(logits, targets, CLASSES)
    assert_same({k: v for k, v in result.items() if k in overall}, overall)


def test_integer_groups_sort_numerically() -> None:
    logits, targets, _ = samples(4, count=60)
    groups = np.arange(60) % 11
    result = classification_metrics(logits, targets, CLASSES, groups=torch.from_numpy(groups))
    assert list(result["per_group"]) == list(range(11))


def test_streaming_equals_one_shot() -> None:
    logits, targets, groups = samples(5)
    streamed = ClassificationMetrics(CLASSES, top_k=(1, 2, 5))
    for start in range(0, len(targets), 70):
        part = slice(start, start + 70)
        streamed.update(torch.from_numpy(logits[part]), targets[part], list(groups[part]))
    expected = classification_metrics(logits, targets, CLASSES, groups=groups, top_k=(1, 2, 5))
    assert_same(streamed.compute(), expected)
    streamed.reset()
    empty = streamed.compute()
    assert np.isnan(empty["accuracy_top1"]) and np.isnan(empty["ece"])
    assert "per_group" not in empty


def test_bad_input_raises() -> None:
    metrics = ClassificationMetrics(3)
    metrics.update(np.zeros((4, 3)), np.zeros(4, int))
    with pytest.raises(ConfigError, match=r"shape \[N, 3\]"):
        metrics.update(np.zeros((4, 5)), np.zeros(4, int))
    with pytest.raises(ConfigError, match=r"field 'target'.*shape \[4\]"):
        metrics.update(np.zeros((4, 3)), np.zeros(5, int))
    with pytest.raises(DataError, match=r"sample 6: field 'target': label 3 is outside \[0, 3\)"):
        metrics.update(np.zeros((4, 3)), np.array([0, 1, 3, 0]))
    with pytest.raises(DataError, match="sample 5: field 'logits_or_probs'"):
        metrics.update(np.array([[0, 1, 2], [0, np.nan, 1]]), np.array([0, 1]))
    with pytest.raises(ConfigError, match="every update or to none"):
        metrics.update(np.zeros((2, 3)), np.zeros(2, int), groups=["a", "b"])
    with pytest.raises(ConfigError, match="field 'groups'"):
        ClassificationMetrics(3).update(np.zeros((2, 3)), np.zeros(2, int), groups=["a"])
    with pytest.raises(ConfigError, match="top_k"):
        ClassificationMetrics(3, top_k=(0, 1))
    with pytest.raises(ConfigError, match="num_bins"):
        ClassificationMetrics(3, num_bins=0)


def _split_worker(rank: int, world: int, rendezvous: str, folder: str, data) -> None:
    dist.init_process_group("gloo", init_method=rendezvous, rank=rank, world_size=world)
    try:
        logits, targets, groups = data
        mine = (groups == "night") if rank == 0 else (groups != "night")  # different groups
        metrics = ClassificationMetrics(CLASSES)
        metrics.update(logits[mine], targets[mine], groups[mine])
        with open(f"{folder}/rank{rank}.pkl", "wb") as file:
            pickle.dump(metrics.compute(), file)
    finally:
        dist.destroy_process_group()


def test_two_processes_equal_one(tmp_path) -> None:
    data = samples(6)
    args = (2, f"file://{tmp_path}/rendezvous", str(tmp_path), data)
    mp.start_processes(_split_worker, args=args, nprocs=2, start_method="fork")
    expected = classification_metrics(*data[:2], CLASSES, groups=data[2])
    for rank in range(2):
        with open(tmp_path / f"rank{rank}.pkl", "rb") as file:
            assert_same(pickle.load(file), expected, rtol=1e-12)
