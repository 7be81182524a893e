"""rcnn: regions labelled and sampled as R-CNN's fine-tuning, proposals searched once per
image, boxes regressed toward the objects, and a briefly trained model far above chance."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from visionkit.data.synthetic import ShapesConfig, make_scene
from visionkit.models import create_model
from visionkit.models.detect import _rcnn
from visionkit.ops.boxes import box_iou

SIDE = 64


@pytest.fixture
def model():
    torch.manual_seed(0)
    return create_model(
        "rcnn", num_classes=3, image_size=SIDE, width=4, batch_per_image=16, proposal_cache=2
    )


def test_regions_take_the_class_of_a_box_they_overlap_by_half(model, monkeypatch, target):
    gt = target([[4, 4, 28, 30], [30, 20, 60, 60]], [2, 0])
    proposals = torch.tensor(
        [[5, 5, 28, 30], [31, 22, 58, 60], [0, 0, 64, 64], [40, 0, 60, 15], [6, 8, 20, 24]],
        dtype=torch.float32,
    ).repeat(6, 1)  # 30 regions: 12 positives, 18 background
    monkeypatch.setattr(model, "region_proposals", lambda image: proposals)
    torch.manual_seed(0)
    regions, labels, matched = model._training_regions(torch.rand(3, SIDE, SIDE), gt)
    assert len(regions) == 16 and (labels < 3).sum() == 4  # 25 % of 16 positives
    overlap, best = box_iou(regions, gt["boxes"]).max(1)
    positive = labels < 3
    assert (overlap[positive] >= 0.5).all() and (overlap[~positive] < 0.5).all()
    assert torch.equal(labels[positive], gt["labels"][best[positive]])
    assert torch.equal(matched[positive], gt["boxes"][best[positive]])


def test_ground_truth_boxes_are_regions_too_and_empty_images_train(model, monkeypatch, target):
    monkeypatch.setattr(model, "region_proposals", lambda image: torch.zeros(0, 4))
    gt = target([[4, 4, 28, 30]], [1])
    regions, labels, _ = model._training_regions(torch.rand(3, SIDE, SIDE), gt)
    assert regions.tolist() == gt["boxes"].tolist() and labels.tolist() == [1]
    # An image without objects trains its classifier on background only.
    background = torch.tensor([[0.0, 0.0, 20.0, 20.0], [10.0, 5.0, 40.0, 30.0]])
    monkeypatch.setattr(model, "region_proposals", lambda image: background)
    losses = model.train()([torch.rand(3, 48, SIDE)], [target([], [])])
    assert set(losses) == {"loss_cls", "loss_box"} and losses["loss_box"] == 0
    assert losses["loss_cls"] > 0
    losses["loss_cls"].backward()
    assert model.classifier.cls_head.bias.grad[-1] < 0  # pushed toward background


def test_proposals_are_searched_once_per_image_content(model, monkeypatch):
    calls = []

    def search(pixels, **options):
        calls.append((pixels.shape, pixels.dtype, options))
        return torch.tensor([[0.0, 0.0, 8.0, 8.0]])

    monkeypatch.setattr(_rcnn, "selective_search", search)
    first, second, third = torch.rand(3, 3, 40, 50)
    model.region_proposals(first)
    model.region_proposals(first.clone())
    assert len(calls) == 1  # same pixels: the cache answers
    assert calls[0][:2] == ((40, 50, 3), np.dtype(np.uint8))
    model.region_proposals(second)
    model.region_proposals(third)  # the cache holds 2 images: `first` goes
    model.region_proposals(second)
    assert len(calls) == 3
    model.region_proposals(first)
    assert len(calls) == 4
    model.proposals = 5  # other settings, other proposals
    model.region_proposals(first)
    assert len(calls) == 5 and calls[-1][2]["max_proposals"] == 5


def test_box_regression_moves_proposals_onto_the_objects(monkeypatch, target):
    """Proposals shifted off every object (IoU about 0.6) come back as boxes that fit it."""
    torch.manual_seed(0)
    config = ShapesConfig(imgsz=SIDE, min_size=0.2, max_size=0.4, max_objects=2)
    scenes = [make_scene(0, index, config) for index in range(6)]
    images = [torch.from_numpy(s.image).permute(2, 0, 1).float() / 255 for s in scenes]
    targets = [target(s.boxes.tolist(), (s.labels - 1).tolist()) for s in scenes]
    shift = torch.tensor([0.12, -0.12, 0.12, -0.12])
    shifted = {}
    for image, target in zip(images, targets, strict=True):
        boxes = target["boxes"]
        sides = (boxes[:, 2:] - boxes[:, :2]).repeat(1, 2)
        shifted[image.data_ptr()] = torch.cat([boxes + shift * sides, boxes - shift * sides])
    monkeypatch.setattr(_rcnn.RCNN, "region_proposals", lambda self, im: shifted[im.data_ptr()])
    model = create_model("rcnn", num_classes=6, image_size=SIDE, width=8, context=0.2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(150):
        losses = model(images, targets)
        optimizer.zero_grad()
        sum(losses.values()).backward()
        optimizer.step()
    model.eval().set_thresholds(conf=0.0)
    with torch.no_grad():
        found = model(images)
    before, after = [], []
    for proposals, detections, target in zip(shifted.values(), found, targets, strict=True):
        before.append(box_iou(target["boxes"], proposals).amax(1))
        after.append(box_iou(target["boxes"], detections["boxes"]).amax(1))
    before, after = torch.cat(before), torch.cat(after)
    assert before.max() < 0.7 and after.mean() > 0.85, (before, after)


def test_it_learns_to_find_the_shapes_of_a_few_images(scenes, fit, map50_and_random):
    """Selective search, sampling, classification and regression fit 8 images (0.94 mAP50)."""
    torch.manual_seed(0)
    images, targets = scenes(0, 8, 96)
    model = create_model("rcnn", num_classes=6, image_size=96)
    fit(model, images, targets, epochs=50, batch=8)
    found, guessed = map50_and_random(model, images, targets)
    assert found > guessed + 0.6, (found, guessed)


@pytest.mark.slow
def test_trained_briefly_it_finds_unseen_shapes_far_better_than_random_boxes(
    scenes, fit, map50_and_random
):
    """600 images, 4 epochs (4 min on one busy thread): mAP50 0.25 on 50 unseen images,
    random boxes 0.0004."""
    torch.manual_seed(0)
    model = create_model("rcnn", num_classes=6, image_size=128)
    fit(model, *scenes(0, 600, 128), epochs=4, flip=False)
    found, guessed = map50_and_random(model, *scenes(1, 50, 128))
    assert found > guessed + 0.15, (found, guessed)
