"""What ``Model.predict`` returns for one classified image."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from visionkit.viz import save_image


@dataclass(frozen=True, eq=False)
class ClassificationResult:
    """One image's class probabilities, with the names and the image they belong to.

    Attributes:
        probs: ``float32`` ``[C]`` softmax probabilities in class order.
        names: Class names in the same order.
        path: The image file, or ``None`` for an image passed as an array.
        image: The ``uint8`` ``[H, W, 3]`` RGB image that was classified.
    """

    probs: np.ndarray
    names: tuple[str, ...]
    path: Path | None
    image: np.ndarray

    @property
    def top1(self) -> int:
        """Index of the most probable class."""
        return int(self.probs.argmax())

    @property
    def top1conf(self) -> float:
        """Probability of the most probable class."""
        return float(self.probs[self.top1])

    @property
    def top5(self) -> list[int]:
        """Indices of the (up to) five most probable classes, most probable first."""
        return [int(i) for i in np.argsort(-self.probs, kind="stable")[:5]]

    @property
    def name(self) -> str:
        """Name of the most probable class."""
        return self.names[self.top1]

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict: the file, the top class and its confidence, every probability."""
        return {
            "file": None if self.path is None else str(self.path),
            "class": self.top1,
            "name": self.name,
            "confidence": self.top1conf,
            "probs": {name: float(p) for name, p in zip(self.names, self.probs, strict=True)},
        }

    def plot(self) -> np.ndarray:
        """The image with the top-5 names and probabilities written in its corner."""
        canvas = Image.fromarray(self.image)
        draw = ImageDraw.Draw(canvas)
        lines = "\n".join(f"{self.names[i]} {self.probs[i]:.2f}" for i in self.top5)
        box = draw.multiline_textbbox((4, 4), lines)
        draw.rectangle(box, fill=(0, 0, 0))
        draw.multiline_text((4, 4), lines, fill=(255, 255, 255))
        return np.asarray(canvas)

    def save(self, path: str | Path) -> Path:
        """Write :meth:`plot` to ``path`` (PNG or JPEG by suffix) and return it."""
        return save_image(self.plot(), path)
