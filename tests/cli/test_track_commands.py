"""`visionkit track val` on MOTChallenge folders, through the command line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from visionkit.cli import main
from visionkit.metrics.tracking import Tracks, evaluate_mot_folders, write_mot_file


def _tracks(ids: list[list[int]], places: list[list[int]] | None = None) -> Tracks:
    """One 10x10 box per object per frame, at x = 20 * place (the place defaults to the id)."""
    places = ids if places is None else places
    boxes = [
        np.array([[20.0 * x, 0.0, 20.0 * x + 10, 10.0] for x in xs]).reshape(-1, 4) for xs in places
    ]
    return Tracks(ids=[np.array(frame) for frame in ids], boxes=boxes)


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    gt.mkdir()
    pred.mkdir()
    write_mot_file(gt / "a.txt", _tracks([[1, 2], [1, 2], [1, 2], [1, 2]]))
    # ids swap at frame 3 (two switches) and swap back at frame 4 (one more); one object missed
    write_mot_file(pred / "a.txt", _tracks([[1, 2], [1, 2], [2, 1], [1]], [[1, 2]] * 3 + [[1]]))
    write_mot_file(gt / "b.txt", _tracks([[3], [3], []]))
    write_mot_file(
        pred / "b.txt", _tracks([[7], [7], [9]], [[3], [3], [5]])
    )  # a false positive at frame 3
    return gt, pred


def test_table_shows_each_sequence_and_the_combined_row(folders, capsys):
    gt, pred = folders
    assert main(["track", "val", f"gt={gt}", f"pred={pred}"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:4] == ["sequence", "HOTA", "DetA", "AssA"]
    assert [line.split()[0] for line in lines[1:]] == ["a", "b", "COMBINED"]
    expected = evaluate_mot_folders(gt, pred)["combined"]
    combined = lines[-1].split()
    assert float(combined[1]) == pytest.approx(expected["hota"], abs=5e-4)
    assert float(combined[5]) == pytest.approx(expected["mota"], abs=5e-4)


def test_json_output_equals_the_library_result(folders, capsys):
    gt, pred = folders
    assert main(["track", "val", f"gt={gt}", f"pred={pred}", "json=true"]) == 0
    printed = json.loads(capsys.readouterr().out)
    expected = evaluate_mot_folders(gt, pred)
    assert printed["combined"]["idf1"] == pytest.approx(expected["combined"]["idf1"], abs=1e-12)
    assert printed["combined"]["id_switches"] == expected["combined"]["id_switches"] == 3
    assert printed["per_sequence"]["b"]["false_positives"] == 1
    assert len(printed["combined"]["hota_alpha"]) == 19


def test_a_bad_line_is_one_error_naming_file_line_and_field(folders, capsys):
    gt, pred = folders
    (pred / "a.txt").write_text("1,1,0,0,-5,10,1,-1,-1,-1\n")
    assert main(["track", "val", f"gt={gt}", f"pred={pred}"]) == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error
    assert "a.txt" in error and "line 1" in error and "width" in error
