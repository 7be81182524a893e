"""Detector families on the same synthetic data and time budget: accuracy, speed and size.

Usage:
    python benchmarks/detectors.py [--minutes 10] [--other-minutes 3] [--train 2000]
        [--val 200] [--imgsz 256] [--threads 2] [--families yolo-n yolov8n ...] [--keep DIR]

The lectures' speed/accuracy story, measured. One ``shapes`` dataset in the YOLO layout
(``--train`` and ``--val`` images of ``--imgsz`` pixels, 6 classes) is what every family
trains on from random weights, on the CPU with ``--threads`` torch threads, each family in
a fresh process of its own:

- ``yolo-n`` and Ultralytics' YOLOv8n (``yolov8n`` here; built offline from
  ``yolov8n.yaml``, an optional dependency of ``make bench``) train for ``--minutes`` each;
- the other families (visionkit's CPU-sized Faster R-CNN, torchvision's Faster R-CNN
  MobileNetV3 320, SSDlite, a tiny DETR, the sliding window, R-CNN; RetinaNet, FCOS and a
  tiny RT-DETR on request) for ``--other-minutes``.

Ultralytics and visionkit both stop at their own ``time=`` budget: after every epoch the
run re-plans what fits and fits its schedule to it (Ultralytics plans whole epochs and
stops mid-epoch when the time is up; visionkit plans optimiser steps and ends its last
epoch where they end). A visionkit family's
first plan comes from a calibration (``_harness.py``): a throwaway copy of the model times
a few training steps (data loading included) and two validation batches, and the plan is
the whole epochs that fit the budget, validation included (after every epoch, or with
``val=False`` after the last only); when one epoch does not fit, it trains one epoch on
the first images of the training split that do. ``yolo-n`` trains with
:data:`SHORT_RUN`, visionkit's recipe for runs of minutes; the other visionkit families
with ``Model.train``'s defaults (AdamW), and Ultralytics with its own
(``optimizer=auto``, its warmup, loss gains and mosaic, closed for the last 2 epochs).
All share the image size, seed and data-loading workers (Ultralytics uses none on a CPU,
whatever it is given; so does the default here), with no plots. Ultralytics has no mixed
precision on a CPU; visionkit's short-run recipe uses bfloat16 where the CPU computes it
natively.

Every family is scored the same way, not by its library's own metric code: it predicts
the validation images (score >= 0.001, at most 300 boxes, each library's own NMS IoU),
the boxes go to COCO results in the images' own pixels, and
:func:`visionkit.metrics.detection.evaluate_coco` (pycocotools' numbers) scores them
against the split written as COCO JSON. ms/image is the median over ``--latency-runs``
single-image ``predict`` calls (after warm-up; the best of five rounds, see
``_harness.median_ms``) from a decoded RGB array to the final
detections at score >= 0.25, at the training size; ``yolo-n`` (and YOLOv8n, for
comparison) are also timed at 320 px, the latency target's size.

Prints one row per family (budget, epochs run, training minutes, parameters, mAP50,
mAP50-95, ms/image; a family that fails prints its error instead), the 320 px latencies,
and whether the acceptance targets are met. Data and runs go to a temporary folder unless
``--keep`` names one. The defaults take about an hour on two idle cores (R-CNN's
selective search alone takes minutes for every pass over the validation images).
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml
from _harness import budget_parser, calibrate, median_ms, native_precision, run_isolated

ULTRALYTICS = "yolov8n"
"""The peer's family name: Ultralytics YOLOv8n from ``yolov8n.yaml``, random weights."""

DETR_TINY = {
    "d_model": 128,
    "encoder_layers": 2,
    "decoder_layers": 2,
    "encoder_attention_heads": 4,
    "decoder_attention_heads": 4,
    "encoder_ffn_dim": 512,
    "decoder_ffn_dim": 512,
    "num_queries": 50,
    "backbone_config": {
        "layer_type": "basic",
        "depths": [2, 2, 2, 2],
        "hidden_sizes": [64, 128, 256, 512],
        "embedding_size": 64,
    },
}
"""DETR on a ResNet-18-sized backbone, two encoder and decoder layers: 12 M parameters."""

