"""Tests for MOTChallenge file I/O (visionkit.metrics._mot_io, public in metrics.tracking):
round trips, the accepted layouts and dialects, and one-line errors naming file, line, field."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from visionkit.errors import DataError
from visionkit.metrics.tracking import Tracks, read_mot_file, read_mot_folder, write_mot_file


def random_tracks(seed: int, num_frames: int = 12) -> Tracks:
    """Tracks with awkward floats, empty frames in the middle and at the end."""
    rng = np.random.default_rng(seed)
    ids, boxes, scores = [], [], []
    for t in range(num_frames):
        n = 0 if t in (3, num_frames - 1) else int(rng.integers(1, 5))
        xy = rng.uniform(-20, 500, (n, 2))
        ids.append(rng.choice(1000, n, replace=False))
        boxes.append(np.concatenate([xy, xy + rng.uniform(0, 90, (n, 2))], axis=1))
        scores.append(rng.uniform(0, 1, n))
    return Tracks(ids, boxes, scores)


def assert_same_tracks(a: Tracks, b: Tracks) -> None:
    assert a.num_frames == b.num_frames
    for field in ("ids", "boxes", "scores"):
        for x, y in zip(getattr(a, field), getattr(b, field), strict=True):
            np.testing.assert_allclose(x, y, rtol=0, atol=1e-9)


@pytest.mark.parametrize("seed", range(3))
def test_write_read_round_trip(tmp_path, seed):
    tracks = random_tracks(seed)
    path = tmp_path / "out" / "seq.txt"
    write_mot_file(path, tracks)
    assert path.read_text().splitlines()[0].endswith(",-1,-1,-1")
    assert_same_tracks(read_mot_file(path, num_frames=tracks.num_frames), tracks)
    assert read_mot_file(path).num_frames == tracks.num_frames - 1  # trailing empty frame


def test_written_boxes_are_xywh(tmp_path):
    write_mot_file(tmp_path / "a.txt", Tracks(ids=[[], [4]], boxes=[[], [[10, 20, 40, 60.5]]]))
    assert (tmp_path / "a.txt").read_text() == "2,4,10,20,30,40.5,1,-1,-1,-1\n"


def test_dialects_spaces_trailing_commas_and_six_columns(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("1, 3, 10, 20, 30, 40, 0.5, -1, -1, -1,\n\n2 3 10 20 30 40\n")
    tracks = read_mot_file(path)
    assert tracks.num_frames == 2
    np.testing.assert_array_equal(tracks.boxes[1], [[10, 20, 40, 60]])
    assert [s.tolist() for s in tracks.scores] == [[0.5], [1.0]]


def test_ground_truth_drops_zero_marked_lines(tmp_path):
    path = tmp_path / "gt.txt"
    path.write_text("1,1,0,0,5,5,1,1,1\n1,2,0,0,5,5,0,1,1\n2,2,0,0,5,5,1,7,0.5\n")
    assert [i.tolist() for i in read_mot_file(path, ground_truth=True).ids] == [[1], [2]]
    assert [i.tolist() for i in read_mot_file(path).ids] == [[1, 2], [2]]


GOOD = "1,1,0,0,10,10,1\n"


@pytest.mark.parametrize(
    ("text", "line", "field", "message"),
    [
        (GOOD + "2,1,0,0,10\n", 2, None, "expected 6 to 10 columns, got 5"),
        (GOOD + "2,1,0,0,10,10,1,1,1,1,1\n", 2, None, "got 11"),
        (GOOD + "2,1,0,0,10,abc\n", 2, "height", "'abc' is not a number"),
        (GOOD + "2,1,0,nan,10,10\n", 2, "y", "finite"),
        (GOOD + "2,1,0,0,inf,10\n", 2, "width", "finite"),
        (GOOD + "2,1,0,0,-1,10\n", 2, "width", "must not be negative"),
        (GOOD + "0,1,0,0,1,1\n", 2, "frame", "numbered from 1"),
        (GOOD + "1.5,1,0,0,1,1\n", 2, "frame", "integer"),
        (GOOD + "2,2.5,0,0,1,1\n", 2, "id", "integer"),
        (GOOD + "2,1,0,0,1,1\n1,1,5,5,1,1\n", 3, "id", "id 1 appears twice in frame 1 (first"),
    ],
)
def test_bad_lines_name_file_line_and_field(tmp_path, text, line, field, message):
    path = tmp_path / "bad.txt"
    path.write_text(text)
    with pytest.raises(DataError, match=re.escape(message)) as info:
        read_mot_file(path)
    assert (info.value.file, info.value.record, info.value.field) == (
        str(path),
        f"line {line}",
        field,
    )
    assert "\n" not in str(info.value)


def test_unreadable_file(tmp_path):
    with pytest.raises(DataError, match="cannot read") as info:
        read_mot_file(tmp_path / "missing.txt")
    assert info.value.file == str(tmp_path / "missing.txt")


def write_mot17_sequence(root: Path, name: str, text: str, length: int | None) -> Path:
    (root / name / "gt").mkdir(parents=True)
    if length is not None:
        (root / name / "seqinfo.ini").write_text(f"[Sequence]\nname={name}\nseqLength={length}\n")
    (root / name / "gt" / "gt.txt").write_text(text)
    return root / name / "gt" / "gt.txt"


def test_read_folder_layouts(tmp_path):
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "A.txt").write_text(GOOD)
    (tmp_path / "flat" / "B.txt").write_text("")
    flat = read_mot_folder(tmp_path / "flat")
    assert sorted(flat) == ["A", "B"] and flat["B"].num_frames == 0
    write_mot17_sequence(tmp_path / "mot17", "MOT17-02", GOOD + "3,2,0,0,4,4,0,1,1\n", 8)
    write_mot17_sequence(tmp_path / "mot17", "MOT17-04", GOOD, None)
    nested = read_mot_folder(tmp_path / "mot17", ground_truth=True)
    assert nested["MOT17-02"].num_frames == 8  # from seqinfo.ini
    assert nested["MOT17-02"].num_boxes == 1  # the zero-marked line is dropped
    assert nested["MOT17-04"].num_frames == 1  # no seqinfo.ini: the last frame


def test_read_folder_errors(tmp_path):
    with pytest.raises(DataError, match="no such folder"):
        read_mot_folder(tmp_path / "nowhere")
    with pytest.raises(DataError, match="no sequence found"):
        read_mot_folder(tmp_path)
    gt = write_mot17_sequence(tmp_path, "S", GOOD + "9,1,0,0,1,1\n", 5)
    with pytest.raises(DataError, match="past the last frame 5") as info:
        read_mot_folder(tmp_path)
    assert (info.value.file, info.value.record, info.value.field) == (str(gt), "line 2", "frame")
    (tmp_path / "S" / "seqinfo.ini").write_text("[Sequence]\nseqLength=many\n")
    with pytest.raises(DataError, match="seqLength"):
        read_mot_folder(tmp_path)
    (tmp_path / "S" / "seqinfo.ini").unlink()
    (tmp_path / "S.txt").write_text(GOOD)
    with pytest.raises(DataError, match="sequence 'S' is also given by"):
        read_mot_folder(tmp_path)
