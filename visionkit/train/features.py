"""The cached-features fast path for the ``linear`` strategy.

With a frozen backbone every epoch of a linear probe recomputes the same features. Here
the backbone runs once per image (:func:`extract_features`, eval mode, no gradients),
the head trains on the cached ``[N, D]`` tensor in a few seconds
(:func:`train_linear_head`), and :func:`install_head` puts it back into the classifier,
which then predicts exactly what the head predicts on the cached features. This is how
DINO and MAE evaluate their linear probes, without augmentation of the training images.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from visionkit.errors import ConfigError
from visionkit.train.checkpoint import save_checkpoint
from visionkit.train.classify import ClassificationTask
from visionkit.train.config import TrainConfig
from visionkit.train.distributed import select_device
from visionkit.train.run_dir import plain, write_args, write_metrics
from visionkit.train.trainer import TrainResult, evaluate

__all__ = ["extract_features", "fit_linear_probe", "install_head", "train_linear_head"]


def extract_features(
    model: nn.Module,
    data: Dataset | DataLoader,
    *,
    batch: int = 64,
    device: str | torch.device | None = None,
) -> tuple[Tensor, Tensor]:
    """Run ``model.forward_features`` once over ``data`` in eval mode, without gradients.

    The model's train/eval modes are restored afterwards.

    Args:
        model: A classifier with ``forward_features`` (``[B, 3, H, W] -> [B, D]``).
        data: A dataset of ``(image, label)`` items, read in order ``batch`` at a time,
            or a ready ``DataLoader`` of ``(images, labels)`` batches (``batch`` unused).
        batch: Images per forward pass when ``data`` is a dataset.
        device: Where the images go; ``None`` means the device of the model's parameters.
            The model is not moved.

    Returns:
        ``features`` float ``[N, D]`` and ``labels`` int64 ``[N]``, both on the CPU, in the
        order that ``data`` yields them.

    Raises:
        ConfigError: ``batch`` below 1, or ``data`` yields no image.
    """
    if batch < 1:
        raise ConfigError(f"batch must be >= 1, got {batch}", field="batch")
    loader = data if isinstance(data, DataLoader) else DataLoader(data, batch_size=batch)
    if device is None:
        device = next(model.parameters()).device
    features, labels = [], []
    with _evaluating(model), torch.no_grad():
        for images, targets in loader:
            features.append(model.forward_features(images.to(device)).float().cpu())
            labels.append(torch.as_tensor(targets).long().cpu())
    if not features:
        raise ConfigError("the data yields no images to extract features from", field="data")
    return torch.cat(features), torch.cat(labels)


def train_linear_head(
    features: Tensor,
    labels: Tensor,
    num_classes: int,
    *,
    epochs: int = 100,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    batch: int | None = 256,
    seed: int = 0,
) -> nn.Linear:
    """Fit ``nn.Linear(D, num_classes)`` to cached features with AdamW and cross-entropy.

    The head starts at zero (softmax regression is convex, so no random start is needed)
    and the mini-batch order comes from ``seed``, so the result is a pure function of the
    arguments. Training runs on the device of ``features``.

    Args:
        features: Float ``[N, D]`` from :func:`extract_features`.
        labels: Class indices ``[N]`` in ``0 .. num_classes - 1``.
        num_classes: Output width of the head.
        epochs: Passes over the features.
        lr: AdamW learning rate.
        weight_decay: AdamW decoupled weight decay.
        batch: Features per step; ``None`` for full-batch steps.
        seed: Seed of the mini-batch shuffling.

    Returns:
        The trained head, in train mode, on the device of ``features``.

    Raises:
        ConfigError: Shapes that disagree, labels out of range, or a non-positive
            ``epochs``, ``lr`` or ``batch``.
    """
    _check_training(features, labels, num_classes, epochs, lr, batch)
    head = nn.Linear(features.shape[1], num_classes).to(features.device)
    nn.init.zeros_(head.weight)
    nn.init.zeros_(head.bias)
    optimizer = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=weight_decay)
    generator = torch.Generator().manual_seed(seed)
    step = batch or len(features)
    for _ in range(epochs):
        order = torch.randperm(len(features), generator=generator).to(features.device)
        for chunk in order.split(step):
            loss = nn.functional.cross_entropy(head(features[chunk]), labels[chunk])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return head


def install_head(model: nn.Module, head: nn.Linear) -> None:
    """Copy a trained ``head`` into ``model.head``, in place.

    When the class counts differ, ``model.reset_classifier(head.out_features)`` makes room
    first. The model's head keeps its own device and dtype.

    Raises:
        ConfigError: ``head.in_features`` is not ``model.feature_dim``.
    """
    if head.in_features != model.feature_dim:
        raise ConfigError(
            f"head takes {head.in_features} features but the model gives {model.feature_dim}",
            field="head",
        )
    if head.out_features != model.num_classes:
        model.reset_classifier(head.out_features)
    model.head.load_state_dict(head.state_dict())


def _check_training(
    features: Tensor, labels: Tensor, num_classes: int, epochs: int, lr: float, batch: int | None
) -> None:
    """Refuse inputs that :func:`train_linear_head` cannot fit."""
    if features.ndim != 2 or labels.shape != (len(features),) or len(features) == 0:
        raise ConfigError(
            f"need features [N, D] and labels [N] with N >= 1, got {tuple(features.shape)} "
            f"and {tuple(labels.shape)}",
            field="features",
        )
    if labels.is_floating_point() or labels.is_complex():
        raise ConfigError(f"labels must be class indices, got {labels.dtype}", field="labels")
    if int(labels.min()) < 0 or int(labels.max()) >= num_classes:
        raise ConfigError(f"labels must lie in 0 .. {num_classes - 1}", field="labels")
    for name, value in (("epochs", epochs), ("lr", lr), ("batch", 1 if batch is None else batch)):
        if not value > 0:
            raise ConfigError(f"{name} must be positive, got {value}", field=name)


@contextmanager
def _evaluating(model: nn.Module) -> Iterator[None]:
    """Put every module of ``model`` in eval mode, then restore each one's own mode."""
    modes = {module: module.training for module in model.modules()}
    model.eval()
    try:
        yield
    finally:
        for module, training in modes.items():
            module.training = training


