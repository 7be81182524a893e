"""Semantic segmentation metrics: visionkit's mIoU against torchmetrics' on the same masks.

Usage:
    python benchmarks/segmentation_metrics.py [--masks 1000] [--size 256] [--seed 0]

Ground truth is the semantic map of ``shapes`` scenes (background and six shape classes,
with an ignored band along one edge); predictions are the same maps with a share of the
objects relabelled, moved or dropped and speckle noise, so every IoU is strictly between
0 and 1. Both libraries stream the same batches of 50 label maps:

- visionkit: :class:`~visionkit.metrics.segmentation.SegmentationMetrics`, timed twice,
  with Boundary IoU (its default) and with ``boundary_dilation=None`` (IoU family only);
- torchmetrics: ``MulticlassJaccardIndex(average="macro", ignore_index=255)``, with its
  input validation (the default) and without.

Imports happen before the clock starts. The table gives seconds per 1,000 masks and the
mIoU of each; exit status 1 when visionkit's mIoU differs from torchmetrics' by more than
1e-6.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence

import numpy as np
import torch

TOLERANCE = 1e-6
BATCH = 50
IGNORE = 255
NUM_CLASSES = 7  # background and the six shapes


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--masks", type=int, default=1000, help="label maps in the set")
    parser.add_argument("--size", type=int, default=256, help="side of each map in pixels")
    parser.add_argument("--seed", type=int, default=0, help="scene and noise seed")
    return parser


def make_masks(count: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(targets, preds)``: ``uint8 [count, size, size]`` label maps (see the module doc)."""
    from visionkit.data.synthetic.scenes import ShapesConfig, make_scene

    rng = np.random.default_rng(seed)
    config = ShapesConfig(imgsz=size)
    targets = np.empty((count, size, size), np.uint8)
    preds = np.empty_like(targets)
    for index in range(count):
        scene = make_scene(seed, index, config)
        target = scene.semantic.copy()  # category ids 1-6 on background 0
        pred = np.zeros((size, size), np.uint8)
        for mask, label in zip(scene.masks, scene.labels, strict=True):
            if rng.random() < 0.1:
                continue  # a missed object
            moved = np.roll(mask, tuple(rng.integers(-3, 4, size=2)), axis=(0, 1))
            pred[moved] = rng.integers(1, NUM_CLASSES) if rng.random() < 0.1 else label
        speckle = rng.random((size, size)) < 0.02
        pred[speckle] = rng.integers(0, NUM_CLASSES, size=int(speckle.sum()))
        target[:, : size // 32] = IGNORE
        targets[index], preds[index] = target, pred
    return targets, preds


def visionkit_miou(boundary: bool) -> Callable[[np.ndarray, np.ndarray], float]:
    from visionkit.metrics.segmentation import SegmentationMetrics

    def run(targets: np.ndarray, preds: np.ndarray) -> float:
        dilation = 0.02 if boundary else None
        metrics = SegmentationMetrics(NUM_CLASSES, ignore_index=IGNORE, boundary_dilation=dilation)
        for start in range(0, len(targets), BATCH):
            metrics.update(preds[start : start + BATCH], targets[start : start + BATCH])
        return metrics.compute()["miou"]

    return run


def torchmetrics_miou(validate_args: bool) -> Callable[[np.ndarray, np.ndarray], float]:
    from torchmetrics.classification import MulticlassJaccardIndex

    def run(targets: np.ndarray, preds: np.ndarray) -> float:
        metric = MulticlassJaccardIndex(
            NUM_CLASSES, average="macro", ignore_index=IGNORE, validate_args=validate_args
        )
        for start in range(0, len(targets), BATCH):
            batch = slice(start, start + BATCH)
            pred, target = torch.from_numpy(preds[batch]), torch.from_numpy(targets[batch])
            metric.update(pred.long(), target.long())
        return float(metric.compute())

    return run


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    torch.set_num_threads(1)
    targets, preds = make_masks(args.masks, args.size, args.seed)
    print(f"{args.masks} label maps of {args.size} px, {NUM_CLASSES} classes, 1 thread")
    runs = {
        "visionkit (IoU + Boundary IoU)": visionkit_miou(boundary=True),
        "visionkit (IoU family only)": visionkit_miou(boundary=False),
        "torchmetrics MulticlassJaccardIndex": torchmetrics_miou(validate_args=True),
        "torchmetrics, validate_args=False": torchmetrics_miou(validate_args=False),
    }
    results = {}
    for name, run in runs.items():
        start = time.perf_counter()
        miou = run(targets, preds)
        results[name] = (1000 * (time.perf_counter() - start) / args.masks, miou)
    print(f"\n{'library':<38} {'s / 1000 masks':>15} {'mIoU':>12}")
    for name, (seconds, miou) in results.items():
        print(f"{name:<38} {seconds:>15.2f} {miou:>12.8f}")
    (_, with_boundary), (_, ours), *peers = results.values()
    difference = max(abs(ours - theirs) for _, theirs in peers)
    same = difference <= TOLERANCE and with_boundary == ours
    verdict = "PASS" if same else "FAIL"
    print(f"\n|mIoU difference| = {difference:.2e}: {verdict} (<= {TOLERANCE:g})")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
