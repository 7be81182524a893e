"""Tests of visionkit.train.trainer: the epoch loop, stopping, EMA, AMP, resume (exactly,
after a SIGKILL), frozen parameters, callbacks and the printed summary."""

from __future__ import annotations

import contextlib
import csv
import os
import signal
import subprocess
import sys
import textwrap
import time
import types
from pathlib import Path

import pytest
import torch

from visionkit.errors import ConfigError, DataError, WeightsError
from visionkit.train import Callback, ClassificationTask, Trainer, load_checkpoint
from visionkit.train import trainer as trainer_module
from visionkit.train._task import CloseMosaic, with_mosaic
from visionkit.train.config import TrainConfig
from visionkit.train.optim import build_optimizer, build_scheduler
from visionkit.train.trainer import evaluate, train_one_epoch

CPU = torch.device("cpu")


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


class ScriptedFitness(ClassificationTask):
    """Trains normally but reports a chosen accuracy sequence, one value per epoch."""

    def __init__(self, fitness: list[float]) -> None:
        super().__init__(4)
        self.fitness = iter(fitness)

    def evaluate(self, model, loader, device):
        return {"accuracy_top1": next(self.fitness), "loss": 0.0}


class Steps(ClassificationTask):
    """A loss whose logged part is the batch's index within the epoch."""

    def __init__(self) -> None:
        super().__init__(4)
        self.index = 0

    def loss(self, model, batch, device):
        loss, _ = super().loss(model, batch, device)
        self.index += 1
        return loss, {"loss": loss.item(), "index": float(self.index)}


def _one_epoch(model, task, loader, **options):
    config = TrainConfig(optimizer="sgd", lr=1.0, momentum=0.0, weight_decay=0, warmup_epochs=0)
    optimizer = build_optimizer(model, config)
    scheduler = build_scheduler(optimizer, config, len(loader))
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    return train_one_epoch(model, task, loader, optimizer, scheduler, scaler, CPU, **options)


def test_epoch_means_are_per_batch(tiny_cnn, blobs):
    loader = torch.utils.data.DataLoader(blobs(40), batch_size=10)
    means = _one_epoch(tiny_cnn(), Steps(), loader)
    assert means["index"] == pytest.approx((1 + 2 + 3 + 4) / 4)


def test_an_epoch_stops_after_max_steps(tiny_cnn, blobs):
    loader = torch.utils.data.DataLoader(blobs(40), batch_size=10)
    task = Steps()
    means = _one_epoch(tiny_cnn(), task, loader, max_steps=3)
    assert task.index == 3 and means["index"] == pytest.approx((1 + 2 + 3) / 3)


def test_gradient_clipping_bounds_each_step(tiny_cnn, blobs):
    loader = torch.utils.data.DataLoader(blobs(40), batch_size=10)
    changes = {}
    for clip in (None, 1e-3):
        model = tiny_cnn(dropout=0.0)
        start = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
        _one_epoch(model, ClassificationTask(4), loader, grad_clip=clip)
        end = torch.cat([p.detach().flatten() for p in model.parameters()])
        changes[clip] = (end - start).norm().item()
    # Plain SGD at lr 1: each of the 4 steps moves the weights by at most the clipped norm.
    assert changes[1e-3] <= 4 * 1e-3 * (1 + 1e-5) < changes[None]


def test_evaluate_restores_the_mode_and_needs_the_fitness_key(tiny_cnn, blobs):
    model = tiny_cnn().train()
    loader = torch.utils.data.DataLoader(blobs(16), batch_size=8)
    assert "accuracy_top1" in evaluate(model, ClassificationTask(4), loader, CPU)
    assert model.training

    class NoFitness(ClassificationTask):
        fitness_key = "map"

    with pytest.raises(ConfigError, match="gave no 'map'") as caught:
        evaluate(model, NoFitness(4), loader, CPU)
    assert caught.value.field == "fitness_key"


def test_early_stopping_waits_patience_epochs_after_the_best(
    fast_config, tiny_cnn, blobs, tmp_path
):
    task = ScriptedFitness([0.5, 0.7, 0.6, 0.7, 0.65, 0.9, 0.95])
    config = fast_config(epochs=7, patience=3)
    result = Trainer(tiny_cnn(), task, blobs(64), blobs(16), config, tmp_path).fit()
    assert (result.epochs_run, result.best_epoch, result.best_fitness) == (5, 2, 0.7)
    assert len(_rows(tmp_path / "results.csv")) == 5
    assert load_checkpoint(result.best_path)["epoch"] == 2
    assert load_checkpoint(result.last_path)["epoch"] == 5


