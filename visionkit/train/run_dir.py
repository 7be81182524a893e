"""The run folder and the files in it, other than checkpoints.

A run lives in ``<project>/<task>/<name>`` (``name2``, ``name3``... when ``name`` is taken):

- ``args.yaml``: every setting, the seed, library versions and the device;
- ``results.csv``: one row per epoch, appended and flushed as each epoch ends;
- ``metrics.json``: parameter counts and the best and last validation metrics;
- ``weights/``: ``last.pt``, ``best.pt`` (see :mod:`visionkit.train.checkpoint`).

Under torchrun only the main process creates anything; the others learn the chosen name
from it, so every process writes to the same folder.
"""

from __future__ import annotations

import csv
import io
import json
import platform
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from visionkit.errors import WeightsError
from visionkit.train.checkpoint import write_atomic
from visionkit.train.distributed import broadcast_from_main, dist_context

__all__ = [
    "ResultsLog",
    "environment",
    "new_run_dir",
    "plain",
    "write_args",
    "write_metrics",
]


def new_run_dir(
    project: str | Path = "runs",
    task: str = "classify",
    name: str = "train",
    *,
    exist_ok: bool = False,
    resume: bool = False,
) -> Path:
    """Create the folder of a new run and its ``weights/`` folder.

    Args:
        project: The folder that holds every task's runs.
        task: The task's name, e.g. ``"classify"``.
        name: The run's name; ``name2``, ``name3``... are tried when it is taken.
        exist_ok: Reuse ``name`` even when it exists (for overwriting).
        resume: The run ``name`` is to be continued: reuse its folder, which must hold
            ``weights/last.pt``.

    Returns:
        ``<project>/<task>/<name>`` (or the numbered name), the same on every process.

    Raises:
        WeightsError: ``resume`` and no ``weights/last.pt`` (checked before any folder is
            made, so a mistyped name leaves nothing behind).

    Example:
        >>> new_run_dir(tmp, "classify", "exp")  # doctest: +SKIP
        PosixPath('.../classify/exp')
    """
    last = Path(project) / task / name / "weights" / "last.pt"
    if resume and not last.is_file():
        raise WeightsError("no run to resume: the checkpoint does not exist", file=last)
    chosen = None
    if dist_context().is_main:
        chosen = _free_name(Path(project) / task, name, exist_ok or resume)
        (chosen / "weights").mkdir(parents=True, exist_ok=True)
    return broadcast_from_main(chosen)


def _free_name(parent: Path, name: str, exist_ok: bool) -> Path:
    """``parent/name``, or the first of ``parent/name2``, ``parent/name3``... that is free."""
    path, number = parent / name, 2
    while path.exists() and not exist_ok:
        path, number = parent / f"{name}{number}", number + 1
    return path


def environment() -> dict[str, str]:
    """Versions of Python, torch, torchvision and visionkit, for ``args.yaml``."""
    import torch
    import torchvision

    import visionkit

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "visionkit": visionkit.__version__,
    }


def plain(value: Any) -> Any:
    """``value`` as YAML/JSON-safe built-ins: tensors and arrays to numbers or lists,
    tuples to lists, mapping keys to strings, anything else (paths, devices, version
    objects) to its ``str``."""
    if hasattr(value, "tolist"):  # torch tensors, numpy arrays and numpy scalars
        return plain(value.tolist())
    if isinstance(value, Mapping):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    if value is None or type(value) in (bool, int, float, str):
        return value
    return str(value)


def write_args(run_dir: str | Path, values: Mapping[str, Any]) -> Path:
    """Write ``values`` (settings, seed, versions, device) to ``<run_dir>/args.yaml``."""
    path = Path(run_dir) / "args.yaml"
    text = yaml.safe_dump(plain(values), sort_keys=False, allow_unicode=True)
    write_atomic(path, lambda handle: handle.write(text.encode()))
    return path


def write_metrics(
    run_dir: str | Path, metrics: Mapping[str, Any], name: str = "metrics.json"
) -> Path:
    """Write ``metrics`` to ``<run_dir>/<name>`` (non-finite numbers become ``null``)."""
    path = Path(run_dir) / name
    text = json.dumps(_finite(plain(metrics)), indent=2) + "\n"
    write_atomic(path, lambda handle: handle.write(text.encode()))
    return path


def _finite(value: Any) -> Any:
    """``value`` with NaN and infinities replaced by ``None``, which JSON can hold."""
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_finite(item) for item in value]
    return value


class ResultsLog:
    """``results.csv``: one row per epoch, each appended and flushed as the epoch ends.

    The columns are those of the first row written, widened when a later row brings new
    ones (the first validated epoch of a run that validates only at its end). A resumed run
    keeps the rows of the epochs its checkpoint completed and drops later ones, which a
    killed run may have written before its checkpoint.

    Args:
        path: Usually ``<run>/results.csv``.
        keep_epochs: Rows to keep from an existing file (rows with ``epoch`` up to this);
            ``0`` starts a new file.
    """

    def __init__(self, path: str | Path, *, keep_epochs: int = 0) -> None:
        self.path = Path(path)
        self.columns: list[str] | None = None
        rows = self._existing_rows(keep_epochs)
        if rows or self.path.exists():
            self._rewrite(rows)

    def _existing_rows(self, keep_epochs: int) -> list[dict[str, str]]:
        if keep_epochs <= 0 or not self.path.is_file():
            return []
        with self.path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            self.columns = list(reader.fieldnames or []) or None
            return [row for row in reader if int(row["epoch"]) <= keep_epochs]

    def _rewrite(self, rows: list[dict[str, str]]) -> None:
        buffer = io.StringIO()
        if self.columns:
            writer = csv.DictWriter(buffer, self.columns)
            writer.writeheader()
            writer.writerows(rows)
        write_atomic(self.path, lambda handle: handle.write(buffer.getvalue().encode()))

    def _add_columns(self, row: Mapping[str, Any]) -> None:
        """Widen the header with ``row``'s new columns, before ``lr`` and ``seconds``; the
        rows already written get empty values there."""
        old = self.columns or []
        with self.path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        new = [name for name in row if name not in old]
        self.columns = [*old[:-2], *new, *old[-2:]]
        self._rewrite(rows)

    def append(
        self,
        epoch: int,
        losses: Mapping[str, float],
        metrics: Mapping[str, Any],
        *,
        lr: float,
        seconds: float,
    ) -> None:
        """Add one epoch's row: ``epoch``, ``train/<loss part>``, ``val/<metric>`` for the
        scalar metrics, the learning rate at the epoch's end and its duration."""
        row = {
            "epoch": epoch,
            **{f"train/{key}": value for key, value in losses.items()},
            **{f"val/{k}": v for k, v in metrics.items() if type(v) in (int, float)},
            "lr": lr,
            "seconds": round(seconds, 3),
        }
        new_file = self.columns is None
        if new_file:
            self.columns = list(row)
        elif not set(row) <= set(self.columns):  # e.g. the first validated epoch
            self._add_columns(row)
        with self.path.open("a", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, self.columns)
            if new_file:
                writer.writeheader()
            writer.writerow(row)
            handle.flush()
