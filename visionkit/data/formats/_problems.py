"""Collecting dataset faults: raise the first, or gather them all.

Readers and checks report each fault through one :class:`Problems` object. In strict
mode (loading for training) the first fault raises at once, naming file, record and
field; in collecting mode (``visionkit data check``) every fault is kept and reported
together. One code path serves both, so what ``data check`` reports is exactly what
loading would refuse.
"""

from __future__ import annotations

from pathlib import Path

from visionkit.errors import DataError


class Problems:
    """A fault collector that either raises at the first fault or keeps them all.

    Args:
        strict: Raise :class:`DataError` at the first fault instead of collecting.

    Example:
        >>> problems = Problems(strict=False)
        >>> problems.add("box is outside the image", file="a.json", record="annotation 3",
        ...              field="bbox")
        >>> len(problems.errors)
        1
    """

    # Deliberately no __len__/__bool__: an empty collector must not read as "no collector"
    # in ``problems or default`` (that once turned `data check` strict).

    def __init__(self, strict: bool = True) -> None:
        self.strict = strict
        self.errors: list[DataError] = []

    def add(
        self,
        message: str,
        *,
        file: str | Path | None = None,
        record: str | int | None = None,
        field: str | None = None,
        error: type[DataError] = DataError,
    ) -> None:
        """Report one fault: raise it in strict mode, keep it otherwise."""
        fault = error(message, file=file, record=record, field=field)
        if self.strict:
            raise fault
        self.errors.append(fault)
