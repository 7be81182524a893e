"""Tests of visionkit.train.distributed: devices, seeding, samplers, and a real torchrun run."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from visionkit.errors import ConfigError
from visionkit.train.checkpoint import load_checkpoint
from visionkit.train.distributed import (
    DistContext,
    EpochSampler,
    ShardSampler,
    deterministic_mode,
    dist_context,
    epoch_seed,
    make_loader,
    ready_for_inference,
    select_device,
    set_epoch,
)

TORCHRUN = Path(sys.executable).with_name("torchrun")


def test_device_names():
    assert select_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else None
    assert select_device("auto").type in {expected, "mps", "cpu"} - {None}
    for bad in ("banana", "cuda:99", "tpu"):
        with pytest.raises(ConfigError) as caught:
            select_device(bad)
        assert caught.value.field == "device"


def test_ready_for_inference_visits_the_modules_only_when_something_changes(monkeypatch):
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    visits = []
    original = torch.nn.Module._apply
    monkeypatch.setattr(torch.nn.Module, "_apply", lambda m, *a, **k: visits.append(m) or
                        original(m, *a, **k))  # fmt: skip
    cpu = torch.device("cpu")
    assert ready_for_inference(model, cpu) is model
    assert not model.training and not model[1].training and visits == []  # already on the CPU
    model.train()
    ready_for_inference(model, cpu)
    assert not model[1].training  # back in eval mode, so BatchNorm uses its running stats
    if torch.cuda.is_available():
        ready_for_inference(model, torch.device("cuda", 0))
        assert visits and model[0].weight.is_cuda


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a CPU machine")
def test_missing_cuda_is_a_config_error():
    with pytest.raises(ConfigError, match="'cuda' is not available"):
        select_device("cuda")


def test_context_reads_torchrun_variables(monkeypatch):
    assert dist_context() == DistContext(0, 1, 0) and dist_context().is_main
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "1")
    context = dist_context()
    assert context == DistContext(3, 4, 1) and context.enabled and not context.is_main
    monkeypatch.setenv("RANK", "x")
    with pytest.raises(ConfigError, match="must be integers"):
        dist_context()


def test_epoch_order_depends_on_seed_and_epoch_only():
    sampler = EpochSampler(50, seed=1)
    sampler.set_epoch(2)
    order = list(sampler)
    torch.manual_seed(123)  # the global generator plays no part
    assert list(sampler) == order and sorted(order) == list(range(50))
    sampler.set_epoch(3)
    assert list(sampler) != order
    other = EpochSampler(50, seed=2)
    other.set_epoch(2)
    assert list(other) != order
    assert epoch_seed(0, 1) != epoch_seed(1, 0) and epoch_seed(5, 5) == epoch_seed(5, 5)


def test_shards_cover_every_sample_exactly_once():
    shards = [list(ShardSampler(11, rank, 3)) for rank in range(3)]
    assert sorted(index for shard in shards for index in shard) == list(range(11))
    assert [len(s) for s in shards] == [4, 4, 3]


def test_loader_splits_the_batch_and_refuses_an_uneven_one():
    data = torch.utils.data.TensorDataset(torch.arange(20))
    loader = make_loader(data, batch=8, train=False, seed=0, workers=0, context=DistContext(1, 2))
    assert [batch[0].tolist() for batch in loader] == [[1, 3, 5, 7], [9, 11, 13, 15], [17, 19]]
    with pytest.raises(ConfigError, match="multiple of the 3 processes") as caught:
        make_loader(data, batch=8, train=True, seed=0, workers=0, context=DistContext(0, 3))
    assert caught.value.field == "batch"


def _worker_draws(workers: int, epoch: int) -> list[float]:
    class Noise(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return 8

        def __getitem__(self, index: int) -> float:
            return torch.rand(()).item()

    loader = make_loader(Noise(), batch=2, train=True, seed=4, workers=workers)
    set_epoch(loader, epoch, seed=4)
    return torch.cat(list(loader)).tolist()


def test_worker_randomness_repeats_per_epoch_and_ignores_the_global_generator():
    first = _worker_draws(2, epoch=1)
    torch.manual_seed(99)
    assert _worker_draws(2, epoch=1) == first
    assert _worker_draws(2, epoch=2) != first


def test_deterministic_mode_restores_the_previous_settings():
    assert not torch.are_deterministic_algorithms_enabled()
    with deterministic_mode(True):
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
    assert not torch.are_deterministic_algorithms_enabled()
    assert not torch.backends.cudnn.deterministic


_SCRIPT = """
import importlib.util, json, sys
from pathlib import Path
spec = importlib.util.spec_from_file_location("train_helpers", {conftest!r})
helpers = importlib.util.module_from_spec(spec)
spec.loader.exec_module(helpers)
import torch
from visionkit.train import ClassificationTask, TrainConfig, Trainer, new_run_dir
from visionkit.train.distributed import init_distributed

