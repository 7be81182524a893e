"""``visionkit data make|convert|check|show``: datasets on disk, without a model."""

from __future__ import annotations

import argparse
import sys

from visionkit.cli._parsing import Option, add_group, add_mode, given, parse_bool
from visionkit.data.formats import FORMAT_NAMES as FORMATS

_SOURCE = [
    Option(
        "data",
        "dataset file or folder (COCO json, YOLO data.yaml, VOC/folder/masks root)",
        required=True,
    ),
    Option("format", "format of `data` (detected when left out)", choices=FORMATS),
    Option("images", "image folder, for COCO files whose file_names are not relative to the json"),
]


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``data`` and its four subcommands to the top-level ``commands``."""
    modes = add_group(
        commands, "data", "Datasets on disk: make synthetic ones, convert, check and preview."
    )
    add_mode(
        modes,
        "make",
        _make,
        "write a synthetic dataset to disk in any format",
        [
            Option("out", "folder to write the dataset into", required=True),
            Option("kind", "generator: shapes or shapes-shortcut"),
            Option("format", "dataset format to write", choices=FORMATS),
            Option("train", "number of training images", int),
            Option("val", "number of validation images", int),
            Option("imgsz", "image side in pixels", int),
            Option("seed", "generator seed: the same seed writes the same dataset", int),
            Option(
                "strength",
                "shapes-shortcut: how often the background cue agrees with the class",
                float,
            ),
            Option("min_objects", "shapes: fewest objects per image", int),
            Option("max_objects", "shapes: most objects per image", int),
            Option("min_size", "shapes: smallest object side, a fraction of imgsz", float),
            Option("max_size", "shapes: largest object side, a fraction of imgsz", float),
            Option("workers", "worker processes", int),
        ],
    )
    add_mode(
        modes,
        "convert",
        _convert,
        "convert a dataset between formats (every split)",
        [
            *_SOURCE,
            Option("out", "folder to write the converted dataset into", required=True),
            Option("to", "format to write", choices=FORMATS, required=True),
        ],
    )
    add_mode(
        modes,
        "check",
        _check,
        "validate a dataset; exit 2 when anything is wrong",
        [
            *_SOURCE,
            Option("split", "check this split only"),
            Option("verify", "decode every image to find truncated files (true/false)", parse_bool),
        ],
    )
    add_mode(
        modes,
        "show",
        _show,
        "draw annotated samples into a PNG grid",
        [
            *_SOURCE,
            Option("out", "PNG file to write"),
            Option("split", "split to sample from"),
            Option("n", "number of samples", int),
            Option("seed", "which samples", int),
        ],
    )


SCENE_OPTIONS = ("min_objects", "max_objects", "min_size", "max_size")
"""``make`` options that set the ``shapes`` scene generator (``scene_options``)."""


def _make(args: argparse.Namespace) -> int:
    from visionkit.data.synthetic.export import export_synthetic

    kwargs = given(args)
    scene = {key: kwargs.pop(key) for key in SCENE_OPTIONS if key in kwargs}
    root = export_synthetic(kwargs.pop("out"), scene_options=scene or None, **kwargs)
    print(f"wrote {root}")
    return 0


def _convert(args: argparse.Namespace) -> int:
    from visionkit.data.convert import convert_dataset

    kwargs = given(args)
    written = convert_dataset(kwargs.pop("data"), kwargs.pop("out"), kwargs.pop("to"), **kwargs)
    for path in written:
        print(f"wrote {path}")
    return 0


def _check(args: argparse.Namespace) -> int:
    from visionkit.data.check import check_dataset

    kwargs = given(args)
    if "verify" in kwargs:
        kwargs["verify_images"] = kwargs.pop("verify")
    path = kwargs.pop("data")
    faults = check_dataset(path, **kwargs)
    for fault in faults:
        print(fault)
    if faults:
        print(f"{len(faults)} problem(s) found in {path}", file=sys.stderr)
        return 2
    print(f"{path}: no problems found")
    return 0


def _show(args: argparse.Namespace) -> int:
    from visionkit.report.dataset import preview_dataset

    kwargs = given(args)
    out = preview_dataset(kwargs.pop("data"), **kwargs)
    print(f"wrote {out}")
    return 0
