"""What the streaming metrics share: batch inputs as arrays, label checks, and the merge.

A streaming metric keeps its state as a few count or sum arrays, so adding batches one at a
time gives the same state as adding them all at once, and a split evaluation gives the
single-process state once every process's arrays are summed (:func:`sum_across_processes`).
Nothing here imports torch at module level: tensors are converted through ``.detach()``, and
torch is reached only when a program has already set up ``torch.distributed``.
"""

from __future__ import annotations

import sys
from collections.abc import Hashable
from typing import Any

import numpy as np

from visionkit.errors import ConfigError, DataError

State = dict[Hashable, np.ndarray]


def as_array(value: Any) -> np.ndarray:
    """``value`` as a numpy array; torch tensors are detached and moved to the CPU first.

    bfloat16 tensors, which numpy cannot hold, are widened to float32.
    """
    if hasattr(value, "detach"):
        value = value.detach().cpu()
        if str(value.dtype) == "torch.bfloat16":
            value = value.float()
    return np.asarray(value)


def check_labels(
    labels: np.ndarray,
    num_classes: int,
    *,
    field: str,
    record: str = "sample",
    first_index: int = 0,
    ignore_index: int | None = None,
) -> None:
    """Check class labels: :class:`ConfigError` unless integers, :class:`DataError` if out of range.

    Args:
        labels: Integer (or bool) array whose first axis indexes records (images, samples).
        num_classes: Number of classes.
        field: Name of the input, for the message (``"target"``, ``"pred"``).
        record: What the first axis indexes, for the message (``"image"``, ``"sample"``).
        first_index: Running index of ``labels[0]``, so the message names the record among
            all that the metric has seen.
        ignore_index: A value that is allowed besides the class ids.
    """
    if labels.dtype.kind not in "iub":
        raise ConfigError(f"labels must be integers, got dtype {labels.dtype}", field=field)
    bad = (labels < 0) | (labels >= num_classes)
    if ignore_index is not None:
        bad &= labels != ignore_index
    if bad.any():
        where = np.argwhere(bad)[0]
        allowed = "" if ignore_index is None else f" and is not ignore_index {ignore_index}"
        raise DataError(
            f"label {labels[tuple(where)]} is outside [0, {num_classes}){allowed}",
            record=f"{record} {first_index + int(where[0])}",
            field=field,
        )


def divide(numerator: Any, denominator: Any, empty: float = np.nan) -> np.ndarray:
    """``numerator / denominator`` in float64, ``empty`` where the denominator is 0."""
    numerator = np.asarray(numerator, dtype=np.float64)
    denominator = np.asarray(denominator, dtype=np.float64)
    safe = np.where(denominator == 0, 1.0, denominator)
    return np.where(denominator == 0, empty, numerator / safe)


def nan_mean(values: np.ndarray) -> float:
    """Mean of the finite entries of ``values``; NaN (without a warning) when there are none."""
    kept = values[~np.isnan(values)]
    return float(kept.mean()) if kept.size else float("nan")


def _process_group() -> Any:
    """``torch.distributed`` when a group of two or more processes is initialised, else None."""
    dist = sys.modules.get("torch.distributed")  # set up only by a program that imported torch
    if dist is None or not dist.is_available() or not dist.is_initialized():
        return None
    return dist if dist.get_world_size() >= 2 else None


def gather_across_processes(value: Any) -> list[Any]:
    """Every process's ``value``, in rank order, under an initialised ``torch.distributed``.

    Without a process group of two or more processes this is ``[value]`` (and torch is not
    imported). Otherwise it is collective: every process must call it.

    Args:
        value: Any picklable object.

    Returns:
        One ``value`` per process, rank 0 first.
    """
    dist = _process_group()
    if dist is None:
        return [value]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, value)
    return gathered


def sum_across_processes(state: State) -> State:
    """Sum every array of ``state`` over the processes of an initialised ``torch.distributed``.

    Without a process group of two or more processes, ``state`` comes back as it is (and
    torch is not imported). Otherwise this is collective: every process must call it. The
    processes may hold different keys (a group seen by one process only): the layouts are
    gathered first, and a key missing from a process counts as zeros there. The sums go
    through one float64 all-reduce, exact for counts below 2**53.

    Args:
        state: Arrays keyed by any picklable key.

    Returns:
        The summed arrays, each with its own shape and dtype, under the union of the keys in
        the order in which the processes (by rank) first hold them.
    """
    dist = _process_group()
    if dist is None:
        return state
    import torch

    layouts = gather_across_processes([(k, v.shape, v.dtype.str) for k, v in state.items()])
    union: dict[Hashable, tuple[tuple[int, ...], str]] = {}
    for layout in layouts:
        for key, shape, dtype in layout:
            if union.setdefault(key, (shape, dtype))[0] != shape:
                raise ConfigError(
                    f"processes hold metric state {key!r} with different shapes "
                    f"{list(union[key][0])} and {list(shape)}: were they built alike?"
                )
    parts = [
        np.asarray(state[key] if key in state else np.zeros(shape), dtype=np.float64).ravel()
        for key, (shape, _) in union.items()
    ]
    device = "cuda" if dist.get_backend() == "nccl" else "cpu"
    flat = torch.from_numpy(np.concatenate([np.zeros(0), *parts])).to(device)
    dist.all_reduce(flat)
    summed = flat.cpu().numpy()
    merged, start = {}, 0
    for key, (shape, dtype) in union.items():
        size = int(np.prod(shape, dtype=np.int64))
        merged[key] = summed[start : start + size].reshape(shape).astype(dtype)
        start += size
    return merged
