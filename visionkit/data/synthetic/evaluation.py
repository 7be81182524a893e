"""Random COCO ground truth and detection results: the input of evaluator tests and benchmarks.

:func:`make_evaluation_set` writes no images, only the two JSON-ready objects that a COCO
evaluation reads: a dataset dict (``images`` with sizes, ``categories``, ``annotations``
with ``xywh`` boxes, ``area``, ``iscrowd`` and, on request, segmentations) and a results
list (``image_id``, ``category_id``, ``bbox`` or ``segmentation``, ``score``).

The set is built to reach every branch of the COCO matching rules: small, medium and large
objects; crowd regions; duplicated ground-truth boxes (tied IoUs); predictions that are
jittered copies of ground truth, duplicates, wrong labels and false positives; tied scores;
images without ground truth and images without predictions; categories with neither; a few
(image, category) pairs with more than 100 predictions; and records in shuffled order. It is
a pure function of its arguments (one numpy ``Generator`` seeded with ``seed``), and
vectorised: 5,000 COCO-sized images take about a second.

Example:
    >>> gt, results = make_evaluation_set(seed=0, num_images=4, num_categories=3)
    >>> sorted(gt), sorted(results[0])
    (['annotations', 'categories', 'images'], ['bbox', 'category_id', 'image_id', 'score'])
"""

from __future__ import annotations

from typing import Any

import numpy as np

from visionkit.errors import ConfigError
from visionkit.ops.masks import polygons_to_rle, rle_area, rle_to_mask

_VERTICES = 10  # polygon vertices of a synthetic object outline
_CROWDED_PREDICTIONS = 120  # predictions of one category on a "crowded" image: over maxDets 100