context = init_distributed()
run_dir = new_run_dir(sys.argv[1], "classify", "train")
torch.manual_seed(0)
model = helpers.TinyCNN(4)
train = helpers.BlobDataset(256, 4, seed=0, augment=0.2)
val = helpers.BlobDataset(201, 4, seed=1, noise=0.6)
config = TrainConfig(epochs=4, batch=32, lr=0.01, workers=0, quiet=context.rank != 0)
result = Trainer(model, ClassificationTask(4), train, val, config, run_dir).fit()
matrix = result.metrics["confusion_matrix"]
report = {{"rank": context.rank, "run_dir": str(result.run_dir),
          "accuracy": result.metrics["accuracy_top1"], "samples": sum(map(sum, matrix))}}
Path(sys.argv[1], f"report{{context.rank}}.json").write_text(json.dumps(report))
"""


def _reports(folder: Path) -> list[dict]:
    return [json.loads(path.read_text()) for path in sorted(folder.glob("report*.json"))]


def test_torchrun_two_processes_match_one(tmp_path):
    conftest = Path(__file__).with_name("conftest.py")
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent(_SCRIPT.format(conftest=str(conftest))))
    alone = subprocess.run(
        [sys.executable, script, tmp_path / "one"], capture_output=True, text=True, timeout=120
    )
    assert alone.returncode == 0, alone.stderr[-2000:]
    command = [TORCHRUN, "--standalone", "--nproc_per_node=2", script, tmp_path / "two"]
    pair = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert pair.returncode == 0, pair.stderr[-2000:]
    [single], reports = _reports(tmp_path / "one"), _reports(tmp_path / "two")
    assert sorted(r["rank"] for r in reports) == [0, 1]
    # Both processes train into one folder (the main one chose it) and agree on the metrics,
    # which cover all 201 validation images once: the shards are merged, not padded.
    assert {r["run_dir"] for r in reports} == {str(tmp_path / "two" / "classify" / "train")}
    assert reports[0]["accuracy"] == reports[1]["accuracy"]
    assert all(r["samples"] == 201 for r in [*reports, single])
    assert abs(reports[0]["accuracy"] - single["accuracy"]) <= 0.01
    assert single["accuracy"] >= 0.9
    run = tmp_path / "two" / "classify"
    assert [p.name for p in run.iterdir()] == ["train"]  # rank 1 did not make "train2"
    rows = (run / "train" / "results.csv").read_text().splitlines()
    assert len(rows) == 1 + 4  # header and one row per epoch: only the main process writes
    assert pair.stdout.count("trainable of") == 1


_RESUME_SCRIPT = """
import importlib.util, sys
spec = importlib.util.spec_from_file_location("train_helpers", {conftest!r})
helpers = importlib.util.module_from_spec(spec)
spec.loader.exec_module(helpers)
import torch
from visionkit.train import Callback, ClassificationTask, TrainConfig, Trainer

mode, run_dir = sys.argv[1], sys.argv[2]


class Interrupt(Callback):
    def on_epoch_start(self, trainer, epoch):
        if mode == "stop" and epoch == 2:
            raise SystemExit(3)


torch.manual_seed(0)
model = helpers.TinyCNN(4, dropout=0.3)
train = helpers.BlobDataset(128, 4, seed=0, augment=0.2)
val = helpers.BlobDataset(40, 4, seed=1)
config = TrainConfig(epochs=3, batch=32, lr=0.01, workers=1, quiet=True, ema=True)
Trainer(model, ClassificationTask(4), train, val, config, run_dir, callbacks=[Interrupt()],
        resume=mode == "resume").fit()
"""


@pytest.mark.slow
def test_torchrun_resume_restores_every_process(tmp_path):
    """Each process's generators are saved and restored: dropout draws continue exactly."""
    conftest = Path(__file__).with_name("conftest.py")
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent(_RESUME_SCRIPT.format(conftest=str(conftest))))

    def torchrun(mode: str, run_dir: Path) -> int:
        command = [TORCHRUN, "--standalone", "--nproc_per_node=2", script, mode, run_dir]
        return subprocess.run(command, capture_output=True, timeout=300).returncode

    assert torchrun("plain", tmp_path / "whole") == 0
    assert torchrun("stop", tmp_path / "cut") != 0
    assert torchrun("resume", tmp_path / "cut") == 0
    whole = load_checkpoint(tmp_path / "whole" / "weights" / "last.pt")
    resumed = load_checkpoint(tmp_path / "cut" / "weights" / "last.pt")
    assert len(whole["rng"]) == 2 and resumed["epoch"] == 3
    for name, tensor in whole["ema"]["raw"].items():
        assert torch.equal(resumed["ema"]["raw"][name], tensor)
