"""`visionkit demo`: the job `make demo` runs writes a clean dataset and a picture of it."""

from __future__ import annotations

from PIL import Image

from visionkit.cli import main
from visionkit.data.check import check_dataset


def test_demo_writes_a_checked_dataset_and_a_sample_grid(tmp_path, capsys):
    assert main(["demo", f"project={tmp_path}", "train=16"]) == 0
    grid = tmp_path / "samples.png"
    assert Image.open(grid).size[0] >= 4 * 256  # a 4-column grid of 256 px samples
    assert check_dataset(tmp_path / "shapes") == []
    assert "0 problem(s)" in capsys.readouterr().out
