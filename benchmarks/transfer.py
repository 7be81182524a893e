"""Transfer learning on synthetic shapes: a pretrained backbone against training from scratch.

Usage:
    python benchmarks/transfer.py [--source-per-class 1000] [--target-per-class 20]
        [--val-per-class 100] [--epochs 15] [--lr 0.01] [--seed 0] [--keep DIR]

The lectures' claim, measured: features learnt on one task let a new task be learnt from
few labels. ``cnn-small`` with max-pooling stages (the default strided ones stay at chance
on these shapes of random colours, and then there is nothing to transfer) is trained on
``shapes-shortcut`` circles, squares and triangles with plenty of labels; its checkpoint
is then transferred to hexagons, stars and crosses with 20 labels per class, under each
strategy and the same budget (epochs, batch, learning rate), against the same
architecture trained from scratch. Both tasks are drawn with cue strength 1/6, so the
background hue says nothing about the class and only the outline does.

Prints one row per strategy: trainable and total parameters (as the run records them in
``metrics.json``), validation accuracy after the last epoch, and seconds. Data and runs go
to a temporary folder unless ``--keep`` names one. About 70-90 s on two CPU cores.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import visionkit
from visionkit.data.synthetic import CATEGORIES
from visionkit.data.synthetic.export import export_synthetic

SOURCE_CLASSES = ("circle", "square", "triangle")
TARGET_CLASSES = ("hexagon", "star", "cross")
STRATEGIES = ("scratch", "linear", "lora:8", "partial:1", "full")
"""``scratch`` is strategy ``full`` from random weights; the others start from the source."""

MODEL, MODEL_OPTIONS = "cnn-small", {"downsample": "max"}
# Flips only: a shape's class survives any flip, and on short schedules crops and colour
# jitter slow the source run down more than they help.
AUGMENT = {"flip": 0.5, "crop_scale": (1.0, 1.0), "colour": False}
SOURCE_TRAINING = {"epochs": 8, "batch": 32, "lr": 2e-3}
TARGET_BATCH = 16


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source-per-class", type=int, default=1000, help="source labels")
    parser.add_argument("--target-per-class", type=int, default=20, help="target labels")
    parser.add_argument("--val-per-class", type=int, default=100, help="target val images")
    parser.add_argument("--epochs", type=int, default=15, help="epochs of every target run")
    # One rate for all: high enough for the linear probe and LoRA to converge in 15 epochs;
    # full fine-tuning would rather have less (at 3e-3 it keeps more of the source).
    parser.add_argument("--lr", type=float, default=1e-2, help="lr of every target run")
    parser.add_argument("--imgsz", type=int, default=32, help="image side in pixels")
    parser.add_argument("--seed", type=int, default=0, help="data and training seed")
    parser.add_argument("--keep", type=Path, help="write data and runs here, and keep them")
    return parser


def make_task(out: Path, classes: Sequence[str], train: int, val: int, args: Any) -> Path:
    """A balanced image folder of ``classes`` without the background cue."""
    return export_synthetic(
        out,
        kind="shapes-shortcut",
        format="folder",
        classes=classes,
        per_class=True,
        train=train,
        val=val,
        imgsz=args.imgsz,
        seed=args.seed,
        strength=1 / len(CATEGORIES),  # every background hue equally likely for every class
    )


def transfer(
    strategy: str, source: Path, data: Path, args: Any, settings: dict[str, Any]
) -> dict[str, Any]:
    """Train one strategy on the target task; its parameter counts, accuracy and seconds."""
    start = time.perf_counter()
    scratch = strategy == "scratch"
    model = visionkit.Model(MODEL, **MODEL_OPTIONS) if scratch else visionkit.Model(source)
    result = model.train(
        data=data,
        strategy="full" if scratch else strategy,
        epochs=args.epochs,
        batch=TARGET_BATCH,
        lr=args.lr,
        name=strategy.replace(":", "-"),
        **settings,
    )
    seconds = time.perf_counter() - start
    counts = json.loads((result.run_dir / "metrics.json").read_text())["parameters"]
    return {**counts, "accuracy": result.metrics["accuracy_top1"], "seconds": seconds}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="visionkit-transfer-") as temporary:
        root = args.keep or Path(temporary)
        settings = {"imgsz": args.imgsz, "seed": args.seed, "project": root / "runs"}
        settings |= {"workers": 0, "quiet": True, **AUGMENT}
        source_data = make_task(root / "source", SOURCE_CLASSES, args.source_per_class, 50, args)
        target_data = make_task(
            root / "target", TARGET_CLASSES, args.target_per_class, args.val_per_class, args
        )
        start = time.perf_counter()
        source = visionkit.Model(MODEL, **MODEL_OPTIONS).train(
            data=source_data, name="source", **SOURCE_TRAINING, **settings
        )
        print(
            f"source: {MODEL} on {', '.join(SOURCE_CLASSES)} with {args.source_per_class} "
            f"labels each: val accuracy {source.metrics['accuracy_top1']:.3f} "
            f"in {time.perf_counter() - start:.1f} s"
        )
        print(
            f"target: {', '.join(TARGET_CLASSES)} with {args.target_per_class} labels each, "
            f"{args.val_per_class} val each, {args.epochs} epochs at lr {args.lr:g}\n"
        )
        print(
            f"{'strategy':<10} {'trainable':>10} {'total':>8} {'share':>7} {'accuracy':>9} {'s':>6}"
        )
        for strategy in STRATEGIES:
            row = transfer(strategy, source.best_path, target_data, args, settings)
            share = 100 * row["trainable"] / row["total"]
            print(
                f"{strategy:<10} {row['trainable']:>10,} {row['total']:>8,} {share:>6.1f}% "
                f"{row['accuracy']:>9.3f} {row['seconds']:>6.1f}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
