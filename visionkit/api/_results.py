"""What ``Model.predict`` returns for one image: classes or detections."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, ImageDraw

from visionkit.viz import draw_detections, save_image

if TYPE_CHECKING:  # torch loads with the first detection, not with this module
    from visionkit.structures import Detections


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


@dataclass(frozen=True, eq=False)
class DetectionResult:
    """One image's (or video frame's) detections, with the names and the image.

    Attributes:
        boxes: The :class:`~visionkit.structures.Detections` in the image's own pixels:
            ``.xyxy``, ``.conf``, ``.cls`` (also ``.boxes``, ``.scores``, ``.labels``).
        names: Class names, indexed by ``cls``.
        path: The image or video file, or ``None`` for an image passed as an array.
        image: The ``uint8`` ``[H, W, 3]`` RGB image.
        frame: The frame index within a video, else ``None``.
    """

    boxes: Detections
    names: tuple[str, ...]
    path: Path | None
    image: np.ndarray
    frame: int | None = None

    def __len__(self) -> int:
        return len(self.boxes)

    def to_json(self) -> list[dict[str, Any]]:
        """One JSON-able dict per detection: ``box`` (xyxy), ``class``, ``name``,
        ``confidence``."""
        dets = self.boxes.cpu()
        return [
            {"box": box, "class": label, "name": self.names[label], "confidence": score}
            for box, label, score in zip(
                dets.boxes.tolist(), dets.labels.tolist(), dets.scores.tolist(), strict=True
            )
        ]

    def to_torchmetrics(self) -> dict[str, Any]:
        """The torchmetrics / torchvision dict: ``boxes``, ``scores``, ``labels`` tensors."""
        return self.boxes.to_torchvision()

    def to_supervision(self) -> Any:
        """A ``supervision.Detections`` (supervision must be installed)."""
        import supervision as sv  # optional: only this conversion needs it

        dets = self.boxes.cpu()
        return sv.Detections(
            xyxy=dets.boxes.numpy(), confidence=dets.scores.numpy(),
            class_id=dets.labels.numpy(), data={"class_name": np.asarray(
                [self.names[i] for i in dets.labels.tolist()], dtype=object)},
        )  # fmt: skip

    def plot(self) -> np.ndarray:
        """The image with every box, its class name and confidence drawn on it."""
        dets = self.boxes.cpu()
        return draw_detections(
            self.image, dets.boxes, dets.labels, names=self.names, scores=dets.scores
        )

    def save(self, path: str | Path) -> Path:
        """Write :meth:`plot` to ``path`` (PNG or JPEG by suffix) and return it."""
        return save_image(self.plot(), path)
