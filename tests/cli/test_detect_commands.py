"""`visionkit detect val` on COCO prediction files, through the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from visionkit.cli import main
from visionkit.data.synthetic.evaluation import make_evaluation_set
from visionkit.metrics.detection import evaluate_coco

KEYS = ["map", "map_50", "map_75", "map_small", "map_medium", "map_large"]
KEYS += ["mar_1", "mar_10", "mar_100", "mar_small", "mar_medium", "mar_large"]


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path, list[dict]]:
    gt, results = make_evaluation_set(seed=3, num_images=40, num_categories=5)
    gt_path, pred_path = tmp_path / "gt.json", tmp_path / "pred.json"
    gt_path.write_text(json.dumps(gt))
    pred_path.write_text(json.dumps(results))
    return gt_path, pred_path, results


def _val(capsys, *options: str) -> tuple[int, str, str]:
    status = main(["detect", "val", *options])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_json_output_has_the_design_keys_and_the_library_values(files, capsys):
    gt, pred, _ = files
    status, out, _ = _val(capsys, f"gt={gt}", f"pred={pred}", "json=true")
    assert status == 0
    printed = json.loads(out)
    expected = evaluate_coco(gt, pred)
    for key in KEYS:
        assert printed[key] == pytest.approx(expected[key], abs=1e-12)
    assert printed["classes"] == list(expected["classes"])
    assert len(printed["map_per_class"]) == len(printed["classes"])


def test_table_prints_the_twelve_stats_then_one_row_per_category(files, capsys):
    gt, pred, _ = files
    status, out, _ = _val(capsys, f"gt={gt}", f"pred={pred}")
    assert status == 0
    lines = out.splitlines()
    stats = [line for line in lines if line.startswith(("AP @", "AR @"))]
    assert len(stats) == 12
    expected = evaluate_coco(gt, pred)
    assert float(stats[0].split()[-1]) == pytest.approx(expected["map"], abs=5e-4)
    header = lines.index(next(line for line in lines if line.startswith("category")))
    assert len(lines) - header - 1 == len(expected["classes"])


def test_voc_protocol_reports_ap50_per_class(files, capsys):
    gt, pred, _ = files
    status, out, _ = _val(capsys, f"gt={gt}", f"pred={pred}", "protocol=voc", "json=true")
    assert status == 0
    printed = json.loads(out)
    assert "map" not in printed
    assert printed == json.loads(json.dumps(evaluate_coco(gt, pred, protocol="voc")))


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("{not json", ["pred.json", "JSON"]),
        ('{"a": 1}', ["pred.json", "list"]),
        ("BAD_IMAGE", ["pred.json", "prediction 0", "image_id"]),
        ("BAD_SCORE", ["pred.json", "prediction 0", "score"]),
        ("BAD_SIZE", ["pred.json", "prediction 0", "bbox"]),
    ],
)
def test_bad_predictions_are_one_line_naming_the_record(files, capsys, content, words):
    gt, pred, results = files
    first = dict(results[0])
    if content == "BAD_IMAGE":
        content = json.dumps([{**first, "image_id": 10**9}])
    elif content == "BAD_SCORE":
        content = json.dumps([{**first, "score": float("nan")}])
    elif content == "BAD_SIZE":
        content = json.dumps([{**first, "bbox": [0, 0, -3, 4]}])
    pred.write_text(content)
    status, out, err = _val(capsys, f"gt={gt}", f"pred={pred}")
    assert status == 2 and out == ""
    assert err.count("\n") == 1
    for word in words:
        assert word in err
