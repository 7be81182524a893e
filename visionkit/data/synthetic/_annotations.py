"""Generator output as :class:`~visionkit.data.records.Annotation` records, for exporters."""

from __future__ import annotations

import numpy as np

from visionkit.data.records import Annotation
from visionkit.ops.masks import mask_to_rle


def scene_annotations(
    boxes: np.ndarray, labels: np.ndarray, masks: np.ndarray, first_id: int
) -> list[Annotation]:
    """Turn one image's objects into annotations that every dataset format writer accepts.

    Args:
        boxes: float32 ``[N, 4]`` ``xyxy`` absolute pixels.
        labels: int ``[N]`` category ids.
        masks: bool ``[N, H, W]`` visible pixels of each object.
        first_id: Annotation id of the first object; the others follow consecutively, so an
            exporter passes the running count to keep ids unique across images.

    Returns:
        ``N`` annotations with ``bbox``, ``category_id``, ``id``, a compressed-RLE
        ``segmentation`` and ``area`` (the mask's pixel count).

    Example:
        >>> masks = np.zeros((1, 4, 6), dtype=bool)
        >>> masks[0, 1:3, 2:5] = True
        >>> boxes = np.array([[2, 1, 5, 3]], dtype=np.float32)
        >>> ann = scene_annotations(boxes, np.array([4]), masks, first_id=10)[0]
        >>> ann.bbox, ann.category_id, ann.id, ann.area
        ((2.0, 1.0, 5.0, 3.0), 4, 10, 6.0)
    """
    return [
        Annotation(
            bbox=tuple(float(v) for v in box),
            category_id=int(label),
            id=first_id + i,
            segmentation=mask_to_rle(mask),
            area=float(mask.sum()),
        )
        for i, (box, label, mask) in enumerate(zip(boxes, labels, masks, strict=True))
    ]
