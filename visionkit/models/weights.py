"""One resolver for every weights spec, and the one safe reader of weights files.

A weights spec is one of:

- ``None``: random initialisation;
- a torchvision enum member name of the model (``"DEFAULT"``, ``"IMAGENET1K_V1"``, or
  ``"ResNet50_Weights.IMAGENET1K_V2"``), fetched into the torch hub cache;
- ``"hf:<repo-id>"`` or ``"hf:<folder>"`` (a plain folder path works too): a transformers
  checkpoint, loaded by the model's builder through ``from_pretrained``;
- a local file: ``.safetensors`` (preferred), or ``.pt``/``.pth`` read only with
  ``torch.load(weights_only=True)``; a visionkit training checkpoint (a dict with a
  ``"model"`` state dict and a ``"model_config"``) is accepted as well.

Nothing downloads at import. With ``VISIONKIT_OFFLINE=1`` (read at call time) a weights
miss raises a :class:`~visionkit.errors.WeightsError` that names the file to put where.
A pickle that would build anything but tensors and plain containers is refused before
any of it runs, so a weights file from the internet cannot execute code.
"""

from __future__ import annotations

import os
import pickle
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from visionkit.errors import ConfigError, WeightsError
from visionkit.models._hub import fetch_torchvision, torchvision_cache_path

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "PretrainedCfg",
    "WeightsSource",
    "apply_state_dict",
    "load_weights",
    "read_state_dict",
    "read_state_file",
    "resolve_torchvision_weights",
    "resolve_weights",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class PretrainedCfg:
    """What a model's pretrained weights are and expect, kept apart from its architecture.

    Attributes:
        weights: The spec that ``weights="DEFAULT"`` stands for; ``None`` when the model
            has no pretrained weights (it trains from scratch).
        mean: Per-channel RGB mean of the input normalisation the weights were trained with.
        std: Per-channel RGB standard deviation of that normalisation.
        image_size: Square input side the weights were trained at, in pixels.
    """

    weights: str | None
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    image_size: int = 224


@dataclass(frozen=True)
class WeightsSource:
    """A weights spec resolved to where its tensors come from.

    Attributes:
        kind: ``"torchvision"``, ``"hf"`` or ``"file"``.
        spec: The spec as the user gave it (recorded in the model's config).
        location: Torch hub cache file (torchvision), repo id or folder (hf), or file path.
        url: Download address of a torchvision checkpoint, else ``None``.
        meta: Torchvision's ``Weights.meta`` (``categories``, ``min_size``...), else empty.
    """

    kind: str
    spec: str
    location: str
    url: str | None = None
    meta: dict[str, Any] = field(default_factory=dict, hash=False)

    @property
    def num_classes(self) -> int | None:
        """Classes of the head that torchvision weights were trained with, else ``None``."""
        categories = self.meta.get("categories")
        return len(categories) if categories else None


def _torchvision_enum(model_name: str) -> Any:
    """Torchvision's weights enum for builder ``model_name``, or ``None`` if it has none."""
    from torchvision.models import get_model_weights

    try:
        return get_model_weights(model_name)
    except ValueError:
        return None


def resolve_weights(
    spec: str | os.PathLike[str] | None, *, model_name: str
) -> WeightsSource | None:
    """Say where the weights of ``spec`` come from, without reading or downloading them.

    Args:
        spec: A weights spec (see the module docstring), or ``None``.
        model_name: The torchvision builder name that enum specs belong to
            (``"resnet18"``); also used in messages.

    Returns:
        ``None`` for ``None``, else a :class:`WeightsSource`.

    Raises:
        WeightsError: ``spec`` is none of the forms; the message lists the enum names.
    """
    if spec is None:
        return None
    spec = os.fspath(spec)
    if spec.startswith("hf:") and spec[3:]:
        return WeightsSource("hf", spec, spec[3:])
    enum = _torchvision_enum(model_name)
    if enum is not None:
        member = enum.__members__.get(spec.removeprefix(f"{enum.__name__}."))
        if member is not None:
            path = torchvision_cache_path(member.url)
            return WeightsSource("torchvision", spec, str(path), member.url, dict(member.meta))
    path = Path(spec).expanduser()
    if path.is_dir():
        return WeightsSource("hf", spec, str(path))
    if path.is_file():
        return WeightsSource("file", spec, str(path))
    if path.suffix or "/" in spec or os.sep in spec:
        raise WeightsError("no such weights file or folder", file=path, field="weights")
    names = f" ({', '.join(enum.__members__)})" if enum is not None else ""
    raise WeightsError(
        f"weights {spec!r} for {model_name} are not a file, a folder, a torchvision weights "
        f"name{names} or 'hf:<repo-id>'",
        field="weights",
    )


