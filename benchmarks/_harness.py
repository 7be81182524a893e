"""What the training benchmarks share: isolated runs, step timing, time budgets, latency.

A benchmark trains several families for the same wall time. visionkit's trainer counts
epochs, so a family is calibrated first (:func:`seconds_per_step` on a throwaway copy of
the model, then :func:`epochs_in_budget`), and each family runs in a fresh process of its
own (:func:`run_isolated`), so no library's global settings (threads, seeds, deterministic
mode, registered hooks) leak into the next one.
"""

from __future__ import annotations

import argparse
import itertools
import multiprocessing
import statistics
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
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


def median_ms(call: Callable[[], Any], runs: int, warmup: int = 5) -> float:
    """Median wall time of ``call()`` in milliseconds, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        call()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


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


def calibrate(
    network: Any, task: Any, loader: Any, val_loader: Any, *, steps: int, budget_s: float
) -> tuple[int, int]:
    """Epochs and training images of ``loader``'s dataset that fit ``budget_s``: times
    ``steps`` training steps of ``network`` (a throwaway copy: its weights change) under
    the trainer's deterministic mode, and two validation batches of ``val_loader``.

    Args:
        network, task: The model and the trainer's task for it (``task.loss``).
        loader, val_loader: ``DataLoader`` s with the pipelines that ``Model.train`` uses.
        steps: Timed training steps.
        budget_s: The family's training budget in seconds.
    """
    import torch

    from visionkit.train import evaluate
    from visionkit.train.distributed import deterministic_mode

    device = torch.device("cpu")
    optimizer = torch.optim.AdamW([p for p in network.parameters() if p.requires_grad], lr=1e-5)
    network.train()

    def step(batch: Any) -> None:
        loss, _ = task.loss(network, batch, device)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    with deterministic_mode(True):  # as the trainer runs by default
        step_s = seconds_per_step(step, loader, steps)
        start = time.perf_counter()
        evaluate(network, task, itertools.islice(val_loader, 2), device)
    val_s = (time.perf_counter() - start) / min(2, len(val_loader)) * len(val_loader)
    return epochs_in_budget(step_s, val_s, len(loader.dataset), loader.batch_size, budget_s)


def epochs_in_budget(
    step_s: float, val_s: float, images: int, batch: int, budget_s: float
) -> tuple[int, int]:
    """Whole epochs (validation included) of ``images`` that fit ``budget_s``; when not even
    one does, one epoch on the first images that fit.

    Returns:
        ``(epochs, training images)``.
    """
    epoch_s = -(-images // batch) * step_s + val_s
    print(f"  calibration: {step_s:.2f} s/step, validation {val_s:.1f} s, epoch {epoch_s:.0f} s")
    if epoch_s <= budget_s:
        return int(budget_s // epoch_s), images
    steps = max(1, int((budget_s - val_s) // step_s))
    return 1, min(images, steps * batch)


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
