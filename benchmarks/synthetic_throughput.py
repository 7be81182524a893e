"""Throughput of the synthetic data generators, in images per second on one process.

Usage:
    python benchmarks/synthetic_throughput.py [--n 500] [--imgsz 256] [--seed 0]

Prints one row per generator (``shapes-video`` counts frames); the target is what keeps a
training loop on a small GPU fed from one data-loader worker.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence

from visionkit.data.synthetic import (
    ShapesConfig,
    ShortcutConfig,
    VideoConfig,
    make_clip,
    make_scene,
    make_shortcut_sample,
)

TARGET = 200.0
"""Images per second each generator should reach at 256 x 256."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=500, help="images per generator")
    parser.add_argument("--imgsz", type=int, default=256, help="image side in pixels")
    parser.add_argument("--seed", type=int, default=0, help="generator seed")
    return parser


def _rate(make: Callable[[int], object], calls: int, images_per_call: int) -> tuple[int, float]:
    """Time ``calls`` calls of ``make(index)``; return (images made, seconds taken)."""
    make(calls)  # warm up caches and lazy imports outside the timing
    start = time.perf_counter()
    for index in range(calls):
        make(index)
    return calls * images_per_call, time.perf_counter() - start


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    shapes, shortcut = ShapesConfig(imgsz=args.imgsz), ShortcutConfig(imgsz=args.imgsz)
    video = VideoConfig(imgsz=args.imgsz)
    runs = {
        "shapes": (lambda i: make_scene(args.seed, i, shapes), args.n, 1),
        "shapes-shortcut": (lambda i: make_shortcut_sample(args.seed, i, shortcut), args.n, 1),
        "shapes-video": (
            lambda i: make_clip(args.seed, i, video),
            max(1, args.n // video.frames),
            video.frames,
        ),
    }
    print(f"{'generator':<16} {'images':>7} {'seconds':>8} {'images/s':>9} {'target':>7}")
    for name, (make, calls, per_call) in runs.items():
        images, seconds = _rate(make, calls, per_call)
        print(f"{name:<16} {images:>7} {seconds:>8.2f} {images / seconds:>9.0f} {TARGET:>7.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