def resolve_torchvision_weights(
    spec: str | os.PathLike[str] | None, *, model_name: str
) -> WeightsSource | None:
    """:func:`resolve_weights` for a torchvision model, which loads torchvision weights and
    visionkit weights files but no Hugging Face checkpoint.

    Raises:
        WeightsError: ``spec`` is none of the forms, or names an ``hf`` checkpoint.
    """
    source = resolve_weights(spec, model_name=model_name)
    if source is not None and source.kind == "hf":
        raise WeightsError(
            f"{model_name} loads torchvision weights or visionkit weights files, not hf "
            "checkpoints",
            file=source.location,
            field="weights",
        )
    return source


def _unpickling_refusal(error: pickle.UnpicklingError) -> str:
    """One line saying why ``torch.load(weights_only=True)`` refused a file."""
    reason = str(error).split("WeightsUnpickler error:")[-1].strip()
    reason = reason.splitlines()[0].split(". ")[0] if reason else "unreadable pickle"
    return (
        f"refused: not a plain torch.save file of tensors ({reason}); unpickling other objects "
        "could run code, so nothing was executed; re-save weights you trust with "
        "torch.save(model.state_dict()) or as .safetensors"
    )


def _read_torch(path: Path) -> Any:
    """``torch.load`` with ``weights_only=True``, every failure as a WeightsError."""
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Detected pickle protocol", UserWarning)
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise WeightsError(_unpickling_refusal(error), file=path) from None
    except Exception as error:  # a damaged file fails anywhere in the zip or pickle reader
        reason = str(error).splitlines()[0] if str(error) else ""
        raise WeightsError(
            f"corrupt or truncated weights file ({type(error).__name__}: {reason}); "
            "save or download it again",
            file=path,
        ) from error


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """``safetensors.torch.load_file`` onto the CPU, every failure as a WeightsError."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError) as error:
        raise WeightsError(
            f"corrupt or truncated safetensors file ({error}); save or download it again",
            file=path,
        ) from error


def read_state_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a weights file or checkpoint safely: no code in the file ever runs.

    ``.safetensors`` files are read with safetensors; anything else with
    ``torch.load(map_location="cpu", weights_only=True)``, which builds only tensors and
    plain containers. The trainer's checkpoint loader reads through this function too.

    Args:
        path: The file.

    Returns:
        The dict stored in the file: a state dict, or a whole checkpoint (``"model"``,
        ``"model_config"``, optimiser state...).

    Raises:
        WeightsError: The file is missing, corrupt or truncated, holds objects that
            ``weights_only`` refuses (a pickle that would run code), or is not a dict.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError("no such weights file", file=path)
    data = _read_safetensors(path) if path.suffix == ".safetensors" else _read_torch(path)
    if not isinstance(data, dict):
        raise WeightsError(
            f"holds a {type(data).__name__}, not a state dict or checkpoint dict", file=path
        )
    return data


def _state_dict_of(data: dict[str, Any], *, file: str | Path) -> dict[str, torch.Tensor]:
    """The state dict inside ``data``: ``data`` itself, or a checkpoint's ``"model"``."""
    state = data["model"] if isinstance(data.get("model"), dict) else data
    if not state or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise WeightsError(
            "neither a state dict (names to tensors) nor a checkpoint with a 'model' state dict",
            file=file,
        )
    return state


def read_state_dict(source: WeightsSource) -> dict[str, torch.Tensor]:
    """The state dict of a torchvision or file source (torchvision: cached or downloaded).

    Raises:
        ConfigError: ``source`` is an hf source (transformers loads those itself).
        WeightsError: The file cannot be fetched or read, or holds no state dict.
    """
    if source.kind == "hf":
        raise ConfigError(
            f"{source.spec} is loaded by the model builder through transformers; "
            "use create_model(name, weights=...)",
            field="weights",
        )
    path = fetch_torchvision(source.url) if source.url else Path(source.location)
    return _state_dict_of(read_state_file(path), file=path)


