"""Tests of visionkit.train.classify: the loss, the evaluation, and training a tiny CNN."""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch
import yaml
from torch import nn

from visionkit.errors import ConfigError, DataError
from visionkit.train import ClassificationTask, Trainer, load_checkpoint
from visionkit.train.trainer import evaluate

CPU = torch.device("cpu")


class Fixed(nn.Module):
    """Returns its input as the logits, so a test chooses the logits directly."""

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        return logits


def test_loss_is_cross_entropy_with_label_smoothing():
    logits, labels = torch.tensor([[2.0, 0.0, 0.0, 0.0]]), torch.tensor([0])
    log_p = torch.log_softmax(logits, dim=1)[0]
    # Smoothing 0.2 over 4 classes: target 0.8 + 0.05 on class 0, 0.05 on each other.
    expected = -(0.85 * log_p[0] + 0.05 * log_p[1:].sum()).item()
    loss, parts = ClassificationTask(4, label_smoothing=0.2).loss(Fixed(), (logits, labels), CPU)
    assert loss.item() == pytest.approx(expected) and parts == {"loss": pytest.approx(expected)}
    plain, _ = ClassificationTask(4).loss(Fixed(), (logits, labels), CPU)
    assert plain.item() == pytest.approx(-log_p[0].item())


def test_evaluate_scores_every_batch_and_gives_the_loss_per_sample():
    batches = [
        (torch.tensor([[3.0, 0.0, 0.0], [0.0, 3.0, 0.0]]), torch.tensor([0, 2])),
        (torch.tensor([[0.0, 0.0, 3.0]]), torch.tensor([2])),
    ]
    task = ClassificationTask(3, top_k=(1, 2))
    metrics = task.evaluate(Fixed(), batches, CPU)
    assert metrics["accuracy_top1"] == pytest.approx(2 / 3)
    assert metrics["confusion_matrix"].tolist() == [[1, 0, 0], [0, 0, 0], [0, 1, 1]]
    right, wrong = -math.log(math.e**3 / (math.e**3 + 2)), -math.log(1 / (math.e**3 + 2))
    assert metrics["loss"] == pytest.approx((2 * right + wrong) / 3)
    assert "accuracy_top2" in metrics and "accuracy_top5" not in metrics


def test_integer_images_are_refused_with_a_hint():
    batch = (torch.zeros(2, 3, 8, 8, dtype=torch.uint8), torch.tensor([0, 1]))
    with pytest.raises(DataError, match=r"images are torch\.uint8, expected float") as caught:
        ClassificationTask(2).loss(Fixed(), batch, CPU)
    assert "classification_transforms" in str(caught.value)


def test_bad_settings_are_config_errors(fast_config, tiny_cnn, blobs, tmp_path):
    with pytest.raises(ConfigError) as caught:
        ClassificationTask(4, label_smoothing=1.0)
    assert caught.value.field == "label_smoothing"
    with pytest.raises(ConfigError) as caught:
        ClassificationTask(0)
    assert caught.value.field == "num_classes"
    task, data = ClassificationTask(4, label_smoothing=0.1), blobs(32)
    with pytest.raises(ConfigError, match=r"the task uses 0\.1, the settings say 0\.0"):
        Trainer(tiny_cnn(), task, data, data, fast_config(), tmp_path)


def _rows(path):
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_tiny_cnn_learns_blobs_and_the_run_folder_is_complete(
    fast_config, tiny_cnn, blobs, tmp_path
):
    config = fast_config(epochs=4, seed=5)
    model, val = tiny_cnn(), blobs(200, seed=1)
    result = Trainer(model, ClassificationTask(4), blobs(256), val, config, tmp_path).fit()
    assert result.metrics["accuracy_top1"] >= 0.95 and result.epochs_run == 4

    rows = _rows(tmp_path / "results.csv")
    assert [row["epoch"] for row in rows] == ["1", "2", "3", "4"]
    for column in ("train/loss", "val/loss", "val/accuracy_top1", "val/f1_macro", "lr"):
        assert column in rows[0]
    assert "val/confusion_matrix" not in rows[0]
    assert float(rows[-1]["train/loss"]) < float(rows[0]["train/loss"])
    accuracies = [float(row["val/accuracy_top1"]) for row in rows]
    assert result.best_fitness == max(accuracies)
    assert result.best_epoch == 1 + accuracies.index(max(accuracies))

    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["parameters"] == {"trainable": 756, "total": 756}
    assert metrics["best_epoch"] == result.best_epoch
    assert metrics["last"]["accuracy_top1"] == accuracies[-1]
    assert sum(map(sum, metrics["last"]["confusion_matrix"])) == 200

    args = yaml.safe_load((tmp_path / "args.yaml").read_text())
    assert args["task"] == "classify" and args["seed"] == 5 and args["epochs"] == 4
    assert args["device_used"] == "cpu" and "torch" in args["versions"]

    best, last = load_checkpoint(result.best_path), load_checkpoint(result.last_path)
    assert (best["epoch"], last["epoch"]) == (result.best_epoch, 4)
    fresh = tiny_cnn(seed=99)
    fresh.load_state_dict(best["model"])
    val_loader = torch.utils.data.DataLoader(val, batch_size=64)
    again = evaluate(fresh, ClassificationTask(4), val_loader, CPU)
    assert again["accuracy_top1"] == result.best_fitness
