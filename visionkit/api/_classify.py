"""Classification behind :class:`~visionkit.api.Model`: build, train, evaluate, predict.

Every step uses the layers below it (registry, datasets and transforms, the trainer with
a transfer strategy, the metrics) and adds no behaviour of its own beyond wiring them.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from visionkit.api._data import dataset_path
from visionkit.api._networks import read_checkpoint
from visionkit.api._results import ClassificationResult
from visionkit.api._sources import Source, in_batches, iter_images
from visionkit.data.datasets import ClassificationDataset, load_dataset
from visionkit.data.transforms import classification_transforms
from visionkit.errors import ConfigError
from visionkit.models import ImageClassifier, ModelConfig, read_state_file
from visionkit.models.weights import apply_state_dict
from visionkit.train import ClassificationTask, TrainConfig, Trainer, TrainResult, new_run_dir
from visionkit.train.distill import DistillationTask
from visionkit.train.distributed import (
    broadcast_from_main,
    init_distributed,
    ready_for_inference,
    seed_everything,
    select_device,
)
from visionkit.train.features import fit_linear_probe
from visionkit.train.lora import add_lora, merge_lora
from visionkit.train.trainer import evaluate
from visionkit.train.transfer import apply_strategy, parse_strategy

AUGMENT_KEYS = ("flip", "crop_scale", "colour")
"""Training-augmentation keys of :func:`~visionkit.data.transforms.classification_transforms`."""


def load_classifier(path: str | Path) -> ImageClassifier:
    """Rebuild a trained classifier from a visionkit checkpoint (``best.pt``, ``last.pt``).

    LoRA adapters in the checkpoint are merged, so the model is plain modules again.

    Raises:
        WeightsError: The file is missing, corrupt, unsafe, lacks a model config, or its
            config or weights do not build a model (names the file and the field).
    """
    return from_checkpoint(*read_checkpoint(path), path)


def from_checkpoint(
    config: ModelConfig, weights: dict[str, Any], model: ImageClassifier, path: str | Path
) -> ImageClassifier:
    """``model`` (built from ``config``) with the checkpoint's ``weights``, LoRA merged."""
    lora_ranks = {t.shape[0] for k, t in weights.items() if ".lora_A." in k}
    if lora_ranks:
        add_lora(model, max(lora_ranks))
    apply_state_dict(model, weights, file=path)  # a misfit is a WeightsError, not a traceback
    if lora_ranks:
        model = merge_lora(model)
    model.config = config
    return model.eval()


def fit(
    model: Any,
    *,
    data: str | Path,
    epochs: int = 10,
    batch: int = 32,
    imgsz: int | None = None,
    strategy: str = "full",
    teacher: Any = None,
    distill: str = "soft",
    alpha: float = 0.5,
    tau: float = 1.0,
    flip: float = 0.5,
    crop_scale: tuple[float, float] = (0.08, 1.0),
    colour: bool = True,
    project: str | Path = "runs",
    name: str = "train",
    exist_ok: bool = False,
    resume: bool = False,
    cache: bool = False,
    **settings: Any,
) -> TrainResult:
    """``Model.train`` for a classifier: train into ``<project>/classify/<name>``.

    Args:
        model: The :class:`~visionkit.api.Model` to train.
        data: A dataset file or folder (image folders ``<split>/<class>/<image>``, COCO,
            YOLO...) with ``train`` and ``val`` splits, or a synthetic name
            (``"shapes-shortcut"``).
        epochs, batch: Passes over the data; images per step.
        imgsz: Input side in pixels; the model's own size when None.
        strategy: ``"full"``, ``"linear"``, ``"partial:N"`` or ``"lora:R"``.
        teacher: A model (or checkpoint) to distil from, DeiT-style.
        distill, alpha, tau: ``"soft"`` or ``"hard"`` distillation and its settings.
        flip, crop_scale, colour: Training augmentation (no flips for digits or text).
        project, name, exist_ok: The run folder (``name2``... when taken).
        resume: Continue the run ``name`` from its ``weights/last.pt``.
        cache: With ``strategy="linear"``: extract features once and train the head on
            them (no augmentation), much faster than epochs through the backbone.
        **settings: Any :class:`~visionkit.train.TrainConfig` field (``lr``,
            ``optimizer``, ``seed``, ``device``, ``patience``, ``ema``...).

    Returns:
        The :class:`~visionkit.train.TrainResult`; the model then holds the best weights.
    """
    from visionkit.api._model import Model

    seed_everything(settings.get("seed", TrainConfig.seed))  # new heads and adapters too
    network = model._network(imgsz)
    if teacher is not None:
        teacher = (teacher if isinstance(teacher, Model) else Model(teacher))._network(None)
    return train(
        network,
        data=data,
        strategy=strategy,
        teacher=teacher,
        distill={"kind": distill, "alpha": alpha, "tau": tau},
        augment={"flip": flip, "crop_scale": tuple(crop_scale), "colour": colour},
        run={"project": project, "name": name, "exist_ok": exist_ok, "resume": resume,
             "cache": cache},
        settings={"epochs": epochs, "batch": batch, **settings},
    )  # fmt: skip


