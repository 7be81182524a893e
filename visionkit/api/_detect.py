"""Detection behind :class:`~visionkit.api.Model`: build, train, evaluate, predict.

Every step wires the layers below (registry, datasets, transforms and mosaic, the trainer
with :class:`~visionkit.train.detect.DetectionTask`, the COCO evaluator, the plots). The
final validation of a run scores predictions in each image's original pixels against the
dataset's own annotations, so its numbers are pycocotools' on the same files. An instance
segmenter (:attr:`~visionkit.models.detect.Detector.makes_masks`) trains on the dataset's
instance masks and is scored on its masks too (``segm_map``...), with COCO RLEs in its
``predictions.json`` and masks in its predictions.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from visionkit.api._data import dataset_path
from visionkit.api._networks import keep_best_and_report
from visionkit.api._results import DetectionResult
from visionkit.api._sources import Source, in_batches, iter_images
from visionkit.data.datasets import (
    DetectionDataset,
    annotation_area,
    collate_detection,
    load_dataset,
)
from visionkit.data.images import read_image
from visionkit.data.records import Catalog
from visionkit.data.transforms import (
    SCALE_RANGE,
    detection_image_transform,
    detection_transforms,
    eval_scale,
)
from visionkit.errors import ConfigError, DataError
from visionkit.metrics.detection import DetectionConfusionMatrix, DetectionEvaluator
from visionkit.models import Detector, ModelConfig
from visionkit.models.weights import apply_state_dict
from visionkit.structures import Detections
from visionkit.train import TrainConfig, Trainer, TrainResult, new_run_dir
from visionkit.train._task import with_mosaic
from visionkit.train.detect import (
    CONFUSION_CONF,
    EVAL_CONF,
    DetectionTask,
    coco_result_area,
    masks_in_original,
    segm_metrics,
    to_device,
)
from visionkit.train.distributed import (
    broadcast_from_main,
    init_distributed,
    ready_for_inference,
    seed_everything,
    select_device,
)
from visionkit.train.run_dir import write_metrics
from visionkit.viz import draw_detections, make_grid, save_image
from visionkit.viz.plots import plot_confusion_matrix, plot_pr_curves

DEFAULT_EPOCHS = 30
"""Training epochs when none are given."""

PREVIEW_IMAGES = 16
"""Validation images drawn with their predictions into ``val_predictions.png``."""

__all__ = ["fit", "from_checkpoint", "predict", "validate"]


def from_checkpoint(
    config: ModelConfig, weights: dict[str, Any], model: Detector, path: str | Path
) -> Detector:
    """``model`` (built from ``config``) with the checkpoint's ``weights``, in eval mode."""
    apply_state_dict(model, weights, file=path)
    model.config = config
    return model.eval()


