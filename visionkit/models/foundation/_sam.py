"""Loading SAM (Kirillov et al. 2023) through transformers: names, hub repos and folders.

A SAM spec is one of:

- a known name (:data:`SAM_CHECKPOINTS`): ``"sam"`` (the ViT-B model), ``"sam-vit-base"``,
  ``"sam-vit-large"``, ``"sam-vit-huge"``;
- ``"hf:<repo-id>"`` or ``"hf:<folder>"``;
- a folder written by ``SamModel.save_pretrained`` (with the processor's
  ``save_pretrained`` files beside it, or SAM's standard preprocessing is used).

Hub checkpoints come from the Hugging Face cache, downloaded there unless
``VISIONKIT_OFFLINE=1``; a miss raises one :class:`~visionkit.errors.WeightsError` that names
the repo and the cache folder to put it in.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from visionkit.errors import ConfigError, WeightsError
from visionkit.models._hub import hf_from_pretrained
from visionkit.models.foundation._sam_predictor import SamPredictor

if TYPE_CHECKING:
    from transformers import SamImageProcessor

__all__ = ["SAM_CHECKPOINTS", "is_sam_spec", "load_sam"]

SAM_CHECKPOINTS: dict[str, str] = {
    "sam": "facebook/sam-vit-base",
    "sam-vit-base": "facebook/sam-vit-base",
    "sam-vit-large": "facebook/sam-vit-large",
    "sam-vit-huge": "facebook/sam-vit-huge",
}
"""Known SAM names and the Hugging Face repos they load (``"sam"`` is the ViT-B model)."""

_PROCESSOR_FILES = ("preprocessor_config.json", "processor_config.json")
"""Where ``save_pretrained`` writes preprocessing: the image processor's own file, or the
``SamProcessor``'s (transformers 5)."""


def is_sam_spec(model: str | os.PathLike[str]) -> bool:
    """Whether ``model`` names a SAM checkpoint rather than another model.

    True for a known name, a folder whose ``config.json`` has ``model_type`` ``"sam"``
    (plain or after ``hf:``), and an ``hf:`` repo whose name has ``sam`` as a word or a
    word ending (``facebook/sam-vit-base``, ``Zigeng/SlimSAM-uniform-77``). Nothing is
    downloaded or loaded.

    Example:
        >>> is_sam_spec("sam-vit-huge"), is_sam_spec("hf:facebook/sam-vit-base")
        (True, True)
        >>> is_sam_spec("resnet18")
        False
    """
    name = os.fspath(model).strip()
    if name.lower() in SAM_CHECKPOINTS:
        return True
    ref = name.removeprefix("hf:")
    folder = Path(ref).expanduser()
    if ref and folder.is_dir():
        return _model_type(folder) == "sam"
    if not name.startswith("hf:") or not ref:
        return False
    words = re.split(r"[^a-z0-9]+", ref.lower().rsplit("/", 1)[-1])
    return any(word.endswith("sam") for word in words)


def load_sam(spec: str | os.PathLike[str], *, device: str | torch.device = "cpu") -> SamPredictor:
    """Load a SAM checkpoint and its preprocessing into a :class:`SamPredictor`.

    Args:
        spec: A SAM spec (see the module docstring).
        device: A torch device name (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``).

    Returns:
        A predictor holding the model in eval mode on ``device``.

    Raises:
        ConfigError: ``spec`` is not a SAM spec, or ``device`` is not a device name.
        WeightsError: The folder is missing or holds no SAM checkpoint, or the hub
            checkpoint is neither cached nor downloadable (the message names the repo and
            the cache folder to place it in).

    Example:
        >>> predictor = load_sam("sam-vit-base", device="cuda")  # doctest: +SKIP
    """
    from transformers import SamModel

    ref = _reference(os.fspath(spec).strip())
    try:
        target = torch.device(device)
    except RuntimeError:
        raise ConfigError(f"{device!r} is not a device name", field="device") from None
    model = hf_from_pretrained(ref, SamModel.from_pretrained)
    return SamPredictor(model.to(target).eval(), _processor(ref))


def _reference(spec: str) -> str:
    """The repo id or folder that ``spec`` names, the folder checked to hold SAM."""
    if spec.lower() in SAM_CHECKPOINTS:
        return SAM_CHECKPOINTS[spec.lower()]
    ref = spec.removeprefix("hf:")
    folder = Path(ref).expanduser()
    if ref and folder.is_dir():
        kind = _model_type(folder)
        if kind != "sam":
            found = "no readable config.json" if kind is None else f"model_type {kind!r}"
            raise WeightsError(
                f"not a SAM checkpoint ({found}); write one with SamModel.save_pretrained",
                file=folder,
                field="model",
            )
        return ref
    if spec.startswith("hf:") and ref:
        return ref
    if "/" in spec or os.sep in spec or spec.startswith((".", "~")):
        raise WeightsError(
            "no such folder; a Hugging Face repo is written hf:<repo-id>", file=spec, field="model"
        )
    raise ConfigError(
        f"{spec!r} is not a SAM model: use {', '.join(SAM_CHECKPOINTS)}, hf:<repo-id> or a "
        "folder written by save_pretrained",
        field="model",
    )


def _model_type(folder: Path) -> str | None:
    """``model_type`` in ``folder/config.json``, or None when there is no readable one."""
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return None
    return config.get("model_type") if isinstance(config, dict) else None


def _processor(ref: str) -> SamImageProcessor | None:
    """The checkpoint's own image processor, or None for SAM's standard one.

    A folder without a processor file (``SamModel.save_pretrained`` alone writes none) and a
    hub repo without one use the standard preprocessing, which is what every released SAM
    checkpoint records.
    """
    from transformers import SamImageProcessor

    folder = Path(ref).expanduser()
    if folder.is_dir() and not any((folder / name).is_file() for name in _PROCESSOR_FILES):
        return None
    try:
        return hf_from_pretrained(ref, SamImageProcessor.from_pretrained)
    except WeightsError:
        if folder.is_dir():
            raise
        return None
