"""``visionkit checks`` and ``visionkit models``: what this environment has and can build,
without downloading anything."""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import platform

from visionkit import __version__
from visionkit.cli._parsing import Option, add_options
from visionkit.cli._tables import format_table

_PACKAGES = (
    "torch",
    "torchvision",
    "transformers",
    "peft",
    "numpy",
    "pillow",
    "pycocotools",
    "opencv-contrib-python-headless",
    "scipy",
    "matplotlib",
)


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``checks`` and ``models`` to the top-level ``commands``."""
    parser = commands.add_parser("checks", help="report versions, devices and offline mode")
    parser.set_defaults(handler=_checks)
    parser = commands.add_parser("models", help="list the models that can be built, by task")
    add_options(parser, [Option("task", "only this task's models (classify...)")])
    parser.set_defaults(handler=_models)


def _models(args: argparse.Namespace) -> int:
    from visionkit.models import list_models, model_info

    rows = [
        [name, info.task, info.default_weights or "-", info.description]
        for name in list_models(getattr(args, "task", None))
        for info in [model_info(name)]
    ]
    print(format_table(["model", "task", "default weights", "description"], rows))
    return 0


def _checks(_: argparse.Namespace) -> int:
    rows = [
        ("visionkit", __version__),
        ("python", platform.python_version()),
        ("platform", platform.platform()),
    ]
    rows += [(name, _version(name)) for name in _PACKAGES]
    rows += [("device", _device()), ("offline", os.environ.get("VISIONKIT_OFFLINE", "0"))]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    return 0


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _device() -> str:
    import torch

    if torch.cuda.is_available():
        return f"cuda ({torch.cuda.get_device_name(0)}, {torch.cuda.device_count()} GPU(s))"
    if torch.backends.mps.is_available():
        return "mps"
    return f"cpu ({torch.get_num_threads()} threads)"
