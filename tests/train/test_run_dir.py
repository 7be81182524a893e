"""Tests of visionkit.train.run_dir: folder naming, args.yaml, results.csv, metrics.json."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from visionkit.errors import WeightsError
from visionkit.train.run_dir import (
    ResultsLog,
    environment,
    new_run_dir,
    plain,
    write_args,
    write_metrics,
)


def test_taken_names_get_numbered_and_exist_ok_reuses(tmp_path):
    first = new_run_dir(tmp_path, "classify", "exp")
    second = new_run_dir(tmp_path, "classify", "exp")
    third = new_run_dir(tmp_path, "classify", "exp")
    assert [first.name, second.name, third.name] == ["exp", "exp2", "exp3"]
    assert first == tmp_path / "classify" / "exp" and (first / "weights").is_dir()
    assert new_run_dir(tmp_path, "classify", "exp", exist_ok=True) == first
    assert new_run_dir(tmp_path, "detect", "exp").name == "exp"


def test_resume_reuses_a_run_with_a_checkpoint_and_refuses_one_without(tmp_path):
    with pytest.raises(WeightsError, match="no run to resume") as caught:
        new_run_dir(tmp_path, "segment", "exp", resume=True)
    assert caught.value.file == str(tmp_path / "segment" / "exp" / "weights" / "last.pt")
    assert not (tmp_path / "segment").exists()  # a mistyped name leaves nothing behind
    run = new_run_dir(tmp_path, "segment", "exp")
    (run / "weights" / "last.pt").write_bytes(b"checkpoint")
    assert new_run_dir(tmp_path, "segment", "exp", resume=True) == run


def test_args_yaml_holds_settings_and_versions(tmp_path):
    values = {"seed": 3, "data": Path("d.yaml"), "top_k": (1, 5), "versions": environment()}
    write_args(tmp_path, values)
    loaded = yaml.safe_load((tmp_path / "args.yaml").read_text())
    assert loaded["seed"] == 3 and loaded["data"] == "d.yaml" and loaded["top_k"] == [1, 5]
    assert set(loaded["versions"]) == {"python", "torch", "torchvision", "visionkit"}
    assert loaded["versions"]["torch"] == torch.__version__


def test_plain_converts_tensors_arrays_and_objects():
    value = {
        1: torch.tensor([[1, 2]]),
        "a": np.float32(0.5),
        "b": (np.int64(3), None, True),
        "c": torch.device("cpu"),
    }
    assert plain(value) == {"1": [[1, 2]], "a": 0.5, "b": [3, None, True], "c": "cpu"}


def test_metrics_json_writes_non_finite_numbers_as_null(tmp_path):
    write_metrics(tmp_path, {"best": {"map": float("nan"), "ap": [1.0, float("inf")]}})
    loaded = json.loads((tmp_path / "metrics.json").read_text())
    assert loaded == {"best": {"map": None, "ap": [1.0, None]}}


def _rows(path):
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_results_rows_hold_losses_scalar_metrics_lr_and_time(tmp_path):
    path = tmp_path / "results.csv"
    log = ResultsLog(path)
    metrics = {"accuracy_top1": 0.5, "confusion_matrix": [[1, 0], [0, 1]], "ece": 0.1}
    log.append(1, {"loss": 2.0}, metrics, lr=0.01, seconds=1.23456)
    log.append(2, {"loss": 1.0}, metrics | {"accuracy_top1": 0.75}, lr=0.005, seconds=1.0)
    rows = _rows(path)
    assert list(rows[0]) == [
        "epoch",
        "train/loss",
        "val/accuracy_top1",
        "val/ece",
        "lr",
        "seconds",
    ]
    assert [r["val/accuracy_top1"] for r in rows] == ["0.5", "0.75"]
    assert rows[0]["seconds"] == "1.235" and math.isclose(float(rows[1]["lr"]), 0.005)


def test_resumed_log_keeps_completed_epochs_and_new_log_starts_empty(tmp_path):
    path = tmp_path / "results.csv"
    log = ResultsLog(path)
    for epoch in (1, 2, 3):
        log.append(epoch, {"loss": 1.0 / epoch}, {}, lr=0.1, seconds=1.0)
    resumed = ResultsLog(path, keep_epochs=2)  # epoch 3 ran past the checkpoint
    assert [r["epoch"] for r in _rows(path)] == ["1", "2"]
    resumed.append(3, {"loss": 0.3}, {}, lr=0.1, seconds=1.0)
    assert [r["train/loss"] for r in _rows(path)] == ["1.0", "0.5", "0.3"]
    ResultsLog(path).append(1, {"loss": 9.0}, {}, lr=0.1, seconds=1.0)
    assert [r["train/loss"] for r in _rows(path)] == ["9.0"]


def test_a_row_with_new_columns_widens_the_log(tmp_path):
    path = tmp_path / "results.csv"
    log = ResultsLog(path)
    log.append(1, {"loss": 1.0}, {}, lr=0.1, seconds=1.0)
    log.append(2, {"loss": 0.5}, {"map": 0.25, "per_class": [0.1]}, lr=0.05, seconds=2.0)
    with path.open(newline="") as handle:
        assert next(csv.reader(handle)) == ["epoch", "train/loss", "val/map", "lr", "seconds"]
    assert [(r["val/map"], r["lr"]) for r in _rows(path)] == [("", "0.1"), ("0.25", "0.05")]
