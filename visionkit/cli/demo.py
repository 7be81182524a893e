"""``visionkit demo``: the main job on built-in synthetic data, end to end, offline.

Writes a synthetic detection dataset, checks it and draws a grid of annotated samples,
then trains the default detector (``yolo-n``) on it briefly, evaluates it, and writes an
HTML report of the run (training curves, PR curves, confusion matrix, predictions) that a
person can open. The data and the training are seeded, so a second run repeats the first.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from visionkit.cli._parsing import Option, add_options, given

DEMO_IMGSZ = 256
"""Side of the demo's images and of the detector's input."""

DEMO_EPOCHS = 10
"""Training epochs of the demo's detector: a few minutes on two CPU cores."""


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``demo`` to the top-level ``commands``."""
    parser = commands.add_parser("demo", help="run the built-in demo on synthetic data")
    add_options(
        parser,
        [
            Option("project", "folder the demo writes into (default runs/demo)"),
            Option("train", "number of training images", int),
            Option("epochs", "training epochs of the detector", int),
            Option("seed", "generator seed", int),
        ],
    )
    parser.set_defaults(handler=_demo)


def run_demo(
    project: str | Path = "runs/demo", train: int = 400, epochs: int = DEMO_EPOCHS, seed: int = 0
) -> Path:
    """Make, check and preview a synthetic ``shapes`` dataset, train ``yolo-n`` on it, and
    write the run's report; return the report's path."""
    from visionkit.api import Model
    from visionkit.data.check import check_dataset
    from visionkit.data.synthetic.export import export_synthetic
    from visionkit.report.dataset import preview_dataset
    from visionkit.report.run import write_run_report

    project = Path(project)
    dataset = export_synthetic(
        project / "shapes",
        kind="shapes",
        format="coco",
        train=train,
        val=max(1, train // 4),
        imgsz=DEMO_IMGSZ,
        seed=seed,
    )
    print(f"dataset   {dataset}")
    faults = check_dataset(dataset)
    print(f"check     {len(faults)} problem(s)")
    for fault in faults:
        print(f"          {fault}")
    grid = preview_dataset(dataset, out=project / "samples.png", split="train", n=16, seed=seed)
    print(f"samples   {grid}")
    result = Model("yolo-n").train(
        data=dataset, epochs=epochs, imgsz=DEMO_IMGSZ, project=project, name="yolo-n",
        exist_ok=True, seed=seed, mosaic=0.0,  # a short run learns faster from whole images
    )  # fmt: skip
    report = write_run_report(result.run_dir)
    print(f"report    {report}")
    return report


def _demo(args: argparse.Namespace) -> int:
    run_demo(**given(args))
    return 0
