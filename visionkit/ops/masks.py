"""Mask encodings: polygons, COCO run-length encoding (RLE) and binary masks.

RLE work goes through pycocotools, the format's own reference, so what we write
decodes identically in every COCO tool. Binary masks are ``bool`` arrays ``[H, W]``;
:func:`mask_iou` also takes torch tensors, without this module importing torch.
"""

from __future__ import annotations

from typing import Any, TypeVar

import numpy as np
from pycocotools import mask as mask_utils

from visionkit.errors import ConfigError

RLE = dict[str, Any]

ArrayT = TypeVar("ArrayT")


def polygons_to_rle(polygons: list[list[float]], height: int, width: int) -> RLE:
    """Rasterise flat polygons ``[[x0, y0, x1, y1, ...], ...]`` (absolute pixels) to one RLE.

    Rasterisation is pycocotools' own, so the result is pixel-exact against COCO tools.
    Several polygons of one object are merged (union).
    """
    rles = mask_utils.frPyObjects([list(map(float, p)) for p in polygons], height, width)
    return _readable(mask_utils.merge(rles))


def segmentation_to_rle(segmentation: list[list[float]] | RLE, height: int, width: int) -> RLE:
    """Turn a COCO ``segmentation`` (polygons, uncompressed or compressed RLE) into compressed RLE.

    Args:
        segmentation: Flat polygons in absolute pixels, or an RLE dict.
        height: Image height, used to rasterise polygons.
        width: Image width, used to rasterise polygons.

    Returns:
        A compressed RLE dict with JSON-ready ``size`` ints and ``str`` ``counts``.
    """
    if isinstance(segmentation, list):
        return polygons_to_rle(segmentation, height, width)
    if isinstance(segmentation.get("counts"), list):  # uncompressed RLE (COCO crowd regions)
        h, w = segmentation["size"]
        return _readable(mask_utils.frPyObjects(segmentation, h, w))
    return _readable(segmentation)


def segmentation_to_mask(
    segmentation: list[list[float]] | RLE, height: int, width: int
) -> np.ndarray:
    """Decode a COCO ``segmentation`` to a ``bool`` mask ``[H, W]``."""
    return rle_to_mask(segmentation_to_rle(segmentation, height, width))


