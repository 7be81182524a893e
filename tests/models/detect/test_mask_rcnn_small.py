"""``maskrcnn-small``: fasterrcnn-small with torchvision's mask branch, built, loaded and trained.

The builder is held to its parts (torchvision's MaskRCNN, a 14 x 14 mask RoIAlign, the
small detector's backbone and box head unchanged), its settings and its weights files; the
eval output to masks pasted inside each detection's box at the input's size; and training
to its purpose: on a few scenes it learns masks that fit the shapes far better than its
own boxes filled in, or its masks handed to the wrong detections.
"""

from __future__ import annotations

import pytest
import torch

from visionkit.data.synthetic import ShapesConfig, make_scene
from visionkit.errors import ConfigError, WeightsError
from visionkit.metrics.detection import DetectionEvaluator
from visionkit.models import create_model, model_info
from visionkit.models.detect._mask_rcnn_small import MASK_LAYERS, MASK_POOL
from visionkit.models.detect._torchvision_adapter import TorchvisionDetector

NAME = "maskrcnn-small"


def _image(height: int = 48, width: int = 64, seed: int = 0) -> torch.Tensor:
    return torch.rand(3, height, width, generator=torch.Generator().manual_seed(seed))


def _scenes(count: int, side: int) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    """``count`` synthetic shape scenes: images in 0-1, targets with labels 0..5 and masks."""
    config = ShapesConfig(imgsz=side, min_size=0.12, max_size=0.4, max_objects=4)
    images, targets = [], []
    for index in range(count):
        scene = make_scene(0, index, config)
        images.append(torch.from_numpy(scene.image).permute(2, 0, 1).float() / 255)
        targets.append(
            {
                "boxes": torch.as_tensor(scene.boxes, dtype=torch.float32).reshape(-1, 4),
                "labels": torch.as_tensor(scene.labels - 1, dtype=torch.int64),
                "masks": torch.as_tensor(scene.masks, dtype=torch.uint8),
            }
        )
    return images, targets


def test_registered_as_torchvision_mask_rcnn_on_the_small_detector():
    from torchvision.models.detection import MaskRCNN
    from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor

    assert model_info(NAME).task == "detect" and model_info(NAME).default_weights is None
    model = create_model(NAME, num_classes=3, image_size=96)
    assert isinstance(model, TorchvisionDetector) and isinstance(model.net, MaskRCNN)
    assert model.makes_masks and not create_model("fasterrcnn-small").makes_masks
    assert model.config.kwargs == {"image_size": 96} and model.training
    heads = model.net.roi_heads
    assert heads.mask_roi_pool.output_size == (MASK_POOL, MASK_POOL) == (14, 14)
    assert isinstance(heads.mask_head, MaskRCNNHeads) and len(heads.mask_head) == len(MASK_LAYERS)
    assert isinstance(heads.mask_predictor, MaskRCNNPredictor)
    assert heads.mask_predictor.mask_fcn_logits.out_channels == 4  # K + background
    # Everything but the mask branch is fasterrcnn-small's, tensor for tensor.
    boxes_only = create_model("fasterrcnn-small", num_classes=3, image_size=96).state_dict()
    shapes = {k: v.shape for k, v in model.state_dict().items() if ".mask_" not in k}
    assert shapes == {k: v.shape for k, v in boxes_only.items()}


def test_eval_gives_mask_probabilities_pasted_inside_each_box_at_the_input_size():
    torch.manual_seed(0)
    model = create_model(NAME, num_classes=3, image_size=64).eval()
    model.set_thresholds(conf=0.0, max_det=20)
    images = [_image(48, 64), _image(64, 40, seed=1)]
    with torch.no_grad():
        found = model(images)
    for out, image in zip(found, images, strict=True):
        masks, boxes = out["masks"], out["boxes"]
        assert masks.dtype == torch.float32 and masks.shape == (len(boxes), 1, *image.shape[-2:])
        assert len(boxes) == 20 and masks.min() >= 0 and masks.max() <= 1 and masks.max() > 0
        rows, cols = torch.arange(image.shape[1])[:, None], torch.arange(image.shape[2])
        for mask, (x1, y1, x2, y2) in zip(masks[:, 0], boxes.tolist(), strict=True):
            # torchvision pastes the 28 x 28 mask into the box grown by one mask cell a side
            grow = 1 + max(x2 - x1, y2 - y1) / 28
            inside = (cols >= x1 - grow) & (cols <= x2 + grow) & (rows >= y1 - grow)
            inside &= rows <= y2 + grow
            assert (mask[~inside] == 0).all()


