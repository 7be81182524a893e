"""``visionkit detect train|val|predict``: object detection from the command line.

``train``, ``predict`` and ``val data=... model=...`` are one call each on
:class:`visionkit.Model`. ``val gt=... pred=...`` scores a COCO predictions file against
COCO ground truth with no model: torch is not imported, so the output of any detector
(ours, Ultralytics', Detectron2's) gets pycocotools-exact numbers at once.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

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


_TRAIN = [
    Option("data", "COCO, YOLO or VOC dataset, or the synthetic name shapes", required=True),
    MODEL,
    WEIGHTS,
    *RUN,
    Option("mosaic", "probability of a mosaic sample (default: on for yolo)", float),
    CLOSE_MOSAIC,
    Option("box", "yolo's box loss gain (default 7.5)", float),
    Option("cls", "yolo's classification loss gain (default 0.5)", float),
    Option("dfl", "yolo's distribution focal loss gain (default 1.5)", float),
    *WHOLE_IMAGE_AUGMENTATION,
    CACHE_IMAGES,
    *SETTINGS,
]


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``detect`` and its modes to the top-level ``commands``."""
    modes = add_group(commands, "detect", "Object detection: train, evaluate, predict, export.")
    add_mode(modes, "train", _train, "train a detector into runs/detect/<name>", _TRAIN)
    add_mode(
        modes,
        "val",
        _val,
        "evaluate a detector on a dataset (data, model), or a COCO predictions file (gt, pred)",
        [
            Option("data", "dataset to evaluate the model on"),
            MODEL,
            Option("split", "split to evaluate"),
            BATCH,
            DEVICE,
            Option("save_dir", "write predictions.json and the plots here"),
            Option("gt", "ground truth: a COCO annotation json"),
            Option("pred", "predictions: a COCO results json (a list)"),
            Option("iou_type", "what to match", choices=("bbox", "segm")),
            Option("protocol", "COCO AP@[.5:.95] or VOC AP50", choices=("coco", "voc07", "voc")),
            Option("json", "print one JSON object instead of tables (true/false)", parse_bool),
        ],
    )
    add_mode(
        modes,
        "export",
        _export,
        "write a detector as an ONNX file (yolo-*, Faster R-CNN)",
        [
            MODEL,
            Option("format", "export format", choices=("onnx",)),
            Option("out", "file to write (default: beside the checkpoint)"),
            Option("imgsz", "input side of the graph", int),
            Option("opset", "ONNX opset", int),
            Option("dynamic_batch", "free batch size for yolo (true/false)", parse_bool),
        ],
    )
    add_mode(
        modes,
        "predict",
        _predict,
        "detect objects in images or videos: a file, a folder or a glob",
        [
            Option("source", "image or video file, folder or glob", required=True),
            MODEL,
            Option("conf", "smallest confidence kept", float),
            Option("iou", "NMS IoU threshold", float),
            Option("max_det", "most detections per image", int),
            BATCH,
            DEVICE,
            Option("save", "write annotated images to `out` (true/false)", parse_bool),
            Option("out", "folder for annotated images and predictions.json"),
            JSON,
        ],
    )


def _export(args: argparse.Namespace) -> int:
    kwargs = given(args)
    path = _model(kwargs).export(**kwargs)
    print(f"exported {path}")
    return 0


def _model(kwargs: dict):
    from visionkit.api import Model

    model = kwargs.pop("model", "yolo-n")
    return Model(model, task="detect", weights=kwargs.pop("weights", None))


def _train(args: argparse.Namespace) -> int:
    kwargs = given(args)
    result = _model(kwargs).train(**kwargs)
    if os.environ.get("RANK", "0") == "0":  # torchrun: the main process speaks for all
        print(f"best mAP50-95 {result.best_fitness:.4f} at epoch {result.best_epoch}: "
              f"{result.best_path}")  # fmt: skip
    return 0


def _val(args: argparse.Namespace) -> int:
    kwargs = given(args, drop=("json",))
    files = {"gt", "pred", "iou_type", "protocol"} & kwargs.keys()
    if files and {"data", "model"} & kwargs.keys():
        raise ConfigError("give data and model, or gt and pred, not both", field="gt")
    if files:
        result = _val_files(kwargs)
    elif "data" in kwargs:
        result = _model(kwargs).val(**kwargs)
    else:
        raise ConfigError("give data (and model) to evaluate a model, or gt and pred", field="data")
    if getattr(args, "json", False):
        print(to_json(result))
        return 0
    for prefix, what in (("", "metric"), ("segm_", "mask metric")):  # segm_: Mask R-CNN's
        if f"{prefix}map" in result:
            rows = [(line, result[prefix + key]) for key, line in _COCO_SUMMARY]
            print(format_table([what, "value"], rows))
            print()
    print(format_table(*_per_class_rows(result)))
    return 0


def _val_files(kwargs: dict) -> dict:
    from visionkit.metrics.detection import evaluate_coco

    for required in ("gt", "pred"):
        if required not in kwargs:
            raise ConfigError("scoring files needs both gt and pred", field=required)
    return evaluate_coco(kwargs.pop("gt"), kwargs.pop("pred"), **kwargs)


def _predict(args: argparse.Namespace) -> int:
    kwargs = given(args, drop=("json", "save", "out"))
    results = _model(kwargs).predict(kwargs.pop("source"), **kwargs)
    out = Path(getattr(args, "out", "runs/detect/predict"))
    records = []
    for index, result in enumerate(results):
        stem = Path(str(result.path or "array")).stem
        stem += "" if result.frame is None else f"_{result.frame:06d}"
        if getattr(args, "save", False):
            result.save(out / f"{index:05d}_{stem}.png")
        records.append({"file": None if result.path is None else str(result.path),
                        "frame": result.frame, "detections": result.to_json()})  # fmt: skip
    if getattr(args, "save", False):
        out.mkdir(parents=True, exist_ok=True)
        (out / "predictions.json").write_text(to_json({"predictions": records}))
    if getattr(args, "json", False):
        print(to_json({"predictions": records}))
        return 0
    rows = [[r["file"], r["frame"], len(r["detections"])] for r in records]
    print(format_table(["source", "frame", "detections"], rows))
    if getattr(args, "save", False):
        print(f"annotated images and predictions.json in {out}")
    return 0


def _per_class_rows(result: dict) -> tuple[list[str], list[list]]:
    """Headers and one row per category: its id, AP and (COCO) AR@100, and mask AP for an
    instance segmenter's results."""
    columns = {"AP@[.5:.95]": "map_per_class", "AR@100": "mar_100_per_class"}
    if "map" not in result:
        columns = {"AP50": "map_per_class"}
    if "segm_map_per_class" in result:
        columns["mask AP@[.5:.95]"] = "segm_map_per_class"
    rows = [
        [category, *(result[key][i] for key in columns.values())]
        for i, category in enumerate(result["classes"])
    ]
    return ["category", *columns], rows
