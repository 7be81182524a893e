"""Semantic segmentation behind the API: ``unet`` learns the synthetic shapes in about a
minute (the acceptance test); a checkpoint validates to the training's final numbers;
predictions come back at each image's own size as class masks, palette PNGs and overlays;
bad masks stop training before it starts.

The checkpoint and prediction tests share one quick run whose numbers do not matter. The
mapping of predictions back to the image as read is measured exactly with a per-pixel
model (a bright pixel is class 1).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

import visionkit
from visionkit.api import SegmentationResult, _segment
from visionkit.data.images import read_image, read_mask
from visionkit.data.synthetic.export import export_synthetic
from visionkit.errors import ConfigError, DataError, ImageError, WeightsError
from visionkit.models import ModelConfig, SemanticSegmenter
from visionkit.ops.masks import rle_to_mask
from visionkit.train import _task

SHAPES_SIDE = 64
"""Side of the synthetic images, and of the network's input."""

ACCEPTANCE = {
    **{"epochs": 8, "batch": 8, "lr": 3e-3, "imgsz": SHAPES_SIDE},
    **{"scale": (1, 1), "colour": False},
}
"""The acceptance recipe, on 2,000 training images: whole images, flips only."""

FAST = {"workers": 0, "quiet": True, "deterministic": False}


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread(one_torch_thread: None) -> None:
    """Every test here runs on one torch thread (see the root ``one_torch_thread``)."""


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small export for the runs whose result does not matter."""
    return export_synthetic(
        tmp_path_factory.mktemp("shapes"), train=24, val=8, imgsz=SHAPES_SIDE, workers=1
    )


@pytest.fixture(scope="module")
def trained(shapes: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """``unet`` after two quick epochs on :func:`shapes`: the model and the result."""
    model = visionkit.Model("unet")
    result = model.train(
        data=shapes, project=tmp_path_factory.mktemp("runs"), name="shapes", epochs=2,
        batch=8, imgsz=SHAPES_SIDE, **FAST,
    )  # fmt: skip
    return {"model": model, "result": result}


def test_unet_learns_the_shapes(tmp_path):
    """Acceptance: the CPU-sized U-Net reaches a validation mIoU of 0.6 on shapes it has not
    seen (7 classes, background included; predicting background everywhere scores about
    0.11), in about a minute of two cores.

    Telling six shapes apart by outline alone (random textures, colours and rotations)
    takes about 20,000 image passes from scratch; at 64 px with a stride-2 stem that is a
    minute, on scenes of one to three shapes of at least a quarter of the image side (the
    full scenes' smallest shapes are 3 pixels at this size)."""
    data = export_synthetic(
        tmp_path / "shapes", format="masks", train=2000, val=100, imgsz=SHAPES_SIDE,
        scene_options={"min_size": 0.25, "max_objects": 3}, workers=2,
    )  # fmt: skip
    torch.set_num_threads(2)  # the module's fixture restores one thread afterwards
    model = visionkit.Model("unet", stem_stride=2)
    start = time.perf_counter()
    result = model.train(data=data, project=tmp_path, **ACCEPTANCE, **FAST)
    seconds = time.perf_counter() - start
    torch.set_num_threads(1)
    print(f"unet on shapes: val mIoU {result.best_fitness:.3f} in {seconds:.0f} s")
    assert result.best_fitness >= 0.6
    assert model.names == (
        "background", "circle", "square", "triangle", "hexagon", "star", "cross",
    )  # fmt: skip


def test_a_run_writes_its_plots_and_the_per_class_table(trained):
    run = trained["result"].run_dir
    for name in ("results.csv", "results.png", "confusion_matrix.png", "val_predictions.png"):
        assert (run / name).stat().st_size > 100, name
    rows = (run / "val_per_class.csv").read_text().splitlines()
    assert rows[0] == "class,name,iou,dice,boundary_iou" and len(rows) == 1 + 7
    assert rows[1].startswith("0,background,")
    assert trained["model"].names[0] == "background" and len(trained["model"].names) == 7


def test_val_of_the_checkpoint_equals_the_final_validation(trained, shapes):
    result = trained["result"]
    final = json.loads((result.run_dir / "val_metrics.json").read_text())
    metrics = visionkit.Model(result.best_path).val(data=shapes, batch=16, device="cpu")
    assert metrics["miou"] == pytest.approx(final["miou"], abs=1e-9)
    # the epochs were scored the same way (original pixels), so best.pt's row agrees too
    assert metrics["miou"] == pytest.approx(result.best_fitness, abs=1e-6)
    assert metrics["names"] == list(trained["model"].names)
    assert len(metrics["iou_per_class"]) == 7


def test_predict_gives_masks_at_the_size_of_a_non_square_image(trained, shapes, tmp_path):
    square = read_image(sorted((shapes / "images" / "val").glob("*.png"))[0])
    wide = np.concatenate([square, square[:, : SHAPES_SIDE // 2]], axis=1)  # 64 x 96
    path = tmp_path / "wide.png"
    Image.fromarray(wide).save(path)
    [result] = trained["model"].predict(path, device="cpu", probs=True)
    assert isinstance(result, SegmentationResult)
    assert result.mask.shape == (64, 96) and result.mask.dtype == np.int64
    assert result.probs.shape == (7, 64, 96)
    np.testing.assert_allclose(result.probs.sum(axis=0), 1.0, atol=1e-5)
    assert np.array_equal(result.probs.argmax(axis=0), result.mask)
    assert result.path == path and result.plot().shape == (64, 96, 3)
    [without] = trained["model"].predict(wide, device="cpu")
    assert without.probs is None and np.array_equal(without.mask, result.mask)


class BrightPixels(SemanticSegmenter):
    """Class 1 where a pixel's normalised red value is positive (brighter than the ImageNet
    mean), else class 0: a per-pixel model, so the right mask is known at every size."""

    def __init__(self, image_size: int) -> None:
        config = ModelConfig(
            "bright", "segment", 2, image_size, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225),
            names=("dark", "bright"),
        )  # fmt: skip
        super().__init__(config)

    def forward_logits(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([-x[:, 0], x[:, 0]], dim=1)


@pytest.mark.parametrize("size", [(40, 100), (100, 40), (48, 48)])
def test_predict_undoes_the_letterbox_exactly(size):
    height, width = size
    image = np.full((height, width, 3), 20, dtype=np.uint8)
    image[10:30, 20:36] = 250  # edges on even pixels: exact after halving and doubling
    truth = (image[:, :, 0] > 128).astype(np.int64)
    [result] = _segment.predict(BrightPixels(max(size) // 2), image, batch=1, device="cpu")
    assert result.mask.shape == (height, width)
    assert np.array_equal(result.mask, truth)


def test_saved_masks_are_palette_pngs_of_class_indices(tmp_path):
    image = np.full((30, 50, 3), 20, dtype=np.uint8)
    image[4:20, 10:30] = 250
    source = tmp_path / "in" / "scene.png"
    source.parent.mkdir()
    Image.fromarray(image).save(source)
    out = tmp_path / "out"
    [result] = _segment.predict(
        BrightPixels(32), [source], batch=1, device="cpu", save=True, out=out
    )
    with Image.open(out / "scene.png") as saved:
        assert saved.mode == "P"
        assert np.array_equal(np.asarray(saved), result.mask)
        assert saved.getpalette()[3:6] == list(visionkit.viz.color_for(1))
    assert np.array_equal(read_mask(out / "scene.png"), result.mask)
    with Image.open(out / "scene_overlay.jpg") as overlay:
        assert overlay.size == (50, 30)
    assert result.save(tmp_path / "again.png") == tmp_path / "again.png"


def test_result_json_holds_each_class_as_run_length_encoding():
    image = np.full((30, 50, 3), 20, dtype=np.uint8)
    image[4:20, 10:30] = 250
    [result] = _segment.predict(BrightPixels(32), image, batch=1, device="cpu")
    record = result.to_json()
    assert record["file"] is None and record["size"] == [30, 50]
    assert [c["name"] for c in record["classes"]] == ["dark", "bright"]
    assert sum(c["pixels"] for c in record["classes"]) == 30 * 50
    for entry in record["classes"]:
        assert np.array_equal(rle_to_mask(entry["segmentation"]), result.mask == entry["class"])
    json.dumps(record)  # JSON-able as it is
    tinted = result.plot()
    assert np.array_equal(tinted[0, 0], image[0, 0])  # background stays as it was
    assert not np.array_equal(tinted[10, 20], image[10, 20])


def _mask_dataset(root: Path, *, mask_of: dict[str, Any] | None = None) -> Path:
    """A PNG-mask dataset of 3 classes, 2 training and 2 validation images of 32 px;
    ``mask_of`` replaces the mask of ``train/<stem>`` by the given PIL image."""
    root.mkdir(parents=True)
    (root / "classes.txt").write_text("0 background\n1 disc\n2 bar\n")
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for stem in ("a", "b"):
            image = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
            mask = np.zeros((32, 32), dtype=np.uint8)
            mask[4:12, 4:12], mask[20:, :] = 1, 2
            for folder, picture in (("images", image), ("masks", mask)):
                (root / folder / split).mkdir(parents=True, exist_ok=True)
                Image.fromarray(picture).save(root / folder / split / f"{stem}.png")
    for stem, picture in (mask_of or {}).items():
        picture.save(root / "masks" / "train" / f"{stem}.png")
    return root


def _stray_values() -> Image.Image:
    """A 32 x 32 mask holding 7 and 9, which are no class of a 3-class dataset."""
    values = np.zeros((32, 32), np.uint8)
    values[0, :3], values[1, :3] = (0, 1, 7), (9, 255, 2)
    return Image.fromarray(values)


BAD_MASKS = {
    "size": (
        lambda: Image.fromarray(np.zeros((32, 40), np.uint8)),
        DataError,
        r"the mask is 40x32 pixels, its image 32x32",
    ),
    "values": (_stray_values, DataError, r"mask values \[7, 9\] are neither category ids"),
    "rgb": (
        lambda: Image.fromarray(np.zeros((32, 32, 3), np.uint8)),
        ImageError,
        r"must store class indices as 8-bit gray \(L\) or palette \(P\)",
    ),
}


@pytest.mark.parametrize("fault", list(BAD_MASKS))
def test_a_bad_mask_stops_training_before_it_starts_naming_the_file(fault, tmp_path):
    make, kind, message = BAD_MASKS[fault]
    data = _mask_dataset(tmp_path / "data", mask_of={"b": make()})
    with pytest.raises(kind, match=message) as error:
        visionkit.Model("unet").train(data=data, epochs=1, imgsz=32, project=tmp_path, **FAST)
    assert str(data / "masks" / "train" / "b.png") in str(error.value)
    assert not (tmp_path / "segment").exists()  # no run folder: nothing started


def test_a_registry_model_gets_the_dataset_classes_and_other_classes_are_refused(tmp_path):
    data = _mask_dataset(tmp_path / "data")
    model = visionkit.Model("unet", base_width=4, depth=2)
    result = model.train(data=data, epochs=1, batch=2, imgsz=32, project=tmp_path, **FAST)
    assert model.names == ("background", "disc", "bar") and model.network.num_classes == 3
    assert result.run_dir == tmp_path / "segment" / "train"
    other = export_synthetic(tmp_path / "shapes", train=1, val=2, imgsz=32, workers=1)
    with pytest.raises(ConfigError, match="the dataset has 7 classes") as error:
        model.val(data=other, device="cpu")
    assert str(other) in str(error.value)


def test_a_mosaic_run_tiles_its_first_epochs_and_ends_on_whole_images(tmp_path, monkeypatch):
    data = _mask_dataset(tmp_path / "data")
    seen: list[float] = []  # the mosaic probability of every training sample drawn

    class Recording(_task.Mosaic):
        def __getitem__(self, index: int) -> Any:
            seen.append(self.p)
            return super().__getitem__(index)

    monkeypatch.setattr(_task, "Mosaic", Recording)
    model = visionkit.Model("unet", base_width=4, depth=2)
    result = model.train(
        data=data, epochs=3, batch=2, imgsz=32, mosaic=1.0, close_mosaic=0.3,
        project=tmp_path, **FAST,
    )  # fmt: skip
    assert seen == [1.0] * 2 * 2 + [0.0] * 2  # 2 images an epoch; 30 % of 3: the last
    args = (result.run_dir / "args.yaml").read_text()
    assert "mosaic: 1.0" in args and "close_mosaic: 0.3" in args
    with pytest.raises(ConfigError, match=r"field 'mosaic': was 1\.0 when the run started"):
        model.train(
            data=data, epochs=3, batch=2, imgsz=32, close_mosaic=0.3, project=tmp_path,
            resume=True, **FAST,
        )  # fmt: skip


def test_an_unknown_loss_and_a_missing_run_to_resume_are_refused(tmp_path):
    data = _mask_dataset(tmp_path / "data")
    with pytest.raises(ConfigError, match="field 'loss': unknown loss 'bce'"):
        visionkit.Model("unet").train(data=data, loss="bce", project=tmp_path, **FAST)
    with pytest.raises(WeightsError, match="no run to resume"):
        visionkit.Model("unet").train(data=data, resume=True, project=tmp_path, **FAST)
    assert not (tmp_path / "segment").exists()