def make_evaluation_set(
    *,
    seed: int,
    num_images: int,
    num_categories: int = 80,
    gt_per_image: float = 7.0,
    preds_per_image: float = 25.0,
    crowd_fraction: float = 0.02,
    segm: bool = False,
    empty_fraction: float = 0.05,
    crowded_fraction: float = 0.01,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Make a random COCO ground-truth dataset and detection results for it.

    Args:
        seed: Seed of the random generator; equal arguments give equal output.
        num_images: Number of images (ids are distinct positive ints, listed unsorted).
        num_categories: Number of categories (ids are sorted positive ints with gaps); a tenth
            of them (at least two from 4 categories on) have no annotation, and half of
            those have predictions all the same.
        gt_per_image: Mean number of ground-truth objects per image (Poisson).
        preds_per_image: Mean number of predictions per image.
        crowd_fraction: Share of ground-truth objects that are crowd regions.
        segm: Add ``segmentation`` to annotations (polygons; crowd regions as uncompressed
            RLE, one in ten other objects as compressed RLE) and give results as compressed
            RLE ``segmentation`` instead of ``bbox``; ``area`` is then the mask area.
        empty_fraction: Share of images with no ground truth, and (drawn apart) share of
            images with no predictions.
        crowded_fraction: Share of images that get 120 extra predictions of one category.

    Returns:
        ``(dataset, results)``: a COCO dataset dict and a COCO results list, both JSON-ready
        (plain ints, floats, strings, lists and dicts). Boxes are ``xywh`` absolute pixels.

    Raises:
        ConfigError: A count or fraction is out of range.
    """
    _check(num_images, num_categories, (crowd_fraction, empty_fraction, crowded_fraction))
    rng = np.random.default_rng(seed)
    images = _images(rng, num_images)
    categories, gt_weights, pred_weights = _categories(rng, num_categories)
    gt = _ground_truth(rng, images, categories, gt_weights, gt_per_image, empty_fraction)
    gt["crowd"] = rng.random(len(gt["image"])) < crowd_fraction
    preds = _predictions(rng, images, categories, pred_weights, gt, preds_per_image)
    preds = _crowded(rng, preds, images, categories, crowded_fraction)
    preds = _drop_images(rng, preds, len(images["id"]), empty_fraction)
    dataset = {
        "images": [
            {"id": i, "width": w, "height": h}
            for i, w, h in zip(
                *(images[k].tolist() for k in ("id", "width", "height")), strict=True
            )
        ],
        "categories": [{"id": c, "name": f"category{c}"} for c in categories.tolist()],
        "annotations": _annotation_records(rng, gt, images, segm),
    }
    return dataset, _result_records(rng, preds, images, segm)


def _check(num_images: int, num_categories: int, fractions: tuple[float, ...]) -> None:
    if num_images < 1 or num_categories < 1:
        raise ConfigError(
            f"need at least one image and one category, got {num_images} and {num_categories}",
            field="num_images",
        )
    if not all(0 <= f <= 1 for f in fractions):
        raise ConfigError(f"fractions must be in [0, 1], got {fractions}", field="crowd_fraction")


def _images(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """Distinct positive ids in random order, and sizes from 240 to 800 px."""
    return {
        "id": rng.permutation(3 * n)[:n] + 1,
        "width": rng.integers(240, 801, n),
        "height": rng.integers(240, 801, n),
    }


def _categories(rng: np.random.Generator, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sorted category ids with gaps, and long-tailed frequencies for ground truth and for
    false positives: a few categories never occur, a few occur only as predictions."""
    ids = np.sort(rng.choice(np.arange(1, 2 * k + 1), k, replace=False))
    weights = rng.permutation(1.0 / (np.arange(k) + 1.0) ** 0.8)
    unused = rng.permutation(k)[: max(k // 20, 1 if k >= 4 else 0) * 2]
    gt_weights, pred_weights = weights.copy(), weights.copy()
    gt_weights[unused] = 0.0
    pred_weights[unused[: len(unused) // 2]] = 0.0
    return ids, gt_weights / gt_weights.sum(), pred_weights / pred_weights.sum()


def _random_boxes(rng: np.random.Generator, width: np.ndarray, height: np.ndarray) -> np.ndarray:
    """``[N, 4]`` ``xywh`` boxes inside their images, sizes log-uniform from 4 px to 90 %."""
    top = np.log(0.9 * np.minimum(width, height))
    side = np.exp(rng.uniform(np.log(4.0), top))
    aspect = np.exp(rng.uniform(-0.7, 0.7, len(side)))
    w = np.minimum(side * np.sqrt(aspect), width)
    h = np.minimum(side / np.sqrt(aspect), height)
    x, y = rng.uniform(0, 1, len(side)) * (width - w), rng.uniform(0, 1, len(side)) * (height - h)
    return np.stack([x, y, w, h], axis=1)


def _ground_truth(
    rng: np.random.Generator,
    images: dict[str, np.ndarray],
    categories: np.ndarray,
    weights: np.ndarray,
    per_image: float,
    empty_fraction: float,
) -> dict[str, np.ndarray]:
    """Objects with 2-decimal boxes; one in fifty repeats the previous box of its image."""
    counts = rng.poisson(per_image, len(images["id"]))
    counts[rng.random(len(counts)) < empty_fraction] = 0
    image = np.repeat(np.arange(len(counts)), counts)
    boxes = _random_boxes(rng, images["width"][image], images["height"][image]).round(2)
    boxes[:, 2:] = np.maximum(boxes[:, 2:], 0.01)
    category = rng.choice(categories, len(image), p=weights)
    repeat = np.flatnonzero(rng.random(len(image)) < 0.02)
    repeat = repeat[(repeat > 0) & (image[repeat] == image[repeat - 1])]
    boxes[repeat], category[repeat] = boxes[repeat - 1], category[repeat - 1]
    return {"image": image, "boxes": boxes, "category": category}


def _jitter(
    rng: np.random.Generator, boxes: np.ndarray, images: dict, image: np.ndarray
) -> np.ndarray:
    """Shift each ``xywh`` box by noise proportional to its size, kept inside its image."""
    scale = rng.uniform(0.01, 0.15, (len(boxes), 1)) * np.tile(boxes[:, 2:], 2)
    x1y1 = boxes[:, :2] + rng.normal(0, 1, (len(boxes), 2)) * scale[:, :2]
    x2y2 = boxes[:, :2] + boxes[:, 2:] + rng.normal(0, 1, (len(boxes), 2)) * scale[:, 2:]
    limit = np.stack([images["width"][image], images["height"][image]], axis=1)
    x1y1, x2y2 = np.clip(x1y1, 0, limit), np.clip(x2y2, 0, limit)
    x2y2 = np.maximum(x2y2, x1y1 + 0.1)
    return np.concatenate([x1y1, x2y2 - x1y1], axis=1)


def _predictions(
    rng: np.random.Generator,
    images: dict[str, np.ndarray],
    categories: np.ndarray,
    weights: np.ndarray,
    gt: dict[str, np.ndarray],
    per_image: float,
) -> dict[str, np.ndarray]:
    """Hits (jittered ground truth, 5 % relabelled), duplicates and false positives."""
    found = rng.random(len(gt["image"])) < np.where(gt["crowd"], 0.3, 0.75)
    again = found & (rng.random(len(found)) < 0.15)
    source = np.concatenate([np.flatnonzero(found), np.flatnonzero(again)])
    image = gt["image"][source]
    category = gt["category"][source].copy()
    relabel = rng.random(len(source)) < 0.05
    category[relabel] = rng.choice(categories, int(relabel.sum()), p=weights)
    score = np.where(
        np.arange(len(source)) < found.sum(),
        rng.beta(4, 2, len(source)),
        rng.beta(2, 3, len(source)),
    )
    hits = len(source) / max(len(images["id"]), 1)
    fp_counts = rng.poisson(max(per_image - hits, 1.0), len(images["id"]))
    fp_image = np.repeat(np.arange(len(fp_counts)), fp_counts)
    return {
        "image": np.concatenate([image, fp_image]),
        "boxes": np.concatenate(
            [
                _jitter(rng, gt["boxes"][source], images, image),
                _random_boxes(rng, images["width"][fp_image], images["height"][fp_image]),
            ]
        ),
        "category": np.concatenate([category, rng.choice(categories, len(fp_image), p=weights)]),
        "score": np.concatenate([score, rng.beta(1.5, 4, len(fp_image))]),
    }


def _crowded(
    rng: np.random.Generator,
    preds: dict[str, np.ndarray],
    images: dict[str, np.ndarray],
    categories: np.ndarray,
    fraction: float,
) -> dict[str, np.ndarray]:
    """Give a few images 120 predictions of one category, so maxDets truncation matters."""
    chosen = np.flatnonzero(rng.random(len(images["id"])) < fraction)
    image = np.repeat(chosen, _CROWDED_PREDICTIONS)
    extra = {
        "image": image,
        "boxes": _random_boxes(rng, images["width"][image], images["height"][image]),
        "category": np.repeat(rng.choice(categories, len(chosen)), _CROWDED_PREDICTIONS),
        "score": rng.random(len(image)),
    }
    return {key: np.concatenate([preds[key], extra[key]]) for key in preds}


def _drop_images(
    rng: np.random.Generator, preds: dict[str, np.ndarray], num_images: int, fraction: float
) -> dict[str, np.ndarray]:
    """Remove every prediction of some images, then shuffle the rest: files are unordered."""
    silent = rng.random(num_images) < fraction
    keep = rng.permutation(np.flatnonzero(~silent[preds["image"]]))
    return {key: value[keep] for key, value in preds.items()}


def _outline(rng: np.random.Generator, boxes: np.ndarray) -> np.ndarray:
    """``[N, 2 * V]`` flat polygons: a wobbly ellipse inscribed in each ``xywh`` box."""
    angles = 2 * np.pi * (np.arange(_VERTICES) / _VERTICES)
    radius = rng.uniform(0.6, 1.0, (len(boxes), _VERTICES))
    centre = boxes[:, :2] + boxes[:, 2:] / 2
    x = centre[:, :1] + radius * np.cos(angles) * boxes[:, 2:3] / 2
    y = centre[:, 1:2] + radius * np.sin(angles) * boxes[:, 3:4] / 2
    return np.stack([x, y], axis=2).reshape(len(boxes), -1).round(2)


def _uncompressed(rle: dict[str, Any]) -> dict[str, Any]:
    """The uncompressed (``counts`` list) RLE that COCO uses for crowd regions."""
    flat = rle_to_mask(rle).ravel(order="F").astype(np.int8)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], flat, [1 - flat[-1]]])))
    return {"size": rle["size"], "counts": np.diff(np.concatenate([[0], edges])).tolist()}


