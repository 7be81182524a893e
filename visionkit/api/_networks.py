"""Models for the facade, any task: built from the registry, or back from a visionkit
checkpoint (``best.pt``, ``last.pt``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import nn

from visionkit.errors import ConfigError, WeightsError
from visionkit.models import ModelConfig, create_model, read_state_file
from visionkit.train import TrainResult
from visionkit.train.distributed import dist_context
from visionkit.viz.plots import plot_training_curves

__all__ = ["build_model", "keep_best_and_report", "read_checkpoint"]


def read_checkpoint(path: str | Path) -> tuple[ModelConfig, dict[str, Any], nn.Module]:
    """The config, the weights and a freshly built (not yet loaded) model of a checkpoint.

    Raises:
        WeightsError: The file is missing, corrupt, unsafe, lacks a model config, or its
            config does not build a model (names the file and the field).
    """
    state = read_state_file(path)
    if not isinstance(state.get("model_config"), dict) or not isinstance(state.get("model"), dict):
        raise WeightsError("not a visionkit checkpoint: no model and model_config", file=path)
    try:
        config = ModelConfig.from_dict(state["model_config"])
        model = create_model(config.name, num_classes=config.num_classes, **config.kwargs)
    except ConfigError as error:  # the file is at fault, not the caller's arguments
        raise WeightsError(f"model_config: {error.message}", file=path, field=error.field) from None
    return config, state["model"], model


def build_model(
    name: str, *, num_classes: int | None, weights: str | None, imgsz: int | None, **options: Any
) -> nn.Module:
    """A registry model, built at ``imgsz`` (its ``image_size`` option) when given."""
    if imgsz is not None:
        options["image_size"] = imgsz
    return create_model(name, num_classes=num_classes, weights=weights, **options)


def keep_best_and_report(
    network: nn.Module, result: TrainResult, validate: Callable[..., Any], **options: Any
) -> None:
    """End of ``Model.train``: load the run's ``best.pt`` into ``network``; on the main
    process, plot ``results.csv`` into ``results.png`` and run the task's
    ``validate(network, save_dir=<run folder>, **options)``, which writes the final
    metrics and plots beside them.
    """
    network.load_state_dict(read_state_file(result.best_path)["model"])
    if dist_context().is_main:
        run_dir = result.run_dir
        plot_training_curves(run_dir / "results.csv", title=str(run_dir),
                             path=run_dir / "results.png")  # fmt: skip
        validate(network, save_dir=run_dir, **options)
