"""Tests for visionkit.data.datasets: tensors, dtypes, label mapping and batching."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader
from torchvision import tv_tensors

from visionkit.data.datasets import (
    ClassificationDataset,
    DetectionDataset,
    SegmentationDataset,
    collate_detection,
)
from visionkit.data.records import IGNORE_INDEX, Annotation, Catalog, Category, ImageRecord
from visionkit.data.transforms import (
    classification_transforms,
    detection_transforms,
    segmentation_transforms,
)
from visionkit.errors import DataError, ImageError

HEIGHT, WIDTH = 20, 30


def _png(path: Path, array: np.ndarray) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path.name


def _rgb(value: int = 50) -> np.ndarray:
    return np.full((HEIGHT, WIDTH, 3), value, dtype=np.uint8)


def _polygon(x1: float, y1: float, x2: float, y2: float) -> list[list[float]]:
    return [[x1, y1, x2, y1, x2, y2, x1, y2]]


# --- classification -------------------------------------------------------------------


def _classification_catalog(root: Path) -> Catalog:
    records = [
        ImageRecord(_png(root / f"{i}.png", _rgb(10 * i)), WIDTH, HEIGHT, i, label=label)
        for i, label in enumerate([5, 2, 5], start=1)
    ]
    return Catalog(root, [Category(5, "b"), Category(2, "a")], records, source=root)


def test_classification_items_and_label_mapping(tmp_path: Path) -> None:
    dataset = ClassificationDataset(_classification_catalog(tmp_path))
    assert len(dataset) == 3 and dataset.names == ["b", "a"]
    image, _ = dataset[1]
    assert isinstance(image, tv_tensors.Image)
    assert image.shape == (3, HEIGHT, WIDTH) and image.dtype == torch.uint8
    assert int(image[0, 0, 0]) == 20
    assert [dataset[i][1] for i in range(3)] == [0, 1, 0]


def test_classification_batches_through_a_dataloader(tmp_path: Path) -> None:
    dataset = ClassificationDataset(
        _classification_catalog(tmp_path), classification_transforms(train=True, imgsz=16)
    )
    images, labels = next(iter(DataLoader(dataset, batch_size=3)))
    assert images.shape == (3, 3, 16, 16) and images.dtype == torch.float32
    assert labels.tolist() == [0, 1, 0]


def test_classification_refuses_missing_and_unknown_labels(tmp_path: Path) -> None:
    catalog = _classification_catalog(tmp_path)
    catalog.images[0].label = None
    catalog.images[2].label = 4
    dataset = ClassificationDataset(catalog)
    with pytest.raises(DataError, match=r"image 1.*missing"):
        dataset[0]
    with pytest.raises(DataError, match=r"image 3.*4 is unknown"):
        dataset[2]


# --- detection ------------------------------------------------------------------------


def _detection_catalog(root: Path, segmentations: bool = True) -> Catalog:
    boxes = [(2.0, 3.0, 12.0, 9.0), (15.0, 5.0, 28.0, 18.0)]
    annotations = [
        Annotation(
            box,
            category_id,
            id=i,
            iscrowd=i == 2,
            segmentation=_polygon(*box) if segmentations else None,
        )
        for i, (box, category_id) in enumerate(zip(boxes, [9, 3], strict=True), start=1)
    ]
    records = [
        ImageRecord(_png(root / "a.png", _rgb()), WIDTH, HEIGHT, 11, annotations=annotations),
        ImageRecord(_png(root / "b.png", _rgb()), WIDTH, HEIGHT, 12),
    ]
    return Catalog(root, [Category(3, "cat"), Category(9, "dog")], records, source=root / "x.json")


def _tight_box(mask: torch.Tensor) -> list[float]:
    ys, xs = torch.nonzero(mask, as_tuple=True)
    return [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]


def test_detection_target_has_torchvision_types(tmp_path: Path) -> None:
    dataset = DetectionDataset(_detection_catalog(tmp_path))
    image, target = dataset[0]
    assert image.shape == (3, HEIGHT, WIDTH) and image.dtype == torch.uint8
    boxes = target["boxes"]
    assert isinstance(boxes, tv_tensors.BoundingBoxes) and boxes.dtype == torch.float32
    assert boxes.format == tv_tensors.BoundingBoxFormat.XYXY
    assert boxes.canvas_size == (HEIGHT, WIDTH)
    assert boxes.tolist() == [[2.0, 3.0, 12.0, 9.0], [15.0, 5.0, 28.0, 18.0]]
    assert target["labels"].dtype == torch.int64 and target["labels"].tolist() == [1, 0]
    assert target["iscrowd"].dtype == torch.int64 and target["iscrowd"].tolist() == [0, 1]
    assert target["image_id"] == 11
    masks = target["masks"]
    assert isinstance(masks, tv_tensors.Mask)
    assert masks.shape == (2, HEIGHT, WIDTH) and masks.dtype == torch.uint8
    for box, mask in zip(boxes.tolist(), masks, strict=True):
        assert np.allclose(_tight_box(mask), box, atol=1.0)


def test_detection_image_without_objects_keeps_every_key(tmp_path: Path) -> None:
    _, target = DetectionDataset(_detection_catalog(tmp_path))[1]
    assert target["boxes"].shape == (0, 4) and target["labels"].shape == (0,)
    assert target["masks"].shape == (0, HEIGHT, WIDTH) and target["iscrowd"].shape == (0,)


def test_detection_without_segmentations_has_no_masks(tmp_path: Path) -> None:
    dataset = DetectionDataset(_detection_catalog(tmp_path, segmentations=False))
    assert not dataset.with_masks and "masks" not in dataset[0][1]


def test_detection_refuses_unknown_categories_and_partial_masks(tmp_path: Path) -> None:
    catalog = _detection_catalog(tmp_path)
    catalog.images[0].annotations[1].category_id = 4
    with pytest.raises(DataError, match=r"image 11, annotation 2.*category_id"):
        DetectionDataset(catalog)[0]
    catalog.images[0].annotations[1].category_id = 3
    catalog.images[0].annotations[1].segmentation = None
    with pytest.raises(DataError, match=r"annotation 2.*segmentation"):
        DetectionDataset(catalog)[0]


def test_detection_batches_as_lists(tmp_path: Path) -> None:
    dataset = DetectionDataset(_detection_catalog(tmp_path), detection_transforms(True, 32))
    loader = DataLoader(dataset, batch_size=2, collate_fn=collate_detection)
    images, targets = next(iter(loader))
    assert isinstance(images, list) and isinstance(targets, list)
    assert [image.shape for image in images] == [(3, 32, 32)] * 2
    assert [t["image_id"] for t in targets] == [11, 12]
    assert targets[0]["masks"].shape[1:] == (32, 32)
    assert collate_detection([]) == ([], [])


# --- segmentation ---------------------------------------------------------------------


def _class_mask() -> np.ndarray:
    mask = np.zeros((HEIGHT, WIDTH), dtype=np.uint8)
    mask[2:8, 3:10] = 1
    mask[10:18, 12:25] = 2
    mask[0, :] = IGNORE_INDEX
    return mask


def _mask_catalog(root: Path, categories: list[Category]) -> Catalog:
    record = ImageRecord(_png(root / "a.png", _rgb()), WIDTH, HEIGHT, 1, mask_file="m/a.png")
    _png(root / "m" / "a.png", _class_mask())
    return Catalog(root, categories, [record], source=root)


def test_segmentation_with_a_background_category_keeps_ids(tmp_path: Path) -> None:
    categories = [Category(0, "background"), Category(1, "cat"), Category(2, "dog")]
    dataset = SegmentationDataset(_mask_catalog(tmp_path, categories))
    image, mask = dataset[0]
    assert not dataset.adds_background and dataset.names == ["background", "cat", "dog"]
    assert image.shape == (3, HEIGHT, WIDTH)
    assert isinstance(mask, tv_tensors.Mask) and mask.dtype == torch.int64
    assert mask.shape == (HEIGHT, WIDTH)
    np.testing.assert_array_equal(mask.numpy(), _class_mask())


def test_segmentation_follows_catalog_order_of_category_ids(tmp_path: Path) -> None:
    categories = [Category(2, "dog"), Category(0, "background"), Category(1, "cat")]
    _, mask = SegmentationDataset(_mask_catalog(tmp_path, categories))[0]
    lookup = {0: 1, 1: 2, 2: 0, IGNORE_INDEX: IGNORE_INDEX}
    np.testing.assert_array_equal(mask.numpy(), np.vectorize(lookup.get)(_class_mask()))


def test_segmentation_without_background_adds_it_at_index_0(tmp_path: Path) -> None:
    annotations = [
        Annotation((0, 0, 10, 10), 7, id=1, segmentation=_polygon(0, 0, 10, 10)),
        Annotation((5, 5, 20, 15), 3, id=2, segmentation=_polygon(5, 5, 20, 15)),
    ]
    record = ImageRecord(
        _png(tmp_path / "a.png", _rgb()), WIDTH, HEIGHT, 1, annotations=annotations
    )
    catalog = Catalog(tmp_path, [Category(3, "cat"), Category(7, "dog")], [record])
    dataset = SegmentationDataset(catalog)
    _, mask = dataset[0]
    assert dataset.adds_background and dataset.names == ["background", "cat", "dog"]
    assert mask[2, 2] == 2 and mask[7, 7] == 1 and mask[18, 28] == 0  # later drawn on top
    assert set(mask.unique().tolist()) == {0, 1, 2}


def test_segmentation_refuses_foreign_values_and_other_sizes(tmp_path: Path) -> None:
    catalog = _mask_catalog(tmp_path, [Category(0, "background"), Category(1, "cat")])
    with pytest.raises(DataError, match=r"values \[2\]"):
        SegmentationDataset(catalog)[0]
    _png(tmp_path / "m" / "a.png", np.zeros((HEIGHT + 1, WIDTH), dtype=np.uint8))
    with pytest.raises(ImageError, match="mask is 30x21"):
        SegmentationDataset(catalog)[0]


def test_segmentation_batches_through_a_dataloader(tmp_path: Path) -> None:
    categories = [Category(0, "background"), Category(1, "cat"), Category(2, "dog")]
    catalog = _mask_catalog(tmp_path, categories)
    catalog.images.append(catalog.images[0])
    dataset = SegmentationDataset(catalog, segmentation_transforms(train=True, imgsz=24))
    images, masks = next(iter(DataLoader(dataset, batch_size=2)))
    assert images.shape == (2, 3, 24, 24) and images.dtype == torch.float32
    assert masks.shape == (2, 24, 24) and masks.dtype == torch.int64


# --- caching --------------------------------------------------------------------------


@pytest.mark.parametrize("cache", [False, True])
def test_cache_reads_each_image_and_mask_file_once(tmp_path: Path, cache: bool) -> None:
    categories = [Category(0, "background"), Category(1, "cat"), Category(2, "dog")]
    dataset = SegmentationDataset(_mask_catalog(tmp_path, categories), cache=cache)
    image, mask = dataset[0]
    # the files change on disk: only a dataset that does not cache sees the change
    _png(tmp_path / "a.png", _rgb(200))
    _png(tmp_path / "m" / "a.png", np.zeros((HEIGHT, WIDTH), dtype=np.uint8))
    again, again_mask = dataset[0]
    assert dataset.cache == cache
    assert torch.equal(again, image) == cache and torch.equal(again_mask, mask) == cache
    assert again_mask.dtype == torch.int64 and isinstance(again_mask, tv_tensors.Mask)


def test_cached_images_are_not_changed_by_transforms(tmp_path: Path) -> None:
    dataset = DetectionDataset(_detection_catalog(tmp_path), cache=True)
    untouched = dataset[0][0].clone()
    dataset.transforms = detection_transforms(train=True, imgsz=16, flip=1.0)
    for _ in range(2):
        dataset[0]
    dataset.transforms = None
    assert torch.equal(dataset[0][0], untouched)