def _segmentations(
    rng: np.random.Generator, boxes: np.ndarray, sizes: np.ndarray, crowd: np.ndarray
) -> tuple[list[Any], list[float]]:
    """Annotation segmentations (polygons, compressed or uncompressed RLE) and mask areas."""
    segmentations, areas = [], []
    compressed = rng.random(len(boxes)) < 0.1
    for polygon, (h, w), is_crowd, as_rle in zip(
        _outline(rng, boxes).tolist(), sizes.tolist(), crowd, compressed, strict=True
    ):
        rle = polygons_to_rle([polygon], h, w)
        areas.append(rle_area(rle))
        if is_crowd:
            segmentations.append(_uncompressed(rle))
        else:
            segmentations.append(rle if as_rle else [polygon])
    return segmentations, areas


def _annotation_records(
    rng: np.random.Generator, gt: dict[str, np.ndarray], images: dict, segm: bool
) -> list[dict[str, Any]]:
    """COCO annotation dicts in shuffled file order, ids ``1..G`` (pycocotools needs > 0)."""
    order = rng.permutation(len(gt["image"]))
    boxes, crowd = gt["boxes"][order], gt["crowd"][order]
    image = gt["image"][order]
    if segm:
        sizes = np.stack([images["height"][image], images["width"][image]], axis=1)
        segmentations, areas = _segmentations(rng, boxes, sizes, crowd)
    else:  # polygon areas are smaller than box areas; the evaluator must read the field
        areas = (boxes[:, 2] * boxes[:, 3] * rng.uniform(0.55, 0.95, len(boxes))).tolist()
    columns = zip(
        images["id"][image].tolist(),
        gt["category"][order].tolist(),
        boxes.tolist(),
        areas,
        crowd.astype(int).tolist(),
        strict=True,
    )
    records = [
        {"id": n + 1, "image_id": i, "category_id": c, "bbox": b, "area": a, "iscrowd": z}
        for n, (i, c, b, a, z) in enumerate(columns)
    ]
    if segm:
        for record, segmentation in zip(records, segmentations, strict=True):
            record["segmentation"] = segmentation
    return records


def _result_records(
    rng: np.random.Generator, preds: dict[str, np.ndarray], images: dict, segm: bool
) -> list[dict[str, Any]]:
    """COCO result dicts; a third of scores and coordinates rounded (ties, short decimals)."""
    score = preds["score"].copy()
    rounded = rng.random(len(score)) < 0.3
    score[rounded] = score[rounded].round(2)
    boxes = preds["boxes"].copy()
    boxes[rounded] = boxes[rounded].round(2)
    columns = zip(
        images["id"][preds["image"]].tolist(),
        preds["category"].tolist(),
        score.tolist(),
        strict=True,
    )
    records = [{"image_id": i, "category_id": c, "score": s} for i, c, s in columns]
    if not segm:
        for record, box in zip(records, boxes.tolist(), strict=True):
            record["bbox"] = box
        return records
    image = preds["image"]
    sizes = np.stack([images["height"][image], images["width"][image]], axis=1).tolist()
    for record, polygon, (h, w) in zip(records, _outline(rng, boxes).tolist(), sizes, strict=True):
        record["segmentation"] = polygons_to_rle([polygon], h, w)
    return records
