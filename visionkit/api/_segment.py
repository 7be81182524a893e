"""Semantic segmentation behind :class:`~visionkit.api.Model`: build, train, evaluate, predict.

Every step wires the layers below (registry, datasets and transforms, the trainer with
:class:`~visionkit.train.segment.SegmentationTask`, the segmentation metrics, the plots).
Validation and prediction work in each image's original pixels: the evaluation pipeline's
letterbox is undone (:func:`~visionkit.train.segment.to_original_size`) before the argmax,
and the training's epochs are scored the same way, so the ``miou`` of ``best.pt`` in
``results.csv`` is what ``Model.val`` gives for it.
"""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from visionkit.api._data import dataset_path
from visionkit.api._detect import check_classes
from visionkit.api._networks import keep_best_and_report
from visionkit.api._results import SegmentationResult
from visionkit.api._sources import Source, in_batches, iter_images
from visionkit.data.datasets import SegmentationDataset, load_dataset
from visionkit.data.transforms import SCALE_RANGE, normalised_float, segmentation_transforms
from visionkit.models import ModelConfig, SemanticSegmenter
from visionkit.models.weights import apply_state_dict
from visionkit.train import TrainConfig, Trainer, TrainResult, new_run_dir
from visionkit.train._task import with_mosaic
from visionkit.train.distributed import (
    broadcast_from_main,
    init_distributed,
    ready_for_inference,
    seed_everything,
    select_device,
)
from visionkit.train.run_dir import write_metrics
from visionkit.train.segment import (
    SegmentationTask,
    WithOriginalMasks,
    class_indices,
    collate_segmentation,
    to_original_size,
)
from visionkit.train.trainer import evaluate
from visionkit.viz import make_grid, save_image
from visionkit.viz.plots import plot_confusion_matrix

DEFAULT_EPOCHS = 30
"""Training epochs when none are given."""

MOSAIC_SCALE = (0.5, 0.5)
"""The zoom of a segmentation mosaic: the whole canvas, four images at half their size, so
a step costs what a step of whole images costs. In ``benchmarks/segmenters.py`` (2,000
``shapes`` images of 256 px, 5 minutes on 2 threads) ``unet`` reaches validation mIoU
0.79-0.80 with ``mosaic=1, close_mosaic=0.65`` (two runs), against 0.756 on whole images
throughout."""

PREDICT_OUT = "runs/segment/predict"
"""Where ``predict(save=True)`` writes when no ``out`` is given."""

PREVIEW_IMAGES = 16
"""Validation images drawn with their predicted masks into ``val_predictions.png``."""

__all__ = ["fit", "from_checkpoint", "predict", "validate"]