def fit_linear_probe(
    model: nn.Module,
    task: ClassificationTask,
    train_data: Dataset,
    val_data: Dataset,
    config: TrainConfig,
    run_dir: str | Path,
    *,
    args: dict[str, Any] | None = None,
) -> TrainResult:
    """The ``linear`` strategy's run on cached features, written like a trainer's run.

    Features of ``train_data`` are extracted once (give it evaluation transforms: no
    augmentation reaches cached features), the head trains for ``config.epochs`` passes
    over them, and the model is scored on ``val_data`` by ``task``. The run folder gets
    ``args.yaml``, ``metrics.json`` and ``weights/best.pt`` = ``weights/last.pt``.
    """
    device = select_device(config.device)
    features, labels = extract_features(model, train_data, batch=config.batch, device=device)
    head = train_linear_head(
        features, labels, task.num_classes, epochs=config.epochs, lr=config.lr,
        weight_decay=config.weight_decay, batch=config.batch, seed=config.seed,
    )  # fmt: skip
    install_head(model, head)
    loader = DataLoader(val_data, batch_size=config.batch)
    metrics = plain(evaluate(model.to(device), task, loader, device))
    run_dir = Path(run_dir)
    write_args(run_dir, {"task": task.name, **(args or {}), **config.to_dict(), "cache": True})
    fitness = float(metrics[task.fitness_key])
    write_metrics(run_dir, {"task": task.name, "best": metrics, "last": metrics})
    best = run_dir / "weights" / "best.pt"
    state = {"model": model.state_dict(), "model_config": model.config.to_dict(), "epoch": 1}
    for path in (best, best.with_name("last.pt")):
        save_checkpoint(path, state)
    return TrainResult(run_dir, best, best.with_name("last.pt"), fitness, 1, metrics, 1)
