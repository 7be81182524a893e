"""Fixtures of the detector tests: one torch thread, synthetic scenes, a plain training
loop and mAP50 against random boxes."""

from __future__ import annotations

import pytest
import torch

from visionkit.data.synthetic import ShapesConfig, make_scene
from visionkit.metrics.detection import DetectionEvaluator


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread(one_torch_thread: None) -> None:
    """Every test here runs on one torch thread (see the root ``one_torch_thread``)."""


def _target(boxes, labels) -> dict[str, torch.Tensor]:
    return {"boxes": torch.tensor(boxes, dtype=torch.float32), "labels": torch.tensor(labels)}


def _scenes(seed: int, count: int, side: int):
    """Synthetic shape scenes (up to 4 objects of 12-40 % of the side) as images and targets."""
    config = ShapesConfig(imgsz=side, min_size=0.12, max_size=0.4, max_objects=4)
    scenes = [make_scene(seed, index, config) for index in range(count)]
    images = [torch.from_numpy(s.image).permute(2, 0, 1).float() / 255 for s in scenes]
    return images, [_target(s.boxes.tolist(), (s.labels - 1).tolist()) for s in scenes]


def _map50(model, images, targets) -> tuple[float, float]:
    """COCO mAP50 of ``model`` and of 100 random boxes an image, by the same evaluator."""
    generator = torch.Generator().manual_seed(0)
    found, guessed = DetectionEvaluator(), DetectionEvaluator()
    with torch.no_grad():
        for start in range(0, len(images), 10):
            found.update(model.eval()(images[start : start + 10]), targets[start : start + 10])
    for image, target in zip(images, targets, strict=True):
        side = image.shape[-1]
        corner = torch.rand(100, 2, generator=generator) * side
        size = torch.rand(100, 2, generator=generator) * side / 2
        boxes = torch.cat([corner, (corner + size).clamp(max=side)], 1)
        scores, labels = torch.rand(100, generator=generator), torch.randint(6, (100,))
        guessed.update([{"boxes": boxes, "scores": scores, "labels": labels}], [target])
    return found.compute()["map_50"], guessed.compute()["map_50"]


def _flipped(image, target):
    boxes = target["boxes"].clone()
    boxes[:, [0, 2]] = image.shape[-1] - target["boxes"][:, [2, 0]]
    return image.flip(-1), {"boxes": boxes, "labels": target["labels"]}


def _fit(model, images, targets, epochs: int, batch: int = 16, flip: bool = False) -> None:
    """AdamW with a one-cycle schedule; with ``flip`` each image is flipped left-right half
    the time (without, images stay unchanged, so R-CNN's proposal cache answers from the
    second epoch on, as R-CNN computed its proposals once)."""
    steps = epochs * (len(images) // batch)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, 1e-2, steps, pct_start=0.15)
    model.train()
    for _ in range(epochs):
        for order in torch.randperm(len(images))[: steps // epochs * batch].split(batch):
            pairs = [
                _flipped(images[i], targets[i])
                if flip and torch.rand(()) < 0.5
                else (images[i], targets[i])
                for i in order.tolist()
            ]
            loss = sum(model([p[0] for p in pairs], [p[1] for p in pairs]).values())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()


def _overfit(model, images, targets, steps: int, lr: float) -> list[float]:
    """Train on all of ``images`` at every step (AdamW without weight decay, one-cycle
    schedule peaking at ``lr``); returns the loss of each step."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, lr, total_steps=steps)
    losses = []
    for _ in range(steps):
        loss = sum(model(images, targets).values())
        losses.append(loss.item())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    return losses


@pytest.fixture
def target():
    """``target(boxes, labels)``: a detection target dict from lists."""
    return _target


@pytest.fixture
def scenes():
    """``scenes(seed, count, side)``: images and targets of synthetic shape scenes."""
    return _scenes


@pytest.fixture
def map50_and_random():
    """``map50_and_random(model, images, targets)``: the model's mAP50 and random boxes'."""
    return _map50


@pytest.fixture
def fit():
    """``fit(model, images, targets, epochs, batch=16, flip=False)``: a plain training loop."""
    return _fit


@pytest.fixture
def overfit():
    """``overfit(model, images, targets, steps, lr)``: full-batch training; the step losses."""
    return _overfit