def from_checkpoint(
    config: ModelConfig, weights: dict[str, Any], model: SemanticSegmenter, path: str | Path
) -> SemanticSegmenter:
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
    loss: str = "ce+dice",
    mosaic: float = 0.0,
    close_mosaic: float = 0.65,
    flip: float = 0.5,
    scale: tuple[float, float] = SCALE_RANGE,
    colour: bool = True,
    cache_images: bool = False,
    project: str | Path = "runs",
    name: str = "train",
    exist_ok: bool = False,
    resume: bool = False,
    **settings: Any,
) -> TrainResult:
    """``Model.train`` for a semantic segmenter: train into ``<project>/segment/<name>``,
    then validate the best weights with plots (see :func:`validate`).

    Every image and mask of both splits is checked before the first epoch (a mask of
    another size than its image, values that are no class, an RGB mask: one
    :class:`~visionkit.errors.DataError` naming the file).

    Args:
        model: The :class:`~visionkit.api.Model` to train; a registry model is built for
            the dataset's class count, background included.
        data: A dataset with ``train`` and ``val`` splits: PNG masks (gray or palette,
            as VOC's ``SegmentationClass``), or COCO or YOLO-segment outlines (masks drawn
            from them, ``background`` added at index 0); or ``"shapes"`` (rendered once
            beside the runs).
        epochs, batch: Passes over the data; images per step.
        imgsz: Square input side in pixels; the model's own size when None.
        loss: ``"ce"``, ``"dice"`` or ``"ce+dice"`` (see
            :class:`~visionkit.train.segment.SegmentationTask` for why the sum is the
            default).
        mosaic: Probability that a training sample is four images at half their size
            (:class:`~visionkit.data.mosaic.Mosaic` zoomed out to the whole canvas): a
            step of the same cost sees four times the images. A minutes-long run from
            scratch learns faster with it; see :data:`MOSAIC_SCALE`.
        close_mosaic: Final epochs trained on whole images; below 1, that share of the
            planned epochs (the default: the last 65 %).
        flip, scale, colour: Training augmentation (see
            :func:`~visionkit.data.transforms.segmentation_transforms`); minutes-long runs
            on a CPU learn more with ``scale=(1, 1), colour=False``.
        cache_images: Keep decoded images in memory after their first read (see
            :func:`~visionkit.data.datasets.load_dataset`): later epochs skip decoding.
        project, name, exist_ok: The run folder (``name2``... when taken).
        resume: Continue the run ``name`` from its ``weights/last.pt``.
        **settings: Any :class:`~visionkit.train.TrainConfig` field (``lr``,
            ``optimizer``, ``seed``, ``device``, ``patience``, ``ema``...).

    Returns:
        The :class:`~visionkit.train.TrainResult`; the model then holds the best weights.

    Raises:
        ConfigError: An unknown loss or setting, or a trained model's classes differ from
            the dataset's.
        DataError: The first fault of the dataset.
    """
    config = TrainConfig.from_dict({"epochs": epochs, "batch": batch, **settings})
    context = init_distributed()  # under torchrun: one dataset render, one run folder
    path = broadcast_from_main(dataset_path(data, project=project) if context.is_main else None)
    train_set = load_dataset(path, "segment", "train", cache=cache_images)
    val_set = load_dataset(path, "segment", "val", cache=cache_images)
    names = tuple(train_set.names)
    task = SegmentationTask(len(names), loss=loss, label_smoothing=config.label_smoothing)
    seed_everything(config.seed)  # the new network's initial weights too
    network = model._network(imgsz, num_classes=len(names))
    for dataset in (train_set, val_set):
        check_classes(network.config, dataset)
    network.config = dataclasses.replace(network.config, names=names)
    size = network.config.image_size
    augment = {"flip": flip, "scale": tuple(scale), "colour": colour}
    # mosaics tile uint8 items, normalised once a sample after
    train_set.transforms = segmentation_transforms(True, size, normalise=False, **augment)
    training, callbacks = with_mosaic(
        train_set, size, mosaic, close_mosaic, scale=MOSAIC_SCALE, transforms=normalised_float()
    )
    run_dir = new_run_dir(project, "segment", name, exist_ok=exist_ok, resume=resume)
    args = {"data": str(data), "model": network.config.name, "loss": loss, "mosaic": mosaic}
    args |= {"close_mosaic": close_mosaic, **augment, "cache_images": cache_images}
    result = Trainer(
        network, task, training, _scored_in_original_pixels(val_set, size), config, run_dir,
        args=args, callbacks=callbacks, resume=resume,
    ).fit()  # fmt: skip
    keep_best_and_report(network, result, validate, data=path, split="val", batch=batch,
                         device=config.device, project=project)  # fmt: skip
    return result


