"""Writing synthetic datasets to disk in any dataset format.

Each image is rendered by a pure function of ``(seed, index)``, saved as PNG into a
staging folder and described by a :class:`~visionkit.data.records.Catalog`; the format
writer then links the images into its own layout. Splits draw from disjoint index
ranges, so the validation images are the same whatever the size of the training split.

A ``shapes-shortcut`` dataset can keep some classes only, and hold the same number of
images of each: the exporter walks a split's indices in order and keeps those whose label
it still needs (labels are cheap to draw, see
:func:`~visionkit.data.synthetic.shortcut.shortcut_label`), so two exports with the same
seed and disjoint classes share no image, and a transfer-learning experiment can train on
some classes and transfer to the others.

A ``shapes`` dataset can change the scene generator's settings (``scene_options``: object
counts and sizes, see :class:`~visionkit.data.synthetic.ShapesConfig`), for example larger
and fewer objects for a run that must learn something within a minute.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, fields
from functools import partial
from pathlib import Path

from PIL import Image

from visionkit.data.formats import FORMAT_NAMES, write_catalog
from visionkit.data.records import Catalog, Category, ImageRecord
from visionkit.data.synthetic import (
    CATEGORIES,
    ShapesConfig,
    ShortcutConfig,
    make_scene,
    make_shortcut_sample,
    scene_annotations,
)
from visionkit.data.synthetic.shortcut import shortcut_label
from visionkit.errors import ConfigError

KINDS = ("shapes", "shapes-shortcut")
_SPLIT_OFFSET = {"train": 0, "val": 1_000_000_000, "test": 2_000_000_000}
"""First index of each split: disjoint ranges keep splits apart and independent of sizes."""


@dataclass(frozen=True)
class _Job:
    kind: str
    seed: int
    imgsz: int
    strength: float
    counterfactual: bool
    staging: Path
    scene: ShapesConfig


def export_synthetic(
    out: str | Path,
    *,
    kind: str = "shapes",
    format: str = "coco",
    train: int = 200,
    val: int = 50,
    imgsz: int = 256,
    seed: int = 0,
    strength: float = 0.9,
    classes: Sequence[str] | None = None,
    per_class: bool = False,
    scene_options: Mapping[str, float | int] | None = None,
    workers: int | None = None,
) -> Path:
    """Write a synthetic dataset with ``train`` and ``val`` splits into folder ``out``.

    Args:
        out: Folder to write into (created when missing).
        kind: ``"shapes"`` (detection and segmentation scenes) or ``"shapes-shortcut"``
            (one object per image, classification label, background cue; also writes a
            counterfactual ``test`` split of ``val`` images where the cue is always wrong).
        format: Any of :data:`~visionkit.data.formats.FORMAT_NAMES`; ``folder`` needs
            ``kind="shapes-shortcut"`` (it stores one label per image).
        train: Number of training images (of each class when ``per_class``).
        val: Number of validation images (of each class when ``per_class``).
        imgsz: Image side in pixels.
        seed: Generator seed: the same arguments write identical files.
        strength: ``shapes-shortcut`` only: probability that the cue agrees with the class.
            The cue is drawn from the hues of all :data:`CATEGORIES`, kept or not, so at
            ``1 / len(CATEGORIES)`` it says nothing about the class whatever ``classes``.
        classes: ``shapes-shortcut`` only: names of the :data:`CATEGORIES` to keep (the
            dataset then has these classes only); ``None`` keeps all.
        per_class: ``shapes-shortcut`` only: ``train`` and ``val`` count the images of
            each class, so every split is balanced; else they count all images, whose
            classes are drawn at random.
        scene_options: ``shapes`` only: settings of the scene generator other than
            ``imgsz`` (fields of :class:`~visionkit.data.synthetic.ShapesConfig`, such as
            ``{"min_size": 0.15, "max_objects": 4}``); ``None`` keeps its defaults.
        workers: Processes rendering images; None uses every core.

    Returns:
        The dataset file or folder to pass to ``read_catalog`` / ``visionkit data check``
        (for example ``out/data.yaml`` for YOLO, ``out`` for COCO).

    Raises:
        ConfigError: An unknown kind or format, a bad count, size or strength, or scene
            options that are unknown, out of range or given to another kind.
    """
    _validate(kind, format, train, val, imgsz, strength)
    scene = _scene_config(kind, imgsz, scene_options or {})
    categories = _kept_categories(kind, classes, per_class)
    out = Path(out)
    splits = {"train": train, "val": val}
    if kind == "shapes-shortcut":
        splits["test"] = val
    written = []
    for split, count in splits.items():
        staging = out / f".staging-{split}"
        job = _Job(kind, seed, imgsz, strength, split == "test", staging, scene)
        indices = _split_indices(job, _SPLIT_OFFSET[split], count, categories, per_class)
        catalog = _render_split(job, indices, categories, workers, split)
        written.append(write_catalog(catalog, out, format, split=split))
        shutil.rmtree(job.staging)
    return out if format == "coco" else written[0]


def _validate(kind: str, format: str, train: int, val: int, imgsz: int, strength: float) -> None:
    if kind not in KINDS:
        raise ConfigError(
            f"unknown synthetic kind {kind!r}; expected one of {', '.join(KINDS)}", field="kind"
        )
    if format not in FORMAT_NAMES:
        raise ConfigError(
            f"unknown format {format!r}; expected one of {', '.join(FORMAT_NAMES)}", field="format"
        )
    if format == "folder" and kind != "shapes-shortcut":
        raise ConfigError(
            "format 'folder' stores one class per image: use kind=shapes-shortcut", field="format"
        )
    if train < 1 or val < 0:
        raise ConfigError("need train >= 1 and val >= 0 images", field="train")
    if imgsz < 32:
        raise ConfigError(f"imgsz must be at least 32 pixels, got {imgsz}", field="imgsz")
    if not 0.0 <= strength <= 1.0:
        raise ConfigError(f"strength must lie in [0, 1], got {strength}", field="strength")


def _scene_config(kind: str, imgsz: int, options: Mapping[str, float | int]) -> ShapesConfig:
    """The ``shapes`` generator's settings: ``imgsz`` and ``options`` over the defaults."""
    if options and kind != "shapes":
        raise ConfigError("scene_options need kind=shapes", field="scene_options")
    known = {field.name for field in fields(ShapesConfig)} - {"imgsz"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ConfigError(
            f"unknown scene options {unknown}; expected some of {sorted(known)}",
            field="scene_options",
        )
    return ShapesConfig(imgsz=imgsz, **options)


def _kept_categories(kind: str, classes: Sequence[str] | None, per_class: bool) -> list[Category]:
    """The categories that ``classes`` names (all when ``None``), in :data:`CATEGORIES` order."""
    if kind != "shapes-shortcut" and (classes is not None or per_class):
        raise ConfigError(
            "classes and per_class need kind=shapes-shortcut (one class per image)",
            field="classes" if classes is not None else "per_class",
        )
    if classes is None:
        return list(CATEGORIES)
    if isinstance(classes, str):
        raise ConfigError(f"classes must be a list of names, got {classes!r}", field="classes")
    known = [category.name for category in CATEGORIES]
    unknown = [name for name in classes if name not in known]
    if unknown or not classes or len(set(classes)) != len(classes):
        problem = f"unknown {unknown}" if unknown else "an empty or repeating list"
        raise ConfigError(
            f"classes must name distinct categories of {known}; got {problem}", field="classes"
        )
    return [category for category in CATEGORIES if category.name in classes]


def _split_indices(
    job: _Job, offset: int, count: int, categories: list[Category], per_class: bool
) -> list[int]:
    """Sample indices of one split: the first ones from ``offset`` on whose labels are in
    ``categories``, ``count`` in all or, when ``per_class``, ``count`` of each class."""
    if len(categories) == len(CATEGORIES) and not per_class:
        return list(range(offset, offset + count))  # every label is kept: no need to draw
    left = {category.id: count for category in categories}  # images still wanted, by class
    total = count * len(left) if per_class else count
    indices: list[int] = []
    index = offset
    while len(indices) < total:
        label = shortcut_label(job.seed, index)
        if left.get(label, 0) > 0:
            indices.append(index)
            if per_class:
                left[label] -= 1
        index += 1
    return indices


def _render_split(
    job: _Job,
    indices: list[int],
    categories: list[Category],
    workers: int | None,
    split: str,
) -> Catalog:
    from tqdm import tqdm

    job.staging.mkdir(parents=True, exist_ok=True)
    count = len(indices)
    render = partial(_render_one, job)
    bar = partial(
        tqdm, total=count, desc=f"{job.kind} {split}", unit="img", disable=not sys.stderr.isatty()
    )
    workers = workers or os.cpu_count() or 1
    if workers <= 1 or count < 64:
        records = list(bar(map(render, indices)))
    else:
        with ProcessPoolExecutor(workers) as pool:
            records = list(bar(pool.map(render, indices, chunksize=32)))
    _number_annotations(records)
    return Catalog(job.staging, categories, records, source=job.staging)


def _render_one(job: _Job, index: int) -> ImageRecord:
    """Render image ``index``, save it as PNG in the staging folder and describe it."""
    if job.kind == "shapes":
        scene = make_scene(job.seed, index, job.scene)
        label = None
    else:
        config = ShortcutConfig(
            imgsz=job.imgsz, strength=job.strength, counterfactual=job.counterfactual
        )
        sample = make_shortcut_sample(job.seed, index, config)
        scene, label = sample.scene, sample.label
    name = f"{index % _SPLIT_OFFSET['val']:06d}.png"
    # Level 1 compression: several times faster than the default for a few % more bytes.
    Image.fromarray(scene.image).save(job.staging / name, compress_level=1)
    height, width = scene.image.shape[:2]
    annotations = scene_annotations(scene.boxes, scene.labels, scene.masks, first_id=1)
    return ImageRecord(
        name, width, height, index % _SPLIT_OFFSET["val"] + 1, annotations, label=label
    )


def _number_annotations(records: list[ImageRecord]) -> None:
    """Give annotations ids unique in the split (workers number them per image)."""
    ids: Iterator[int] = iter(range(1, sys.maxsize))
    for record in records:
        for annotation in record.annotations:
            annotation.id = next(ids)
