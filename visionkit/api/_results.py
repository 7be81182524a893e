"""What ``Model.predict`` returns for one image: classes, detections or a class mask."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, ImageDraw

from visionkit.errors import ConfigError
from visionkit.ops.masks import mask_to_rle
from visionkit.viz import PALETTE, draw_detections, draw_semantic, save_image

if TYPE_CHECKING:  # torch loads with the first detection, not with this module
    import torch

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
            ``.xyxy``, ``.conf``, ``.cls`` (also ``.boxes``, ``.scores``, ``.labels``) and,
            from an instance segmenter, ``.masks`` (see :attr:`masks`).
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

    @property
    def masks(self) -> torch.Tensor | None:
        """``bool`` ``[N, H, W]`` instance masks in the image's own pixels (an instance
        segmenter's, thresholded at 0.5), or ``None`` for a box detector."""
        return self.boxes.masks

    def to_json(self) -> list[dict[str, Any]]:
        """One JSON-able dict per detection: ``box`` (xyxy), ``class``, ``name``,
        ``confidence`` and, with masks, ``segmentation`` (COCO compressed RLE)."""
        dets = self.boxes.cpu()
        records = [
            {"box": box, "class": label, "name": self.names[label], "confidence": score}
            for box, label, score in zip(
                dets.boxes.tolist(), dets.labels.tolist(), dets.scores.tolist(), strict=True
            )
        ]
        if dets.masks is not None:
            for record, mask in zip(records, dets.masks.numpy(), strict=True):
                record["segmentation"] = mask_to_rle(mask)
        return records

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
            mask=None if dets.masks is None else dets.masks.numpy(),
        )  # fmt: skip

    def plot(self) -> np.ndarray:
        """The image with every box, its class name and confidence (and mask) drawn on it."""
        dets = self.boxes.cpu()
        return draw_detections(
            self.image,
            dets.boxes,
            dets.labels,
            names=self.names,
            scores=dets.scores,
            masks=dets.masks,
        )

    def save(self, path: str | Path) -> Path:
        """Write :meth:`plot` to ``path`` (PNG or JPEG by suffix) and return it."""
        return save_image(self.plot(), path)


@dataclass(frozen=True, eq=False)
class SegmentationResult:
    """One image's (or video frame's) semantic segmentation, at the image's own size.

    Attributes:
        mask: ``int64`` ``[H, W]`` class indices (0 is background when the model has one).
        names: Class names, indexed by the mask's values.
        path: The image or video file, or ``None`` for an image passed as an array.
        image: The ``uint8`` ``[H, W, 3]`` RGB image.
        probs: ``float32`` ``[C, H, W]`` softmax probabilities, when asked for.
        frame: The frame index within a video, else ``None``.
    """

    mask: np.ndarray
    names: tuple[str, ...]
    path: Path | None
    image: np.ndarray
    probs: np.ndarray | None = None
    frame: int | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict: the file, frame and size, and per class present its index,
        name, pixel count and COCO RLE (``segmentation``, compressed ``counts``)."""
        classes = [
            {
                "class": int(k),
                "name": self.names[int(k)],
                "pixels": int(count),
                "segmentation": mask_to_rle(self.mask == k),
            }
            for k, count in zip(*np.unique(self.mask, return_counts=True), strict=True)
        ]
        return {
            "file": None if self.path is None else str(self.path),
            "frame": self.frame,
            "size": list(self.mask.shape),
            "classes": classes,
        }

    def plot(self, alpha: float = 0.5) -> np.ndarray:
        """The image with every pixel but background's tinted with its class colour."""
        return draw_semantic(self.image, self.mask, alpha=alpha)

    def save(self, path: str | Path) -> Path:
        """Write :attr:`mask` as a palette PNG whose pixels are class indices, to ``path``
        with its suffix made ``.png`` (a lossy format would change the indices at edges).

        Tools that read palette PNGs (Pascal VOC's ``SegmentationClass``,
        :func:`visionkit.data.images.read_mask`) get the indices back; viewers show class
        ``k > 0`` in visionkit's colour for it, background black and 255 white.

        Raises:
            ConfigError: A class index above 255, which an 8-bit PNG cannot hold.
        """
        if self.mask.size and self.mask.max() > 255:
            raise ConfigError("a palette PNG holds class indices 0..255 only", field="mask")
        path = Path(path).with_suffix(".png")
        path.parent.mkdir(parents=True, exist_ok=True)
        picture = Image.fromarray(self.mask.astype(np.uint8))  # mode L
        picture.putpalette(_mask_palette())  # makes it mode P, pixel values unchanged
        picture.save(path)
        return path


def _mask_palette() -> list[int]:
    """768 palette entries: 0 black, ``k`` the colour of class ``k``, 255 white."""
    colors = [PALETTE[k % len(PALETTE)] for k in range(256)]
    colors[0], colors[255] = (0, 0, 0), (255, 255, 255)
    return [value for color in colors for value in color]
