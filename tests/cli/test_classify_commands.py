"""`visionkit classify train|val|predict` and `visionkit models`, through the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from visionkit.cli import main


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """A small shapes-shortcut image folder and a classifier trained on it for one epoch."""
    root = tmp_path_factory.mktemp("classify")
    data = root / "data"
    make = ["data", "make", f"out={data}", "kind=shapes-shortcut", "format=folder"]
    assert main([*make, "train=24", "val=12", "imgsz=32", "workers=1"]) == 0
    train = ["classify", "train", f"data={data}", "model=cnn-small", "imgsz=32", "epochs=1"]
    options = ["batch=8", "workers=0", "quiet=true", f"project={root / 'runs'}", "name=exp"]
    assert main([*train, *options]) == 0
    return data, root / "runs" / "classify" / "exp"


def test_train_writes_the_run_folder(trained):
    _, run = trained
    assert (run / "weights" / "best.pt").is_file() and (run / "weights" / "last.pt").is_file()
    assert len((run / "results.csv").read_text().splitlines()) == 2  # header and one epoch
    assert "strategy: full" in (run / "args.yaml").read_text()


def test_val_reproduces_the_runs_validation_accuracy(trained, capsys):
    data, run = trained
    best = run / "weights" / "best.pt"
    assert main(["classify", "val", f"model={best}", f"data={data}", "json=true"]) == 0
    printed = json.loads(capsys.readouterr().out)
    recorded = json.loads((run / "metrics.json").read_text())["best"]
    assert printed["accuracy_top1"] == pytest.approx(recorded["accuracy_top1"], abs=1e-12)


def test_predict_lists_every_image_and_saves_annotated_copies(trained, capsys, tmp_path):
    data, run = trained
    best = run / "weights" / "best.pt"
    source = data / "val"
    command = ["classify", "predict", f"model={best}", f"source={source}", "json=true"]
    assert main([*command, "save=true", f"out={tmp_path}"]) == 0
    predictions = json.loads(capsys.readouterr().out)["predictions"]
    images = sorted(p for p in source.rglob("*.png"))
    assert [Path(p["file"]) for p in predictions] == images
    assert all(abs(sum(p["probs"].values()) - 1) < 1e-5 for p in predictions)
    assert len(list(tmp_path.glob("*.png"))) == len(images)


def test_models_lists_the_registry(capsys):
    assert main(["models", "task=classify"]) == 0
    names = [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:]]
    assert {"cnn-small", "resnet18", "vit-tiny", "deit-tiny"} <= set(names)


@pytest.mark.parametrize(
    ("model", "words"),
    [("resnet19", ["resnet18", "model"]), ("BROKEN", ["broken.pt"])],
)
def test_bad_models_are_one_line_errors(trained, capsys, tmp_path, model, words):
    data, _ = trained
    if model == "BROKEN":
        model = tmp_path / "broken.pt"
        model.write_bytes(b"PK\x03\x04 truncated")
    assert main(["classify", "val", f"model={model}", f"data={data}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    for word in words:
        assert word in err
