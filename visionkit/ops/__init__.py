"""Pure array functions shared by every layer: box conversions, the IoU family, NMS, masks.

Importing this package loads numpy and pycocotools only; torch and torchvision are
imported inside the functions that need them, so the data layer and the CLI stay fast.
The torch-only modules :mod:`visionkit.ops.losses` (detection losses) and
:mod:`visionkit.ops.matching` (Hungarian matching) are imported by name, not from here.
"""

from visionkit.ops.boxes import (
    BOX_FORMATS,
    batched_nms,
    box_area,
    box_convert,
    box_iou,
    clip_boxes,
    complete_box_iou,
    denormalize_boxes,
    distance_box_iou,
    generalized_box_iou,
    nms,
    normalize_boxes,
    paired_box_iou,
    paired_complete_box_iou,
    paired_distance_box_iou,
    paired_generalized_box_iou,
    valid_boxes,
)
from visionkit.ops.masks import (
    RLE,
    mask_iou,
    mask_to_polygons,
    mask_to_rle,
    polygons_to_rle,
    rle_area,
    rle_to_bbox,
    rle_to_mask,
    segmentation_to_mask,
    segmentation_to_rle,
)

__all__ = [
    "BOX_FORMATS",
    "RLE",
    "batched_nms",
    "box_area",
    "box_convert",
    "box_iou",
    "clip_boxes",
    "complete_box_iou",
    "denormalize_boxes",
    "distance_box_iou",
    "generalized_box_iou",
    "paired_box_iou",
    "paired_complete_box_iou",
    "paired_distance_box_iou",
    "paired_generalized_box_iou",
    "mask_iou",
    "mask_to_polygons",
    "mask_to_rle",
    "nms",
    "normalize_boxes",
    "polygons_to_rle",
    "rle_area",
    "rle_to_bbox",
    "rle_to_mask",
    "segmentation_to_mask",
    "segmentation_to_rle",
    "valid_boxes",
]
