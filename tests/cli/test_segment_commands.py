"""`visionkit segment train|val|predict` end to end on a tiny shapes export, the SAM
prompt options parsed and routed, and a bad mask as one line and exit status 2."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from visionkit.api import _sam
from visionkit.cli import main
from visionkit.data.synthetic.export import export_synthetic
from visionkit.models.foundation import PromptMasks

SIDE = 32


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    return export_synthetic(
        tmp_path_factory.mktemp("shapes"), train=4, val=3, imgsz=SIDE, workers=1
    )


@pytest.fixture(scope="module")
def checkpoint(shapes, tmp_path_factory) -> Path:
    """One epoch of ``unet`` through ``segment train``: its ``best.pt``."""
    project = tmp_path_factory.mktemp("runs")
    status = main(
        ["segment", "train", f"data={shapes}", f"project={project}", "epochs=1", "batch=2",
         f"imgsz={SIDE}", "workers=0", "quiet=true", "loss=ce", "cache_images=true", "amp=bf16"]
    )  # fmt: skip
    assert status == 0
    return project / "segment" / "train" / "weights" / "best.pt"


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_train_writes_a_run_folder(checkpoint):
    run = checkpoint.parent.parent
    assert checkpoint.is_file()
    for name in ("args.yaml", "results.csv", "val_metrics.json", "val_per_class.csv"):
        assert (run / name).is_file(), name
    recorded = (run / "args.yaml").read_text()
    assert "loss: ce" in recorded and "cache_images: true" in recorded and "amp: bf16" in recorded


def test_val_prints_json_and_a_per_class_table(checkpoint, shapes, capsys):
    status, out, _ = _run(capsys, "segment", "val", f"data={shapes}", f"model={checkpoint}",
                          "device=cpu", "json=true")  # fmt: skip
    assert status == 0
    metrics = json.loads(out)
    final = json.loads((checkpoint.parent.parent / "val_metrics.json").read_text())
    assert metrics["miou"] == pytest.approx(final["miou"], abs=1e-9)
    status, out, _ = _run(capsys, "segment", "val", f"data={shapes}", f"model={checkpoint}")
    assert status == 0
    lines = out.splitlines()
    assert lines[0].split() == ["metric", "value"] and lines[1].split()[0] == "miou"
    header = next(i for i, line in enumerate(lines) if line.startswith("class"))
    assert [line.split()[0] for line in lines[header + 1 :]] == metrics["names"]


def test_predict_saves_class_masks_and_overlays(checkpoint, shapes, tmp_path, capsys):
    folder = shapes / "images" / "val"
    out = tmp_path / "out"
    status, stdout, _ = _run(capsys, "segment", "predict", f"source={folder}",
                             f"model={checkpoint}", "save=true", f"out={out}")  # fmt: skip
    assert status == 0
    for image in sorted(folder.glob("*.png")):
        with Image.open(out / image.name) as mask:
            assert mask.mode == "P" and mask.size == (SIDE, SIDE)
        assert (out / f"{image.stem}_overlay.jpg").is_file()
        assert image.name in stdout
    status, stdout, _ = _run(capsys, "segment", "predict", f"source={folder}",
                             f"model={checkpoint}", "json=true")  # fmt: skip
    records = json.loads(stdout)["predictions"]
    assert len(records) == 3 and all(r["size"] == [SIDE, SIDE] for r in records)


def test_a_rgb_mask_is_one_line_and_exit_status_2(tmp_path, capsys):
    (tmp_path / "classes.txt").write_text("0 background\n1 thing\n")
    for split in ("train", "val"):
        for folder, picture in (("images", np.zeros((8, 8, 3), np.uint8)),
                                ("masks", np.zeros((8, 8, 3), np.uint8))):  # fmt: skip
            (tmp_path / folder / split).mkdir(parents=True)
            Image.fromarray(picture).save(tmp_path / folder / split / "a.png")
    status, out, err = _run(capsys, "segment", "train", f"data={tmp_path}",
                            f"project={tmp_path / 'runs'}", "workers=0")  # fmt: skip
    assert status == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("visionkit: error: ")
    assert str(tmp_path / "masks" / "train" / "a.png") in err and "mode RGB" in err


@pytest.fixture
def prompts_seen(monkeypatch) -> list[dict]:
    """Replaces SAM by a recorder: each call's arguments, and one 2-mask result per call."""
    calls: list[dict] = []

    def record(model, source, **options):
        calls.append({"model": model, "source": source, **options})
        masks = np.zeros((2, 4, 6), bool)
        masks[1, 1:3, 2:5] = True
        scores = np.array([0.25, 0.75], np.float32)
        return [PromptMasks(masks, scores, np.zeros((2, 4, 4), np.float32))]

    monkeypatch.setattr(_sam, "predict_prompts", record)
    return calls


def test_sam_prompts_are_parsed_and_passed_on(prompts_seen, tmp_path, capsys):
    status, out, _ = _run(
        capsys, "segment", "predict", "model=sam-vit-base", f"source={tmp_path}",
        "points=10,20;30.5,40", "labels=1,0", "box=1,2,30,40", "multimask=false",
        "device=cpu", "json=true",
    )  # fmt: skip
    assert status == 0
    assert prompts_seen == [
        {"model": "sam-vit-base", "source": str(tmp_path), "points": [(10.0, 20.0), (30.5, 40.0)],
         "point_labels": [1, 0], "box": (1.0, 2.0, 30.0, 40.0), "multimask": False,
         "device": "cpu"},
    ]  # fmt: skip
    [record] = json.loads(out)["predictions"]
    assert record["best"] == 1 and record["pixels"] == [0, 6]
    assert record["boxes"][1] == [2.0, 1.0, 5.0, 3.0]


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("points=10,20;30", "expected points like 10,20;30,40"),
        ("labels=1,2", "expected 0s and 1s"),
        ("box=1,2,3", "expected a box like 10,20,50,60"),
    ],
)
def test_malformed_prompts_are_usage_errors(option, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["segment", "predict", "model=sam", "source=x.png", option])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_prompts_for_a_model_that_is_not_sam_are_refused(prompts_seen, capsys):
    status, _, err = _run(capsys, "segment", "predict", "model=unet", "source=x.png",
                          "points=1,2")  # fmt: skip
    assert status == 2 and "points are prompts of SAM models; unet takes none" in err
    assert prompts_seen == []