def test_val_off_validates_the_last_epoch_only(fast_config, tiny_cnn, blobs, tmp_path):
    task = ScriptedFitness([0.7])  # a second evaluation would raise StopIteration
    config = fast_config(epochs=3, val=False)
    result = Trainer(tiny_cnn(), task, blobs(64), blobs(16), config, tmp_path).fit()
    assert (result.epochs_run, result.best_epoch, result.best_fitness) == (3, 3, 0.7)
    rows = _rows(tmp_path / "results.csv")
    assert [r["val/accuracy_top1"] for r in rows] == ["", "", "0.7"]
    assert all(r["train/loss"] and r["seconds"] for r in rows)
    assert load_checkpoint(result.best_path)["epoch"] == 3


@pytest.mark.parametrize("interrupted", [False, True])
def test_a_time_budget_plans_the_steps_and_ends_the_schedule_and_last_epoch_with_them(
    fast_config, tiny_cnn, blobs, tmp_path, monkeypatch, interrupted
):
    clock = iter(range(0, 10_000, 10))  # every reading 10 s later: 10 s to train, 10 to validate
    monkeypatch.setattr(
        trainer_module, "time", types.SimpleNamespace(perf_counter=lambda: next(clock))
    )
    config = fast_config(epochs=2, time=80 / 3600, lr=0.01, lr_final=0.1, warmup_epochs=0)
    train, val = blobs(64), blobs(16)
    if interrupted:  # epoch 4 planned a 1-step epoch 5: the resumed run must keep the plan
        with pytest.raises(KeyboardInterrupt):
            Trainer(tiny_cnn(), ClassificationTask(4), train, val, config, tmp_path,
                    callbacks=[StopAt(5)]).fit()  # fmt: skip
    trainer = Trainer(
        tiny_cnn(), ClassificationTask(4), train, val, config, tmp_path, resume=interrupted
    )
    result = trainer.fit()
    # 2 steps an epoch. Steps planned at the mean seconds per step so far: 80 // (10 / 2) =
    # 16 after epoch 1, then 80 // (30 / 4) = 10, 80 // (50 / 6) = 9, 80 // (70 / 8) = 9,
    # and epoch 5 stops after 1 step, the 9th; at (90 / 9) s a step the plan stays 9.
    assert (result.epochs_run, trainer.epochs, trainer.steps) == (5, 5, 9)
    assert trainer.scheduler.last_epoch == 9
    assert len(_rows(tmp_path / "results.csv")) == 5
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(0.01 * 0.1)  # cosine's end
    plan = load_checkpoint(trainer.last_path)["plan"]
    assert plan == {"epochs": 5, "steps": 9, "seconds": 100}


def test_a_nan_fitness_never_counts_as_the_best(fast_config, tiny_cnn, blobs, tmp_path):
    task = ScriptedFitness([float("nan"), 0.4, float("nan")])
    result = Trainer(tiny_cnn(), task, blobs(64), blobs(16), fast_config(), tmp_path).fit()
    assert (result.best_epoch, result.best_fitness) == (2, 0.4)


def test_ema_is_saved_in_place_of_the_trained_weights(fast_config, tiny_cnn, blobs, tmp_path):
    saved = {}
    for ema in (False, True):
        config = fast_config(ema=ema, ema_decay=0.9)
        run = tmp_path / str(ema)
        Trainer(tiny_cnn(), ClassificationTask(4), blobs(64), blobs(32), config, run).fit()
        saved[ema] = load_checkpoint(run / "weights" / "last.pt")
    plain, averaged = saved[False], saved[True]
    assert plain["ema"] is None and averaged["ema"]["updates"] == 3 * 2
    # The average does not steer training: the trained weights are those of the plain run.
    for name, tensor in plain["model"].items():
        assert torch.equal(averaged["ema"]["raw"][name], tensor)
    weight = "head.2.weight"
    assert not torch.equal(averaged["model"][weight], plain["model"][weight])


