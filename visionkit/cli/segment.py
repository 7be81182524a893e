"""``visionkit segment train|val|predict``: semantic segmentation from the command line.

Each mode is one call on :class:`visionkit.Model`, so the CLI and the Python API run the
same code; keys the user leaves out keep the library's defaults. ``predict`` also serves
promptable foundation models: with a SAM model it takes point and box prompts.
"""

from __future__ import annotations

import argparse
import os

from visionkit.cli._options import (
    BATCH,
    CACHE_IMAGES,
    CLOSE_MOSAIC,
    DEVICE,
    JSON,
    MODEL,
    RUN,
    SETTINGS,
    WEIGHTS,
    WHOLE_IMAGE_AUGMENTATION,
)
from visionkit.cli._parsing import Option, add_group, add_mode, given, parse_bool
from visionkit.cli._tables import format_table, to_json
from visionkit.errors import ConfigError

DEFAULT_MODEL = "unet"
"""The model of ``train`` when none is given: the CPU-sized U-Net."""

_PROMPTS = ("points", "labels", "box", "multimask")
"""The options that only a SAM model takes."""

_SUMMARY = ("miou", "mdice", "mboundary_iou", "pixel_accuracy", "mean_accuracy", "loss")
"""The scalar metrics ``val`` prints, in order."""


def parse_points(text: str) -> list[tuple[float, float]]:
    """Parse ``"x,y;x,y..."`` into ``[(x, y), ...]`` (image pixels).

    Example:
        >>> parse_points("10,20;30.5,40")
        [(10.0, 20.0), (30.5, 40.0)]
    """
    points = []
    for pair in text.split(";"):
        values = pair.split(",")
        try:
            if len(values) != 2:
                raise ValueError
            points.append((float(values[0]), float(values[1])))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected points like 10,20;30,40 got {text!r}"
            ) from None
    return points


def parse_labels(text: str) -> list[int]:
    """Parse ``"1,0,1"`` into ``[1, 0, 1]`` (1 foreground point, 0 background point)."""
    try:
        labels = [int(value) for value in text.split(",")]
    except ValueError:
        labels = []
    if not labels or any(label not in (0, 1) for label in labels):
        raise argparse.ArgumentTypeError(f"expected 0s and 1s like 1,0,1 got {text!r}")
    return labels


def parse_box(text: str) -> tuple[float, float, float, float]:
    """Parse ``"x0,y0,x1,y1"`` into a box in image pixels."""
    values = text.split(",")
    try:
        if len(values) != 4:
            raise ValueError
        x0, y0, x1, y1 = (float(value) for value in values)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a box like 10,20,50,60 got {text!r}") from None
    return x0, y0, x1, y1