def train(
    model: ImageClassifier,
    *,
    data: str | Path,
    strategy: str,
    teacher: ImageClassifier | None,
    distill: dict[str, Any],
    augment: dict[str, Any],
    run: dict[str, Any],
    settings: dict[str, Any],
) -> TrainResult:
    """Train ``model`` on ``data`` with a transfer ``strategy`` into a new run folder.

    The model's head is reset to the dataset's classes, the strategy freezes what it
    freezes, the class names go into the model config (so checkpoints know them), and the
    best weights are loaded back into ``model`` at the end.
    """
    config = TrainConfig.from_dict(settings)  # a misspelt setting fails before any work
    context = init_distributed()  # under torchrun: one dataset render, one run folder
    path = broadcast_from_main(
        dataset_path(data, project=run["project"]) if context.is_main else None
    )
    train_set = load_dataset(path, "classify", "train")
    val_set = load_dataset(path, "classify", "val")
    names = tuple(train_set.names)
    if teacher is not None:
        _check_classes(teacher.config, train_set, who="teacher")
    task = (
        ClassificationTask(len(names), label_smoothing=config.label_smoothing)
        if teacher is None
        else DistillationTask(len(names), teacher, **distill)
    )
    cache = run["cache"]
    if cache and (str(parse_strategy(strategy)) != "linear" or teacher or run["resume"]):
        raise ConfigError("cached features serve a plain linear probe only", field="cache")
    if model.config.names not in (None, names):  # same count, other classes: a new head
        model.reset_classifier(len(names))
    report = apply_strategy(model, strategy, num_classes=len(names))
    model.config = dataclasses.replace(model.config, names=names)
    train_set.transforms = _transforms(model.config, train=not cache, **({} if cache else augment))
    val_set.transforms = _transforms(model.config, train=False)
    if context.is_main and not config.quiet:
        print(report)
    run_dir = new_run_dir(
        run["project"], "classify", run["name"], exist_ok=run["exist_ok"], resume=run["resume"]
    )
    args = {"data": str(data), "model": model.config.name, "strategy": strategy, **augment}
    if cache:
        return fit_linear_probe(model, task, train_set, val_set, config, run_dir, args=args)
    result = Trainer(
        model, task, train_set, val_set, config, run_dir, args=args, resume=run["resume"]
    ).fit()
    model.load_state_dict(read_state_file(result.best_path)["model"])
    return result


def validate(
    model: ImageClassifier,
    *,
    data: str | Path,
    split: str,
    batch: int,
    device: str,
    project: str | Path,
) -> dict[str, Any]:
    """Classification metrics of ``model`` on one split of ``data``.

    Raises:
        ConfigError: The dataset's classes differ from the model's.
    """
    dataset = load_dataset(dataset_path(data, project=project), "classify", split)
    _check_classes(model.config, dataset)
    dataset.transforms = _transforms(model.config, train=False)
    target = select_device(device)
    loader = DataLoader(dataset, batch_size=batch)
    return evaluate(model.to(target), ClassificationTask(model.num_classes), loader, target)


def predict(
    model: ImageClassifier, source: Source, *, batch: int, device: str
) -> list[ClassificationResult]:
    """Class probabilities of every image in ``source``, in order."""
    config, target = model.config, select_device(device)
    names = config.names or tuple(str(i) for i in range(config.num_classes))
    pipeline = _transforms(config, train=False)
    model = ready_for_inference(model, target)
    results = []
    for chunk in in_batches(iter_images(source), batch):
        images = torch.stack([pipeline(item.image) for item in chunk]).to(target)
        with torch.no_grad():
            probs = model(images).float().softmax(dim=1).cpu().numpy()
        results += [
            ClassificationResult(p, names, item.path, item.image)
            for item, p in zip(chunk, probs, strict=True)
        ]
    return results


def _transforms(config: ModelConfig, *, train: bool, **augment: Any) -> Any:
    return classification_transforms(
        train, config.image_size, mean=config.mean, std=config.std, **augment
    )


def _check_classes(
    config: ModelConfig, dataset: ClassificationDataset, *, who: str = "model"
) -> None:
    """Refuse a model (or teacher: ``who``) whose classes are not the dataset's, in order."""
    names = tuple(dataset.names)
    if len(names) != config.num_classes or (config.names and config.names != names):
        raise ConfigError(
            f"the dataset has classes {list(names)} but the {who} "
            f"{list(config.names) if config.names else config.num_classes}",
            file=dataset.catalog.source,
            field="data" if who == "model" else who,
        )