RTDETR_TINY = {
    "backbone_config": {"depths": [1, 1, 1, 1]},
    "encoder_hidden_dim": 128,
    "d_model": 128,
    "decoder_in_channels": [128, 128, 128],  # the encoder's outputs
    "encoder_ffn_dim": 512,
    "decoder_ffn_dim": 512,
    "decoder_layers": 2,
    "num_queries": 100,
}
"""RT-DETR with one block per ResNet-18 stage, 128 channels, two decoder layers: 7 M."""


@dataclass(frozen=True)
class Family:
    """How one family is built and trained.

    Attributes:
        model: A detect registry name, or :data:`ULTRALYTICS`.
        options: Builder options (``config_overrides``...).
        settings: ``Model.train`` settings other than the shared ones (``lr``...).
        main: Trains for ``--minutes`` (the yolo-n / YOLOv8n pair), else ``--other-minutes``.
    """

    model: str
    options: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    main: bool = False


SHORT_RUN = {
    **{"batch": 8, "lr": 6e-3, "warmup_epochs": 0.4, "ema": True, "ema_decay": 0.999},
    **{"mosaic": 0.0, "scale": (1.0, 1.0), "colour": False, "cls": 1.0},
    **{"amp": "bf16", "cache_images": True, "val": False},
}
"""yolo-n's recipe for minutes on a CPU: small batches at a high rate after 100 steps of
warmup (the default whole epoch is a tenth of the run), an EMA that warms up within the
run, and whole images with flips only (a mosaic or a rescaled image costs more to make and
teaches less in the first dozen epochs). The classification gain is twice YOLOv8's: what
a short run still gets wrong is the class (circles and hexagons), not the box. Over 16
epochs, the doubled gain gave mAP50 +0.006 and +0.009 (two seeds) for mAP50-95 -0.005,
and a rate of 6e-3 (from 4e-3) a further mAP50 +0.014 and mAP50-95 +0.018 (one seed).
Three settings buy more steps in the budget:
bfloat16 autocast where the CPU computes it natively (about 1.3x faster steps; see
:func:`native_precision`), decoded images kept in memory (decoding is about a twelfth of
a step) and one validation at the end instead of one an epoch (each a tenth of an
epoch)."""
AUGMENT_KEYS = ("flip", "scale", "colour")

FAMILIES = {
    "yolo-n": Family("yolo-n", settings=SHORT_RUN, main=True),
    ULTRALYTICS: Family(ULTRALYTICS, main=True),
    "fasterrcnn_mobilenet_v3_large_320_fpn": Family("fasterrcnn_mobilenet_v3_large_320_fpn"),
    "fasterrcnn-small": Family("fasterrcnn-small"),
    "ssdlite320_mobilenet_v3_large": Family("ssdlite320_mobilenet_v3_large"),
    "retinanet_resnet50_fpn": Family("retinanet_resnet50_fpn"),
    "fcos_resnet50_fpn": Family("fcos_resnet50_fpn"),
    # Transformers want a lower rate than the convolutional families (DETR used 1e-4).
    "detr-tiny": Family("detr-resnet-50", {"config_overrides": DETR_TINY}, {"lr": 1e-4}),
    "rtdetr-tiny": Family("rtdetr-r18", {"config_overrides": RTDETR_TINY}, {"lr": 1e-4}),
    "sliding-window": Family("sliding-window"),
    "rcnn": Family("rcnn"),
}
DEFAULT_FAMILIES = (
    *("yolo-n", ULTRALYTICS, "fasterrcnn-small", "fasterrcnn_mobilenet_v3_large_320_fpn"),
    *("ssdlite320_mobilenet_v3_large", "detr-tiny", "sliding-window", "rcnn"),
)
"""RetinaNet, FCOS (32 M parameters each) and RT-DETR see few images in a few CPU minutes;
``--families`` adds them."""
FASTER_RCNNS = ("fasterrcnn-small", "fasterrcnn_mobilenet_v3_large_320_fpn")
"""The Faster R-CNNs that the speed order R-CNN > Faster R-CNN > yolo-n is checked with."""

