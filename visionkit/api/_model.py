"""The :class:`Model` facade: one object to train, evaluate and predict with.

It orchestrates the layers below (registry, data, trainer, metrics) and holds no logic
of its own, so what the CLI does and what a Python user does are the same code.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType
from typing import Any

from visionkit.errors import ConfigError

TASKS = ("classify", "detect", "segment")
"""Tasks that :class:`Model` serves."""

_CHECKPOINT_SUFFIXES = {".pt", ".pth"}


class Model:
    """A model by registry name or trained checkpoint, with ``train``, ``val`` and ``predict``.

    Args:
        model: A registry name (``visionkit models`` lists them) or a checkpoint written by
            training (``runs/classify/train/weights/best.pt``).
        task: What the model does: ``"classify"``, ``"detect"`` or ``"segment"``; the
            registry entry's or the checkpoint's own when None.
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
        task: str | None = None,
        weights: str | None = None,
        **options: Any,
    ) -> None:
        self.name = str(model)
        self.weights = weights
        self.options = options
        self.network = None
        self.checkpoint: Path | None = None
        if Path(model).suffix in _CHECKPOINT_SUFFIXES:
            from visionkit.api._networks import read_checkpoint

            config, state, network = read_checkpoint(model)
            self.task = _checked_task(task, config.task, f"the checkpoint {model}")
            self.network = self._backend().from_checkpoint(config, state, network, model)
            self.name = config.name
            self.checkpoint = Path(model)
        else:
            from visionkit.models import model_info

            self.task = _checked_task(task, model_info(self.name).task, repr(self.name))

    @property
    def names(self) -> tuple[str, ...] | None:
        """Class names in logit order, once the model knows them (after training)."""
        return None if self.network is None else self.network.config.names

    def train(self, *, data: str | Path, **options: Any) -> Any:
        """Train on ``data`` into ``<project>/<task>/<name>``; return the run's result.

        The keys are the task's (the CLI's ``visionkit <task> train`` lists them):
        classification takes those of :func:`visionkit.api._classify.fit` (``strategy``,
        ``teacher``, augmentation...), detection those of :func:`visionkit.api._detect.fit`
        (``mosaic``, ``close_mosaic``, augmentation, ``yolo``'s loss gains ``box``, ``cls``
        and ``dfl``...), segmentation those of :func:`visionkit.api._segment.fit`
        (``loss``, ``mosaic``, ``close_mosaic``, augmentation). All take ``epochs``,
        ``batch``, ``imgsz``, ``project``, ``name``, ``exist_ok``, ``resume`` and any
        :class:`~visionkit.train.TrainConfig` field (``lr``, ``optimizer``, ``seed``,
        ``device``...).

        Args:
            data: A dataset file or folder with ``train`` and ``val`` splits, or a
                synthetic name (``"shapes-shortcut"`` for classification, ``"shapes"`` for
                detection and segmentation).

        Returns:
            The :class:`~visionkit.train.TrainResult`; the model then holds the best weights.
        """
        return self._backend().fit(self, data=data, **options)

    def val(
        self,
        *,
        data: str | Path,
        split: str = "val",
        batch: int = 32,
        device: str = "auto",
        project: str | Path = "runs",
        **options: Any,
    ) -> dict[str, Any]:
        """Metrics of the model on one split of ``data`` (``accuracy_top1``, ``f1_macro``...
        for classification; COCO's ``map``, ``map_50``... for detection, which also takes
        ``iou``, ``max_det`` and ``save_dir`` for plots and ``predictions.json``; ``miou``,
        ``pixel_accuracy``, ``mboundary_iou``... for segmentation, which also takes
        ``save_dir`` for plots and the per-class IoU table)."""
        return self._backend().validate(
            self._network(None), data=data, split=split, batch=batch, device=device,
            project=project, **options,
        )  # fmt: skip

    def predict(
        self, source: Any, *, batch: int = 32, device: str = "auto", **options: Any
    ) -> list[Any]:
        """One result per image of ``source`` (a file, folder, glob, video, RGB array, or a
        list of them), in order: :class:`~visionkit.api.ClassificationResult`,
        :class:`~visionkit.api.DetectionResult` or :class:`~visionkit.api.SegmentationResult`.
        Detection also takes ``conf`` (0.25), ``iou`` and ``max_det`` (300); segmentation
        ``probs``, ``save`` and ``out`` (see :func:`visionkit.api._segment.predict`)."""
        return self._backend().predict(
            self._network(None), source, batch=batch, device=device, **options
        )

    def export(
        self,
        format: str = "onnx",
        *,
        out: str | Path | None = None,
        imgsz: int | None = None,
        opset: int = 17,
        dynamic_batch: bool = True,
    ) -> Path:
        """Write the model as an ONNX file (detectors: ``yolo-*`` and Faster R-CNN).

        Args:
            format: ``"onnx"``.
            out: The file to write; by default beside the checkpoint (``best.onnx``) or
                ``<name>.onnx`` in the working folder.
            imgsz: Input side of the graph; the model's own when None.
            opset: ONNX opset.
            dynamic_batch: Leave the batch size of ``yolo`` graphs free.

        Returns:
            The written file; see :func:`visionkit.models.export.export_onnx` for its
            inputs, outputs and metadata.

        Raises:
            ConfigError: Another format, or a model family without an export.
        """
        if format != "onnx":
            raise ConfigError(f"unknown export format {format!r}; expected 'onnx'", field="format")
        from visionkit.models.export import export_onnx

        if out is None:
            base = self.checkpoint or Path(self.name)
            out = base.with_suffix(".onnx") if self.checkpoint else Path(f"{self.name}.onnx")
        return export_onnx(
            self._network(None), out, imgsz=imgsz, opset=opset, dynamic_batch=dynamic_batch
        )

    def _backend(self) -> ModuleType:
        """The module that implements this model's task."""
        return importlib.import_module(f"visionkit.api._{self.task}")

    def _network(self, imgsz: int | None, num_classes: int | None = None) -> Any:
        """The network, built from the registry on first use (at ``imgsz`` when given).

        A registry model not trained yet is rebuilt when ``num_classes`` (a dataset's
        class count) differs from its own; a trained one keeps its classes, and training
        or validation on other classes is refused with the dataset named.

        Raises:
            ConfigError: ``imgsz`` differs from the size of a network already built or
                loaded (the transforms and a ViT's position embeddings follow that size).
        """
        untrained = self.network is None or self.network.config.names is None
        if self.network is None or (
            untrained and num_classes not in (None, self.network.num_classes)
        ):
            from visionkit.api._networks import build_model

            self.network = build_model(
                self.name, num_classes=num_classes, weights=self.weights, imgsz=imgsz,
                **self.options,
            )  # fmt: skip
        elif imgsz is not None and imgsz != self.network.config.image_size:
            raise ConfigError(
                f"the model is built for {self.network.config.image_size} px, got {imgsz}; "
                "leave imgsz unset or start from a new Model",
                field="imgsz",
            )
        return self.network


def _checked_task(asked: str | None, actual: str, what: str) -> str:
    """The model's task; ConfigError when the caller asked for an unknown or other task."""
    if asked is not None and asked not in TASKS:
        raise ConfigError(f"unknown task {asked!r}; expected one of {TASKS}", field="task")
    if asked is not None and asked != actual:
        raise ConfigError(f"{what} is a {actual} model, not {asked}", field="task")
    if actual not in TASKS:
        raise ConfigError(
            f"{what} is a {actual} model, which Model does not serve yet", field="task"
        )
    return actual
