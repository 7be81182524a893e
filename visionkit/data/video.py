"""Video files read frame by frame, as RGB arrays (OpenCV's decoder).

Frames come one at a time, so a long video never sits in memory; a file OpenCV cannot
open or decode is an :class:`~visionkit.errors.ImageError` naming it, raised before the
first frame rather than as an empty result.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from visionkit.errors import ImageError

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv")
"""File suffixes treated as videos."""

__all__ = ["VIDEO_SUFFIXES", "is_video_file", "read_frames"]


def is_video_file(path: str | Path) -> bool:
    """Whether ``path``'s suffix (any case) is one of :data:`VIDEO_SUFFIXES`; reads nothing."""
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def read_frames(path: str | Path) -> Iterator[np.ndarray]:
    """Yield every frame of the video at ``path`` as ``uint8`` RGB ``[H, W, 3]``, in order.

    Raises:
        ImageError: The file is missing, or OpenCV cannot open it or decode its first
            frame (not a video, truncated, or a codec OpenCV lacks).
    """
    import cv2  # OpenCV loads only when a video is read (fast start)

    if not Path(path).is_file():
        raise ImageError("video file not found", file=path)
    capture = cv2.VideoCapture(str(path))
    try:
        ok, frame = capture.read() if capture.isOpened() else (False, None)
        if not ok:
            raise ImageError("cannot decode this video (not a video, or truncated)", file=path)
        while ok:
            yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            ok, frame = capture.read()
    finally:
        capture.release()
