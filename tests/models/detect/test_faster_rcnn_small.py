"""``fasterrcnn-small``: torchvision's Faster R-CNN on a small backbone, built, loaded and trained.

The builder is held to its settings (size, classes, thresholds, options, weights files)
and the detector to its purpose: trained for a short while through ``Model.train``, it
finds shapes far better than random boxes scored the same way.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import visionkit
from visionkit.data.synthetic import ShapesConfig, make_scene
from visionkit.data.synthetic.export import export_synthetic
from visionkit.errors import ConfigError, WeightsError
from visionkit.metrics.detection import DetectionEvaluator, evaluate_coco
from visionkit.models import create_model, model_info, read_state_file
from visionkit.models.detect._faster_rcnn_small import SMALL_DEFAULTS
from visionkit.models.detect._torchvision_adapter import TorchvisionDetector

NAME = "fasterrcnn-small"


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: small convolutions gain nothing from more on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _image(height: int = 48, width: int = 64, seed: int = 0) -> torch.Tensor:
    return torch.rand(3, height, width, generator=torch.Generator().manual_seed(seed))


def _scenes(count: int, side: int) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    """``count`` synthetic shape scenes as images in 0-1 and targets with labels 0..5."""
    config = ShapesConfig(imgsz=side)
    images, targets = [], []
    for index in range(count):
        scene = make_scene(0, index, config)
        images.append(torch.from_numpy(scene.image).permute(2, 0, 1).float() / 255)
        targets.append(
            {
                "boxes": torch.as_tensor(scene.boxes, dtype=torch.float32).reshape(-1, 4),
                "labels": torch.as_tensor(scene.labels - 1, dtype=torch.int64),
            }
        )
    return images, targets


def test_registered_as_a_torchvision_detector_without_pretrained_weights():
    assert model_info(NAME).task == "detect" and model_info(NAME).default_weights is None
    model = create_model(NAME)
    assert isinstance(model, TorchvisionDetector) and model.training
    assert model.num_classes == 80 and model.config.image_size == 128
    assert model.config.kwargs == {"image_size": 128}


def test_image_size_and_num_classes_are_respected():
    model = create_model(NAME, num_classes=3, image_size=128).eval()
    net = model.net
    assert model.num_classes == 3 and net.roi_heads.box_predictor.cls_score.out_features == 4
    assert net.roi_heads.box_predictor.bbox_pred.out_features == 4 * 4
    assert net.transform.min_size == (128,) and net.transform.max_size == 128
    seen = []
    net.backbone.register_forward_pre_hook(lambda _, args: seen.append(args[0].shape))
    with torch.no_grad():
        found = model([_image(24, 32)])[0]  # enlarged 4x inside to the longer side 128
    assert seen[0][-2:] == (96, 128)
    assert (found["boxes"][:, 2] <= 32).all() and (found["boxes"][:, 3] <= 24).all()


def test_thresholds_are_respected_and_labels_shifted_past_the_background():
    model = create_model(NAME, num_classes=3, image_size=64)
    post = model.net.roi_heads
    assert (post.score_thresh, post.nms_thresh, post.detections_per_img) == (0.001, 0.6, 300)
    with torch.no_grad():  # every region scores internal class 2, our class 1
        model.net.roi_heads.box_predictor.cls_score.weight.zero_()
        model.net.roi_heads.box_predictor.cls_score.bias.copy_(torch.tensor([0, 0, 9.0, 0]))
    model.eval()
    with torch.no_grad():
        many = model([_image()])[0]
        model.set_thresholds(conf=0.5, iou=0.3, max_det=4)
        few = model([_image()])[0]
    assert (post.score_thresh, post.nms_thresh, post.detections_per_img) == (0.5, 0.3, 4)
    assert len(many["boxes"]) > 4 and (many["labels"] == 1).all()
    assert 0 < len(few["boxes"]) <= 4 and (few["scores"] >= 0.5).all()
    assert (few["labels"] == 1).all()


def test_options_override_the_small_defaults_and_bad_ones_are_refused():
    model = create_model(NAME, num_classes=2, box_batch_size_per_image=32)
    assert model.net.roi_heads.fg_bg_sampler.batch_size_per_image == 32
    assert model.net.rpn._pre_nms_top_n["training"] == SMALL_DEFAULTS["rpn_pre_nms_top_n_train"]
    assert model.config.kwargs == {"image_size": 128, "box_batch_size_per_image": 32}
    with pytest.raises(ConfigError, match="rpn_batch_size_per_image"):  # lists accepted ones
        create_model(NAME, no_such_option=1)
    with pytest.raises(ConfigError, match="set_thresholds"):
        create_model(NAME, box_score_thresh=0.5)
    with pytest.raises(ConfigError, match="image_size"):
        create_model(NAME, min_size=64)
    with pytest.raises(ConfigError, match="builds its own"):
        create_model(NAME, box_head=None)
    with pytest.raises(ConfigError, match="image_size"):
        create_model(NAME, image_size=16)


def test_a_weights_file_rebuilds_the_same_detector(tmp_path):
    torch.manual_seed(0)
    model = create_model(NAME, num_classes=3, image_size=96, rpn_post_nms_top_n_test=50)
    path = tmp_path / "best.pt"
    torch.save({"model": model.state_dict(), "model_config": model.config.to_dict()}, path)
    config = model.config
    from_file = create_model(NAME, weights=str(path), **config.kwargs)
    assert from_file.num_classes == 3 and from_file.config.kwargs == config.kwargs
    images = [_image(), _image(64, 40, seed=1)]
    with torch.no_grad():
        for ours, theirs in zip(from_file.eval()(images), model.eval()(images), strict=True):
            assert all(torch.equal(ours[k], theirs[k]) for k in ("boxes", "scores", "labels"))
    assert read_state_file(path)["model_config"]["name"] == NAME
    with pytest.raises(WeightsError, match=r"roi_heads\.box_predictor"):  # trained for 3
        create_model(NAME, num_classes=5, weights=str(path), **config.kwargs)
    with pytest.raises(WeightsError, match="no pretrained"):
        create_model(NAME, weights="hf:some/repo")
    with pytest.raises(ConfigError, match="no pretrained"):  # the registry says so
        create_model(NAME, weights="DEFAULT")


def test_overfitting_a_few_images_finds_their_boxes(overfit):
    torch.manual_seed(0)
    images, targets = _scenes(8, 96)
    model = create_model(NAME, num_classes=6, image_size=96)
    overfit(model, images, targets, steps=40, lr=3e-3)
    evaluator = DetectionEvaluator()
    with torch.inference_mode():
        evaluator.update(model.eval()(images), targets)
    assert evaluator.compute()["map_50"] >= 0.5


def _random_boxes_map50(dataset: dict, per_image: int, seed: int) -> float:
    """mAP50 of ``per_image`` random boxes of random classes and scores on each image."""
    rng = np.random.default_rng(seed)
    categories = [c["id"] for c in dataset["categories"]]
    results = []
    for image in dataset["images"]:
        width, height = image["width"], image["height"]
        x1, x2 = np.sort(rng.uniform(0, width, (2, per_image)), axis=0)
        y1, y2 = np.sort(rng.uniform(0, height, (2, per_image)), axis=0)
        for box in zip(x1, y1, x2 - x1, y2 - y1, strict=True):
            results.append(
                {
                    "image_id": image["id"],
                    "category_id": int(rng.choice(categories)),
                    "bbox": [float(v) for v in box],
                    "score": float(rng.uniform()),
                }
            )
    return evaluate_coco(dataset, results)["map_50"]


@pytest.mark.slow
def test_training_briefly_detects_shapes_far_better_than_random_boxes(tmp_path):
    data = export_synthetic(
        tmp_path / "shapes", kind="shapes", format="coco", train=200, val=50, imgsz=128,
        seed=0, workers=1,
    )  # fmt: skip
    model = visionkit.Model(NAME)
    model.train(
        data=data, epochs=10, batch=8, imgsz=128, project=tmp_path, workers=0, quiet=True,
        optimizer="adamw", lr=2e-3, weight_decay=1e-4, warmup_epochs=1, seed=0, device="cpu",
    )  # fmt: skip
    found = model.val(data=data, device="cpu", project=tmp_path)["map_50"]
    baseline = _random_boxes_map50(json.loads((data / "val.json").read_text()), 100, seed=0)
    assert baseline < 0.02
    assert found >= baseline + 0.05
