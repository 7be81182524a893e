"""The :class:`Model` facade: one object to train, evaluate and predict with.

It orchestrates the layers below (registry, data, trainer, metrics) and holds no logic
of its own, so what the CLI does and what a Python user does are the same code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from visionkit.errors import ConfigError

TASKS = ("classify",)
"""Tasks that :class:`Model` serves."""

_CHECKPOINT_SUFFIXES = {".pt", ".pth"}


class Model:
    """A model by registry name or trained checkpoint, with ``train``, ``val`` and ``predict``.

    Args:
        model: A registry name (``visionkit models`` lists them) or a checkpoint written by
            training (``runs/classify/train/weights/best.pt``).
        task: What the model does; ``"classify"``.
        weights: For a registry name: ``None`` (random init), a torchvision weights name
            (``"DEFAULT"``, ``"IMAGENET1K_V1"``), ``"hf:<repo-id>"`` or a local file.
        **options: Builder options of the registry entry (``width``, ``drop_rate``...).

    Example:
        >>> model = Model("cnn-small")
        >>> model.train(data="shapes-shortcut", epochs=3, imgsz=64)  # doctest: +SKIP
        >>> model.predict("photo.jpg")[0].name  # doctest: +SKIP
    """

    def __init__(
        self,
        model: str | Path = "cnn-small",
        *,
        task: str = "classify",
        weights: str | None = None,
        **options: Any,
    ) -> None:
        if task not in TASKS:
            raise ConfigError(f"unknown task {task!r}; expected one of {TASKS}", field="task")
        self.task = task
        self.name = str(model)
        self.weights = weights
        self.options = options
        self.network = None
        if Path(model).suffix in _CHECKPOINT_SUFFIXES:
            from visionkit.api._classify import load_classifier

            self.network = load_classifier(model)
            self.name = self.network.config.name

    @property
    def names(self) -> tuple[str, ...] | None:
        """Class names in logit order, once the model knows them (after training)."""
        return None if self.network is None else self.network.config.names

    def train(
        self,
        *,
        data: str | Path,
        epochs: int = 10,
        batch: int = 32,
        imgsz: int | None = None,
        strategy: str = "full",
        teacher: Model | str | Path | None = None,
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
    ) -> Any:
        """Train on ``data`` into ``<project>/classify/<name>``; return the run's result.

        Args:
            data: A dataset file or folder (image folders ``<split>/<class>/<image>``,
                COCO, YOLO...) with ``train`` and ``val`` splits, or a synthetic name
                (``"shapes-shortcut"``).
            epochs, batch: Passes over the data; images per step.
            imgsz: Input side in pixels; the model's own size when None.
            strategy: ``"full"``, ``"linear"``, ``"partial:N"`` or ``"lora:R"``.
            teacher: A model (or checkpoint) to distil from, DeiT-style.
            distill, alpha, tau: ``"soft"`` or ``"hard"`` distillation and its settings.
            flip, crop_scale, colour: Training augmentation (no flips for digits or text).
            project, name, exist_ok: The run folder (``name2``... when taken).
            resume: Continue the run ``name`` from its ``weights/last.pt``.
            cache: With ``strategy="linear"``: extract features once and train the head
                on them (no augmentation), much faster than epochs through the backbone.
            **settings: Any :class:`~visionkit.train.TrainConfig` field (``lr``,
                ``optimizer``, ``seed``, ``device``, ``patience``, ``ema``...).

        Returns:
            The :class:`~visionkit.train.TrainResult`; the model then holds the best weights.
        """
        from visionkit.api import _classify
        from visionkit.train import TrainConfig
        from visionkit.train.distributed import seed_everything

        seed_everything(settings.get("seed", TrainConfig.seed))  # new heads and adapters too
        network = self._network(imgsz)
        return _classify.train(
            network,
            data=data,
            strategy=strategy,
            teacher=None if teacher is None else _as_model(teacher)._network(None),
            distill={"kind": distill, "alpha": alpha, "tau": tau},
            augment={"flip": flip, "crop_scale": tuple(crop_scale), "colour": colour},
            run={
                "project": project,
                "name": name,
                "exist_ok": exist_ok,
                "resume": resume,
                "cache": cache,
            },
            settings={"epochs": epochs, "batch": batch, **settings},
        )

    def val(
        self,
        *,
        data: str | Path,
        split: str = "val",
        batch: int = 64,
        device: str = "auto",
        project: str | Path = "runs",
    ) -> dict[str, Any]:
        """Metrics of the model on one split of ``data`` (``accuracy_top1``, ``f1_macro``...)."""
        from visionkit.api import _classify

        return _classify.validate(
            self._network(None), data=data, split=split, batch=batch, device=device,
            project=project,
        )  # fmt: skip

    def predict(self, source: Any, *, batch: int = 32, device: str = "auto") -> list[Any]:
        """One :class:`~visionkit.api.ClassificationResult` per image of ``source`` (a file,
        folder, glob, RGB array, or a list of them), in order."""
        from visionkit.api import _classify

        return _classify.predict(self._network(None), source, batch=batch, device=device)

    def _network(self, imgsz: int | None) -> Any:
        """The network, built from the registry on first use (at ``imgsz`` when given).

        Raises:
            ConfigError: ``imgsz`` differs from the size of a network already built or
                loaded (the transforms and a ViT's position embeddings follow that size).
        """
        if self.network is None:
            from visionkit.api._classify import build_classifier

            self.network = build_classifier(
                self.name, num_classes=None, weights=self.weights, imgsz=imgsz, **self.options
            )
        elif imgsz is not None and imgsz != self.network.config.image_size:
            raise ConfigError(
                f"the model is built for {self.network.config.image_size} px, got {imgsz}; "
                "leave imgsz unset or start from a new Model",
                field="imgsz",
            )
        return self.network


def _as_model(value: Model | str | Path) -> Model:
    return value if isinstance(value, Model) else Model(value)
