"""`visionkit data make|convert|check|show` end to end, through the command line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO

from visionkit.cli import main
from visionkit.data.check import check_dataset
from visionkit.data.datasets import load_dataset
from visionkit.data.formats import detect_format, read_catalog
from visionkit.errors import DataError
from visionkit.ops.masks import mask_to_rle

SMALL = ["train=10", "val=4", "imgsz=64", "workers=1"]


def _make(out: Path, *options: str) -> None:
    assert main(["data", "make", f"out={out}", *SMALL, *options]) == 0


@pytest.mark.parametrize(
    ("fmt", "kind"),
    [
        ("coco", "shapes"),
        ("yolo", "shapes"),
        ("voc", "shapes"),
        ("masks", "shapes"),
        ("folder", "shapes-shortcut"),
    ],
)
def test_made_dataset_reads_back_and_checks_clean(tmp_path, capsys, fmt, kind):
    _make(tmp_path, f"format={fmt}", f"kind={kind}")
    assert detect_format(tmp_path) == fmt
    assert main(["data", "check", f"data={tmp_path}"]) == 0
    assert "no problems found" in capsys.readouterr().out
    catalog = read_catalog(tmp_path, "val", format=fmt)
    assert len(catalog) == 4


def test_made_coco_loads_in_pycocotools_with_matching_masks(tmp_path):
    _make(tmp_path, "format=coco")
    coco = COCO(str(tmp_path / "train.json"))
    assert len(coco.getImgIds()) == 10 and len(coco.getCatIds()) == 6
    for annotation in coco.loadAnns(coco.getAnnIds()):
        mask = coco.annToMask(annotation)
        assert mask.sum() == annotation["area"] > 0


def test_make_is_deterministic(tmp_path):
    _make(tmp_path / "a", "format=coco", "seed=3")
    _make(tmp_path / "b", "format=coco", "seed=3")
    for split in ("train.json", "val.json"):
        assert (tmp_path / "a" / split).read_text() == (tmp_path / "b" / split).read_text()
    png = Path("images/train/000004.png")
    assert (tmp_path / "a" / png).read_bytes() == (tmp_path / "b" / png).read_bytes()


def test_convert_then_check_then_show(tmp_path):
    _make(tmp_path / "coco", "format=coco")
    assert (
        main(["data", "convert", f"data={tmp_path / 'coco'}", f"out={tmp_path / 'voc'}", "to=voc"])
        == 0
    )
    assert main(["data", "check", f"data={tmp_path / 'voc'}"]) == 0
    grid = tmp_path / "grid.png"
    assert main(["data", "show", f"data={tmp_path / 'voc'}", f"out={grid}", "n=4"]) == 0
    assert Image.open(grid).size[0] > 64


def _plant_coco_faults(root: Path) -> dict[str, tuple[str, str, str]]:
    """Break a made COCO dataset in ten ways; return fault -> (file, record, field) expected."""
    doc = json.loads((root / "train.json").read_text())
    anns = doc["annotations"]
    (root / "images/train/000001.png").unlink()
    truncated = root / "images/train/000002.png"
    truncated.write_bytes(truncated.read_bytes()[:200])
    anns[0]["bbox"][0] = 500.0
    anns[1]["bbox"][2] = -5.0
    anns[2]["category_id"] = 99
    anns[3]["id"] = anns[4]["id"]
    anns[5]["segmentation"] = mask_to_rle(np.ones((10, 10), bool))
    anns[6]["segmentation"] = []
    anns[7]["image_id"] = 9999
    (root / "train.json").write_text(json.dumps(doc))
    (root / "val.json").write_text("{not json")
    train = str(root / "train.json")
    return {
        "missing image": (str(root / "images/train/000001.png"), "image 2", "field 'file'"),
        "truncated image": (str(truncated), "image 3", "field 'file'"),
        "box outside the image": (train, f"annotation {anns[0]['id']}", "field 'bbox'"),
        "negative width": (train, f"annotation {anns[1]['id']}", "field 'bbox'"),
        "unknown category": (train, f"annotation {anns[2]['id']}", "field 'category_id'"),
        "duplicate annotation id": (train, f"annotation {anns[4]['id']}", "field 'id'"),
        "mask of the wrong size": (train, f"annotation {anns[5]['id']}", "field 'segmentation'"),
        "empty polygon": (train, f"annotation {anns[6]['id']}", "field 'segmentation'"),
        "annotation of a missing image": (train, f"annotation {anns[7]['id']}", "field 'image_id'"),
        "malformed JSON": (str(root / "val.json"), "line 1 column 2", "not valid JSON"),
    }


def test_check_reports_every_planted_fault_with_file_record_and_field(tmp_path, capsys):
    _make(tmp_path, "format=coco")
    expected = _plant_coco_faults(tmp_path)
    assert main(["data", "check", f"data={tmp_path}"]) == 2
    lines = capsys.readouterr().out.splitlines()
    for fault, (file, record, field) in expected.items():
        hits = [line for line in lines if line.startswith(f"{file}: {record}: ") and field in line]
        assert len(hits) == 1, f"{fault} not reported once: {lines}"
    assert any("negative width" in line for line in lines)
    assert any("outside" in line for line in lines)


def test_yolo_label_file_for_a_missing_image_is_reported(tmp_path, capsys):
    _make(tmp_path, "format=yolo")
    orphan = tmp_path / "labels/train/ghost.txt"
    orphan.write_text("0 0.5 0.5 0.2 0.2\n")
    assert main(["data", "check", f"data={tmp_path}"]) == 2
    out = capsys.readouterr().out
    assert f"{orphan}: label ghost: field 'image': label file for a missing image" in out


def test_loading_for_training_raises_the_first_fault(tmp_path):
    _make(tmp_path, "format=coco")
    _plant_coco_faults(tmp_path)
    first = check_dataset(tmp_path, "train")[0]
    with pytest.raises(DataError) as raised:
        load_dataset(tmp_path, "detect", "train")
    assert str(raised.value) == str(first)


def test_clean_dataset_loads_for_training(tmp_path):
    _make(tmp_path, "format=yolo")
    dataset = load_dataset(tmp_path, "detect", "val")
    image, target = dataset[0]
    assert image.shape == (3, 64, 64) and len(target["boxes"]) == len(target["labels"]) > 0


def test_make_passes_the_scene_options_to_the_shapes_generator(tmp_path):
    _make(tmp_path, "format=coco", "max_objects=1", "min_size=0.4", "max_size=0.5")
    coco = COCO(str(tmp_path / "train.json"))
    for image_id in coco.getImgIds():
        (annotation,) = coco.loadAnns(coco.getAnnIds(imgIds=image_id))
        assert annotation["area"] > 0.9 * (0.4 * 64) ** 2  # size: square root of the area


@pytest.mark.parametrize(
    "argv",
    [
        ["data", "check", "data=/no/such/dataset"],
        ["data", "make", "out=x", "kind=shapes-shortcut", "max_objects=2"],
        ["data", "make", "out=x", "kind=shapes", "format=folder"],
        ["data", "make", "out=x", "imgsz=8"],
    ],
)
def test_user_mistakes_exit_2_with_one_line(argv, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("visionkit: error: ") and len(err.splitlines()) == 1


@pytest.mark.parametrize("via", ["yolo", "voc"])
def test_synthetic_coco_round_trip_keeps_every_box_and_category(tmp_path, via):
    """Occluded synthetic objects (RLE masks, some split in parts) survive COCO -> X -> COCO."""
    _make(tmp_path / "coco", "format=coco")
    convert = ["data", "convert"]
    assert main([*convert, f"data={tmp_path / 'coco'}", f"out={tmp_path / via}", f"to={via}"]) == 0
    assert main([*convert, f"data={tmp_path / via}", f"out={tmp_path / 'back'}", "to=coco"]) == 0
    before = read_catalog(tmp_path / "coco" / "train.json")
    after = read_catalog(tmp_path / "back" / "train.json")
    pairs = [
        (a, b)
        for x, y in zip(before, after, strict=True)
        for a, b in zip(x.annotations, y.annotations, strict=True)
    ]
    assert len(pairs) == before.num_annotations() > 10
    for a, b in pairs:
        assert np.abs(np.subtract(a.bbox, b.bbox)).max() < 1e-3
        assert after.names[b.category_id] == before.names[a.category_id]