SCORE_CONF, LATENCY_CONF, MAX_DET = 0.001, 0.25, 300
LATENCY_SIZE = 320
TARGETS = {"map_50": 0.90, "map": 0.60, "latency_ms": 15.0}
"""yolo-n's acceptance targets: COCO mAP50 and mAP50-95, and ms per 320 px image."""


@dataclass(frozen=True)
class Data:
    """The benchmark's dataset: the YOLO ``data.yaml``, its copy for Ultralytics (with an
    absolute ``path``), the validation split as COCO JSON, and that split's images (path,
    COCO image id) with the category id of each class index."""

    yaml: Path
    ultralytics_yaml: Path
    gt_json: Path
    val_images: list[tuple[Path, int]]
    category_ids: list[int]
    train_images: list[Path]


def build_parser() -> argparse.ArgumentParser:
    return budget_parser(
        __doc__.splitlines()[0], main="yolo-n/YOLOv8n", minutes=10.0, families=list(FAMILIES),
        default_families=DEFAULT_FAMILIES, batch=16, latency_runs=50,
    )  # fmt: skip


def make_data(root: Path, args: Any) -> Data:
    """Export ``shapes`` as YOLO, and its validation split as COCO for the scoring."""
    from visionkit.data.formats import read_catalog, write_catalog
    from visionkit.data.synthetic.export import export_synthetic

    data_yaml = export_synthetic(
        root / "shapes", kind="shapes", format="yolo", train=args.train, val=args.val,
        imgsz=args.imgsz, seed=args.seed, workers=args.threads,
    )  # fmt: skip
    train, val = read_catalog(data_yaml, "train"), read_catalog(data_yaml, "val")
    gt_json = write_catalog(val, root / "coco", "coco", split="val")
    doc = yaml.safe_load(data_yaml.read_text())
    # Ultralytics resolves a relative ``path`` against the working directory.
    doc["path"] = str(data_yaml.parent.resolve())
    ultralytics_yaml = data_yaml.with_name("ultralytics.yaml")
    ultralytics_yaml.write_text(yaml.safe_dump(doc))
    return Data(
        data_yaml.resolve(),
        ultralytics_yaml.resolve(),
        gt_json.resolve(),
        [(val.image_path(record).resolve(), record.id) for record in val.images],
        [category.id for category in val.categories],
        [train.image_path(record).resolve() for record in train.images],
    )


def score(detections: Sequence[Any], data: Data) -> dict[str, float]:
    """COCO mAP50-95 and mAP50 of one :class:`~visionkit.structures.Detections` per
    validation image (in its own pixels), by :func:`evaluate_coco`."""
    from visionkit.metrics.detection import evaluate_coco

    results = [
        ann
        for dets, (_, image_id) in zip(detections, data.val_images, strict=True)
        for ann in dets.to_coco(image_id, data.category_ids)
    ]
    metrics = evaluate_coco(str(data.gt_json), results)
    return {"map": float(metrics["map"]), "map_50": float(metrics["map_50"])}


def calibrate_family(family: Family, data: Data, args: Any, budget_s: float) -> tuple[int, int]:
    """Epochs and training images that fit ``budget_s`` (see :func:`calibrate`), with the
    data pipeline that ``Model.train`` uses."""
    from torch.utils.data import DataLoader

    from visionkit.data.datasets import collate_detection, load_dataset
    from visionkit.data.mosaic import Mosaic
    from visionkit.data.transforms import detection_transforms
    from visionkit.models import create_model
    from visionkit.train.detect import DetectionTask

    size, batch = args.imgsz, family.settings.get("batch", args.batch)
    augment = {key: family.settings[key] for key in AUGMENT_KEYS if key in family.settings}
    cache = family.settings.get("cache_images", False)
    train_set = load_dataset(
        data.yaml, "detect", "train", transforms=detection_transforms(True, size, **augment),
        cache=cache,
    )  # fmt: skip
    val_set = load_dataset(
        data.yaml, "detect", "val", transforms=detection_transforms(False, size), cache=cache
    )
    classes = len(train_set.names)
    network = create_model(family.model, num_classes=classes, image_size=size, **family.options)
    for dataset in (train_set, val_set):
        dataset.with_masks = network.makes_masks  # as Model.train: no masks for box models
    mosaic = family.settings.get("mosaic", float(network.uses_mosaic))
    training = Mosaic(train_set, size, p=mosaic) if mosaic > 0 else train_set
    shared = {"batch_size": batch, "collate_fn": collate_detection, "num_workers": args.workers}
    return calibrate(
        network, DetectionTask(classes, imgsz=size), DataLoader(training, **shared),
        DataLoader(val_set, **shared), steps=args.calibration_steps, budget_s=budget_s,
        settings=family.settings,
    )  # fmt: skip


