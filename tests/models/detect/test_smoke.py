"""Smoke tests generated from the registry: every ``detect`` entry keeps the detector contract.

The entries are listed when the tests are collected, so a newly registered detector is
covered without editing this file; one that needs options to stay small (or a larger
input) gets them from :data:`OPTIONS`.
"""

from __future__ import annotations

import copy
import json

import pytest
import torch
import torchvision

from visionkit.models import Detector, ModelConfig, create_model, list_models

SIDE = 64
NUM_CLASSES = 3

# Torchvision's two-stage models sample 512 RoIs an image by default: fewer keep them cheap.
_FEWER_ROIS = {
    "box_batch_size_per_image": 64,
    "rpn_post_nms_top_n_train": 200,
    "rpn_post_nms_top_n_test": 100,
}
OPTIONS: dict[str, dict] = {
    **{name: _FEWER_ROIS for name in torchvision.models.list_models() if "rcnn" in name},
    # RT-DETR picks its 300 queries among the encoder tokens: 128 px gives 336.
    "rtdetr-r18": {"image_size": 128},
}


@pytest.fixture(scope="module", autouse=True)
def _offline():
    """No entry may download anything, in any test of this module."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VISIONKIT_OFFLINE", "1")
        patch.setenv("HF_HUB_OFFLINE", "1")
        yield


@pytest.fixture(scope="module", params=list_models("detect"))
def built(request) -> Detector:
    """Each entry built once for this module, randomly initialised, at a small size."""
    torch.manual_seed(0)
    options = {"image_size": SIDE, **OPTIONS.get(request.param, {})}
    return create_model(request.param, num_classes=NUM_CLASSES, **options)


@pytest.fixture
def model(built) -> Detector:
    """A private copy of the built entry, in train mode, that a test may change."""
    return copy.deepcopy(built).train()


def _batch() -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    """Two images of different sizes: one with two boxes (and masks), one with none."""
    generator = torch.Generator().manual_seed(1)
    images = [
        torch.rand(3, 64, 64, generator=generator),
        torch.rand(3, 48, 64, generator=generator),
    ]
    boxes = torch.tensor([[4.0, 6.0, 30.0, 40.0], [20.0, 24.0, 60.0, 56.0]])
    masks = torch.zeros(2, 64, 64, dtype=torch.uint8)
    for mask, (x1, y1, x2, y2) in zip(masks, boxes.int().tolist(), strict=True):
        mask[y1:y2, x1:x2] = 1
    targets = [
        {"boxes": boxes, "labels": torch.tensor([0, 2]), "masks": masks},
        {
            "boxes": torch.zeros(0, 4),
            "labels": torch.zeros(0, dtype=torch.int64),
            "masks": torch.zeros(0, 48, 64, dtype=torch.uint8),
        },
    ]
    return images, targets


def test_train_mode_gives_finite_scalar_losses_and_gradients(model):
    assert isinstance(model, Detector) and model.config.task == "detect"
    images, targets = _batch()
    losses = model(images, targets)
    assert isinstance(losses, dict) and losses
    for name, loss in losses.items():
        assert loss.dim() == 0 and torch.isfinite(loss), name
    sum(losses.values()).backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


def test_eval_mode_gives_thresholded_detections_inside_each_image(model):
    images, _ = _batch()
    model.eval().set_thresholds(conf=0.0, max_det=10)
    with torch.no_grad():
        detections = model(images)
    assert isinstance(detections, list) and len(detections) == 2
    for found, image in zip(detections, images, strict=True):
        boxes, scores, labels = found["boxes"], found["scores"], found["labels"]
        count = len(boxes)
        assert boxes.shape == (count, 4) and scores.shape == (count,) and count <= 10
        assert labels.shape == (count,) and labels.dtype == torch.int64
        assert ((labels >= 0) & (labels < NUM_CLASSES)).all()
        height, width = image.shape[-2:]
        assert (boxes[:, :2] >= -1e-3).all() and (boxes[:, 2:] >= boxes[:, :2]).all()
        assert (boxes[:, 2] <= width + 1e-3).all() and (boxes[:, 3] <= height + 1e-3).all()
        if "masks" in found:
            assert found["masks"].shape == (count, 1, height, width)


def test_the_config_rebuilds_the_same_architecture(model):
    config = ModelConfig.from_dict(json.loads(json.dumps(model.config.to_dict())))
    assert config == model.config and config.num_classes == NUM_CLASSES
    assert len(config.mean) == len(config.std) == 3 and config.weights is None
    torch.manual_seed(0)
    rebuilt = create_model(config.name, num_classes=config.num_classes, **config.kwargs)
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == shapes
