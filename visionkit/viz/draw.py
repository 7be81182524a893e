"""Drawing detections, instance masks and semantic masks on images.

Everything here takes and returns ``uint8`` RGB ``[H, W, 3]`` numpy arrays and never changes
its input. Boxes are ``xyxy`` absolute pixels; boxes and masks may be numpy arrays or torch
tensors (on any device). Colours come from :mod:`visionkit.viz.palette`: a class, or a
track when track ids are given, has the same colour in every image.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from visionkit.errors import ConfigError
from visionkit.viz._arrays import as_rgb, to_numpy
from visionkit.viz._text import Font, default_font, font_size
from visionkit.viz.palette import RGB, color_for, colors_for, text_color

MASK_ALPHA = 0.5
"""Opacity of instance masks drawn by :func:`draw_detections`."""

Names = Sequence[str] | Mapping[int, str]
"""Class names: a list indexed by label, or a mapping from label to name."""


def draw_detections(
    image: Any,
    boxes: Any,
    labels: Any,
    *,
    names: Names | None = None,
    scores: Any | None = None,
    masks: Any | None = None,
    track_ids: Any | None = None,
    line_width: int | None = None,
) -> np.ndarray:
    """Draw boxes, translucent masks and labelled tags on a copy of ``image``.

    Args:
        image: ``uint8`` RGB ``[H, W, 3]`` (or gray ``[H, W]``).
        boxes: ``[N, 4]`` boxes, ``xyxy`` absolute pixels; they may reach outside the image.
            Boxes wholly outside it or with a non-finite coordinate are not drawn.
        labels: ``[N]`` integer class labels; they pick the colour unless ``track_ids`` do.
        names: Class names for the tags; a label without a name is written as its number.
        scores: ``[N]`` confidences, written as ``name 0.87``.
        masks: ``[N, H, W]`` instance masks, boolean or probabilities (above 0.5 is inside).
        track_ids: ``[N]`` track ids: the colour follows the track, tags read ``#id name``.
        line_width: Box outline width in pixels; None scales it with the image.

    Returns:
        A new ``uint8`` array ``[H, W, 3]``; equal to ``image`` when ``N`` is 0.

    Raises:
        ConfigError: arrays of the wrong shape, or of lengths that differ.

    Example:
        >>> image = np.zeros((64, 64, 3), np.uint8)
        >>> draw_detections(image, [[8, 8, 40, 40]], [1], names=["bg", "circle"]).shape
        (64, 64, 3)
    """
    canvas = as_rgb(image).copy()
    height, width = canvas.shape[:2]
    boxes = to_numpy(boxes).astype(np.float64).reshape(-1, 4)
    labels = to_numpy(labels).astype(np.int64).reshape(-1)
    count = len(boxes)
    scores = None if scores is None else _column(scores, count, "scores").astype(np.float64)
    track_ids = None if track_ids is None else _column(track_ids, count, "track_ids")
    if len(labels) != count:
        raise ConfigError(f"{len(labels)} labels for {count} boxes", field="labels")
    keys = labels if track_ids is None else track_ids.astype(np.int64)
    if masks is not None:
        _blend_masks(canvas, _masks(masks, count, height, width), keys)
    picture = Image.fromarray(canvas)
    draw = ImageDraw.Draw(picture)
    line_width = line_width or max(round((width + height) / 2 * 0.003), 2)
    font = default_font(font_size(width, height))
    for i in range(count):
        if not _visible(boxes[i], width, height):
            continue
        color = color_for(keys[i])
        x1, y1, x2, y2 = _corners(boxes[i], width, height, margin=line_width)
        draw.rectangle((x1, y1, x2, y2), outline=color, width=line_width)
        tag = _tag_text(int(labels[i]), names, scores, track_ids, i)
        _draw_tag(draw, picture.size, (x1, y1), tag, color, font)
    return np.array(picture)


def draw_semantic(
    image: Any,
    mask: Any,
    *,
    alpha: float = 0.5,
    ignore_index: int = 255,
    background: int | None = 0,
) -> np.ndarray:
    """Tint each pixel of a copy of ``image`` with the palette colour of its class.

    Args:
        image: ``uint8`` RGB ``[H, W, 3]`` (or gray ``[H, W]``).
        mask: ``[H, W]`` integer class ids (numpy array or torch tensor).
        alpha: Opacity of the tint, 0 (invisible) to 1 (opaque).
        ignore_index: Value of unlabelled pixels, left untinted.
        background: Class left untinted so objects stand out; None tints it too.

    Returns:
        A new ``uint8`` array ``[H, W, 3]``.

    Raises:
        ConfigError: ``mask`` is not ``[H, W]`` of the image's size.
    """
    canvas = as_rgb(image).copy()
    mask = to_numpy(mask)
    if mask.shape != canvas.shape[:2]:
        raise ConfigError(
            f"mask is {list(mask.shape)}, the image {list(canvas.shape[:2])}", field="mask"
        )
    tinted = mask != ignore_index
    if background is not None:
        tinted &= mask != background
    colors = colors_for(mask[tinted]).astype(np.float32)
    blended = (1 - alpha) * canvas[tinted].astype(np.float32) + alpha * colors
    canvas[tinted] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    return canvas


def _column(values: Any, count: int, name: str) -> np.ndarray:
    """``values`` as a flat array of ``count`` entries (one per box)."""
    array = to_numpy(values).reshape(-1)
    if len(array) != count:
        raise ConfigError(f"{len(array)} {name} for {count} boxes", field=name)
    return array


def _masks(masks: Any, count: int, height: int, width: int) -> np.ndarray:
    """Instance masks as ``bool`` ``[N, H, W]``; probabilities are cut at 0.5."""
    array = to_numpy(masks)
    if array.shape != (count, height, width):
        raise ConfigError(
            f"masks are {list(array.shape)}, expected {[count, height, width]}", field="masks"
        )
    return array if array.dtype == bool else array > 0.5


def _blend_masks(canvas: np.ndarray, masks: np.ndarray, keys: np.ndarray) -> None:
    """Blend each mask in its key's colour into ``canvas``, in place (later masks on top)."""
    for mask, key in zip(masks, keys, strict=True):
        pixels = canvas[mask].astype(np.float32)
        color = np.asarray(color_for(key), dtype=np.float32)
        canvas[mask] = np.rint((1 - MASK_ALPHA) * pixels + MASK_ALPHA * color).astype(np.uint8)