def subset_yaml(data: Data, images: int) -> Path:
    """A ``data.yaml`` whose training split is the first ``images`` training images."""
    listing = data.yaml.with_name(f"train-{images}.txt")
    listing.write_text("".join(f"{path}\n" for path in data.train_images[:images]))
    doc = yaml.safe_load(data.yaml.read_text())
    doc["train"] = listing.name
    path = data.yaml.with_name(f"data-{images}.yaml")
    path.write_text(yaml.safe_dump(doc))
    return path


def run_visionkit(name: str, family: Family, data: Data, root: Path, args: Any) -> dict[str, Any]:
    """Calibrate, train, score and time one visionkit family."""
    import csv

    import numpy as np

    import visionkit

    budget_s = 60 * (args.minutes if family.main else args.other_minutes)
    epochs, images = calibrate_family(family, data, args, budget_s)
    dataset = data.yaml if images == len(data.train_images) else subset_yaml(data, images)
    model = visionkit.Model(family.model, task="detect", **family.options)
    result = model.train(
        data=dataset, epochs=epochs, imgsz=args.imgsz, seed=args.seed, workers=args.workers,
        device="cpu", project=root / "runs", name=name, quiet=True, time=budget_s / 3600,
        **{"batch": args.batch, **family.settings},
    )  # fmt: skip
    with (result.run_dir / "results.csv").open() as handle:
        train_s = sum(float(row["seconds"]) for row in csv.DictReader(handle))
    paths = [str(path) for path, _ in data.val_images]
    found = model.predict(paths, conf=SCORE_CONF, max_det=MAX_DET, batch=args.batch, device="cpu")
    sized = {args.imgsz: model}

    def predict(image: Any, size: int) -> Any:
        if size not in sized:  # the trained weights in a model built for ``size``
            sized[size] = visionkit.Model(
                family.model, task="detect", weights=str(result.best_path), image_size=size,
                **family.options,
            )  # fmt: skip
        return sized[size].predict(image, conf=LATENCY_CONF, batch=1, device="cpu")

    image = np.array(found[0].image)  # writable, as torch.from_numpy wants
    return {
        "epochs": result.epochs_run * images / len(data.train_images),
        "train_s": train_s,
        "params": sum(p.numel() for p in model.network.parameters()),
        **score([r.boxes for r in found], data),
        **latencies(predict, image, args, at_320=family.model == "yolo-n"),
    }


def _resized(image: Any, side: int) -> Any:
    """``image`` (``uint8`` ``[H, W, 3]``) resized to ``side`` x ``side``."""
    import numpy as np
    from PIL import Image

    return np.asarray(Image.fromarray(image).resize((side, side), Image.BILINEAR))


def offline_ultralytics(folder: Path) -> None:
    """Settings that keep Ultralytics off the network, with its settings in ``folder``.

    Call before importing ``ultralytics``. Its dataset check looks for ``Arial.ttf`` in
    the settings folder and asks GitHub for it when missing, even with ``YOLO_OFFLINE``:
    matplotlib's DejaVu Sans stands in (nothing is drawn with ``plots=False`` anyway).
    """
    import matplotlib

    settings = folder / "Ultralytics"
    settings.mkdir(parents=True, exist_ok=True)
    font = Path(matplotlib.get_data_path(), "fonts", "ttf", "DejaVuSans.ttf")
    shutil.copyfile(font, settings / "Arial.ttf")
    os.environ.update(
        YOLO_OFFLINE="1",  # no downloads, no events, no online checks
        YOLO_AUTOINSTALL="False",  # never pip-install a missing requirement
        YOLO_VERBOSE="False",
        YOLO_CONFIG_DIR=str(folder),
    )


