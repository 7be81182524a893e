"""Mask encodings: polygons, COCO run-length encoding (RLE) and binary masks.

RLE work goes through pycocotools, the format's own reference, so what we write
decodes identically in every COCO tool. Binary masks are ``bool`` arrays ``[H, W]``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

RLE = dict[str, Any]


def polygons_to_rle(polygons: list[list[float]], height: int, width: int) -> RLE:
    """Rasterise flat polygons ``[[x0, y0, x1, y1, ...], ...]`` (absolute pixels) to one RLE.

    Rasterisation is pycocotools' own, so the result is pixel-exact against COCO tools.
    Several polygons of one object are merged (union).
    """
    rles = mask_utils.frPyObjects([list(map(float, p)) for p in polygons], height, width)
    return _readable(mask_utils.merge(rles))


def segmentation_to_rle(segmentation: list[list[float]] | RLE, height: int, width: int) -> RLE:
    """Turn a COCO ``segmentation`` (polygons, uncompressed or compressed RLE) into compressed RLE."""
    if isinstance(segmentation, list):
        return polygons_to_rle(segmentation, height, width)
    if isinstance(segmentation.get("counts"), list):  # uncompressed RLE (COCO crowd regions)
        h, w = segmentation["size"]
        return _readable(mask_utils.frPyObjects(segmentation, h, w))
    return segmentation


def segmentation_to_mask(
    segmentation: list[list[float]] | RLE, height: int, width: int
) -> np.ndarray:
    """Decode a COCO ``segmentation`` to a ``bool`` mask ``[H, W]``."""
    return rle_to_mask(segmentation_to_rle(segmentation, height, width))


def rle_to_mask(rle: RLE) -> np.ndarray:
    """Decode a compressed RLE dict to a ``bool`` mask ``[H, W]``."""
    counts = rle["counts"]
    encoded = {"size": rle["size"], "counts": counts.encode() if isinstance(counts, str) else counts}
    return mask_utils.decode(encoded).astype(bool)


def mask_to_rle(mask: np.ndarray) -> RLE:
    """Encode a binary mask ``[H, W]`` as a compressed RLE dict with a JSON-ready ``counts`` str."""
    return _readable(mask_utils.encode(np.asfortranarray(mask.astype(np.uint8))))


def rle_area(rle: RLE) -> float:
    """Number of foreground pixels of a compressed RLE."""
    return float(mask_utils.area(_binary(rle)))


def rle_to_bbox(rle: RLE) -> tuple[float, float, float, float]:
    """Tight ``xyxy`` box around an RLE's pixels (pixel edges, as COCO's ``toBbox``)."""
    x, y, w, h = (float(v) for v in mask_utils.toBbox(_binary(rle)))
    return (x, y, x + w, y + h)


def mask_to_polygons(mask: np.ndarray, min_area: float = 1.0) -> list[list[float]]:
    """Trace the outer contours of a binary mask as flat polygons in absolute pixels.

    Args:
        mask: ``bool`` or ``uint8`` array ``[H, W]``.
        min_area: Contours enclosing less area than this (pixels) are dropped.

    Returns:
        One flat ``[x0, y0, x1, y1, ...]`` list per connected part, largest first; parts
        with fewer than 3 vertices are dropped. Holes are not represented.
    """
    import cv2  # classical-CV dependency, only needed when tracing contours

    contours, _ = cv2.findContours(
        mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
    )
    kept = [c for c in contours if len(c) >= 3 and cv2.contourArea(c) >= min_area]
    kept.sort(key=cv2.contourArea, reverse=True)
    return [c.reshape(-1).astype(float).tolist() for c in kept]


def _binary(rle: RLE) -> RLE:
    counts = rle["counts"]
    return {"size": rle["size"], "counts": counts.encode() if isinstance(counts, str) else counts}


def _readable(rle: RLE) -> RLE:
    counts = rle["counts"]
    return {
        "size": [int(s) for s in rle["size"]],
        "counts": counts.decode() if isinstance(counts, bytes) else counts,
    }