def fit(
    model: Any,
    *,
    data: str | Path,
    epochs: int = DEFAULT_EPOCHS,
    batch: int = 16,
    imgsz: int | None = None,
    mosaic: float | None = None,
    close_mosaic: float = 2,
    flip: float = 0.5,
    scale: tuple[float, float] = SCALE_RANGE,
    colour: bool = True,
    cache_images: bool = False,
    box: float | None = None,
    cls: float | None = None,
    dfl: float | None = None,
    project: str | Path = "runs",
    name: str = "train",
    exist_ok: bool = False,
    resume: bool = False,
    **settings: Any,
) -> TrainResult:
    """``Model.train`` for a detector: train into ``<project>/detect/<name>``, then validate
    the best weights with plots and COCO predictions (see :func:`validate`).

    Args:
        model: The :class:`~visionkit.api.Model` to train; a registry model is built for
            the dataset's class count.
        data: A COCO, YOLO or VOC dataset with ``train`` and ``val`` splits, or
            ``"shapes"`` (rendered once beside the runs).
        epochs, batch: Passes over the data; images per step.
        imgsz: Square input side in pixels; the model's own size when None.
        mosaic: Probability of a mosaic sample; None uses the model family's default (on
            for ``yolo``, off otherwise, instance segmenters included).
        close_mosaic: Final epochs trained without mosaic; below 1, that share of the
            planned epochs (see :class:`~visionkit.train._task.CloseMosaic`).
        flip, scale, colour: Training augmentation of whole images (see
            :func:`~visionkit.data.transforms.detection_transforms`); minutes-long runs on
            a CPU learn more with ``scale=(1, 1), colour=False, mosaic=0``.
        cache_images: Keep decoded images in memory after their first read (see
            :func:`~visionkit.data.datasets.load_dataset`): later epochs skip decoding.
        box, cls, dfl: Weights of ``yolo``'s loss terms, as Ultralytics names them; None
            keeps the family's (YOLOv8's 7.5, 0.5 and 1.5). Other families refuse them.
        project, name, exist_ok: The run folder (``name2``... when taken).
        resume: Continue the run ``name`` from its ``weights/last.pt``.
        **settings: Any :class:`~visionkit.train.TrainConfig` field (``lr``,
            ``optimizer``, ``seed``, ``device``, ``patience``, ``ema``...).

    Returns:
        The :class:`~visionkit.train.TrainResult`; the model then holds the best weights.

    Raises:
        ConfigError: A trained model's classes differ from the dataset's; loss gains the
            family's loss does not have.
        DataError: The model makes masks and an object of either split has no
            segmentation (the message names the file and the record), before any training.
    """
    config = TrainConfig.from_dict({"epochs": epochs, "batch": batch, **settings})
    context = init_distributed()  # under torchrun: one dataset render, one run folder
    path = broadcast_from_main(dataset_path(data, project=project) if context.is_main else None)
    train_set = load_dataset(path, "detect", "train", cache=cache_images)
    val_set = load_dataset(path, "detect", "val", cache=cache_images)
    seed_everything(config.seed)  # the new network's initial weights too
    network = model._network(imgsz, num_classes=len(train_set.names))
    check_classes(network.config, train_set)
    gains = {"box": box, "cls": cls, "dfl": dfl}
    gains = {key: value for key, value in gains.items() if value is not None}
    network.set_loss_gains(**gains)
    masks = network.makes_masks
    for dataset in (train_set, val_set):
        if masks:
            _require_segmentations(dataset, network.config.name)
        dataset.with_masks = masks  # decoding masks that nothing reads would only cost time
    network.config = dataclasses.replace(network.config, names=tuple(train_set.names))
    size = network.config.image_size
    augment = {"flip": flip, "scale": tuple(scale), "colour": colour}
    train_set.transforms = detection_transforms(True, size, **augment)
    val_set.transforms = detection_transforms(False, size)
    p = float(network.uses_mosaic) if mosaic is None else mosaic
    training, callbacks = with_mosaic(train_set, size, p, close_mosaic)
    run_dir = new_run_dir(project, "detect", name, exist_ok=exist_ok, resume=resume)
    args = {"data": str(data), "model": network.config.name, "mosaic": p}
    args |= {"close_mosaic": close_mosaic, **augment, "cache_images": cache_images, **gains}
    task = DetectionTask(network.num_classes, imgsz=size, masks=masks)
    result = Trainer(
        network, task, training, val_set, config, run_dir,
        args=args, callbacks=callbacks, resume=resume,
    ).fit()  # fmt: skip
    keep_best_and_report(network, result, validate, data=path, split="val", batch=batch,
                         device=config.device, project=project)  # fmt: skip
    return result


def validate(
    model: Detector,
    *,
    data: str | Path,
    split: str,
    batch: int,
    device: str,
    project: str | Path,
    save_dir: str | Path | None = None,
    iou: float | None = None,
    max_det: int = 300,
) -> dict[str, Any]:
    """COCO metrics of ``model`` on one split, in the images' original pixels.

    A model that makes masks, on a dataset with segmentations, is scored on its masks too:
    ``segm_map``, ``segm_map_50``... beside the box metrics (see
    :func:`~visionkit.train.detect.segm_metrics`), its masks thresholded at 0.5 in the
    images' original pixels against the annotations' own segmentations.

    With ``save_dir``, also writes ``predictions.json`` (COCO results with the dataset's
    image and category ids, and ``segmentation`` RLEs for masks), ``val_metrics.json``,
    ``pr_curve.png``, ``confusion_matrix.png`` and ``val_predictions.png`` (the first
    :data:`PREVIEW_IMAGES` images with their detections above
    :data:`~visionkit.train.detect.CONFUSION_CONF`).

    Raises:
        ConfigError: The dataset's classes differ from the model's.
        DataError: The model makes masks and only some objects have a segmentation.
    """
    dataset = load_dataset(dataset_path(data, project=project), "detect", split)
    check_classes(model.config, dataset)
    segmented = any(a.segmentation for record in dataset.catalog for a in record.annotations)
    masks = model.makes_masks and segmented
    if masks:
        _require_segmentations(dataset, model.config.name)
    dataset.with_masks = False  # the truth is the catalog's (see _score), not the targets'
    imgsz = model.config.image_size
    dataset.transforms = detection_transforms(False, imgsz)
    target = select_device(device)
    loader = DataLoader(dataset, batch_size=batch, collate_fn=collate_detection)
    kept = model.thresholds
    ready_for_inference(model, target).set_thresholds(conf=EVAL_CONF, iou=iou, max_det=max_det)
    found: list[Detections] = []
    try:
        with torch.no_grad():
            for images, targets in loader:
                images, targets = to_device((images, targets), target)
                for out, truth in zip(model(images), targets, strict=True):
                    found.append(_in_original_pixels(out, truth["orig_size"], imgsz))
    finally:
        model.set_thresholds(conf=kept.conf, iou=kept.iou, max_det=kept.max_det)
    metrics, evaluator, confusion = _score(found, dataset.catalog, model.num_classes, masks)
    if save_dir is not None:
        _save_outputs(Path(save_dir), found, dataset, evaluator, confusion, metrics)
    return metrics