def _check_shapes(
    model_state: dict[str, torch.Tensor], state: dict[str, torch.Tensor], file: str | Path
) -> None:
    """Refuse the first tensor whose shape differs from the model's, naming both shapes."""
    for key, own in model_state.items():  # the model's order: a layer's weight before its bias
        value = state.get(key)
        if value is not None and own.shape != value.shape:
            hint = (
                "the class count differs: pass num_classes, or drop_head=True to keep the head"
                if key.startswith("head.")
                else "build the model with the options the weights were made with"
            )
            raise WeightsError(
                f"shape {tuple(value.shape)} in the weights but {tuple(own.shape)} "
                f"in the model; {hint}",
                file=file,
                field=key,
            )


def _check_keys(
    model_state: dict[str, torch.Tensor],
    state: dict[str, torch.Tensor],
    file: str | Path,
    ignore: str | None,
) -> None:
    """Refuse weights with missing or unexpected tensors (another architecture)."""
    # BatchNorm's counter is filled in by torch when absent from older checkpoints.
    missing = [
        k
        for k in model_state
        if k not in state
        and not k.endswith("num_batches_tracked")
        and not (ignore and k.startswith(ignore))
    ]
    unexpected = [k for k in state if k not in model_state]
    if missing or unexpected:
        raise WeightsError(
            f"the weights do not fit this model: {len(missing)} missing tensors "
            f"{missing[:3]}, {len(unexpected)} unexpected {unexpected[:3]}; "
            "they are for another architecture (strict=False loads the overlap)",
            file=file,
        )


def apply_state_dict(
    model: nn.Module,
    state: dict[str, torch.Tensor],
    *,
    file: str | Path,
    strict: bool = True,
    drop_head: bool = False,
) -> nn.Module:
    """Copy ``state`` into ``model`` after checking that every tensor fits.

    Args:
        model: The module; its parameter names must be those of ``state``.
        state: Names to tensors.
        file: Where ``state`` came from, for messages.
        strict: Refuse missing and unexpected names; ``False`` loads the names both share.
        drop_head: Skip the ``head.*`` tensors of an
            :class:`~visionkit.models.ImageClassifier` and keep its own head (fine-tuning
            on another class count).

    Returns:
        ``model``, loaded in place.

    Raises:
        WeightsError: A shape differs (the message names the tensor and both shapes), or
            with ``strict``, names are missing or unexpected. Nothing is copied then.
    """
    if drop_head:
        state = {k: v for k, v in state.items() if not k.startswith("head.")}
    model_state = model.state_dict()
    _check_shapes(model_state, state, file)
    if strict:
        _check_keys(model_state, state, file, "head." if drop_head else None)
    model.load_state_dict(state, strict=False)
    return model


def load_weights(
    model: nn.Module,
    spec: str | os.PathLike[str] | None,
    *,
    model_name: str,
    strict: bool = True,
    drop_head: bool = False,
) -> nn.Module:
    """Resolve ``spec`` and load its state dict into ``model`` (``None`` leaves it as is).

    A torchvision enum spec loads torchvision's own parameter names, so ``model`` must be
    the torchvision module itself (classifier builders load it before wrapping it into an
    :class:`~visionkit.models.ImageClassifier`); a file saved from a visionkit model loads
    into the same kind of model.

    Args:
        model: The module to load into.
        spec: A weights spec (see the module docstring); ``hf:`` specs are refused here.
        model_name: The torchvision builder name that enum specs belong to, for messages.
        strict: See :func:`apply_state_dict`.
        drop_head: See :func:`apply_state_dict`.

    Returns:
        ``model``, loaded in place.

    Raises:
        WeightsError: The weights cannot be found, fetched, read or fitted.

    Example:
        >>> load_weights(model, "runs/classify/exp/weights/best.pt", model_name="resnet18")
        ... # doctest: +SKIP
    """
    source = resolve_weights(spec, model_name=model_name)
    if source is None:
        return model
    state = read_state_dict(source)
    return apply_state_dict(model, state, file=source.location, strict=strict, drop_head=drop_head)