def _visible(box: np.ndarray, width: int, height: int) -> bool:
    """Whether a box is finite and overlaps the image (a box wholly outside gets no tag)."""
    if not np.isfinite(box).all():
        return False
    x1, x2 = sorted(box[0::2])
    y1, y2 = sorted(box[1::2])
    return x2 >= 0 and y2 >= 0 and x1 < width and y1 < height


def _corners(box: np.ndarray, width: int, height: int, margin: int) -> tuple[int, int, int, int]:
    """Integer corners with ``x1 <= x2`` and ``y1 <= y2`` (Pillow refuses reversed rectangles).

    Corners far outside the image are pulled in to ``margin`` pixels past its border: the
    outline there stays invisible, and Pillow's integer coordinates cannot overflow.
    """
    x1, y1, x2, y2 = np.clip(box, -margin, [width + margin, height + margin] * 2).round()
    return int(min(x1, x2)), int(min(y1, y2)), int(max(x1, x2)), int(max(y1, y2))


def _name(names: Names | None, label: int) -> str:
    if isinstance(names, Mapping):
        return names.get(label, str(label))
    if names is not None and 0 <= label < len(names):
        return names[label]
    return str(label)


def _tag_text(
    label: int,
    names: Names | None,
    scores: np.ndarray | None,
    track_ids: np.ndarray | None,
    i: int,
) -> str:
    """``#id name 0.87``, with the parts that were given."""
    parts = [_name(names, label)]
    if track_ids is not None:
        parts.insert(0, f"#{int(track_ids[i])}")
    if scores is not None:
        parts.append(f"{scores[i]:.2f}")
    return " ".join(parts)


def _draw_tag(
    draw: ImageDraw.ImageDraw,
    image_size: tuple[int, int],
    corner: tuple[int, int],
    text: str,
    color: RGB,
    font: Font,
) -> None:
    """A filled tag holding ``text`` above the box corner, or just inside it at the top edge.

    The tag is kept inside the image, so boxes at the border still show their label.
    """
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    pad = 2
    tag_w, tag_h = right - left + 2 * pad, bottom - top + 2 * pad
    image_w, image_h = image_size
    x = min(max(corner[0], 0), max(image_w - tag_w, 0))
    y = corner[1] - tag_h if corner[1] - tag_h >= 0 else max(corner[1], 0)
    y = min(y, max(image_h - tag_h, 0))
    draw.rectangle((x, y, x + tag_w - 1, y + tag_h - 1), fill=color)
    draw.text((x + pad - left, y + pad - top), text, fill=text_color(color), font=font)