def test_amp_is_not_used_on_the_cpu(fast_config, tiny_cnn, blobs, tmp_path, monkeypatch):
    entered = []

    def recording_autocast(*args, **kwargs):
        entered.append(args)
        return contextlib.nullcontext()

    monkeypatch.setattr(trainer_module.torch, "autocast", recording_autocast)
    config = fast_config(epochs=1, amp=True, device="cpu")
    trainer = Trainer(tiny_cnn(), ClassificationTask(4), blobs(64), blobs(16), config, tmp_path)
    trainer.fit()
    assert entered == [] and not trainer.amp
    assert load_checkpoint(trainer.last_path)["scaler"] == {}
    loader = torch.utils.data.DataLoader(blobs(8), batch_size=8)
    _one_epoch(tiny_cnn(), ClassificationTask(4), loader, amp=torch.float16)
    assert entered == [("cpu",)]  # the recorder does see the AMP path when it is taken


class AutocastSeen(ClassificationTask):
    """Records the CPU autocast type in force during each training loss."""

    def __init__(self) -> None:
        super().__init__(4)
        self.seen = set()

    def loss(self, model, batch, device):
        enabled = torch.is_autocast_enabled("cpu")
        self.seen.add(torch.get_autocast_dtype("cpu") if enabled else None)
        return super().loss(model, batch, device)


def test_bf16_trains_under_bfloat16_autocast_on_the_cpu(fast_config, tiny_cnn, blobs, tmp_path):
    accuracy = {}
    for amp in ("bf16", False):
        task, model = AutocastSeen(), tiny_cnn()
        config = fast_config(epochs=5, amp=amp, device="cpu")
        trainer = Trainer(model, task, blobs(128), blobs(64), config, tmp_path / str(amp))
        trainer.fit()
        accuracy[amp] = trainer.metrics["last"]["accuracy_top1"]
    assert task.seen == {None}  # the float32 run, for contrast
    trainer = Trainer(tiny_cnn(), task := AutocastSeen(), blobs(64), blobs(16),
                      fast_config(epochs=1, amp="bf16"), tmp_path / "one")  # fmt: skip
    trainer.fit()
    assert task.seen == {torch.bfloat16} and trainer.amp == torch.bfloat16
    assert load_checkpoint(trainer.last_path)["scaler"] == {}  # no loss scaling for bfloat16
    assert all(p.dtype == torch.float32 for p in trainer.model.parameters())
    assert accuracy["bf16"] > 0.6 and accuracy["bf16"] >= accuracy[False] - 0.1, accuracy


class StopAt(Callback):
    """Records the hooks and interrupts the run when epoch ``stop`` starts."""

    def __init__(self, stop: int | None = None) -> None:
        self.stop, self.seen = stop, []

    def on_epoch_start(self, trainer, epoch):
        if epoch == self.stop:
            raise KeyboardInterrupt
        self.seen.append(("start", epoch))

    def on_epoch_end(self, trainer, epoch, metrics):
        self.seen.append(("end", epoch, metrics["accuracy_top1"]))


def test_callbacks_run_at_each_epoch_start_and_end(fast_config, tiny_cnn, blobs, tmp_path):
    hooks = StopAt()
    config = fast_config(epochs=2)
    Trainer(tiny_cnn(), ClassificationTask(4), blobs(64), blobs(16), config, tmp_path,
            callbacks=[hooks]).fit()  # fmt: skip
    assert [event[:2] for event in hooks.seen] == [
        ("start", 1),
        ("end", 1),
        ("start", 2),
        ("end", 2),
    ]


def test_resume_refuses_changed_settings_and_bad_checkpoints(
    fast_config, tiny_cnn, blobs, tmp_path
):
    train, val = blobs(64), blobs(16)

    def fit(config, task=None, **options):
        task = task or ClassificationTask(4)
        return Trainer(tiny_cnn(), task, train, val, config, tmp_path, **options).fit()

    fit(fast_config(epochs=2))
    for changed in ({"lr": 0.02}, {"ema": True}, {"epochs": 3}, {"batch": 16}):
        with pytest.raises(ConfigError) as caught:
            fit(fast_config(**{"epochs": 2, **changed}), resume=True)
        assert caught.value.field == next(iter(changed))
        assert "when the run started" in str(caught.value)
    with pytest.raises(ConfigError, match="the run was 'classify', not 'other'"):
        fit(fast_config(epochs=2), type("Other", (ClassificationTask,), {"name": "other"})(4),
            resume=True)  # fmt: skip
    finished = fit(fast_config(epochs=2, workers=1, patience=5), resume=True)
    assert finished.epochs_run == 2 and len(_rows(tmp_path / "results.csv")) == 2

    last = tmp_path / "weights" / "last.pt"
    last.write_bytes(last.read_bytes()[:1000])
    with pytest.raises(WeightsError, match="corrupt or truncated") as caught:
        fit(fast_config(epochs=2), resume=True)
    assert str(last) in str(caught.value)


