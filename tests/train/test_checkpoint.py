"""Tests of visionkit.train.checkpoint: atomic writes, safe loading, RNG state, resume checks.

The end-to-end exact resume after a SIGKILL is in test_trainer.py.
"""

from __future__ import annotations

import os
import pickle
import random

import numpy as np
import pytest
import torch

from visionkit.errors import ConfigError, WeightsError
from visionkit.train.checkpoint import (
    CHECKPOINT_KEYS,
    check_resume,
    copy_atomic,
    load_checkpoint,
    open_for_resume,
    restore_rng,
    rng_state,
    save_checkpoint,
    write_atomic,
)
from visionkit.train.config import TrainConfig


def _state(**overrides):
    state = {key: None for key in CHECKPOINT_KEYS}
    state |= {
        "model": {"weight": torch.arange(6.0).reshape(2, 3)},
        "epoch": 3,
        "task": "classify",
        "train_config": TrainConfig().to_dict(),
        "trainable": ["weight"],
        "rng": [rng_state()],
    }
    return state | overrides


def test_round_trip_keeps_tensors_and_plain_values(tmp_path):
    path = tmp_path / "weights" / "last.pt"
    save_checkpoint(path, _state())
    loaded = load_checkpoint(path)
    assert torch.equal(loaded["model"]["weight"], torch.arange(6.0).reshape(2, 3))
    assert loaded["epoch"] == 3 and loaded["train_config"] == TrainConfig().to_dict()
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]  # no temporary file left


def test_a_failed_write_leaves_the_old_file_whole(tmp_path):
    path = tmp_path / "last.pt"
    save_checkpoint(path, _state(epoch=1))

    def fail_midway(handle):
        handle.write(b"half a checkpoint")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomic(path, fail_midway)
    assert load_checkpoint(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_copy_atomic_copies_bytes(tmp_path):
    save_checkpoint(tmp_path / "last.pt", _state())
    copy_atomic(tmp_path / "last.pt", tmp_path / "best.pt")
    assert (tmp_path / "best.pt").read_bytes() == (tmp_path / "last.pt").read_bytes()
    assert oct((tmp_path / "best.pt").stat().st_mode & 0o777) == "0o644"


class _RunsCode:
    """Unpickling this creates ``self.marker``: a stand-in for a malicious checkpoint."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("writer", ["torch", "pickle"])
def test_a_file_that_would_run_code_is_refused_and_nothing_runs(tmp_path, writer):
    marker, path = tmp_path / "ran", tmp_path / "evil.pt"
    payload = _state(model=_RunsCode(marker))
    if writer == "torch":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=2))
    with pytest.raises(WeightsError, match=r"refused: .*(io|builtins|posix)\.open") as caught:
        load_checkpoint(path)
    assert not marker.exists()
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)


def test_the_malicious_payload_does_run_without_weights_only(tmp_path):
    """Guards the test above: the payload really creates the marker when unpickled."""
    marker = tmp_path / "ran"
    pickle.loads(pickle.dumps(_RunsCode(marker))).close()
    assert marker.exists()


def test_truncated_garbage_empty_and_missing_files_are_weights_errors(tmp_path):
    good = tmp_path / "good.pt"
    save_checkpoint(good, _state())
    cases = {
        "truncated.pt": good.read_bytes()[: good.stat().st_size // 2],
        "garbage.pt": b"not a checkpoint at all",
        "empty.pt": b"",
    }
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(WeightsError, match=r"corrupt or truncated|refused") as caught:
            load_checkpoint(tmp_path / name)
        assert name in str(caught.value) and "\n" not in str(caught.value)
    with pytest.raises(WeightsError, match="no such weights file"):
        load_checkpoint(tmp_path / "absent.pt")


def test_a_plain_state_dict_is_not_a_training_checkpoint(tmp_path):
    torch.save({"weight": torch.zeros(2)}, tmp_path / "weights.pt")
    with pytest.raises(WeightsError, match="not a visionkit training checkpoint") as caught:
        load_checkpoint(tmp_path / "weights.pt")
    assert caught.value.field == "model"
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(WeightsError, match="holds a list, not a state dict"):
        load_checkpoint(tmp_path / "list.pt")


def _draw():
    return (torch.rand(3).tolist(), np.random.rand(3).tolist(), random.random(), np.random.randn())


def test_rng_state_survives_a_weights_only_round_trip(tmp_path):
    np.random.randn()  # leave numpy holding a cached Gaussian
    state = rng_state()
    first = _draw()
    save_checkpoint(tmp_path / "rng.pt", _state(rng=[state]))
    restore_rng(load_checkpoint(tmp_path / "rng.pt")["rng"][0])
    assert _draw() == first
    assert _draw() != first


def test_resume_refuses_changed_settings_and_names_them():
    saved = TrainConfig(lr=0.01, epochs=5).to_dict()
    with pytest.raises(ConfigError, match=r"was 0\.01 when the run started, now 0\.02") as caught:
        check_resume(saved, TrainConfig(lr=0.02, epochs=5).to_dict(), file="last.pt")
    assert caught.value.field == "lr" and caught.value.file == "last.pt"
    with pytest.raises(ConfigError) as caught:
        check_resume(saved, TrainConfig(lr=0.01, epochs=6).to_dict(), file="last.pt")
    assert caught.value.field == "epochs"
    allowed = TrainConfig(lr=0.01, epochs=5, workers=0, quiet=True, device="cpu", patience=2)
    check_resume(saved, allowed.to_dict(), file="last.pt")
    with pytest.raises(ConfigError, match="unset") as caught:
        check_resume({**saved, "mixup": 0.2}, saved, file="last.pt")
    assert caught.value.field == "mixup"


def test_open_for_resume_refreezes_and_checks_task(tmp_path):
    model = torch.nn.Linear(2, 2)
    path = tmp_path / "last.pt"
    save_checkpoint(path, _state(trainable=["bias"]))
    checkpoint = open_for_resume(path, "classify", TrainConfig(), model)
    assert checkpoint["epoch"] == 3
    assert not model.weight.requires_grad and model.bias.requires_grad
    with pytest.raises(ConfigError, match="the run was 'classify', not 'detect'"):
        open_for_resume(path, "detect", TrainConfig(), model)
    save_checkpoint(path, _state(trainable=["head.weight"]))
    with pytest.raises(WeightsError, match=r"lacks: head\.weight") as caught:
        open_for_resume(path, "classify", TrainConfig(), model)
    assert caught.value.field == "trainable"


def test_open_for_resume_checks_the_recorded_args_when_the_checkpoint_has_them(tmp_path):
    model, path = torch.nn.Linear(2, 2), tmp_path / "last.pt"
    args = {"data": "shapes", "mosaic": 1.0, "scale": (1.0, 1.0), "cache_images": True}
    save_checkpoint(path, _state(trainable=["weight"], args=args))
    open_for_resume(path, "classify", TrainConfig(), model, {**args, "cache_images": False})
    with pytest.raises(ConfigError, match=r"was 1\.0 when the run started, now 0\.0") as caught:
        open_for_resume(path, "classify", TrainConfig(), model, {**args, "mosaic": 0.0})
    assert caught.value.field == "mosaic" and str(path) in str(caught.value)
    save_checkpoint(path, _state(trainable=["weight"]))  # written before args were kept
    open_for_resume(path, "classify", TrainConfig(), model, {**args, "mosaic": 0.0})


def test_files_are_readable_by_others(tmp_path):
    save_checkpoint(tmp_path / "last.pt", _state())
    assert os.stat(tmp_path / "last.pt").st_mode & 0o044 == 0o044
