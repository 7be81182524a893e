"""Error types that visionkit raises for bad input.

Every user mistake (a missing file, a malformed record, a value out of range) is
reported as a :class:`VisionKitError` subclass whose message names the file, the
record and the field, so a person can find and fix it without a traceback. The CLI
prints ``str(error)`` on one line and exits with status 2.
"""

from __future__ import annotations

from pathlib import Path


class VisionKitError(Exception):
    """Base class for every error caused by bad input.

    Args:
        message: What is wrong, in one sentence.
        file: The file that holds the bad input, if any.
        record: The record inside the file (an image id, an annotation id, a line number).
        field: The field of the record that is wrong.

    Example:
        >>> str(VisionKitError("width must be positive", file="a.json", record="annotation 7",
        ...                    field="bbox"))
        "a.json: annotation 7: field 'bbox': width must be positive"
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | Path | None = None,
        record: str | int | None = None,
        field: str | None = None,
    ) -> None:
        self.message = message
        self.file = None if file is None else str(file)
        self.record = record
        self.field = field
        super().__init__(str(self))

    def __str__(self) -> str:
        parts = []
        if self.file is not None:
            parts.append(self.file)
        if self.record is not None:
            parts.append(str(self.record))
        if self.field is not None:
            parts.append(f"field {self.field!r}")
        parts.append(" ".join(self.message.split()))  # always one line
        return ": ".join(parts)


class DataError(VisionKitError):
    """A dataset file, label file or record is missing, malformed or inconsistent."""


class ImageError(DataError):
    """An image file cannot be found, opened or fully decoded."""


class ConfigError(VisionKitError):
    """An argument, option or configuration value is invalid."""


class WeightsError(VisionKitError):
    """A weights file or checkpoint is missing, corrupt, unsafe to load or does not fit."""