def test_resume_refreezes_what_was_frozen(fast_config, tiny_cnn, blobs, tmp_path, capsys):
    train, val = blobs(64), blobs(16)
    model = tiny_cnn()
    model.features.requires_grad_(False)
    frozen = {name: p.detach().clone() for name, p in model.features.named_parameters()}
    config = fast_config(epochs=3, quiet=False)
    with pytest.raises(KeyboardInterrupt):
        Trainer(model, ClassificationTask(4), train, val, config, tmp_path,
                callbacks=[StopAt(2)]).fit()  # fmt: skip
    resumed = tiny_cnn()  # built afresh, nothing frozen: the checkpoint says what to freeze
    result = Trainer(resumed, ClassificationTask(4), train, val, config, tmp_path,
                     resume=True).fit()  # fmt: skip
    assert result.epochs_run == 3
    assert [p.requires_grad for p in resumed.features.parameters()] == [False] * 4
    for name, parameter in resumed.features.named_parameters():
        assert torch.equal(parameter, frozen[name])
    output = capsys.readouterr().out
    assert output.count("classify: 516 trainable of 756 parameters (68.3%) on cpu") == 2
    assert "epoch 3/3  train/loss" in output and "epoch 2/3" in output


def test_quiet_prints_nothing_and_save_period_keeps_copies(
    fast_config, tiny_cnn, blobs, tmp_path, capsys
):
    config = fast_config(epochs=4, save_period=2)
    Trainer(tiny_cnn(), ClassificationTask(4), blobs(64), blobs(16), config, tmp_path).fit()
    assert capsys.readouterr().out == ""
    names = sorted(p.name for p in (tmp_path / "weights").iterdir())
    assert names == ["best.pt", "epoch2.pt", "epoch4.pt", "last.pt"]
    assert load_checkpoint(tmp_path / "weights" / "epoch2.pt")["epoch"] == 2


def test_an_object_without_the_task_members_is_refused(fast_config, tiny_cnn, blobs, tmp_path):
    class Half:
        name, fitness_key = "half", "score"

        def loss(self, model, batch, device): ...

    with pytest.raises(ConfigError, match="Half is not a task: it lacks collate, evaluate"):
        Trainer(tiny_cnn(), Half(), blobs(8), blobs(8), fast_config(), tmp_path)


def test_empty_training_data_is_refused(fast_config, tiny_cnn, blobs, tmp_path):
    empty = torch.utils.data.Subset(blobs(8), [])
    trainer = Trainer(tiny_cnn(), ClassificationTask(4), empty, blobs(8), fast_config(), tmp_path)
    with pytest.raises(DataError, match="the training dataset is empty"):
        trainer.fit()


_RESUME_SCRIPT = """
import importlib.util, sys, time
from pathlib import Path
spec = importlib.util.spec_from_file_location("train_helpers", {conftest!r})
helpers = importlib.util.module_from_spec(spec)
spec.loader.exec_module(helpers)
import torch
from visionkit.train import ClassificationTask, TrainConfig, Trainer

mode, run_dir = sys.argv[1], Path(sys.argv[2])
STEPS_PER_EPOCH = 6


class Stalling(ClassificationTask):
    '''In "stall" mode, signal at the third step of epoch 2, then hang there until killed.'''

    steps = 0

    def loss(self, model, batch, device):
        self.steps += 1
        if mode == "stall" and self.steps == STEPS_PER_EPOCH + 3:
            (run_dir / "stalled").write_text("")
            time.sleep(120)
        return super().loss(model, batch, device)


torch.manual_seed(0)
model = helpers.TinyCNN(4, dropout=0.2)
train = helpers.BlobDataset(96, 4, seed=0, augment=0.2)
val = helpers.BlobDataset(40, 4, seed=1)
config = TrainConfig(
    epochs=3, batch=16, lr=0.01, warmup_epochs=0.5, grad_clip=5.0, ema=True, ema_decay=0.9,
    workers=2, quiet=True, seed=7,
)
Trainer(model, Stalling(4), train, val, config, run_dir, resume=mode == "resume").fit()
"""


