"""``visionkit detect val``: evaluate a COCO predictions file against COCO ground truth.

No model is needed and torch is not imported, so a user can score the output of any
detector (ours, Ultralytics', Detectron2's) with pycocotools-exact numbers at once.
"""

from __future__ import annotations

import argparse

from visionkit.cli._parsing import Option, add_group, add_mode, given, parse_bool
from visionkit.cli._tables import format_table, to_json

# (result key, pycocotools' summary line) for the COCO protocol's twelve numbers.
_COCO_SUMMARY = (
    ("map", "AP @[ IoU=0.50:0.95 | area=   all | maxDets=100 ]"),
    ("map_50", "AP @[ IoU=0.50      | area=   all | maxDets=100 ]"),
    ("map_75", "AP @[ IoU=0.75      | area=   all | maxDets=100 ]"),
    ("map_small", "AP @[ IoU=0.50:0.95 | area= small | maxDets=100 ]"),
    ("map_medium", "AP @[ IoU=0.50:0.95 | area=medium | maxDets=100 ]"),
    ("map_large", "AP @[ IoU=0.50:0.95 | area= large | maxDets=100 ]"),
    ("mar_1", "AR @[ IoU=0.50:0.95 | area=   all | maxDets=  1 ]"),
    ("mar_10", "AR @[ IoU=0.50:0.95 | area=   all | maxDets= 10 ]"),
    ("mar_100", "AR @[ IoU=0.50:0.95 | area=   all | maxDets=100 ]"),
    ("mar_small", "AR @[ IoU=0.50:0.95 | area= small | maxDets=100 ]"),
    ("mar_medium", "AR @[ IoU=0.50:0.95 | area=medium | maxDets=100 ]"),
    ("mar_large", "AR @[ IoU=0.50:0.95 | area= large | maxDets=100 ]"),
)


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``detect`` and its modes to the top-level ``commands``."""
    modes = add_group(commands, "detect", "Object detection: evaluate predictions.")
    add_mode(
        modes,
        "val",
        _val,
        "score a COCO predictions file against COCO ground truth",
        [
            Option("gt", "ground truth: a COCO annotation json", required=True),
            Option("pred", "predictions: a COCO results json (a list)", required=True),
            Option("iou_type", "what to match", choices=("bbox", "segm")),
            Option("protocol", "COCO AP@[.5:.95] or VOC AP50", choices=("coco", "voc07", "voc")),
            Option("json", "print one JSON object instead of tables (true/false)", parse_bool),
        ],
    )


def _val(args: argparse.Namespace) -> int:
    from visionkit.metrics.detection import evaluate_coco

    kwargs = given(args, drop=("json",))
    result = evaluate_coco(kwargs.pop("gt"), kwargs.pop("pred"), **kwargs)
    if getattr(args, "json", False):
        print(to_json(result))
        return 0
    if "map" in result:
        print(format_table(["metric", "value"], [(line, result[k]) for k, line in _COCO_SUMMARY]))
        print()
    print(format_table(*_per_class_rows(result)))
    return 0


def _per_class_rows(result: dict) -> tuple[list[str], list[list]]:
    """Headers and one row per category: its id, AP and (COCO) AR@100."""
    columns = {"AP@[.5:.95]": "map_per_class", "AR@100": "mar_100_per_class"}
    if "map" not in result:
        columns = {"AP50": "map_per_class"}
    rows = [
        [category, *(result[key][i] for key in columns.values())]
        for i, category in enumerate(result["classes"])
    ]
    return ["category", *columns], rows