def predict(
    model: Detector,
    source: Source,
    *,
    batch: int,
    device: str,
    conf: float = 0.25,
    iou: float | None = None,
    max_det: int = 300,
) -> list[DetectionResult]:
    """Detections in every image (or video frame) of ``source``, in order, in the images'
    own pixels (with ``bool`` masks of those pixels for a model that makes masks)."""
    config, target = model.config, select_device(device)
    names = config.names or tuple(str(i) for i in range(config.num_classes))
    pipeline = detection_image_transform(config.image_size)
    kept = model.thresholds
    ready_for_inference(model, target).set_thresholds(conf=conf, iou=iou, max_det=max_det)
    results = []
    try:
        for chunk in in_batches(iter_images(source), batch):
            images = [pipeline(torch.tensor(f.image).permute(2, 0, 1)) for f in chunk]
            with torch.no_grad():
                outputs = model([image.to(target) for image in images])
            results += [
                DetectionResult(
                    _in_original_pixels(out, f.image.shape[:2], config.image_size),
                    names,
                    f.path,
                    f.image,
                    f.frame,
                )
                for f, out in zip(chunk, outputs, strict=True)
            ]
    finally:
        model.set_thresholds(conf=kept.conf, iou=kept.iou, max_det=kept.max_det)
    return results


def check_classes(config: ModelConfig, dataset: DetectionDataset) -> None:
    """Refuse a model whose class count (or names, once trained) is not the dataset's."""
    names = tuple(dataset.names)
    if len(names) != config.num_classes or (config.names and config.names != names):
        raise ConfigError(
            f"the dataset has {len(names)} classes {list(names)} but the model "
            f"{list(config.names) if config.names else config.num_classes}; train a model "
            "for this dataset (a registry name builds one with its class count)",
            file=dataset.catalog.source,
            field="data",
        )


def _require_segmentations(dataset: DetectionDataset, model_name: str) -> None:
    """Refuse a split with an object that has no segmentation: a model that makes masks
    learns and is scored on every object's mask.

    Raises:
        DataError: Naming the dataset file and the first such image and annotation.
    """
    for record in dataset.catalog:
        for annotation in record.annotations:
            if not annotation.segmentation:  # None, or the empty list of box-only COCO files
                raise DataError(
                    f"{model_name} segments instances and needs a segmentation for every "
                    "object; this one has none (use a dataset with instance masks, e.g. COCO "
                    "'segmentation' or YOLO segment labels, or a box-only detector)",
                    file=dataset.catalog.source,
                    record=f"image {record.id}, annotation {annotation.id}",
                    field="segmentation",
                )


def _in_original_pixels(output: dict[str, Any], size: tuple[int, int], imgsz: int) -> Detections:
    """A detector's output on an evaluation-pipeline image, mapped back to the image as read
    (masks too, thresholded: :func:`~visionkit.train.detect.masks_in_original`)."""
    height, width = size
    sy, sx = eval_scale(height, width, imgsz)
    boxes = output["boxes"].detach().float().cpu() / torch.tensor([sx, sy, sx, sy])
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, width)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, height)
    masks = output.get("masks")
    return Detections(
        boxes,
        output["scores"].detach().cpu(),
        output["labels"].detach().cpu(),
        masks=None if masks is None else masks_in_original(masks, (height, width), imgsz),
    )