def _launch(script: Path, mode: str, run_dir: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, script, mode, run_dir],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its own process group: the kill reaches its loader workers
    )


def _finish(process: subprocess.Popen) -> None:
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr.decode()[-2000:]


def _wait_for(path: Path, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, process.communicate()[1].decode()[-2000:]
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.05)


def test_a_run_killed_mid_epoch_resumes_to_the_same_weights(tmp_path):
    script = tmp_path / "train.py"
    conftest = str(Path(__file__).with_name("conftest.py"))
    script.write_text(textwrap.dedent(_RESUME_SCRIPT.format(conftest=conftest)))
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    killed.mkdir()
    uninterrupted = _launch(script, "plain", whole)
    stalling = _launch(script, "stall", killed)
    _wait_for(killed / "stalled", stalling)
    os.killpg(stalling.pid, signal.SIGKILL)
    stalling.wait(timeout=30)
    assert stalling.returncode == -signal.SIGKILL
    assert load_checkpoint(killed / "weights" / "last.pt")["epoch"] == 1  # epoch 2 was lost
    _finish(_launch(script, "resume", killed))
    _finish(uninterrupted)

    expected = load_checkpoint(whole / "weights" / "last.pt")
    resumed = load_checkpoint(killed / "weights" / "last.pt")
    assert resumed["epoch"] == expected["epoch"] == 3 and resumed["step"] == expected["step"]
    for weights in ("model", "raw"):
        want = expected["model"] if weights == "model" else expected["ema"]["raw"]
        got = resumed["model"] if weights == "model" else resumed["ema"]["raw"]
        assert want.keys() == got.keys()
        assert all(torch.equal(got[name], tensor) for name, tensor in want.items())
    for index, state in expected["optimizer"]["state"].items():
        got = resumed["optimizer"]["state"][index]
        assert all(torch.equal(got[key], value) for key, value in state.items())
    # The logs agree too (apart from timings): the same losses and metrics every epoch.
    drop = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert drop(_rows(killed / "results.csv")) == drop(_rows(whole / "results.csv"))


def _first_closed_epoch(epochs: float, planned: list[int]) -> int | None:
    """The epoch at whose start ``CloseMosaic(mosaic, epochs)`` first closes the mosaic,
    the run's plan being ``planned[i]`` epochs at the start of epoch ``i + 1``."""
    closed: list[int] = []
    for epoch, plan in enumerate(planned, start=1):
        mosaic = types.SimpleNamespace(close=lambda epoch=epoch: closed.append(epoch))
        CloseMosaic(mosaic, epochs).on_epoch_start(types.SimpleNamespace(epochs=plan), epoch)
    return min(closed, default=None)


def test_mosaic_closes_for_the_last_epochs_of_the_planned_run():
    # a time budget re-plans ``epochs`` during the run: 6, then 4
    assert _first_closed_epoch(2, [6, 4, 4, 4]) == 3
    assert _first_closed_epoch(0, [4, 4, 4, 4]) is None


def test_a_share_below_one_closes_mosaic_for_that_share_of_the_planned_epochs():
    assert _first_closed_epoch(0.65, [10] * 10) == 4  # epochs 4-10: the last 6.5 of 10
    assert _first_closed_epoch(0.3, [5] * 5) == 4  # 1.5 of 5: the epochs that overlap it
    with pytest.raises(ConfigError, match="field 'close_mosaic'"):
        CloseMosaic(types.SimpleNamespace(), epochs=-1)


def test_with_mosaic_wraps_the_data_even_at_zero_and_refuses_a_probability_out_of_range():
    items = list(range(5))
    training, callbacks = with_mosaic(items, 32, 0.0, 0.65)
    assert [training[i] for i in range(5)] == items and len(callbacks) == 1
    for p in (-0.1, 1.5):
        with pytest.raises(ConfigError, match=f"field 'mosaic': must be in \\[0, 1\\], got {p}"):
            with_mosaic(items, 32, p, 0.65)