def rle_to_mask(rle: RLE) -> np.ndarray:
    """Decode a compressed RLE dict to a ``bool`` mask ``[H, W]``."""
    return mask_utils.decode(_binary(rle)).astype(bool)


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

    Polygons run along pixel edges, COCO's convention (pixel ``(row, col)`` covers
    ``[col, col + 1] x [row, row + 1]``), so :func:`polygons_to_rle` gives the part back.

    Args:
        mask: ``bool`` or ``uint8`` array ``[H, W]``.
        min_area: Parts whose outline through boundary-pixel centres encloses less area
            than this (pixels) are dropped, as are lines and single pixels.

    Returns:
        One flat ``[x0, y0, x1, y1, ...]`` list per connected part, largest first. Holes
        are not represented.

    Example:
        >>> mask_to_polygons(np.pad(np.ones((2, 3), bool), 1))
        [[1.0, 1.0, 1.0, 3.0, 4.0, 3.0, 4.0, 1.0]]
    """
    import cv2  # classical-CV dependency, only needed when tracing contours

    contours, _ = cv2.findContours(
        mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
    )
    kept = [c for c in contours if len(c) >= 3 and cv2.contourArea(c) >= min_area]
    kept.sort(key=cv2.contourArea, reverse=True)
    return [_centres_to_edges(c.reshape(-1, 2)).reshape(-1).tolist() for c in kept]


def merge_polygons(polygons: list[list[float]]) -> list[float]:
    """Join the parts of one object into a single ring, linked by zero-width bridges.

    Each further part is spliced in at the closest pair of vertices (there and back), the
    way Ultralytics' COCO converter joins multi-part segments, so a format that holds one
    polygon per object keeps every part and the object's full extent.

    Args:
        polygons: Flat ``[x0, y0, x1, y1, ...]`` polygons; those under 3 points are skipped.

    Returns:
        One flat polygon; empty when no part has 3 points.

    Example:
        >>> merge_polygons([[0, 0, 1, 0, 1, 1], [5, 5, 6, 5, 6, 6]])
        [0.0, 0.0, 1.0, 0.0, 1.0, 1.0, 5.0, 5.0, 6.0, 5.0, 6.0, 6.0, 5.0, 5.0, 1.0, 1.0]
    """
    rings = [np.asarray(p, dtype=np.float64).reshape(-1, 2) for p in polygons if len(p) >= 6]
    if not rings:
        return []
    merged = rings[0]
    for ring in rings[1:]:
        distances = ((merged[:, None, :] - ring[None, :, :]) ** 2).sum(axis=-1)
        i, j = np.unravel_index(distances.argmin(), distances.shape)
        ring = np.roll(ring, -j, axis=0)
        merged = np.concatenate([merged[: i + 1], ring, ring[:1], merged[i:]])
    return merged.reshape(-1).tolist()


def fit_polygon_to_box(polygon: list[float], box: tuple[float, float, float, float]) -> list[float]:
    """Stretch a flat polygon so that its extent is exactly the ``xyxy`` ``box``.

    Formats that store only a polygon (YOLO segment lines) give back the polygon's extent
    as the object's box; fitting first makes that box survive the round trip exactly. A
    traced outline is within half a pixel of the box, so the stretch is that small.
    """
    points = np.asarray(polygon, dtype=np.float64).reshape(-1, 2)
    low, high = points.min(axis=0), points.max(axis=0)
    x1, y1, x2, y2 = box
    scale = np.array([x2 - x1, y2 - y1]) / np.maximum(high - low, 1e-12)
    return ((points - low) * scale + np.array([x1, y1])).reshape(-1).tolist()


def _centres_to_edges(points: np.ndarray) -> np.ndarray:
    """Move a closed outline through boundary-pixel centres half a pixel out, onto pixel edges.

    OpenCV traces the centres of the boundary pixels; rasterising that outline loses half a
    pixel all round (a radius-3 disk keeps 20 of its 29 pixels). Each vertex moves along
    the mitre of its two edges' outward normals, which puts straight and 45-degree runs
    exactly on the pixel edges.

    Args:
        points: ``[K, 2]`` integer ``(x, y)`` pixel indices, ``K >= 3``, in tracing order.

    Returns:
        ``[K, 2]`` float ``(x, y)`` vertices in pixel-edge coordinates.
    """
    centres = points.astype(np.float64) + 0.5
    normal_in = _unit_normals(centres - np.roll(centres, 1, axis=0))
    normal_out = _unit_normals(np.roll(centres, -1, axis=0) - centres)
    x, y = centres.T
    if np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y) < 0:  # the normals must point outwards
        normal_in, normal_out = -normal_in, -normal_out
    cosine = np.sum(normal_in * normal_out, axis=1, keepdims=True)
    # Offsetting both edges by d moves their corner by d (n1 + n2) / (1 + n1.n2); the floor
    # is a mitre limit for the hairpin turns of one-pixel-wide spikes (n1 = -n2).
    return centres + 0.5 * (normal_in + normal_out) / np.maximum(1 + cosine, 0.5)


def _unit_normals(edges: np.ndarray) -> np.ndarray:
    """Unit normals ``(dy, -dx) / |e|`` of ``[K, 2]`` edge vectors."""
    lengths = np.linalg.norm(edges, axis=1, keepdims=True)
    return np.stack([edges[:, 1], -edges[:, 0]], axis=1) / np.maximum(lengths, 1e-12)


def mask_iou(a: ArrayT, b: ArrayT) -> ArrayT:
    """Pairwise intersection over union of two sets of binary masks.

    Args:
        a: ``[N, H, W]`` bool numpy array or torch tensor.
        b: ``[M, H, W]`` of the same type and the same ``H, W``.

    Returns:
        ``[N, M]`` IoU in ``[0, 1]``, 0 where both masks are empty: float64 numpy array for
        numpy input, float32 tensor on the input's device for torch input.

    Example:
        >>> a = np.zeros((1, 2, 4), bool); a[0, :, :2] = True
        >>> b = np.zeros((1, 2, 4), bool); b[0, :, 1:3] = True
        >>> mask_iou(a, b)
        array([[0.33333333]])
    """
    _check_masks(a, b)
    pixels = a.shape[1] * a.shape[2]  # explicit, as reshape cannot infer -1 when N is 0
    flat_a, flat_b = a.reshape(a.shape[0], pixels), b.reshape(b.shape[0], pixels)
    if isinstance(a, np.ndarray):
        flat_a, flat_b = flat_a.astype(np.float64), flat_b.astype(np.float64)
    else:  # float32 counts pixels exactly up to 2**24 per mask, and runs on every device
        flat_a, flat_b = flat_a.float(), flat_b.float()
    inter = flat_a @ flat_b.T
    union = flat_a.sum(1)[:, None] + flat_b.sum(1)[None, :] - inter
    # Pixel counts are whole numbers, so clipping the union at 1 only touches empty unions,
    # where the intersection is 0 too.
    return inter / union.clip(min=1)


def _check_masks(a: ArrayT, b: ArrayT) -> None:
    for name, masks in (("a", a), ("b", b)):
        if len(masks.shape) != 3:
            raise ConfigError(
                f"masks must have shape [N, H, W], got {list(masks.shape)}", field=name
            )
    if isinstance(a, np.ndarray) != isinstance(b, np.ndarray):
        raise ConfigError(
            f"both mask sets must be numpy arrays or both torch tensors, got "
            f"{type(a).__name__} and {type(b).__name__}"
        )
    if tuple(a.shape[1:]) != tuple(b.shape[1:]):
        raise ConfigError(
            f"mask sets differ in size: {list(a.shape[1:])} and {list(b.shape[1:])} (H, W)"
        )


def _binary(rle: RLE) -> RLE:
    counts = rle["counts"]
    return {"size": rle["size"], "counts": counts.encode() if isinstance(counts, str) else counts}


def _readable(rle: RLE) -> RLE:
    counts = rle["counts"]
    return {
        "size": [int(s) for s in rle["size"]],
        "counts": counts.decode() if isinstance(counts, bytes) else counts,
    }
