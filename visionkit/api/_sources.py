"""What ``predict`` reads: image files, folders, globs, videos, arrays, or lists of them."""

from __future__ import annotations

import glob
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from visionkit.data.images import is_image_file, read_image
from visionkit.data.video import is_video_file, read_frames
from visionkit.errors import DataError

Source = str | Path | np.ndarray | Sequence[str | Path | np.ndarray]
"""An image or video file, a folder, a glob, an RGB array, or a list of them."""

__all__ = ["Frame", "Source", "in_batches", "iter_images"]


@dataclass(frozen=True)
class Frame:
    """One image to predict on.

    Attributes:
        path: The image or video file, or ``None`` for an array.
        image: ``uint8`` RGB ``[H, W, 3]``.
        frame: Index of the frame within ``path`` for a video, else ``None``.
    """

    path: Path | None
    image: np.ndarray
    frame: int | None = None


def iter_images(source: Source) -> Iterator[Frame]:
    """Every image that ``source`` names, in order (videos frame by frame, lazily).

    Raises:
        DataError: An array that is not an RGB or gray ``uint8`` image, or a path, folder or
            glob that names no image or video.
        ImageError: A video that cannot be decoded (names the file).
    """
    if isinstance(source, np.ndarray):
        yield Frame(None, _rgb_array(source))
        return
    if isinstance(source, (list, tuple)):
        for item in source:
            yield from iter_images(item)
        return
    for path in _paths(str(source)):
        if is_video_file(path):
            for index, frame in enumerate(read_frames(path)):
                yield Frame(path, frame, index)
        else:
            yield Frame(path, read_image(path))


def in_batches(frames: Iterator[Frame], size: int) -> Iterator[list[Frame]]:
    """Consecutive lists of up to ``size`` frames (the last may be shorter)."""
    chunk: list[Frame] = []
    for frame in frames:
        chunk.append(frame)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _rgb_array(array: np.ndarray) -> np.ndarray:
    """``array`` as ``uint8`` ``[H, W, 3]`` (gray ``[H, W]`` is repeated), else a DataError."""
    if array.dtype == np.uint8 and array.ndim == 2:
        return np.repeat(array[:, :, None], 3, axis=2)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
        raise DataError(
            f"an image array must be uint8 RGB [H, W, 3] or gray [H, W], got {array.dtype} "
            f"{list(array.shape)}; pass several images as a list",
            field="source",
        )
    return array


def _paths(source: str) -> list[Path]:
    def wanted(p: str | Path) -> bool:
        return is_image_file(p) or is_video_file(p)

    path = Path(source)
    if path.is_dir():
        found = sorted(p for p in path.rglob("*") if p.is_file() and wanted(p))
    elif path.is_file():
        found = [path]
    else:
        found = sorted(Path(p) for p in glob.glob(source, recursive=True) if wanted(p))
    if not found:
        raise DataError("no image or video file, folder of them or glob matches", file=source)
    return found
