"""The ``config_overrides`` of models that transformers builds (DETR, RT-DETR, SegFormer).

Such a model is built offline from a transformers config: a base of fields for its size,
changed by the user's ``config_overrides`` (so tests build tiny models), with the label
count from ``num_classes``. :func:`check_overrides` refuses a field that the config class
lacks (transformers would keep it, unused) and :func:`build_config` turns the class's own
refusals into a :class:`~visionkit.errors.ConfigError`. A checkpoint loaded with
``from_pretrained`` records :func:`architecture_overrides`, the fields in which it differs
from the base, so ``create_model`` with the recorded options rebuilds the same
architecture without the weights. transformers is imported only when a model is built.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from visionkit.errors import ConfigError

__all__ = [
    "architecture_overrides",
    "build_config",
    "changed_fields",
    "check_overrides",
    "label_names",
    "transformers_class",
]

_NOT_ARCHITECTURE = frozenset(
    {
        "id2label",
        "label2id",
        "num_labels",
        "transformers_version",
        "architectures",
        "_name_or_path",
        "dtype",
        "torch_dtype",
        "model_type",
    }
)
"""Config fields that describe labels or provenance, not the architecture."""


def transformers_class(name: str) -> Any:
    """The transformers class ``name`` (``"DetrConfig"``), importing transformers now."""
    import transformers

    return getattr(transformers, name)


def _architecture_fields(config_class: type) -> set[str]:
    """The architecture fields of a transformers config class, aliases (its
    ``attribute_map``: ``hidden_size`` for DETR's ``d_model``) included."""
    names = {f.name for f in dataclasses.fields(config_class)} | set(config_class.attribute_map)
    return names - _NOT_ARCHITECTURE


def check_overrides(config_class: str, overrides: Mapping[str, Any]) -> None:
    """Refuse an override that is no architecture field of transformers' ``config_class``.

    Raises:
        ConfigError: Naming the first such field (sorted), field ``config_overrides``.
    """
    unknown = sorted(set(overrides) - _architecture_fields(transformers_class(config_class)))
    if unknown:
        raise ConfigError(
            f"{config_class} has no field {unknown[0]!r} (num_classes sets the labels)",
            field="config_overrides",
        )


def build_config(config_class: str, fields: Mapping[str, Any], num_labels: int) -> Any:
    """The ``config_class`` instance of ``fields`` with ``num_labels`` labels.

    Raises:
        ConfigError: The config class refuses the fields (field ``config_overrides``).
    """
    try:
        return transformers_class(config_class)(**fields, num_labels=num_labels)
    except (TypeError, ValueError) as error:
        raise ConfigError(
            f"not a valid {config_class}: {error}", field="config_overrides"
        ) from None


def changed_fields(now: Mapping[str, Any], base: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of ``now`` that differ from ``base``, nested dicts compared entry by entry.

    Label and provenance fields (``id2label``, ``transformers_version``...) are left out at
    every level; a nested dict that does not differ is left out whole.
    """
    changed = {}
    for key, value in now.items():
        if key in _NOT_ARCHITECTURE:
            continue
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            value = changed_fields(value, base[key])
            if value:
                changed[key] = value
        elif value != base.get(key):
            changed[key] = value
    return changed


def architecture_overrides(config: Any, base: Any) -> dict[str, Any]:
    """The architecture fields of transformers config ``config`` that differ from ``base``.

    Args:
        config: A loaded model's config.
        base: The config of the same class that the builder makes without overrides.

    Returns:
        The differing fields, sorted by name, as JSON-able ``to_dict`` values (nested
        configs as dicts of their differing entries): the ``config_overrides`` that rebuild
        ``config``'s architecture from ``base``.
    """
    fields = _architecture_fields(type(config))
    now = config.to_dict()
    return changed_fields({k: now[k] for k in sorted(fields) if k in now}, base.to_dict())


def label_names(config: Any) -> tuple[str, ...] | None:
    """The class names of a transformers config, index order; ``None`` for generic ones
    (``LABEL_0``, ``LABEL_1``...)."""
    labels = config.id2label
    names = tuple(str(labels[i]) for i in range(config.num_labels))
    return None if all(n == f"LABEL_{i}" for i, n in enumerate(names)) else names
