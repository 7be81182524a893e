"""Training checkpoints: dicts of tensors and plain values, written atomically, read safely.

A checkpoint is what :class:`~visionkit.train.trainer.Trainer` needs to continue a run
exactly where it stopped, and nothing that ``torch.load(weights_only=True)`` refuses:

- ``"model"``: the state dict to use, i.e. the weight average when EMA is on;
- ``"model_config"``: the model's ``config.to_dict()``, or ``None``;
- ``"optimizer"``, ``"scheduler"``, ``"scaler"``: their state dicts (``scaler`` is empty
  when mixed precision is off);
- ``"ema"``: ``None``, or ``{"updates": int, "raw": state dict of the trained weights}``;
- ``"epoch"``: epochs completed; ``"step"``: optimiser steps taken;
- ``"best_fitness"``, ``"best_epoch"``: the best validation fitness and when it was reached;
- ``"metrics"``: ``{"best": {...}, "last": {...}}`` validation metrics, JSON-able values;
- ``"task"``: the task's name; ``"train_config"``: :meth:`TrainConfig.to_dict`;
- ``"rng"``: one :func:`rng_state` per process, in rank order (torch CPU and CUDA, numpy
  and Python generator states, as tensors and lists);
- ``"trainable"``: names of the parameters that required gradients, so a resumed run of a
  partly frozen model freezes the same parameters;
- ``"plan"`` (optional): ``{"epochs": planned epochs, "steps": planned optimiser steps
  (``None`` before the first plan), "seconds": wall time of the finished epochs}``, which a
  run with a time budget continues from;
- ``"args"`` (optional): the settings that the task's API records beside the
  :class:`~visionkit.train.TrainConfig` (data, model, augmentation, mosaic...), which a
  resuming run must repeat as :func:`check_resume` says.

Files are written to a temporary file in the same folder, flushed to disk and renamed over
the target, so a run killed at any moment leaves either the old or the new file whole.
"""

from __future__ import annotations

import random
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch
from torch import nn

from visionkit.data.formats._files import write_bytes_atomic
from visionkit.errors import ConfigError, WeightsError
from visionkit.models import read_state_file
from visionkit.train.config import TrainConfig

__all__ = [
    "CHECKPOINT_KEYS",
    "RESUMABLE_CHANGES",
    "check_resume",
    "copy_atomic",
    "load_checkpoint",
    "open_for_resume",
    "restore_rng",
    "rng_state",
    "save_checkpoint",
    "write_atomic",
]

CHECKPOINT_KEYS = (
    "model",
    "model_config",
    "optimizer",
    "scheduler",
    "scaler",
    "ema",
    "epoch",
    "step",
    "best_fitness",
    "best_epoch",
    "metrics",
    "task",
    "train_config",
    "rng",
    "trainable",
)
"""Every key of a training checkpoint; :func:`load_checkpoint` refuses a file lacking one."""

RESUMABLE_CHANGES = frozenset(
    {"device", "workers", "quiet", "patience", "save_period", "cache_images"}
)
"""Settings that may differ when a run resumes: they change where, how fast and how
visibly it runs, or when it stops, not what one step computes. Every other setting
(``epochs`` included, since it sets the cosine schedule's length) must match; to train
longer, start a new run from the weights. A different ``device`` or ``workers`` continues
the run correctly but not bit-identically (other kernels; other sample-to-worker
assignment)."""


def write_atomic(path: str | Path, write: Callable[[IO[bytes]], None]) -> None:
    """Create or replace ``path`` whole: ``write`` fills a temporary file in the same folder,
    which is flushed to disk and renamed over ``path``.

    Args:
        path: The file to create or replace; its folder is created if missing.
        write: Writes the content to the binary file object it is given.
    """
    write_bytes_atomic(Path(path), write, mode=0o644)  # a run's files are for anyone to read


def copy_atomic(source: str | Path, target: str | Path) -> None:
    """Copy ``source`` to ``target`` through :func:`write_atomic` (``last.pt`` to ``best.pt``
    without serialising the state twice)."""
    with Path(source).open("rb") as read:
        write_atomic(target, lambda handle: shutil.copyfileobj(read, handle))


