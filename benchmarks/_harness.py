"""What the training benchmarks share: isolated runs, step timing, time budgets, latency.

A benchmark trains several families for the same wall time: each trains with its
library's time budget (``time=``), which re-plans the run's epochs as they go; a visionkit
family's first plan comes from a calibration (:func:`seconds_per_step` on a throwaway copy
of the model, then :func:`epochs_in_budget`), so its schedule starts close to the epochs
it will get. Each family runs in a fresh process of its own (:func:`run_isolated`), so no
library's global settings (threads, seeds, deterministic mode, registered hooks) leak
into the next one.
"""

from __future__ import annotations

import argparse
import itertools
import multiprocessing
import statistics
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any


def budget_parser(
    description: str,
    *,
    main: str,
    minutes: float,
    families: Sequence[str],
    default_families: Sequence[str],
    batch: int,
    latency_runs: int,
) -> argparse.ArgumentParser:
    """The options every training benchmark takes: budgets, data sizes, threads, families.

    Args:
        description: The benchmark's one-line description.
        main: The families that get ``--minutes`` (for the help text).
        minutes: Their default budget; the others get ``--other-minutes`` (3).
        families, default_families: Every family name, and those run by default.
        batch: Default images per training step.
        latency_runs: Default number of timed predictions.
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--minutes", type=float, default=minutes, help=f"{main} budget")
    parser.add_argument("--other-minutes", type=float, default=3.0, help="other families' budget")
    parser.add_argument("--train", type=int, default=2000, help="training images")
    parser.add_argument("--val", type=int, default=200, help="validation images")
    parser.add_argument("--imgsz", type=int, default=256, help="image and training size")
    parser.add_argument("--batch", type=int, default=batch, help="images per training step")
    parser.add_argument("--workers", type=int, default=0, help="data-loading processes")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of every run")
    parser.add_argument("--seed", type=int, default=0, help="data and training seed")
    parser.add_argument(
        "--families", nargs="+", default=list(default_families), choices=list(families)
    )
    parser.add_argument("--calibration-steps", type=int, default=8, help="timed steps")
    parser.add_argument("--latency-runs", type=int, default=latency_runs, help="timed predictions")
    parser.add_argument("--keep", type=Path, help="write data and runs here, and keep them")
    return parser


def median_ms(call: Callable[[], Any], runs: int, warmup: int = 5, rounds: int = 5) -> float:
    """Wall time of ``call()`` in milliseconds: the lowest of ``rounds`` medians of
    ``runs // rounds`` calls each (at least 5), a second apart, after ``warmup`` untimed
    calls.

    On a machine whose cores are shared, the speed drifts by up to a third for seconds at
    a time, longer than one burst of calls; the best round's median is the latency with
    the least interference, as :mod:`timeit` advises taking the best of several repeats.
    """
    for _ in range(warmup):
        call()
    medians = []
    for index in range(rounds):
        if index:
            time.sleep(1.0)
        times = []
        for _ in range(max(5, runs // rounds)):
            start = time.perf_counter()
            call()
            times.append(time.perf_counter() - start)
        medians.append(statistics.median(times))
    return 1000 * min(medians)


def forever(loader: Iterable[Any]) -> Iterator[Any]:
    """The batches of ``loader``, pass after pass, without end."""
    while True:
        yield from loader


def seconds_per_step(step: Callable[[Any], Any], batches: Iterable[Any], steps: int) -> float:
    """Mean wall seconds of ``step(batch)`` over ``steps`` batches (loading included), after
    two untimed ones."""
    stamps = []
    source = forever(batches)
    for _ in range(2 + steps):
        step(next(source))
        stamps.append(time.perf_counter())
    return (stamps[-1] - stamps[1]) / steps


def native_precision(settings: dict[str, Any]) -> dict[str, Any]:
    """``settings`` for this CPU: ``amp="bf16"`` stays only where the CPU computes bfloat16
    natively (AVX512-BF16 or AMX); elsewhere emulated bfloat16 would be slower than float32,
    so it becomes ``amp=False``."""
    import torch

    if settings.get("amp") != "bf16" or torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return settings
    return {**settings, "amp": False}


def calibrate(
    network: Any,
    task: Any,
    loader: Any,
    val_loader: Any,
    *,
    steps: int,
    budget_s: float,
    settings: Mapping[str, Any],
) -> tuple[int, int]:
    """Epochs and training images of ``loader``'s dataset that fit ``budget_s``: times
    ``steps`` training steps of ``network`` (a throwaway copy: its weights change) under
    the trainer's deterministic mode, and two validation batches of ``val_loader``.

    Args:
        network, task: The model and the trainer's task for it (``task.loss``).
        loader, val_loader: ``DataLoader`` s with the pipelines that ``Model.train`` uses,
            ``loader`` in a fixed order (with ``cache_images``, over datasets that cache,
            so that the batches decoded before the timing are the ones timed).
        steps: Timed training steps.
        budget_s: The family's training budget in seconds.
        settings: The run's ``Model.train`` settings, as the trainer applies them:
            ``amp="bf16"`` times the steps under bfloat16 autocast (float16 ``True`` is
            off on a CPU); ``cache_images`` times them on decoded images, as every epoch
            after the first runs; ``val=False`` counts one validation, not one an epoch.
    """
    import torch

    from visionkit.train import evaluate
    from visionkit.train.distributed import deterministic_mode

    device = torch.device("cpu")
    optimizer = torch.optim.AdamW([p for p in network.parameters() if p.requires_grad], lr=1e-5)
    network.train()
    bf16 = settings.get("amp") == "bf16"

    def step(batch: Any) -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss, _ = task.loss(network, batch, device)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    if settings.get("cache_images"):
        for _ in itertools.islice(loader, 2 + steps):  # decode the timed batches' images
            pass
    with deterministic_mode(True):  # as the trainer runs by default
        step_s = seconds_per_step(step, loader, steps)
        start = time.perf_counter()
        evaluate(network, task, itertools.islice(val_loader, 2), device)
    val_s = (time.perf_counter() - start) / min(2, len(val_loader)) * len(val_loader)
    return epochs_in_budget(
        step_s, val_s, len(loader.dataset), loader.batch_size, budget_s,
        validate_every_epoch=settings.get("val", True),
    )  # fmt: skip


def epochs_in_budget(
    step_s: float,
    val_s: float,
    images: int,
    batch: int,
    budget_s: float,
    *,
    validate_every_epoch: bool = True,
) -> tuple[int, int]:
    """Whole epochs (validation included: after each, or after the last only) of
    ``images`` that fit ``budget_s``; when not even one does, one epoch on the first
    images that fit.

    Returns:
        ``(epochs, training images)``.
    """
    train_s = -(-images // batch) * step_s
    epoch_s = train_s + val_s
    print(f"  calibration: {step_s:.2f} s/step, validation {val_s:.1f} s, epoch {epoch_s:.0f} s")
    if epoch_s > budget_s:
        steps = max(1, int((budget_s - val_s) // step_s))
        return 1, min(images, steps * batch)
    if validate_every_epoch:
        return int(budget_s // epoch_s), images
    return int((budget_s - val_s) // train_s), images


def _child(target: Callable[..., dict[str, Any]], arguments: tuple, queue: Any) -> None:
    try:
        row = target(*arguments)
    except Exception as error:  # a failing family is a row of the table, not the end
        traceback.print_exc()
        row = {"error": f"{type(error).__name__}: {error}".splitlines()[0][:160]}
    queue.put(row)


def run_isolated(target: Callable[..., dict[str, Any]], *arguments: Any) -> dict[str, Any]:
    """``target(*arguments)`` in a fresh (spawned) process: its row, or ``{"error": ...}``
    when it raises or the process dies. ``target`` must be a module-level function."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    child = context.Process(target=_child, args=(target, arguments, queue))
    child.start()
    child.join()
    if queue.empty():
        return {"error": f"the process ended with status {child.exitcode}"}
    return queue.get()
