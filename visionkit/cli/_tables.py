"""Plain-text tables and JSON for metric results printed by the ``val`` commands."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Columns of numbers right-aligned, of text left-aligned; floats with three decimals.

    Example:
        >>> print(format_table(["class", "AP"], [["cat", 0.5]]))
        class     AP
        cat    0.500
    """
    numeric = [all(_is_number(row[i]) for row in rows) for i in range(len(headers))]
    cells = [[_cell(value) for value in row] for row in rows]
    widths = [max(len(str(h)), *(len(row[i]) for row in cells)) for i, h in enumerate(headers)]
    aligned = list(zip(widths, numeric, strict=True))
    return "\n".join(_line(line, aligned) for line in [[str(h) for h in headers], *cells])


def to_json(result: Mapping[str, Any]) -> str:
    """One JSON object: numpy scalars and arrays become numbers and lists, NaN becomes null."""
    return json.dumps(_plain(result), allow_nan=False)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.3f}"
    return str(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _line(values: Sequence[str], aligned: Sequence[tuple[int, bool]]) -> str:
    parts = [
        value.rjust(width) if right else value.ljust(width)
        for value, (width, right) in zip(values, aligned, strict=True)
    ]
    return "  ".join(parts).rstrip()


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
