"""`visionkit detect val` on COCO prediction files, through the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

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


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """A yolo-n trained for one short epoch through the CLI: (dataset, run folder)."""
    from visionkit.data.synthetic.export import export_synthetic

    root = tmp_path_factory.mktemp("cli-detect")
    data = export_synthetic(root / "data", train=8, val=4, imgsz=64, workers=1)
    status = main(["detect", "train", f"data={data}", "model=yolo-n", "imgsz=64", "epochs=1",
                   "batch=4", f"project={root}", "workers=0", "quiet=true", "cache_images=true",
                   "amp=bf16", "cls=1.0"])  # fmt: skip
    assert status == 0
    return data, root / "detect" / "train"


def test_train_writes_the_run_folder_with_plots_and_predictions(trained):
    _, run = trained
    for name in ("weights/best.pt", "results.csv", "predictions.json", "pr_curve.png",
                 "confusion_matrix.png", "val_predictions.png", "val_metrics.json"):  # fmt: skip
        assert (run / name).is_file(), name
    recorded = yaml.safe_load((run / "args.yaml").read_text())
    assert recorded["cache_images"] is True and recorded["amp"] == "bf16"
    assert recorded["cls"] == 1.0 and "box" not in recorded  # only the gains given


def test_val_of_a_checkpoint_reproduces_the_runs_final_validation(trained, capsys):
    data, run = trained
    status, out, _ = _val(capsys, f"data={data}", f"model={run / 'weights/best.pt'}", "json=true")
    assert status == 0
    final = json.loads((run / "val_metrics.json").read_text())
    assert json.loads(out)["map"] == pytest.approx(final["map"], abs=1e-12)


def test_predict_saves_annotated_images_and_a_json(trained, capsys, tmp_path):
    data, run = trained
    status = main(["detect", "predict", f"source={data / 'images' / 'val'}", "conf=0.0",
                   f"model={run / 'weights/best.pt'}", "save=true", f"out={tmp_path}"])  # fmt: skip
    assert status == 0
    saved = json.loads((tmp_path / "predictions.json").read_text())["predictions"]
    assert len(saved) == 4 and len(list(tmp_path.glob("*.png"))) == 4
    assert "annotated images" in capsys.readouterr().out


def test_export_writes_an_onnx_file_beside_the_checkpoint(trained, capsys):
    _, run = trained
    assert main(["detect", "export", f"model={run / 'weights/best.pt'}"]) == 0
    assert (run / "weights" / "best.onnx").stat().st_size > 10_000
    assert "exported" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ([], ["data", "gt and pred"]),
        (["data=somewhere", "gt=a.json"], ["not both"]),
        (["gt=a.json"], ["pred"]),
    ],
)
def test_val_needs_a_model_and_data_or_two_files(capsys, options, words):
    status, out, err = _val(capsys, *options)
    assert status == 2 and out == "" and err.count("\n") == 1
    for word in words:
        assert word in err


def test_a_checkpoint_of_other_classes_is_refused_naming_the_dataset(trained, capsys, tmp_path):
    from visionkit.data.synthetic.export import export_synthetic

    _, run = trained
    other = export_synthetic(tmp_path / "other", kind="shapes-shortcut", format="coco",
                             train=2, val=2, imgsz=64, classes=["circle", "square"],
                             workers=1)  # fmt: skip
    status, _, err = _val(capsys, f"data={other}", f"model={run / 'weights/best.pt'}")
    assert status == 2 and err.count("\n") == 1
    assert "2 classes" in err and str(other) in err


def test_val_of_a_mask_model_prints_the_mask_metrics_too(capsys, tmp_path):
    """A Mask R-CNN checkpoint (untrained: the tables, not the numbers, are tested) gets the
    twelve mask stats after the twelve box stats, and a mask AP column per category."""
    import torch

    from visionkit.data.synthetic.export import export_synthetic
    from visionkit.models import create_model

    data = export_synthetic(tmp_path / "data", train=1, val=2, imgsz=64, workers=1)
    torch.manual_seed(0)
    model = create_model("maskrcnn-small", num_classes=6, image_size=64)
    checkpoint = tmp_path / "mask.pt"
    torch.save({"model": model.state_dict(), "model_config": model.config.to_dict()}, checkpoint)
    status, out, _ = _val(capsys, f"data={data}", f"model={checkpoint}", "device=cpu")
    assert status == 0
    lines = out.splitlines()
    assert sum(line.startswith(("AP @", "AR @")) for line in lines) == 24
    assert lines[0].startswith("metric") and any(line.startswith("mask metric") for line in lines)
    assert "mask AP@[.5:.95]" in next(line for line in lines if line.startswith("category"))
    status, out, _ = _val(capsys, f"data={data}", f"model={checkpoint}", "json=true")
    printed = json.loads(out)
    assert len(printed["segm_map_per_class"]) == len(printed["classes"]) and "segm_map" in printed