def run_ultralytics(root: Path, data: Data, args: Any) -> dict[str, Any]:
    """Train Ultralytics YOLOv8n from ``yolov8n.yaml`` for ``--minutes``; score and time it."""
    offline_ultralytics(root / "ultralytics-settings")
    import numpy as np
    import torch
    from ultralytics import YOLO

    from visionkit.data.images import read_image
    from visionkit.structures import Detections

    clock: dict[str, float] = {}

    def started(trainer: Any) -> None:
        torch.set_num_threads(args.threads)  # Ultralytics trains with os.cpu_count() - 1
        clock["start"] = time.perf_counter()

    model = YOLO("yolov8n.yaml")
    model.add_callback("on_train_start", started)
    model.add_callback("on_fit_epoch_end", lambda trainer: clock.update(end=time.perf_counter()))
    model.train(
        data=str(data.ultralytics_yaml), time=args.minutes / 60, imgsz=args.imgsz,
        batch=args.batch, workers=args.workers, device="cpu", amp=False, seed=args.seed,
        close_mosaic=2, plots=False, val=False, project=str(root / "runs"), name=ULTRALYTICS,
        exist_ok=True, verbose=False,
    )  # fmt: skip
    trainer = model.trainer
    own = {
        key: float(trainer.metrics.get(f"metrics/{key}(B)", math.nan))
        for key in ("mAP50", "mAP50-95")
    }
    trained = YOLO(str(trainer.best if Path(trainer.best).is_file() else trainer.last))
    found = []
    for result in trained.predict(
        [str(path) for path, _ in data.val_images], conf=SCORE_CONF, max_det=MAX_DET,
        batch=args.batch, imgsz=args.imgsz, device="cpu", stream=True, verbose=False,
    ):  # fmt: skip
        boxes = result.boxes
        found.append(Detections(boxes.xyxy.float(), boxes.conf.float(), boxes.cls.long()))

    def predict(image: Any, size: int) -> Any:
        bgr = np.ascontiguousarray(image[..., ::-1])  # Ultralytics takes OpenCV's order
        return trained.predict(bgr, conf=LATENCY_CONF, imgsz=size, device="cpu", verbose=False)

    image = read_image(data.val_images[0][0])
    predict(image, args.imgsz)  # its first predict sets the thread count: set ours after it
    torch.set_num_threads(args.threads)
    return {
        "epochs": trainer.epoch + 1,
        "train_s": clock["end"] - clock["start"],
        "params": sum(p.numel() for p in trained.model.parameters()),
        **score(found, data),
        **latencies(predict, image, args, at_320=True),
        "own": own,
    }


def latencies(
    predict: Callable[[Any, int], Any], image: Any, args: Any, *, at_320: bool
) -> dict[str, float]:
    """Median ms of ``predict(image, size)`` at the training size (``ms``) and, when
    ``at_320``, of the image resized to 320 px at 320 px (``ms_320``)."""
    times = {"ms": median_ms(lambda: predict(image, args.imgsz), args.latency_runs)}
    if at_320:
        large = _resized(image, LATENCY_SIZE)
        times["ms_320"] = median_ms(lambda: predict(large, LATENCY_SIZE), args.latency_runs)
    return times


def run_one(name: str, data: Data, root: Path, args: Any) -> dict[str, Any]:
    """One family's row (in its own process: see :func:`run_isolated`)."""
    import torch

    torch.set_num_threads(args.threads)
    print(f"== {name}", flush=True)
    if FAMILIES[name].model == ULTRALYTICS:
        return run_ultralytics(root, data, args)
    family = replace(FAMILIES[name], settings=native_precision(FAMILIES[name].settings))
    return run_visionkit(name, family, data, root, args)


