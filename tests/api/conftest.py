"""Real data and trained models for the API tests: scikit-learn's digits as image folders.

``load_digits`` ships with scikit-learn (1,797 gray 8 x 8 images, values 0..16), so the
tests need no download. It is split once, stratified, into 80 % ``train`` and a held-out
20 % ``val`` and written as ``<root>/<split>/<digit>/<index>.png``. Training a model is
the expensive part, so the model that the acceptance test trains is a session fixture
that the predict and distillation tests reuse.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import visionkit

# Digits must not be flipped, and a small crop of an 8 x 8 glyph can change its meaning.
# One loader process and no determinism: speed matters here, exact repeats are tested in
# tests/train.
FAST = {
    "flip": 0.0,
    "crop_scale": (0.8, 1.0),
    "colour": False,
    "workers": 0,
    "quiet": True,
    "deterministic": False,
}

DIGITS_TRAINING = {"imgsz": 16, "epochs": 6, "batch": 32, "lr": 3e-3}
"""The acceptance recipe: 8 px digits upscaled to 16 px, six epochs of AdamW."""


@dataclass(frozen=True)
class Digits:
    """An image-folder copy of the digits: the folder and the held-out images' truth."""

    path: Path
    val_files: list[Path]
    val_names: list[str]


@dataclass(frozen=True)
class TrainedRun:
    """A trained model, what ``train`` returned, and how long training took."""

    model: visionkit.Model
    result: Any
    seconds: float


def _split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(images uint8 [N, 8, 8], labels [N], train indices, val indices)``, fixed seed."""
    digits = load_digits()
    images = np.round(digits.images * (255 / 16)).astype(np.uint8)
    train, val = train_test_split(
        np.arange(len(images)), test_size=0.2, stratify=digits.target, random_state=0
    )
    return images, digits.target, train, val


def write_split(
    root: Path, split: str, images: np.ndarray, labels: Iterable[int], indices: Iterable[int]
) -> list[Path]:
    """Write ``images[i]`` as ``<root>/<split>/<label>/<i>.png``; the files, in order."""
    files = []
    for index, label in zip(indices, labels, strict=True):
        file = root / split / str(label) / f"{index}.png"
        file.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(images[index]).save(file)
        files.append(file)
    return files


def _write_digits(
    root: Path, *, classes: range = range(10), per_class: int | None = None
) -> Digits:
    images, labels, train, val = _split()
    train, val = (_pick(indices, labels, classes, per_class) for indices in (train, val))
    write_split(root, "train", images, labels[train], train)
    val_files = write_split(root, "val", images, labels[val], val)
    return Digits(root, val_files, [str(labels[i]) for i in val])


def _pick(
    indices: np.ndarray, labels: np.ndarray, classes: range, per_class: int | None
) -> list[int]:
    """The ``indices`` of ``classes``; only the first ``per_class`` of each when given."""
    if per_class is None:
        return [i for i in indices if labels[i] in classes]
    return [i for c in classes for i in [j for j in indices if labels[j] == c][:per_class]]


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """One torch thread: on two cores shared with other jobs, two threads that contend run
    these small models two to three times slower than one."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def fast() -> dict[str, Any]:
    """Training keywords for quick, quiet runs (a fresh dict each time)."""
    return dict(FAST)


@pytest.fixture(scope="session")
def digits(tmp_path_factory: pytest.TempPathFactory) -> Digits:
    """All ten digits: 1,437 training and 360 held-out validation images."""
    return _write_digits(tmp_path_factory.mktemp("digits"))


@pytest.fixture(scope="session")
def small_digits(tmp_path_factory: pytest.TempPathFactory) -> Digits:
    """Digits 0, 1 and 2 only, 15 training and 6 validation images of each: for runs whose
    result does not matter (resume, errors, sources)."""
    return _write_digits(tmp_path_factory.mktemp("small"), classes=range(3), per_class=15)


@pytest.fixture(scope="session")
def noisy_digits(tmp_path_factory: pytest.TempPathFactory) -> Digits:
    """The digits with the training labels shuffled (a permutation, so every class keeps its
    count) and the true validation labels: the training labels say nothing about the
    images, so whatever a student learns about digits here comes from a teacher."""
    root = tmp_path_factory.mktemp("noisy")
    images, labels, train, val = _split()
    shuffled = np.random.default_rng(0).permutation(labels[train])
    write_split(root, "train", images, shuffled, train)
    val_files = write_split(root, "val", images, labels[val], val)
    return Digits(root, val_files, [str(labels[i]) for i in val])


@pytest.fixture(scope="session")
def digits_run(digits: Digits, tmp_path_factory: pytest.TempPathFactory) -> TrainedRun:
    """``cnn-small`` trained from scratch on the digits with :data:`DIGITS_TRAINING`."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # session fixtures run outside the module-scoped one
    try:
        model = visionkit.Model("cnn-small")
        start = time.perf_counter()
        result = model.train(
            data=digits.path,
            project=tmp_path_factory.mktemp("runs"),
            name="digits",
            **DIGITS_TRAINING,
            **FAST,
        )
        return TrainedRun(model, result, time.perf_counter() - start)
    finally:
        torch.set_num_threads(before)