def _score(
    found: list[Detections], catalog: Catalog, num_classes: int, masks: bool
) -> tuple[dict[str, Any], DetectionEvaluator, DetectionConfusionMatrix]:
    """COCO metrics and the confusion matrix of detections against the catalog's own boxes
    (with ``masks``, also the ``segm`` metrics against its segmentations)."""
    evaluator = DetectionEvaluator()
    segm = DetectionEvaluator(iou_type="segm") if masks else None
    confusion = DetectionConfusionMatrix(num_classes, conf=CONFUSION_CONF)
    index = catalog.class_index
    for dets, record in zip(found, catalog.images, strict=True):
        anns = record.annotations
        truth = {
            "boxes": np.asarray([a.bbox for a in anns], dtype=np.float64).reshape(-1, 4),
            "labels": np.asarray([index[a.category_id] for a in anns], dtype=np.int64),
            "iscrowd": np.asarray([a.iscrowd for a in anns], dtype=np.int64),
            "area": np.asarray([annotation_area(a) for a in anns], dtype=np.float64),
            "image_id": record.id,
        }
        evaluator.update([{**dets.to_torchvision(), "image_id": record.id}], [truth])
        confusion.update(dets.boxes, dets.scores, dets.labels, truth["boxes"], truth["labels"])
        if segm is not None:  # polygons are drawn at the size of the image as read
            shapes = {"masks": [a.segmentation for a in anns], "size": tuple(dets.masks.shape[1:])}
            areas = {"area": coco_result_area(dets.boxes), "image_id": record.id}
            segm.update([{**dets.to_torchvision(), **areas}], [truth | shapes])
    metrics = evaluator.compute()
    if segm is not None:
        metrics |= segm_metrics(segm.compute())
    metrics["confusion_matrix"] = confusion.matrix.tolist()
    return metrics, evaluator, confusion


def _save_outputs(
    out: Path,
    found: list[Detections],
    dataset: DetectionDataset,
    evaluator: DetectionEvaluator,
    confusion: DetectionConfusionMatrix,
    metrics: dict[str, Any],
) -> None:
    """``predictions.json``, the PR curves, the confusion matrix and a preview grid."""
    out.mkdir(parents=True, exist_ok=True)
    catalog, names = dataset.catalog, dataset.names
    category_ids = [c.id for c in catalog.categories]
    records = [
        ann
        for dets, record in zip(found, catalog.images, strict=True)
        for ann in dets.to_coco(record.id, category_ids)
    ]
    (out / "predictions.json").write_text(json.dumps(records))
    write_metrics(out, metrics, name="val_metrics.json")
    curves = evaluator.curves
    if curves is not None:
        pr, ap = {}, {}
        for k, label in enumerate(curves.classes):  # class indices that occur, sorted
            precision = curves.precision[0, :, k, 0, -1]  # IoU 0.5, all areas, most dets
            pr[names[int(label)]] = (curves.recall_thresholds, precision)
            ap[names[int(label)]] = float(precision.clip(0).mean())
        plot_pr_curves(pr, ap=ap, title="precision-recall at IoU 0.5", path=out / "pr_curve.png")
    plot_confusion_matrix(
        confusion.matrix, [*names, "background"], rows="predicted",
        title=f"confusion matrix (conf {CONFUSION_CONF})", path=out / "confusion_matrix.png",
    )  # fmt: skip
    shown = range(min(PREVIEW_IMAGES, len(catalog)))
    tiles = []
    for i in shown:
        image = read_image(catalog.image_path(catalog.images[i]))
        dets = found[i][found[i].scores >= CONFUSION_CONF]
        tiles.append(
            draw_detections(
                image, dets.boxes, dets.labels, names=names, scores=dets.scores, masks=dets.masks
            )
        )
    if tiles:
        save_image(make_grid(tiles), out / "val_predictions.png")
    line = f"validation: mAP50-95 {metrics['map']:.4f}, mAP50 {metrics['map_50']:.4f}"
    if "segm_map" in metrics:
        line += f", masks: mAP50-95 {metrics['segm_map']:.4f}, mAP50 {metrics['segm_map_50']:.4f}"
    print(f"{line}; plots and predictions.json in {out}")
