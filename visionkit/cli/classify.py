"""``visionkit classify train|val|predict``: image classification from the command line.

Each mode is one call on :class:`visionkit.Model`, so the CLI and the Python API run the
same code; keys the user leaves out keep the library's defaults.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from visionkit.cli._options import (
    BATCH,
    COLOUR,
    DEVICE,
    FLIP,
    JSON,
    MODEL,
    RUN,
    SETTINGS,
    WEIGHTS,
)
from visionkit.cli._parsing import Option, add_group, add_mode, given, parse_bool, parse_pair
from visionkit.cli._tables import format_table, to_json

_TRAIN = [
    Option("data", "image folder, dataset file or synthetic name (shapes-shortcut)", required=True),
    MODEL,
    WEIGHTS,
    *RUN,
    Option("strategy", "full, linear, partial:N or lora:R"),
    Option("teacher", "model or checkpoint to distil from"),
    Option("distill", "soft or hard distillation", choices=("soft", "hard")),
    Option("alpha", "weight of the distillation term", float),
    Option("tau", "soft distillation temperature", float),
    FLIP,
    Option("crop_scale", "random crop area range, e.g. 0.5,1", parse_pair),
    COLOUR,
    Option("cache", "linear strategy: train the head on features extracted once", parse_bool),
    *SETTINGS,
]


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``classify`` and its modes to the top-level ``commands``."""
    modes = add_group(commands, "classify", "Image classification: train, evaluate, predict.")
    add_mode(modes, "train", _train, "train a classifier into runs/classify/<name>", _TRAIN)
    add_mode(
        modes,
        "val",
        _val,
        "evaluate a classifier on one split of a dataset",
        [
            Option("data", "image folder or dataset file", required=True),
            MODEL,
            Option("split", "split to evaluate"),
            BATCH,
            DEVICE,
            JSON,
        ],
    )
    add_mode(
        modes,
        "predict",
        _predict,
        "classify images: a file, a folder or a glob",
        [
            Option("source", "image file, folder or glob", required=True),
            MODEL,
            BATCH,
            DEVICE,
            Option("save", "write annotated images to `out` (true/false)", parse_bool),
            Option("out", "folder for annotated images (default runs/classify/predict)"),
            JSON,
        ],
    )


def _model(kwargs: dict):
    from visionkit.api import Model

    return Model(kwargs.pop("model", "cnn-small"), weights=kwargs.pop("weights", None))


def _train(args: argparse.Namespace) -> int:
    kwargs = given(args)
    result = _model(kwargs).train(**kwargs)
    if os.environ.get("RANK", "0") == "0":  # torchrun: the main process speaks for all
        print(f"best {result.best_fitness:.4f} at epoch {result.best_epoch}: {result.best_path}")
    return 0


def _val(args: argparse.Namespace) -> int:
    kwargs = given(args, drop=("json",))
    metrics = _model(kwargs).val(**kwargs)
    if getattr(args, "json", False):
        print(to_json(metrics))
        return 0
    scalars = [(key, value) for key, value in metrics.items() if isinstance(value, float)]
    print(format_table(["metric", "value"], scalars))
    return 0


def _predict(args: argparse.Namespace) -> int:
    kwargs = given(args, drop=("json", "save", "out"))
    results = _model(kwargs).predict(kwargs.pop("source"), **kwargs)
    out = Path(getattr(args, "out", "runs/classify/predict"))
    for index, result in enumerate(results):
        if getattr(args, "save", False):
            result.save(out / f"{index:05d}_{Path(str(result.path or 'array')).stem}.png")
    if getattr(args, "json", False):
        print(to_json({"predictions": [result.to_json() for result in results]}))
        return 0
    rows = [[str(r.path), r.name, r.top1conf] for r in results]
    print(format_table(["image", "class", "confidence"], rows))
    if getattr(args, "save", False):
        print(f"annotated images in {out}")
    return 0
