"""The training loop: :func:`train_one_epoch`, :func:`evaluate`, and the :class:`Trainer`
that runs them epoch after epoch and keeps the run folder.

The trainer owns everything that is the same for every task (loaders and processes,
optimiser and schedule, mixed precision, EMA, checkpoints, early stopping, logging); a
:class:`~visionkit.train._task.Task` owns the loss and the metrics.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import math
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from visionkit.errors import ConfigError, DataError, WeightsError
from visionkit.train._task import TASK_MEMBERS, Callback, Task
from visionkit.train.checkpoint import (
    copy_atomic,
    open_for_resume,
    restore_rng,
    rng_state,
    save_checkpoint,
)
from visionkit.train.config import TrainConfig
from visionkit.train.distributed import (
    DistContext,
    all_reduce_sum,
    broadcast_from_main,
    deterministic_mode,
    gather_from_all,
    init_distributed,
    make_loader,
    seed_everything,
    select_device,
    set_epoch,
    shutdown_distributed,
    unwrap,
    wrap_model,
)
from visionkit.train.ema import ModelEMA
from visionkit.train.optim import build_optimizer, build_scheduler, parameter_counts
from visionkit.train.run_dir import ResultsLog, environment, plain, write_args, write_metrics

__all__ = ["Callback", "TrainResult", "Trainer", "evaluate", "train_one_epoch"]


@dataclass(frozen=True)
class TrainResult:
    """What a finished :meth:`Trainer.fit` leaves.

    Attributes:
        run_dir: The run folder.
        best_path: ``weights/best.pt``, the checkpoint of the best validation fitness.
        last_path: ``weights/last.pt``, the checkpoint of the last epoch.
        best_fitness: The best value of the task's ``fitness_key``.
        best_epoch: The epoch (from 1) that reached it.
        metrics: The last epoch's validation metrics.
        epochs_run: Epochs completed in the run folder (fewer than ``epochs`` after an
            early stop), counting those before a resume.
    """

    run_dir: Path
    best_path: Path
    last_path: Path
    best_fitness: float
    best_epoch: int
    metrics: dict[str, Any]
    epochs_run: int


def train_one_epoch(
    model: nn.Module,
    task: Task,
    loader: Iterable[Any],
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler,
    device: torch.device,
    *,
    ema: ModelEMA | None = None,
    grad_clip: float | None = None,
    amp: torch.dtype | None = None,
    progress: str | None = None,
    max_steps: int | None = None,
) -> dict[str, float]:
    """One pass over ``loader``: loss, backward, clip, step, schedule and EMA per batch.

    Args:
        model: In training mode after this call (wrapped in DDP under torchrun).
        task: Gives the loss of each batch.
        loader: This process's batches.
        optimizer, scheduler, scaler: Stepped once per batch (``scaler`` is a pass-through
            when mixed precision is off).
        device: Where ``model`` is.
        ema: Updated from the unwrapped model after each step.
        grad_clip: Maximum gradient norm, ``None`` for no clipping.
        amp: Run the forward pass under autocast to this type; ``None`` = full precision.
        progress: A progress bar's title; ``None`` shows no bar.
        max_steps: Stop after this many batches (a time budget's last, shortened epoch);
            ``None`` = the whole loader.

    Returns:
        The epoch's mean of every loss part, averaged over processes.
    """
    model.train()
    totals: dict[str, float] = {}
    batches = 0
    bar = tqdm(loader, desc=progress, disable=progress is None, leave=False, dynamic_ncols=True)
    for batch in itertools.islice(bar, max_steps):
        autocast = torch.autocast(device.type, dtype=amp) if amp else contextlib.nullcontext()
        with autocast:
            loss, parts = task.loss(model, batch, device)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if grad_clip is not None:
            scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        if ema is not None:
            ema.update(unwrap(model))
        for key, value in parts.items():
            totals[key] = totals.get(key, 0.0) + float(value)
        batches += 1
        bar.set_postfix({key: f"{value:.4g}" for key, value in parts.items()}, refresh=False)
    return _process_means(totals, batches)


def _process_means(totals: dict[str, float], batches: int) -> dict[str, float]:
    """Per-batch means of ``totals`` over the batches of every process."""
    keys = sorted(totals)
    summed = all_reduce_sum(
        torch.tensor([*(totals[k] for k in keys), batches], dtype=torch.float64)
    )
    count = max(1.0, float(summed[-1]))
    return {key: float(value) / count for key, value in zip(keys, summed[:-1], strict=True)}


def evaluate(
    model: nn.Module, task: Task, loader: Iterable[Any], device: torch.device
) -> dict[str, Any]:
    """``task.evaluate`` with ``model`` in eval mode and gradients off; the model's mode is
    restored after.

    Raises:
        ConfigError: The result lacks the task's ``fitness_key``.
    """
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            metrics = dict(task.evaluate(model, loader, device))
    finally:
        model.train(was_training)
    if task.fitness_key not in metrics:
        raise ConfigError(
            f"task {task.name!r} evaluation gave no {task.fitness_key!r}; it gave "
            f"{', '.join(metrics) or 'nothing'}",
            field="fitness_key",
        )
    return metrics


class Trainer:
    """Trains ``model`` on a task, one epoch after another, into a run folder.

    Each epoch trains, evaluates (the EMA weights when on; with ``config.val`` off, only
    the last epoch), appends to ``results.csv``, rewrites ``metrics.json`` and writes
    ``weights/last.pt`` (and ``best.pt`` when the fitness improved) atomically. Launched
    by torchrun, each process trains its share in ``DistributedDataParallel`` and only
    the main process writes or prints.

    Args:
        model: The model; parameters with ``requires_grad=False`` stay frozen.
        task: The loss and metrics (:class:`~visionkit.train._task.Task`).
        train_data, val_data: Map-style datasets; the task's ``collate`` batches them.
        config: The run's settings.
        run_dir: The run folder (see :func:`~visionkit.train.run_dir.new_run_dir`).
        args: More settings to record in ``args.yaml`` (data, model, weights, ...), and in
            the checkpoints: a resumed run must repeat them (plain values only).
        callbacks: Hooks called at each epoch's start and end.
        resume: Continue from ``<run_dir>/weights/last.pt``: model, optimiser, schedule,
            scaler, EMA, random generators, epoch and frozen parameters are restored.

    Raises:
        ConfigError: ``task`` lacks a member of the task protocol, or its
            ``label_smoothing`` differs from ``config.label_smoothing``.

    Example:
        >>> result = Trainer(model, ClassificationTask(10), train, val,
        ...                  TrainConfig(epochs=5), new_run_dir()).fit()  # doctest: +SKIP
    """

    def __init__(
        self,
        model: nn.Module,
        task: Task,
        train_data: Dataset,
        val_data: Dataset,
        config: TrainConfig,
        run_dir: str | Path,
        *,
        args: Mapping[str, Any] | None = None,
        callbacks: Sequence[Callback] = (),
        resume: bool = False,
    ) -> None:
        missing = [member for member in TASK_MEMBERS if not hasattr(task, member)]
        if missing:
            found = f"{type(task).__name__} is not a task: it lacks {', '.join(missing)}"
            raise ConfigError(found, field="task")
        smoothing = getattr(task, "label_smoothing", config.label_smoothing)
        if smoothing != config.label_smoothing:
            raise ConfigError(
                f"the task uses {smoothing}, the settings say {config.label_smoothing}",
                field="label_smoothing",
            )
        self.model, self.task, self.config = model, task, config
        self.train_data, self.val_data = train_data, val_data
        self.run_dir, self.args = Path(run_dir), dict(args or {})
        self.callbacks, self.resume = list(callbacks), resume
        self.epoch, self.best_epoch, self.best_fitness = 0, 0, float("-inf")
        self.epochs = config.epochs  # the planned length: re-planned under ``config.time``
        self.steps: int | None = None  # under ``config.time``: the planned optimiser steps
        self.seconds = 0.0  # wall time of the finished epochs, resumed sessions included
        self.metrics: dict[str, dict[str, Any]] = {"best": {}, "last": {}}
        self.context = DistContext()
        self.device = torch.device("cpu")
        self.ema: ModelEMA | None = None

    @property
    def last_path(self) -> Path:
        """``<run_dir>/weights/last.pt``."""
        return self.run_dir / "weights" / "last.pt"

    @property
    def best_path(self) -> Path:
        """``<run_dir>/weights/best.pt``."""
        return self.run_dir / "weights" / "best.pt"

    @property
    def amp(self) -> torch.dtype | None:
        """The autocast type of the forward passes (``config.amp``): float16 when asked
        for on a CUDA device, bfloat16 when ``"bf16"`` is asked for, else ``None``."""
        if self.config.amp == "bf16":
            return torch.bfloat16
        return torch.float16 if self.config.amp and self.device.type == "cuda" else None

    def fit(self) -> TrainResult:
        """Train until ``config.epochs`` (or the steps that fit ``config.time``) or early
        stopping; see the class docs."""
        self.context = init_distributed()
        with deterministic_mode(self.config.deterministic):
            result = self._fit()
        shutdown_distributed()
        return result

    def _fit(self) -> TrainResult:
        config = self.config
        self.device = select_device(config.device, self.context.local_rank)
        seed_everything(config.seed + self.context.rank)
        checkpoint = None
        if self.resume:
            checkpoint = open_for_resume(
                self.last_path, self.task.name, config, self.model, self.args
            )
        model = self.model.to(self.device)
        train_loader, val_loader = self._loaders()
        self.optimizer = build_optimizer(model, config)
        self.scheduler = build_scheduler(self.optimizer, config, len(train_loader))
        # bfloat16 has float32's range: only float16 needs its loss scaled
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp == torch.float16)
        self.ema = ModelEMA(model, config.ema_decay) if config.ema else None
        if checkpoint is not None:
            self._restore(checkpoint)
        self._start_files()
        wrapped = wrap_model(model, self.device, self.context)
        while self.epoch < self.epochs and not broadcast_from_main(self._patience_ran_out()):
            self._run_epoch(wrapped, train_loader, val_loader)
        return TrainResult(
            self.run_dir,
            self.best_path,
            self.last_path,
            self.best_fitness,
            self.best_epoch,
            dict(self.metrics["last"]),
            self.epoch,
        )

    def _loaders(self) -> tuple[DataLoader, DataLoader]:
        shared = {
            "batch": self.config.batch,
            "seed": self.config.seed,
            "workers": self.config.workers,
            "collate": self.task.collate,
            "context": self.context,
        }
        loaders = (
            make_loader(self.train_data, train=True, **shared),
            make_loader(self.val_data, train=False, **shared),
        )
        for loader, which in zip(loaders, ("training", "validation"), strict=True):
            if len(loader) == 0:
                raise DataError(f"the {which} dataset is empty")
        return loaders

    def _patience_ran_out(self) -> bool:
        patience = self.config.patience
        return patience is not None and self.epoch - self.best_epoch >= patience

    def _run_epoch(
        self, model: nn.Module, train_loader: DataLoader, val_loader: DataLoader
    ) -> None:
        epoch, config = self.epoch + 1, self.config
        for callback in self.callbacks:
            callback.on_epoch_start(self, epoch)
        set_epoch(train_loader, epoch, config.seed, self.context.rank)
        started = time.perf_counter()
        losses = train_one_epoch(
            model, self.task, train_loader, self.optimizer, self.scheduler, self.scaler,
            self.device, ema=self.ema, grad_clip=config.grad_clip, amp=self.amp,
            progress=f"epoch {epoch}/{self.epochs}" if self._show_bar() else None,
            max_steps=None if self.steps is None else self.steps - self.scheduler.last_epoch,
        )  # fmt: skip
        if config.time is not None:  # before validating: this epoch may now be the last
            self._plan_steps(epoch, time.perf_counter() - started, len(train_loader))
        metrics: dict[str, Any] = {}
        improved = False
        if config.val or epoch == self.epochs:
            evaluated = self.ema.module if self.ema is not None else unwrap(model)
            metrics = plain(evaluate(evaluated, self.task, val_loader, self.device))
            improved = self._record_fitness(epoch, metrics)
        self.epoch = epoch
        seconds = time.perf_counter() - started
        self.seconds += seconds
        if self.context.is_main:
            self._log_epoch(losses, metrics, seconds)
        for callback in self.callbacks:
            callback.on_epoch_end(self, epoch, metrics)
        rng = gather_from_all(rng_state())  # last: nothing may draw between this and epoch + 1
        if self.context.is_main:
            self._save(unwrap(model), improved, rng)

    def _plan_steps(self, epoch: int, seconds: float, steps_per_epoch: int) -> None:
        """Set :attr:`steps` to the optimiser steps that fit ``config.time`` at the mean
        time per step so far (the finished epochs, validations included, and ``seconds`` of
        training in this one), at least those taken, the same in every process; set
        :attr:`epochs` to the epochs they start (the last one shortened) and make the
        schedule end with them."""
        budget = 3600 * (self.config.time or 0.0)
        taken = self.scheduler.last_epoch
        per_step = (self.seconds + seconds) / taken
        planned = broadcast_from_main(max(taken, int(budget // per_step)))
        self.epochs = max(epoch, -(-planned // steps_per_epoch))
        if planned == self.steps:
            return
        self.steps = planned
        self.scheduler.lr_lambdas = [
            dataclasses.replace(schedule, total_steps=planned)
            for schedule in self.scheduler.lr_lambdas
        ]

    def _record_fitness(self, epoch: int, metrics: dict[str, Any]) -> bool:
        """Keep ``metrics`` as the last (and, when its fitness is the best, the best)
        validation; returns whether it is the best so far."""
        fitness = float(metrics[self.task.fitness_key])
        fitness = fitness if math.isfinite(fitness) else float("-inf")  # NaN never "improves"
        improved = self.best_epoch == 0 or fitness > self.best_fitness
        self.metrics["last"] = metrics
        if improved:
            self.best_fitness, self.best_epoch, self.metrics["best"] = fitness, epoch, metrics
        return improved

    def _show_bar(self) -> bool:
        return self.context.is_main and not self.config.quiet and sys.stderr.isatty()

    def _say(self, line: str) -> None:
        if self.context.is_main and not self.config.quiet:
            print(line, flush=True)

    def _start_files(self) -> None:
        """``args.yaml``, the parameter summary and a ``results.csv`` cut to the resumed epoch."""
        self.parameter_counts = parameter_counts(self.model)
        trainable, total = self.parameter_counts.values()
        self._say(
            f"{self.task.name}: {trainable:,} trainable of {total:,} parameters "
            f"({100 * trainable / max(total, 1):.1f}%) on {self.device}"
        )
        if not self.context.is_main:
            return
        write_args(self.run_dir, self._recorded_args())
        self._results = ResultsLog(self.run_dir / "results.csv", keep_epochs=self.epoch)

    def _recorded_args(self) -> dict[str, Any]:
        return {
            "task": self.task.name,
            **self.args,
            **self.config.to_dict(),
            "resume": self.resume,
            "device_used": str(self.device),
            "world_size": self.context.world_size,
            "versions": environment(),
        }

    def _log_epoch(self, losses: dict[str, float], metrics: dict[str, Any], seconds: float) -> None:
        lr = self.optimizer.param_groups[0]["lr"]
        self._results.append(self.epoch, losses, metrics, lr=lr, seconds=seconds)
        write_metrics(
            self.run_dir,
            {
                "task": self.task.name,
                "fitness_key": self.task.fitness_key,
                "parameters": self.parameter_counts,
                "epochs_run": self.epoch,
                "best_epoch": self.best_epoch,
                "best_fitness": self.best_fitness,
                **self.metrics,
            },
        )
        key = self.task.fitness_key
        shown = {f"train/{k}": v for k, v in losses.items()}
        if metrics:  # not validated when ``val`` is off
            shown[f"val/{key}"] = metrics[key]
        summary = "  ".join(f"{name} {value:.4g}" for name, value in shown.items())
        self._say(f"epoch {self.epoch}/{self.epochs}  {summary}  {seconds:.1f}s")

    def _save(self, model: nn.Module, improved: bool, rng: list[dict[str, Any]]) -> None:
        """``last.pt`` always, ``best.pt`` on improvement, ``epoch<N>.pt`` every save_period."""
        save_checkpoint(self.last_path, self._checkpoint(model, rng))
        period = self.config.save_period
        copies = [self.best_path] if improved else []
        if period is not None and self.epoch % period == 0:
            copies.append(self.last_path.with_name(f"epoch{self.epoch}.pt"))
        for path in copies:
            copy_atomic(self.last_path, path)

    def _checkpoint(self, model: nn.Module, rng: list[dict[str, Any]]) -> dict[str, Any]:
        """Everything :meth:`_restore` needs, in the layout :mod:`.checkpoint` documents."""
        config = getattr(model, "config", None)
        ema = self.ema
        return {
            "model": (ema.module if ema is not None else model).state_dict(),
            "model_config": config.to_dict() if hasattr(config, "to_dict") else None,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "ema": None if ema is None else {**ema.state_dict(), "raw": model.state_dict()},
            "epoch": self.epoch,
            "step": self.scheduler.last_epoch,
            "best_fitness": self.best_fitness,
            "best_epoch": self.best_epoch,
            "metrics": self.metrics,
            "task": self.task.name,
            "train_config": self.config.to_dict(),
            "rng": rng,
            "trainable": [name for name, p in model.named_parameters() if p.requires_grad],
            "plan": {"epochs": self.epochs, "steps": self.steps, "seconds": self.seconds},
            "args": self.args,
        }

    def _restore(self, checkpoint: dict[str, Any]) -> None:
        """Put the model, optimiser, schedule, scaler, EMA, counters and generators back."""
        ema = checkpoint["ema"]
        try:
            self.model.load_state_dict(checkpoint["model"] if ema is None else ema["raw"])
            if self.ema is not None:
                self.ema.load_state_dict(ema, checkpoint["model"])
            self.optimizer.load_state_dict(checkpoint["optimizer"])
        except (RuntimeError, ValueError, KeyError) as error:
            first = str(error).strip().splitlines()[0]
            raise WeightsError(f"does not fit the model: {first}", file=self.last_path) from None
        self.scheduler.load_state_dict(checkpoint["scheduler"])
        if checkpoint["scaler"]:
            self.scaler.load_state_dict(checkpoint["scaler"])
        self.epoch, self.best_epoch = checkpoint["epoch"], checkpoint["best_epoch"]
        plan = checkpoint.get("plan", {})
        self.epochs = plan.get("epochs", self.config.epochs)
        self.steps = plan.get("steps")
        self.seconds = plan.get("seconds", 0.0)
        self.best_fitness, self.metrics = checkpoint["best_fitness"], checkpoint["metrics"]
        states = checkpoint["rng"]  # one per process; a different world size reuses them
        restore_rng(states[self.context.rank % len(states)])
