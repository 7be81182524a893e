"""Converting a dataset between formats, every split at once."""

from __future__ import annotations

from pathlib import Path

from visionkit.data.formats import detect_format, format_module, read_catalog, write_catalog


def convert_dataset(
    data: str | Path,
    out: str | Path,
    to: str,
    *,
    format: str | None = None,
    images: str | Path | None = None,
) -> list[Path]:
    """Read every split of the dataset at ``data`` and write it as format ``to`` into ``out``.

    Records are read strictly: a malformed record stops the conversion with a
    :class:`~visionkit.errors.DataError` naming it, rather than being dropped silently.

    Args:
        data: Dataset file or folder.
        out: Folder to write into (created when missing).
        to: Format to write (see :data:`~visionkit.data.formats.FORMAT_NAMES`).
        format: Format of ``data``; detected when None.
        images: Image folder for COCO files whose ``file_name`` is not relative to the json.

    Returns:
        The dataset file or folder written for each split.

    Example:
        >>> convert_dataset("shapes/train.json", "shapes-yolo", "yolo")  # doctest: +SKIP
        [PosixPath('shapes-yolo/data.yaml')]
    """
    source_format = format or detect_format(data)
    splits = format_module(source_format).splits(Path(data)) or [None]
    written = []
    for split in splits:
        catalog = read_catalog(data, split, format=source_format, images=images)
        written.append(write_catalog(catalog, out, to, split=split or "train"))
    return written
