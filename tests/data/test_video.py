"""Video files: every frame, in order, as RGB; an undecodable file is one clear error."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from visionkit.data.video import is_video_file, read_frames
from visionkit.errors import ImageError

FRAMES = 6


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    """An MJPEG AVI whose frame ``i`` has a red band at columns ``8i..8i+8``."""
    path = tmp_path_factory.mktemp("video") / "bands.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 5, (64, 48))
    for i in range(FRAMES):
        frame = np.zeros((48, 64, 3), np.uint8)
        frame[:, 8 * i : 8 * i + 8] = (0, 0, 255)  # OpenCV writes BGR: this is red
        writer.write(frame)
    writer.release()
    return path


def test_frames_come_in_order_as_rgb(video):
    frames = list(read_frames(video))
    assert len(frames) == FRAMES
    for i, frame in enumerate(frames):
        assert frame.shape == (48, 64, 3) and frame.dtype == np.uint8
        band = frame[:, 8 * i : 8 * i + 8].reshape(-1, 3).mean(axis=0)
        assert band[0] > 200 and band[1] < 40 and band[2] < 40  # red, in RGB order
        assert frame[:, (8 * i + 24) % 64].mean() < 40  # elsewhere dark


@pytest.mark.parametrize("content", [b"", b"this is not a video at all" * 40])
def test_an_undecodable_video_is_one_error_naming_the_file(tmp_path, content):
    path = tmp_path / "broken.mp4"
    path.write_bytes(content)
    with pytest.raises(ImageError) as error:
        next(read_frames(path))
    assert str(path) in str(error.value) and "decode" in str(error.value)


def test_a_missing_video_is_named(tmp_path):
    with pytest.raises(ImageError, match="not found"):
        next(read_frames(tmp_path / "gone.mp4"))


def test_video_suffixes_are_recognised_in_any_case():
    assert is_video_file("a.MP4") and is_video_file("b.avi") and not is_video_file("c.png")