def save_checkpoint(path: str | Path, state: Mapping[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically with ``torch.save``.

    Args:
        path: Usually ``<run>/weights/last.pt``.
        state: A checkpoint dict (see the module docs): tensors and built-in values only.
    """
    write_atomic(path, lambda handle: torch.save(dict(state), handle))


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a training checkpoint onto the CPU, never running code stored in the file.

    The file is read by :func:`visionkit.models.read_state_file`, the one safe reader of
    weights files (``torch.load(weights_only=True)``).

    Args:
        path: A file written by :func:`save_checkpoint`.

    Returns:
        The checkpoint dict (see the module docs).

    Raises:
        WeightsError: The file is missing, truncated or corrupt, holds Python objects that
            unpickling would run (refused before anything runs), or lacks a checkpoint key.
    """
    state = read_state_file(path)
    for key in CHECKPOINT_KEYS:
        if key not in state:
            raise WeightsError("not a visionkit training checkpoint", file=path, field=key)
    return state


def rng_state() -> dict[str, Any]:
    """The state of every random number generator a training step may draw from.

    Returns:
        ``{"torch", "cuda", "numpy", "python"}`` as tensors, lists and numbers, which
        ``torch.load(weights_only=True)`` accepts (numpy's and Python's native states are
        a numpy array and a tuple).
    """
    _, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
        "numpy": {
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "python": {"version": version, "state": list(internal), "gauss_next": gauss_next},
    }


def restore_rng(state: Mapping[str, Any]) -> None:
    """Put every generator back in the state :func:`rng_state` recorded.

    CUDA states are restored when CUDA is in use and there are as many devices as saved.
    """
    torch.set_rng_state(state["torch"])
    if torch.cuda.is_initialized() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
    saved = state["numpy"]
    keys = saved["keys"].numpy().astype(np.uint32)
    np.random.set_state(
        ("MT19937", keys, saved["pos"], saved["has_gauss"], saved["cached_gaussian"])
    )
    saved = state["python"]
    random.setstate((saved["version"], tuple(saved["state"]), saved["gauss_next"]))


def check_resume(saved: Mapping[str, Any], current: Mapping[str, Any], *, file: str | Path) -> None:
    """Refuse to resume a run whose settings changed, except :data:`RESUMABLE_CHANGES`.

    Args:
        saved: The checkpoint's ``train_config``.
        current: :meth:`TrainConfig.to_dict` of the resuming run.
        file: The checkpoint, named in the error.

    Raises:
        ConfigError: Names the first changed setting, with both values.
    """
    missing = object()
    for key in sorted(set(saved) | set(current)):
        if key in RESUMABLE_CHANGES:
            continue
        before, now = saved.get(key, missing), current.get(key, missing)
        if before != now:
            raise ConfigError(
                f"was {_show(before, missing)} when the run started, now {_show(now, missing)}; "
                "resume with the original value or start a new run",
                file=file,
                field=key,
            )


def _show(value: Any, missing: object) -> str:
    return "unset" if value is missing else repr(value)


def open_for_resume(
    path: str | Path,
    task_name: str,
    config: TrainConfig,
    model: nn.Module,
    args: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Load the checkpoint a run resumes from, check it fits, and refreeze ``model``.

    Parameters that required gradients when the checkpoint was saved require them again;
    all others are frozen, so the optimiser is rebuilt over the same parameters.

    Args:
        path: The run's ``weights/last.pt``.
        task_name: The resuming task's name; must be the checkpoint's.
        config: The resuming run's settings; see :func:`check_resume`.
        model: The model about to be trained (not wrapped).
        args: The resuming run's other recorded settings, checked against the
            checkpoint's ``"args"`` the same way (a checkpoint without them is not).

    Raises:
        WeightsError: See :func:`load_checkpoint`; or the checkpoint names parameters that
            ``model`` lacks.
        ConfigError: The task or a setting changed; names it.
    """
    checkpoint = load_checkpoint(path)
    if checkpoint["task"] != task_name:
        found = f"the run was {checkpoint['task']!r}, not {task_name!r}"
        raise ConfigError(found, file=path, field="task")
    check_resume(checkpoint["train_config"], config.to_dict(), file=path)
    if "args" in checkpoint:
        check_resume(checkpoint["args"], dict(args or {}), file=path)
    trainable, named = set(checkpoint["trainable"]), dict(model.named_parameters())
    unknown = sorted(trainable - set(named))
    if unknown:
        found = f"names parameters the model lacks: {', '.join(unknown[:3])}"
        raise WeightsError(found, file=path, field="trainable")
    for name, parameter in named.items():
        parameter.requires_grad_(name in trainable)
    return checkpoint
