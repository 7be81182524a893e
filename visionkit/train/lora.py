"""LoRA adapters for a classifier's backbone, through peft.

LoRA (Hu et al., 2021, arXiv:2106.09685) replaces a frozen layer ``W x`` with
``W x + (alpha / r) * B A x``, where ``A`` maps to ``r`` channels and ``B`` is zero at
the start, so the adapted model computes exactly what the base model computed until the
first optimiser step. peft's ``lora.Linear`` and ``lora.Conv2d`` do the work.

Only ``model.backbone`` is adapted, in place (peft's ``inject_adapter_in_model``): the
backbone keeps its module names, so ``forward_features``, ``stage_names`` and
``stages()`` of the classifier protocol still work, and ``model.head`` stays an ordinary,
fully trainable ``nn.Linear``. :func:`merge_lora` folds the adapters back into plain
layers for export.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from torch import nn

from visionkit.errors import ConfigError

if TYPE_CHECKING:
    from peft.tuners.lora import LoraLayer

__all__ = ["LORA_TARGETS", "add_lora", "lora_parameters", "merge_lora"]

LORA_TARGETS = ("linear", "conv")
"""The layer kinds :func:`add_lora` adapts; ``target`` joins them with ``+``."""


def add_lora(
    model: nn.Module,
    rank: int,
    *,
    alpha: float | None = None,
    dropout: float = 0.0,
    target: str = "linear+conv",
) -> nn.Module:
    """Add LoRA adapters to the backbone's linear and 2-D convolution layers, in place.

    Every base weight of the backbone is frozen; the adapters (``A`` random, ``B`` zero)
    and ``model.head`` are trainable. Convolutions that peft cannot adapt faithfully are
    left alone, frozen: grouped ones (peft cannot merge them), dilated ones (peft's
    ``A`` ignores the dilation) and those padding with anything but zeros. Linear layers
    inside ``nn.MultiheadAttention`` are skipped too, because the attention reads their
    weight directly and never calls them.

    Args:
        model: A classifier with ``backbone`` and ``head`` (the classifier protocol).
        rank: ``r``, the adapters' inner width; at least 1.
        alpha: Scale numerator: the update is ``(alpha / rank) * B A x``. ``None`` means
            ``rank`` (scale 1).
        dropout: Dropout on the adapters' input, in ``[0, 1)``.
        target: Which layers to adapt: ``"linear"``, ``"conv"`` or ``"linear+conv"``.

    Returns:
        ``model`` itself, adapted.

    Raises:
        ConfigError: A bad argument, a model outside the protocol, a model that already
            has adapters, or a backbone without any layer to adapt.

    Example:
        >>> model = add_lora(model, rank=8)  # doctest: +SKIP
        >>> optimizer = torch.optim.AdamW(p for p in model.parameters() if p.requires_grad)
    """
    kinds = _parse_target(target)
    _check_numbers(rank, alpha, dropout)
    backbone, head = _backbone_and_head(model)
    if lora_parameters(model):
        raise ConfigError(
            "the model already has LoRA adapters; merge_lora() it first", field="model"
        )
    names = [
        name
        for name, module in backbone.named_modules()
        if name and _adaptable(backbone, name, module, kinds)
    ]
    if not names:
        raise ConfigError(f"the backbone has no {target} layer that LoRA can adapt", field="target")

    from peft import LoraConfig, inject_adapter_in_model

    config = LoraConfig(
        r=rank,
        lora_alpha=rank if alpha is None else alpha,
        lora_dropout=dropout,
        # A full-match pattern of exact names: peft's list form matches by suffix, which
        # could also catch an unrelated deeper module that happens to share a name.
        target_modules="|".join(re.escape(name) for name in names),
        bias="none",
    )
    inject_adapter_in_model(config, backbone)
    head.requires_grad_(True)
    return model


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every LoRA adapter into its base layer and remove the adapters, in place.

    Each adapted layer becomes its plain ``nn.Linear`` / ``nn.Conv2d`` again with
    ``W + (alpha / r) * B A`` as its weight, so the model computes the same function
    (up to float rounding), exports without peft, and has the base model's state-dict
    keys. Parameters keep their ``requires_grad`` flags.

    Args:
        model: A classifier that :func:`add_lora` adapted.

    Returns:
        ``model`` itself, merged.

    Raises:
        ConfigError: The model has no LoRA adapters.
    """
    backbone, _ = _backbone_and_head(model)
    layers = _lora_layers(backbone)
    if not layers:
        raise ConfigError("the model has no LoRA adapters to merge", field="model")
    for name, layer in layers.items():
        layer.merge(safe_merge=True)
        parent, _, child = name.rpartition(".")
        setattr(backbone.get_submodule(parent), child, layer.get_base_layer())
    # peft records its config on the module it injected into; a plain model has none.
    if hasattr(backbone, "peft_config"):
        del backbone.peft_config
    return model


def lora_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """The LoRA adapter parameters (``A`` and ``B`` matrices) by qualified name.

    Useful for an optimiser group of their own or to save the adapters alone; empty when
    the model has no adapters.
    """
    # peft names every adapter tensor "lora_*" and uses the same prefix to freeze the rest.
    return {name: param for name, param in model.named_parameters() if ".lora_" in name}


def _parse_target(target: str) -> set[str]:
    """The layer kinds named by ``target`` (``"linear+conv"`` -> ``{"linear", "conv"}``)."""
    kinds = set(target.split("+"))
    if not kinds <= set(LORA_TARGETS):
        raise ConfigError(
            f"unknown LoRA target {target!r}; expected 'linear', 'conv' or 'linear+conv'",
            field="target",
        )
    return kinds


def _check_numbers(rank: int, alpha: float | None, dropout: float) -> None:
    """Refuse a rank below 1, a non-positive alpha or a dropout outside ``[0, 1)``."""
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise ConfigError(f"LoRA rank must be an integer >= 1, got {rank!r}", field="rank")
    if alpha is not None and not alpha > 0:
        raise ConfigError(f"LoRA alpha must be positive, got {alpha!r}", field="alpha")
    if not 0.0 <= dropout < 1.0:
        raise ConfigError(f"LoRA dropout must be in [0, 1), got {dropout!r}", field="dropout")


def _backbone_and_head(model: nn.Module) -> tuple[nn.Module, nn.Module]:
    """``model.backbone`` and ``model.head``, or a ConfigError naming the protocol."""
    backbone = getattr(model, "backbone", None)
    head = getattr(model, "head", None)
    if not isinstance(backbone, nn.Module) or not isinstance(head, nn.Module):
        raise ConfigError(
            f"{type(model).__name__} is not a classifier with 'backbone' and 'head' modules",
            field="model",
        )
    return backbone, head


def _adaptable(backbone: nn.Module, name: str, module: nn.Module, kinds: set[str]) -> bool:
    """Whether LoRA of one of ``kinds`` can adapt ``module`` (named ``name`` in ``backbone``)."""
    if isinstance(module, nn.Linear):
        parent = backbone.get_submodule(name.rpartition(".")[0])
        return "linear" in kinds and not isinstance(parent, nn.MultiheadAttention)
    if isinstance(module, nn.Conv2d):
        plain = module.groups == 1 and module.dilation == (1, 1)
        return "conv" in kinds and plain and module.padding_mode == "zeros"
    return False


def _lora_layers(module: nn.Module) -> dict[str, LoraLayer]:
    """The peft LoRA layers inside ``module`` by qualified name."""
    from peft.tuners.lora import LoraLayer

    return {name: m for name, m in module.named_modules() if isinstance(m, LoraLayer)}