def run_family(name: str, data: Data, root: Path, args: Any) -> dict[str, Any]:
    """One family's row, or its error, with its name and budget."""
    budget = args.minutes if FAMILIES[name].main else args.other_minutes
    return {"name": name, "budget": budget, **run_isolated(run_one, name, data, root, args)}


def print_table(rows: list[dict[str, Any]]) -> None:
    print(
        f"\n{'family':<38} {'budget':>6} {'epochs':>6} {'train':>6} {'params':>10} "
        f"{'mAP50':>6} {'mAP50-95':>8} {'ms/img':>7}"
    )
    print(f"{'':<38} {'min':>6} {'':>6} {'min':>6}")
    for row in rows:
        head = f"{row['name']:<38} {row.get('budget', 0):>6.1f}"
        if "error" in row:
            print(f"{head} failed: {row['error']}")
            continue
        print(
            f"{head} {row['epochs']:>6.2f} {row['train_s'] / 60:>6.1f} {row['params']:>10,} "
            f"{row['map_50']:>6.3f} {row['map']:>8.3f} {row['ms']:>7.1f}"
        )
    for row in rows:
        if "own" in row:  # a check of the scoring: close to ours, not equal (other AP code)
            print(
                f"{row['name']} by Ultralytics' own validation: mAP50 {row['own']['mAP50']:.3f}, "
                f"mAP50-95 {row['own']['mAP50-95']:.3f}"
            )
    for row in rows:
        if "ms_320" in row:
            print(f"{row['name']} at {LATENCY_SIZE} px, batch 1: median {row['ms_320']:.1f} ms")


def print_targets(rows: dict[str, dict[str, Any]]) -> None:
    """The measured value and PASS/FAIL of each acceptance target (``not measured`` when a
    row it needs is missing or failed)."""
    ours, peer = rows.get("yolo-n", {}), rows.get(ULTRALYTICS, {})
    rcnn = rows.get("rcnn", {})

    def line(what: str, needed: list[dict[str, Any]], measure: Callable[[], Any]) -> None:
        if not all(row and "error" not in row for row in needed):
            print(f"{what}: not measured")
            return
        shown, met = measure()
        print(f"{what}: {shown} -> {'PASS' if met else 'FAIL'}")

    print()
    for key, label in (("map_50", "mAP50"), ("map", "mAP50-95")):
        value = ours.get(key, math.nan)
        line(f"yolo-n {label} >= {TARGETS[key]}", [ours], lambda v=value, k=key: (
            f"{v:.3f}", v >= TARGETS[k]
        ))  # fmt: skip
    line("yolo-n ahead of YOLOv8n in mAP50-95", [ours, peer], lambda: (
        f"{ours['map']:.3f} vs {peer['map']:.3f}", ours["map"] > peer["map"]
    ))  # fmt: skip
    line(f"yolo-n at {LATENCY_SIZE} px <= {TARGETS['latency_ms']:g} ms", [ours], lambda: (
        f"{ours['ms_320']:.1f} ms", ours["ms_320"] <= TARGETS["latency_ms"]
    ))  # fmt: skip
    for faster in FASTER_RCNNS:
        fast = rows.get(faster, {})
        line(f"ms/image rcnn > {faster} > yolo-n", [rcnn, fast, ours], lambda f=fast: (
            f"{rcnn['ms']:.1f} > {f['ms']:.1f} > {ours['ms']:.1f}",
            rcnn["ms"] > f["ms"] > ours["ms"],
        ))  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="visionkit-detectors-") as temporary:
        root = (args.keep or Path(temporary)).resolve()
        start = time.perf_counter()
        data = make_data(root, args)
        print(
            f"shapes: {args.train} train / {args.val} val images of {args.imgsz} px "
            f"in {time.perf_counter() - start:.0f} s; {args.threads} threads, batch "
            f"{args.batch}, {args.workers} workers, CPU"
        )
        rows = [run_family(name, data, root, args) for name in args.families]
    print_table(rows)
    print_targets({row["name"]: row for row in rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