def validate(
    model: SemanticSegmenter,
    *,
    data: str | Path,
    split: str,
    batch: int,
    device: str,
    project: str | Path,
    save_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Segmentation metrics of ``model`` on one split, in the images' original pixels.

    With ``save_dir``, also writes ``val_metrics.json``, ``val_per_class.csv`` (IoU, Dice
    and Boundary IoU of every class), ``confusion_matrix.png`` and ``val_predictions.png``
    (the first :data:`PREVIEW_IMAGES` images with their predicted masks).

    Returns:
        :class:`~visionkit.train.segment.SegmentationTask`'s metrics: ``miou``, ``mdice``,
        ``mboundary_iou``, ``pixel_accuracy``, ``mean_accuracy``, ``loss``, per-class
        arrays and the confusion matrix, and ``names``, the classes in index order.

    Raises:
        ConfigError: The dataset's classes differ from the model's.
    """
    dataset = load_dataset(dataset_path(data, project=project), "segment", split)
    check_classes(model.config, dataset)
    target = select_device(device)
    loader = DataLoader(
        _scored_in_original_pixels(dataset, model.config.image_size),
        batch_size=batch,
        collate_fn=collate_segmentation,
    )
    task = SegmentationTask(model.num_classes)
    metrics = {**evaluate(model.to(target), task, loader, target), "names": list(dataset.names)}
    if save_dir is not None:
        _save_outputs(Path(save_dir), model, dataset, metrics, device)
    return metrics


def predict(
    model: SemanticSegmenter,
    source: Source,
    *,
    batch: int,
    device: str,
    probs: bool = False,
    save: bool = False,
    out: str | Path = PREDICT_OUT,
) -> list[SegmentationResult]:
    """The class mask of every image (or video frame) of ``source``, in order, at each
    image's own size.

    Args:
        model: The segmenter.
        source: Files, a folder, a glob, a video, RGB arrays, or a list of them.
        batch: Images per forward pass.
        device: ``auto``, ``cpu``, ``cuda``...
        probs: Keep the softmax probabilities ``[C, H, W]`` in each result.
        save: Write ``<out>/<stem>.png`` (palette PNG of class indices) and
            ``<out>/<stem>_overlay.jpg`` (the classes tinted on the image) per image.
        out: The folder for ``save``.

    Returns:
        One :class:`~visionkit.api.SegmentationResult` per image.
    """
    config, target = model.config, select_device(device)
    names = config.names or tuple(str(i) for i in range(config.num_classes))
    pipeline = segmentation_transforms(False, config.image_size)
    model = ready_for_inference(model, target)
    results = []
    for chunk in in_batches(iter_images(source), batch):
        images = torch.stack([pipeline(torch.from_numpy(f.image).permute(2, 0, 1)) for f in chunk])
        with torch.no_grad():
            logits = model(images.to(target)).float()
        for frame, scores in zip(chunk, logits, strict=True):
            scores = to_original_size(scores, frame.image.shape[:2])
            results.append(
                SegmentationResult(
                    class_indices(scores, dim=0).cpu().numpy(),
                    names,
                    frame.path,
                    frame.image,
                    scores.softmax(dim=0).cpu().numpy() if probs else None,
                    frame.frame,
                )
            )
    if save:
        _save_predictions(results, Path(out))
    return results


def _scored_in_original_pixels(dataset: SegmentationDataset, size: int) -> WithOriginalMasks:
    """``dataset`` (transforms unset) as evaluation samples that carry their original masks."""
    dataset.transforms = None
    return WithOriginalMasks(dataset, segmentation_transforms(False, size))


def _save_predictions(results: list[SegmentationResult], out: Path) -> None:
    """``<stem>.png`` and ``<stem>_overlay.jpg`` for every result; a repeated stem gets
    ``_2``, ``_3``..."""
    taken: dict[str, int] = {}
    for index, result in enumerate(results):
        stem = "array" if result.path is None else result.path.stem
        stem += "" if result.frame is None else f"_{result.frame:06d}"
        stem += f"_{index}" if result.path is None else ""
        taken[stem] = taken.get(stem, 0) + 1
        stem += "" if taken[stem] == 1 else f"_{taken[stem]}"
        result.save(out / f"{stem}.png")
        save_image(result.plot(), out / f"{stem}_overlay.jpg")


def _save_outputs(
    out: Path,
    model: SemanticSegmenter,
    dataset: SegmentationDataset,
    metrics: dict[str, Any],
    device: str,
) -> None:
    """``val_metrics.json``, ``val_per_class.csv``, the confusion matrix and a preview grid."""
    out.mkdir(parents=True, exist_ok=True)
    names = dataset.names
    write_metrics(out, metrics, name="val_metrics.json")
    columns = ("iou_per_class", "dice_per_class", "boundary_iou_per_class")
    with open(out / "val_per_class.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["class", "name", "iou", "dice", "boundary_iou"])
        for index, name in enumerate(names):
            writer.writerow([index, name, *(f"{metrics[key][index]:.6g}" for key in columns)])
    plot_confusion_matrix(
        metrics["confusion_matrix"], names, rows="true",
        title="confusion matrix (pixels)", path=out / "confusion_matrix.png",
    )  # fmt: skip
    catalog = dataset.catalog
    shown = [catalog.image_path(record) for record in catalog.images[:PREVIEW_IMAGES]]
    if shown:
        found = predict(model, shown, batch=len(shown), device=device)
        save_image(make_grid([result.plot() for result in found]), out / "val_predictions.png")
    print(f"validation: mIoU {metrics['miou']:.4f}, pixel accuracy "
          f"{metrics['pixel_accuracy']:.4f}; plots and per-class IoU in {out}")  # fmt: skip