def test_training_needs_instance_masks_and_options_it_builds_are_refused():
    model = create_model(NAME, num_classes=6, image_size=64)
    images, targets = _scenes(2, 64)
    with pytest.raises(ConfigError, match="masks"):
        model(images, [{k: t[k] for k in ("boxes", "labels")} for t in targets])
    losses = model(images, targets)
    assert {"loss_mask", "loss_classifier", "loss_objectness"} <= losses.keys()
    with pytest.raises(ConfigError, match="builds its own mask_head"):
        create_model(NAME, mask_head=None)
    with pytest.raises(ConfigError, match="set_thresholds"):
        create_model(NAME, box_score_thresh=0.5)
    tuned = create_model(NAME, num_classes=2, box_batch_size_per_image=32)
    assert tuned.net.roi_heads.fg_bg_sampler.batch_size_per_image == 32


def test_a_weights_file_rebuilds_the_same_masks(tmp_path):
    torch.manual_seed(0)
    model = create_model(NAME, num_classes=3, image_size=64)
    path = tmp_path / "best.pt"
    torch.save({"model": model.state_dict(), "model_config": model.config.to_dict()}, path)
    from_file = create_model(NAME, weights=str(path), **model.config.kwargs)
    assert from_file.num_classes == 3
    images = [_image(), _image(64, 40, seed=1)]
    for each in (model, from_file):
        each.eval().set_thresholds(max_det=20)  # the mask head runs on every detection
    with torch.no_grad():
        for ours, theirs in zip(from_file(images), model(images), strict=True):
            assert ours.keys() == theirs.keys() and "masks" in ours
            assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    with pytest.raises(WeightsError, match="predictor"):  # trained for 3 classes
        create_model(NAME, num_classes=5, weights=str(path), **model.config.kwargs)
    with pytest.raises(WeightsError):  # a box-only detector's file lacks the mask branch
        boxes_only = create_model("fasterrcnn-small", num_classes=3, image_size=64)
        torch.save({"model": boxes_only.state_dict()}, tmp_path / "boxes.pt")
        create_model(NAME, num_classes=3, weights=str(tmp_path / "boxes.pt"))


def _segm(detections: list[dict], targets: list[dict], masks_of) -> dict:
    """COCO ``segm`` metrics of ``detections`` whose masks are ``masks_of(detection)``."""
    evaluator = DetectionEvaluator(iou_type="segm")
    preds = [{**d, "masks": masks_of(d)} for d in detections]
    evaluator.update(preds, [{**t, "masks": t["masks"].bool()} for t in targets])
    return evaluator.compute()


def _filled_boxes(detection: dict) -> torch.Tensor:
    """Each detection's box filled in, as its mask: what a model that learned no shape has."""
    side = detection["masks"].shape[-1]
    grid = torch.arange(side) + 0.5  # pixel centres
    x1, y1, x2, y2 = detection["boxes"].unbind(1)
    cols = (grid >= x1[:, None]) & (grid <= x2[:, None])
    rows = (grid >= y1[:, None]) & (grid <= y2[:, None])
    return rows[:, :, None] & cols[:, None, :]


def _shuffled(detection: dict) -> torch.Tensor:
    """The detection's own masks handed to other detections of the image (a fixed shift)."""
    return detection["masks"][:, 0].roll(1, dims=0) >= 0.5


def test_overfitting_a_few_scenes_learns_the_shapes_masks(overfit):
    torch.manual_seed(0)
    images, targets = _scenes(8, 96)
    model = create_model(NAME, num_classes=6, image_size=96)
    overfit(model, images, targets, steps=40, lr=3e-3)
    with torch.inference_mode():
        found = model.eval()(images)
    learned = _segm(found, targets, lambda d: d["masks"][:, 0] >= 0.5)
    filled = _segm(found, targets, _filled_boxes)
    shuffled = _segm(found, targets, _shuffled)
    assert learned["map_50"] >= 0.5
    assert learned["map"] >= filled["map"] + 0.15 and learned["map"] >= 2 * shuffled["map"]
