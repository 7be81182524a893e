"""The patch classifier of the historical detectors: a dense pass equals cropping every
window, crops read the right pixels, post-processing keeps the contract, and the weights
flow of both detectors."""

from __future__ import annotations

import pytest
import torch

from visionkit.errors import ConfigError, WeightsError
from visionkit.models import create_model
from visionkit.models.detect import Thresholds
from visionkit.models.detect._patch_classifier import (
    DEFAULT_NUM_CLASSES,
    PatchClassifier,
    crop_patches,
    scale_boxes,
    select_detections,
)


def _randomised(model: PatchClassifier) -> PatchClassifier:
    """``model`` in eval mode with batch-norm statistics that are not the identity."""
    generator = torch.Generator().manual_seed(0)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5, generator=generator)
            module.running_var.uniform_(0.5, 2.0, generator=generator)
    return model.eval()


@pytest.mark.parametrize("patch_size", [24, 32, 40])
def test_the_dense_map_is_every_window_classified_alone(patch_size):
    torch.manual_seed(0)
    model = _randomised(PatchClassifier(4, patch_size, 4, box_regression=True))
    image = torch.randn(1, 3, 61, 83)
    with torch.no_grad():
        logits, deltas = model.dense(image)
        rows, cols = (61 - patch_size) // 4 + 1, (83 - patch_size) // 4 + 1
        assert logits.shape == (1, 5, rows, cols) and deltas.shape == (1, 16, rows, cols)
        for i, j in [(0, 0), (rows - 1, cols - 1), (rows // 2, 1)]:
            window = image[:, :, 4 * i : 4 * i + patch_size, 4 * j : 4 * j + patch_size]
            alone, alone_deltas = model(window)
            torch.testing.assert_close(alone[0], logits[0, :, i, j], atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(alone_deltas[0], deltas[0, :, i, j], atol=1e-5, rtol=1e-5)


def test_bad_geometry_is_refused():
    with pytest.raises(ConfigError, match="patch_size"):
        PatchClassifier(3, 30, 8)
    with pytest.raises(ConfigError, match="patch_size"):
        PatchClassifier(3, 20, 8)
    with pytest.raises(ConfigError, match="width"):
        PatchClassifier(3, 32, 0)
    with pytest.raises(ConfigError, match="32x32"):
        PatchClassifier(3, 32, 4)(torch.zeros(1, 3, 36, 36))
    assert PatchClassifier(3, 32, 4).box_head is None


def test_crops_read_the_box_pixels_and_context_widens_them():
    image = torch.arange(3 * 40 * 50, dtype=torch.float32).reshape(3, 40, 50)
    box = torch.tensor([[10.0, 4.0, 34.0, 28.0]])
    torch.testing.assert_close(crop_patches(image, box, 24)[0], image[:, 4:28, 10:34])
    # Half a box side of context on every side: a box twice as large, averaged down.
    wide = crop_patches(image, box, 24, context=0.5)[0]
    torch.testing.assert_close(wide, crop_patches(image, scale_boxes(box, 2.0), 24)[0])
    assert scale_boxes(box, 2.0).tolist() == [[-2.0, -8.0, 46.0, 40.0]]


def test_selection_thresholds_suppresses_per_class_and_clips():
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 11.0, 11.0], [-5.0, 20.0, 30.0, 30.0]])
    scores = torch.tensor([[0.9, 0.8], [0.7, 0.05], [0.3, 0.6]])
    found = select_detections(boxes, scores, Thresholds(conf=0.1, iou=0.5, max_det=10), (25, 25))
    # Box 1 is suppressed by box 0 in class 0; class 1 of box 0 survives (another class).
    assert found["labels"].tolist() == [0, 1, 1, 0]
    assert found["scores"].tolist() == pytest.approx([0.9, 0.8, 0.6, 0.3])
    assert found["labels"].dtype == torch.int64
    assert found["boxes"][2].tolist() == [0.0, 20.0, 25.0, 25.0]  # clipped to the image
    capped = select_detections(boxes, scores, Thresholds(conf=0.5, max_det=2), (25, 25))
    assert capped["scores"].tolist() == pytest.approx([0.9, 0.8])
    per_class = select_detections(
        boxes[:, None].repeat(1, 2, 1), scores, Thresholds(conf=0.1, iou=0.5), (25, 25)
    )
    assert torch.equal(per_class["boxes"], found["boxes"])
    empty = select_detections(torch.zeros(0, 4), torch.zeros(0, 2), Thresholds(), (25, 25))
    assert empty["boxes"].shape == (0, 4) and empty["labels"].shape == (0,)


@pytest.mark.parametrize("name", ["sliding-window", "rcnn"])
def test_weights_files_load_and_other_specs_are_refused(name, tmp_path, empty_caches):
    torch.manual_seed(0)
    model = create_model(name, num_classes=2, image_size=64, width=4, patch_size=24)
    for module in model.modules():  # running statistics are weights too
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
    state_file, checkpoint = tmp_path / "weights.pt", tmp_path / "last.pt"
    torch.save(model.state_dict(), state_file)
    torch.save({"model": model.state_dict(), "model_config": model.config.to_dict()}, checkpoint)
    options = dict(model.config.kwargs)
    for spec in (state_file, checkpoint):
        loaded = create_model(name, weights=str(spec), **options)
        assert loaded.num_classes == 2 and loaded.config.weights == str(spec)
        for key, value in model.state_dict().items():
            assert torch.equal(loaded.state_dict()[key], value), key
    with pytest.raises(WeightsError, match="num_classes"):
        create_model(name, num_classes=5, weights=str(state_file), **options)
    with pytest.raises(WeightsError, match="no pretrained weights"):
        create_model(name, weights="hf:some/repo")
    with pytest.raises(WeightsError, match="COCO_V1"):
        create_model(name, weights="COCO_V1")
    with pytest.raises(WeightsError, match="shape"):
        create_model(name, weights=str(state_file), **{**options, "width": 8})
    torch.save({"head.weight": torch.zeros(2, 2)}, tmp_path / "classifier.pt")
    with pytest.raises(WeightsError, match=name):
        create_model(name, weights=str(tmp_path / "classifier.pt"))


@pytest.mark.parametrize("name", ["sliding-window", "rcnn"])
def test_without_weights_or_class_count_it_detects_coco_classes(name):
    model = create_model(name, image_size=64, width=4)
    assert model.num_classes == DEFAULT_NUM_CLASSES == 80
    assert model.classifier.cls_head.out_channels == 81  # and background
