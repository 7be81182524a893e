"""A PNG grid of annotated samples from any dataset on disk (``visionkit data show``)."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np

from visionkit.data.formats import read_catalog
from visionkit.data.images import read_image, read_mask
from visionkit.data.records import Catalog, ImageRecord
from visionkit.ops.masks import segmentation_to_mask
from visionkit.viz import draw_detections, draw_semantic, make_grid, save_image


def preview_dataset(
    data: str | Path,
    out: str | Path | None = None,
    *,
    split: str | None = None,
    n: int = 16,
    seed: int = 0,
    format: str | None = None,
    images: str | Path | None = None,
) -> Path:
    """Draw ``n`` randomly chosen samples of a dataset, with their labels, into one PNG.

    Boxes and instance masks are drawn for detection and instance-segmentation data,
    a colour overlay for semantic masks, and the class name as the title for
    classification data.

    Args:
        data: Dataset file or folder.
        out: PNG to write; defaults to ``<dataset folder>/preview_<split>.png``.
        split: Split to sample; None picks ``train`` when present.
        n: Number of samples (fewer when the split is smaller).
        seed: Which samples: the same seed draws the same ones.
        format: Format of ``data``; detected when None.
        images: Image folder for COCO files whose file names are not relative to the json.

    Returns:
        The PNG written.
    """
    catalog = read_catalog(data, split, format=format, images=images)
    chosen = random.Random(seed).sample(catalog.images, min(n, len(catalog)))
    tiles = [_draw_record(catalog, record) for record in chosen]
    titles = [_title(catalog, record) for record in chosen]
    if out is None:
        base = Path(data) if Path(data).is_dir() else Path(data).parent
        out = base / f"preview_{split or 'train'}.png"
    save_image(make_grid(tiles, titles=titles), out)
    return Path(out)


def _draw_record(catalog: Catalog, record: ImageRecord) -> np.ndarray:
    image = read_image(catalog.image_path(record))
    mask_path = catalog.mask_path(record)
    if mask_path is not None:
        return draw_semantic(image, read_mask(mask_path))
    if not record.annotations:
        return image
    height, width = image.shape[:2]
    boxes = np.array([a.bbox for a in record.annotations], dtype=np.float32)
    # Category ids (not class indices) pick the colours, as in draw_semantic, so one class
    # has one colour in every preview.
    labels = np.array([a.category_id for a in record.annotations])
    segmented = all(a.segmentation for a in record.annotations)
    masks = (
        np.stack([segmentation_to_mask(a.segmentation, height, width) for a in record.annotations])
        if segmented
        else None
    )
    return draw_detections(image, boxes, labels, names=catalog.names, masks=masks)


def _title(catalog: Catalog, record: ImageRecord) -> str:
    if record.label is not None:
        return catalog.names.get(record.label, f"class {record.label}")
    return Path(record.file).name
