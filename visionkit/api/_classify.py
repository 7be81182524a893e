"""Classification behind :class:`~visionkit.api.Model`: build, train, evaluate, predict.

Every step uses the layers below it (registry, datasets and transforms, the trainer with
a transfer strategy, the metrics) and adds no behaviour of its own beyond wiring them.
"""

from __future__ import annotations

import dataclasses
import glob
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from visionkit.api._data import dataset_path
from visionkit.api._results import ClassificationResult
from visionkit.data.datasets import ClassificationDataset, load_dataset
from visionkit.data.images import is_image_file, read_image
from visionkit.data.transforms import classification_transforms
from visionkit.errors import ConfigError, DataError, WeightsError
from visionkit.models import ImageClassifier, ModelConfig, create_model, read_state_file
from visionkit.models.weights import apply_state_dict
from visionkit.train import ClassificationTask, TrainConfig, Trainer, TrainResult, new_run_dir
from visionkit.train.distill import DistillationTask
from visionkit.train.distributed import broadcast_from_main, init_distributed, select_device
from visionkit.train.features import fit_linear_probe
from visionkit.train.lora import add_lora, merge_lora
from visionkit.train.trainer import evaluate
from visionkit.train.transfer import apply_strategy, parse_strategy

Source = str | Path | np.ndarray | Sequence[str | Path | np.ndarray]
"""What ``predict`` takes: an image file, a folder, a glob, an RGB array, or a list of them."""

AUGMENT_KEYS = ("flip", "crop_scale", "colour")
"""Training-augmentation keys of :func:`~visionkit.data.transforms.classification_transforms`."""


def load_classifier(path: str | Path) -> ImageClassifier:
    """Rebuild a trained classifier from a visionkit checkpoint (``best.pt``, ``last.pt``).

    LoRA adapters in the checkpoint are merged, so the model is plain modules again.

    Raises:
        WeightsError: The file is missing, corrupt, unsafe, lacks a model config, or its
            config or weights do not build a model (names the file and the field).
    """
    state = read_state_file(path)
    if not isinstance(state.get("model_config"), dict) or not isinstance(state.get("model"), dict):
        raise WeightsError("not a visionkit checkpoint: no model and model_config", file=path)
    try:
        config = ModelConfig.from_dict(state["model_config"])
        model = create_model(config.name, num_classes=config.num_classes, **config.kwargs)
    except ConfigError as error:  # the file is at fault, not the caller's arguments
        raise WeightsError(f"model_config: {error.message}", file=path, field=error.field) from None
    weights = state["model"]
    lora_ranks = {t.shape[0] for k, t in weights.items() if ".lora_A." in k}
    if lora_ranks:
        add_lora(model, max(lora_ranks))
    apply_state_dict(model, weights, file=path)  # a misfit is a WeightsError, not a traceback
    if lora_ranks:
        model = merge_lora(model)
    model.config = config
    return model.eval()


def build_classifier(
    name: str, *, num_classes: int | None, weights: str | None, imgsz: int | None, **options: Any
) -> ImageClassifier:
    """A registry classifier, built at ``imgsz`` when given."""
    if imgsz is not None:
        options["image_size"] = imgsz
    return create_model(name, num_classes=num_classes, weights=weights, **options)


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
    last = Path(run["project"]) / "classify" / run["name"] / "weights" / "last.pt"
    if run["resume"] and not last.is_file():  # before a run folder is made under that name
        raise WeightsError("no run to resume: the checkpoint does not exist", file=last)
    run_dir = new_run_dir(
        run["project"], "classify", run["name"], exist_ok=run["exist_ok"] or run["resume"]
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
    model = model.to(target).eval()
    results = []
    items = list(_images(source))
    for start in range(0, len(items), batch):
        chunk = items[start : start + batch]
        images = torch.stack([pipeline(image) for _, image in chunk]).to(target)
        with torch.no_grad():
            probs = model(images).float().softmax(dim=1).cpu().numpy()
        results += [
            ClassificationResult(p, names, path, image)
            for (path, image), p in zip(chunk, probs, strict=True)
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


def _images(source: Source) -> Iterator[tuple[Path | None, np.ndarray]]:
    """``(path or None, RGB array)`` for every image that ``source`` names."""
    if isinstance(source, np.ndarray):
        yield None, _rgb_array(source)
        return
    if isinstance(source, (list, tuple)):
        for item in source:
            yield from _images(item)
        return
    for path in _paths(str(source)):
        yield path, read_image(path)


def _rgb_array(array: np.ndarray) -> np.ndarray:
    """``array`` as ``uint8`` ``[H, W, 3]`` (gray ``[H, W]`` is repeated), else a DataError."""
    if array.dtype == np.uint8 and array.ndim == 2:
        return np.repeat(array[:, :, None], 3, axis=2)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
        raise DataError(
            f"an image array must be uint8 RGB [H, W, 3] or gray [H, W], got {array.dtype} "
            f"{list(array.shape)}; pass several images as a list",
            field="source",
        )
    return array


def _paths(source: str) -> list[Path]:
    path = Path(source)
    if path.is_dir():
        found = sorted(p for p in path.rglob("*") if p.is_file() and is_image_file(p))
    elif path.is_file():
        found = [path]
    else:
        found = sorted(Path(p) for p in glob.glob(source, recursive=True) if is_image_file(p))
    if not found:
        raise DataError("no image file, folder of images or glob matches", file=source)
    return found