_TRAIN = [
    Option("data", "PNG-mask, COCO or YOLO-segment dataset, or the name shapes", required=True),
    MODEL,
    WEIGHTS,
    *RUN,
    Option("loss", "ce, dice or ce+dice", choices=("ce", "dice", "ce+dice")),
    Option("mosaic", "probability of a sample of four images at half size (default 0)", float),
    CLOSE_MOSAIC,
    *WHOLE_IMAGE_AUGMENTATION,
    CACHE_IMAGES,
    *SETTINGS,
]


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``segment`` and its modes to the top-level ``commands``."""
    modes = add_group(commands, "segment", "Semantic segmentation: train, evaluate, predict.")
    add_mode(modes, "train", _train, "train a segmenter into runs/segment/<name>", _TRAIN)
    add_mode(
        modes,
        "val",
        _val,
        "evaluate a segmenter on one split of a dataset",
        [
            Option("data", "dataset to evaluate the model on", required=True),
            MODEL,
            Option("split", "split to evaluate"),
            BATCH,
            DEVICE,
            Option("save_dir", "write val_metrics.json, the per-class table and plots here"),
            JSON,
        ],
    )
    add_mode(
        modes,
        "predict",
        _predict,
        "segment images: a file, a folder or a glob (SAM models take prompts)",
        [
            Option("source", "image or video file, folder or glob", required=True),
            MODEL,
            BATCH,
            DEVICE,
            Option("save", "write <stem>.png masks and overlays to `out` (true/false)", parse_bool),
            Option("out", "folder for saved masks (default runs/segment/predict)"),
            Option("points", "SAM: point prompts x,y;x,y... in image pixels", parse_points),
            Option("labels", "SAM: a label per point, 1 foreground, 0 background", parse_labels),
            Option("box", "SAM: a box prompt x0,y0,x1,y1 in image pixels", parse_box),
            Option("multimask", "SAM: three candidate masks per prompt (true/false)", parse_bool),
            JSON,
        ],
    )


def _model(kwargs: dict):
    from visionkit.api import Model

    model = kwargs.pop("model", DEFAULT_MODEL)
    return Model(model, task="segment", weights=kwargs.pop("weights", None))


def _train(args: argparse.Namespace) -> int:
    kwargs = given(args)
    result = _model(kwargs).train(**kwargs)
    if os.environ.get("RANK", "0") == "0":  # torchrun: the main process speaks for all
        print(f"best mIoU {result.best_fitness:.4f} at epoch {result.best_epoch}: "
              f"{result.best_path}")  # fmt: skip
    return 0


def _val(args: argparse.Namespace) -> int:
    kwargs = given(args, drop=("json",))
    metrics = _model(kwargs).val(**kwargs)
    if getattr(args, "json", False):
        print(to_json(metrics))
        return 0
    print(format_table(["metric", "value"], [(key, float(metrics[key])) for key in _SUMMARY]))
    print()
    columns = ("iou_per_class", "dice_per_class", "boundary_iou_per_class")
    rows = [
        [name, *(float(metrics[key][i]) for key in columns)]
        for i, name in enumerate(metrics["names"])
    ]
    print(format_table(["class", "IoU", "Dice", "boundary IoU"], rows))
    return 0


def _predict(args: argparse.Namespace) -> int:
    kwargs = given(args, drop=("json",))
    spec = kwargs.get("model", DEFAULT_MODEL)
    from visionkit.models.foundation import is_sam_spec

    if is_sam_spec(spec):  # promptable: the same prompts on every image
        return _predict_prompts(kwargs, json=getattr(args, "json", False))
    prompts = [key for key in _PROMPTS if key in kwargs]
    if prompts:
        raise ConfigError(
            f"{', '.join(prompts)} are prompts of SAM models; {spec} takes none", field=prompts[0]
        )
    results = _model(kwargs).predict(kwargs.pop("source"), **kwargs)
    if getattr(args, "json", False):
        print(to_json({"predictions": [result.to_json() for result in results]}))
        return 0
    rows = [[str(r.path), r.frame, _class_names(r)] for r in results]
    print(format_table(["source", "frame", "classes"], rows))
    if kwargs.get("save"):
        from visionkit.api._segment import PREDICT_OUT

        print(f"class masks (<stem>.png) and overlays in {kwargs.get('out', PREDICT_OUT)}")
    return 0


def _class_names(result) -> str:
    """The names of the classes a result's mask holds, in index order."""
    import numpy as np

    return ", ".join(result.names[k] for k in np.unique(result.mask).tolist())


def _predict_prompts(kwargs: dict, *, json: bool) -> int:
    """SAM: masks for the prompts in every image, by
    :func:`visionkit.api._sam.predict_prompts`; one row (or JSON record) per image."""
    from visionkit.api._sam import DEFAULT_OUT, predict_prompts

    options = {key: kwargs[key] for key in ("device", "save", "out", "multimask") if key in kwargs}
    results = predict_prompts(
        kwargs["model"], kwargs["source"], points=kwargs.get("points"),
        point_labels=kwargs.get("labels"), box=kwargs.get("box"), **options,
    )  # fmt: skip
    records = [
        {"best": r.best, "scores": r.scores, "boxes": r.boxes,
         "pixels": [int(mask.sum()) for mask in r.masks]}
        for r in results
    ]  # fmt: skip
    if json:
        print(to_json({"predictions": records}))
        return 0
    rows = [[i, len(r["scores"]), r["best"], float(r["scores"][r["best"]]),
             r["pixels"][r["best"]]] for i, r in enumerate(records)]  # fmt: skip
    print(format_table(["image", "masks", "best", "predicted IoU", "pixels"], rows))
    if kwargs.get("save"):
        print(f"masks and overlays in {kwargs.get('out', DEFAULT_OUT)}")
    return 0
