"""Where a ``data=`` argument points: a dataset on disk, or the name of a synthetic one.

Paths are used as they are (any format :func:`~visionkit.data.datasets.load_dataset`
reads). A synthetic name is rendered once into ``<project>/datasets/<name>`` beside the
runs, in plain sight, and reused after; a marker file written last tells a complete
dataset from one whose rendering was interrupted.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from visionkit.errors import DataError

SYNTHETIC = {
    "shapes-shortcut": {"format": "folder", "train": 1000, "val": 200, "imgsz": 64},
    "shapes": {"format": "coco", "train": 1000, "val": 200, "imgsz": 256},
}
"""Synthetic dataset names (classification's ``shapes-shortcut``, detection's ``shapes``),
with the format and sizes they are made at."""

_COMPLETE = ".complete"


def dataset_path(data: str | Path, *, project: str | Path = "runs") -> Path:
    """The dataset file or folder that ``data`` names, rendering a synthetic one if needed.

    Args:
        data: A dataset file or folder, or a name in :data:`SYNTHETIC`.
        project: The runs folder; synthetic datasets go to its ``datasets/`` folder.

    Raises:
        DataError: ``data`` is neither an existing path nor a synthetic name.
    """
    path = Path(data)
    if path.exists():
        return path
    if str(data) in SYNTHETIC:
        return _synthetic(str(data), Path(project) / "datasets" / str(data))
    names = ", ".join(SYNTHETIC)
    raise DataError(
        f"no such dataset file or folder, and not a synthetic name ({names})", file=data
    )


def _synthetic(kind: str, out: Path) -> Path:
    from visionkit.data.synthetic.export import export_synthetic

    if not (out / _COMPLETE).exists():
        shutil.rmtree(out, ignore_errors=True)  # an interrupted rendering starts over
        sizes = SYNTHETIC[kind]
        export_synthetic(out, kind=kind, seed=0, **sizes)
        (out / _COMPLETE).touch()
    return out
