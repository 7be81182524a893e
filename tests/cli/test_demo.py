"""`visionkit demo`: the job `make demo` runs writes a clean dataset, a picture of it, and a
trained detector's run with its plots and an HTML report."""

from __future__ import annotations

from PIL import Image

from visionkit.cli import main
from visionkit.data.check import check_dataset


def test_demo_writes_a_checked_dataset_a_trained_run_and_its_report(tmp_path, capsys):
    assert main(["demo", f"project={tmp_path}", "train=16", "epochs=1"]) == 0
    grid = tmp_path / "samples.png"
    assert Image.open(grid).size[0] >= 4 * 256  # a 4-column grid of 256 px samples
    assert check_dataset(tmp_path / "shapes") == []
    out = capsys.readouterr().out
    assert "0 problem(s)" in out
    run = tmp_path / "detect" / "yolo-n"
    for name in ("pr_curve.png", "confusion_matrix.png", "val_predictions.png", "results.png"):
        assert Image.open(run / name).size[0] > 100, name
    assert (run / "weights" / "best.pt").is_file() and (run / "predictions.json").is_file()
    page = (run / "index.html").read_text()
    assert 'src="pr_curve.png"' in page and "map_50" in page
    assert f"report    {run / 'index.html'}" in out
