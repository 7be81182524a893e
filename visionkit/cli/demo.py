"""``visionkit demo``: the main job on built-in synthetic data, end to end, offline.

Writes a synthetic detection dataset, checks it, and draws a grid of annotated samples
that a person can open. Runs are deterministic, so running it again rewrites the same
files.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from visionkit.cli._parsing import Option, add_options, given


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``demo`` to the top-level ``commands``."""
    parser = commands.add_parser("demo", help="run the built-in demo on synthetic data")
    add_options(
        parser,
        [
            Option("project", "folder the demo writes into (default runs/demo)"),
            Option("train", "number of training images", int),
            Option("seed", "generator seed", int),
        ],
    )
    parser.set_defaults(handler=_demo)


def run_demo(project: str | Path = "runs/demo", train: int = 200, seed: int = 0) -> Path:
    """Make, check and preview a synthetic ``shapes`` dataset; return the preview PNG."""
    from visionkit.data.check import check_dataset
    from visionkit.data.synthetic.export import export_synthetic
    from visionkit.report.dataset import preview_dataset

    project = Path(project)
    dataset = export_synthetic(
        project / "shapes",
        kind="shapes",
        format="coco",
        train=train,
        val=max(1, train // 4),
        seed=seed,
    )
    print(f"dataset   {dataset}")
    faults = check_dataset(dataset)
    print(f"check     {len(faults)} problem(s)")
    for fault in faults:
        print(f"          {fault}")
    grid = preview_dataset(dataset, out=project / "samples.png", split="train", n=16, seed=seed)
    print(f"samples   {grid}")
    return grid


def _demo(args: argparse.Namespace) -> int:
    run_demo(**given(args))
    return 0
