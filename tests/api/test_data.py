"""``data=``: a path is used as it is; a synthetic name is rendered once beside the runs,
reused after, and rendered again when an earlier rendering was interrupted."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from visionkit.api._data import SYNTHETIC, dataset_path
from visionkit.data.datasets import load_dataset
from visionkit.data.synthetic import export
from visionkit.errors import DataError

SMALL = {"format": "folder", "train": 12, "val": 6, "imgsz": 32}
"""A quick size for the tests of the caching itself."""


@pytest.fixture
def small_render(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Render ``shapes-shortcut`` at :data:`SMALL` size; the list records every rendering
    (every call of the exporter, with the folder it wrote)."""
    monkeypatch.setitem(SYNTHETIC, "shapes-shortcut", SMALL)
    renders: list[Path] = []
    real = export.export_synthetic

    def counting(out: Path, **options: Any) -> Path:
        renders.append(Path(out))
        return real(out, **options)

    monkeypatch.setattr(export, "export_synthetic", counting)
    return renders


def _files(root: Path) -> dict[str, tuple[int, str]]:
    """Every file under ``root`` (hidden ones too): modification time and content hash."""
    return {
        str(f.relative_to(root)): (f.stat().st_mtime_ns, hashlib.sha1(f.read_bytes()).hexdigest())
        for f in sorted(root.rglob("*"))
        if f.is_file()
    }


def test_existing_paths_are_used_as_they_are(tmp_path):
    file = tmp_path / "data.yaml"
    file.write_text("path: .\n")
    assert dataset_path(file, project=tmp_path / "runs") == file
    assert dataset_path(str(tmp_path), project=tmp_path / "runs") == tmp_path
    assert not (tmp_path / "runs").exists()


def test_synthetic_name_is_rendered_into_the_project_at_its_sizes(tmp_path):
    path = dataset_path("shapes-shortcut", project=tmp_path)
    assert path == tmp_path / "datasets" / "shapes-shortcut"
    assert (path / ".complete").is_file()
    sizes = SYNTHETIC["shapes-shortcut"]
    for split in ("train", "val"):
        dataset = load_dataset(path, "classify", split)
        assert len(dataset) == sizes[split]
        image, label = dataset[0]
        assert tuple(image.shape) == (3, sizes["imgsz"], sizes["imgsz"])
        assert 0 <= label < len(dataset.names) == 6
    assert not list(path.glob(".staging*"))  # the renderer's scratch folders are gone


def test_detection_synthetic_name_is_a_coco_dataset(monkeypatch, tmp_path):
    monkeypatch.setitem(SYNTHETIC, "shapes", {**SMALL, "format": "coco"})
    path = dataset_path("shapes", project=tmp_path)
    assert path == tmp_path / "datasets" / "shapes" and (path / "train.json").is_file()
    image, target = load_dataset(path, "detect", "val")[0]
    assert tuple(image.shape) == (3, 32, 32) and len(target["boxes"]) >= 1


def test_second_call_reuses_the_rendering(small_render, tmp_path):
    first = dataset_path("shapes-shortcut", project=tmp_path)
    before = _files(first)
    (first / "train" / "mine.txt").write_text("a file the user put there")
    second = dataset_path("shapes-shortcut", project=tmp_path)
    assert second == first
    assert small_render == [first]  # rendered once
    assert (first / "train" / "mine.txt").exists()
    after = _files(first)
    del after["train/mine.txt"]
    assert after == before  # not a file rewritten, not even with the same bytes


def test_interrupted_rendering_is_redone(small_render, tmp_path):
    out = tmp_path / "datasets" / "shapes-shortcut"
    (out / "train" / "circle").mkdir(parents=True)
    (out / "train" / "circle" / "half.png").write_bytes(b"\x89PNG\r\n\x1a\n")  # cut short
    (out / ".staging-train").mkdir()
    path = dataset_path("shapes-shortcut", project=tmp_path)
    assert small_render == [out]
    assert (path / ".complete").is_file()
    assert not (out / "train" / "circle" / "half.png").exists()
    assert not (out / ".staging-train").exists()
    assert len(load_dataset(path, "classify", "train")) == SMALL["train"]


def test_a_rendering_that_lost_its_marker_is_redone(small_render, tmp_path):
    path = dataset_path("shapes-shortcut", project=tmp_path)
    (path / ".complete").unlink()
    next(path.glob("train/*/*.png")).unlink()
    dataset_path("shapes-shortcut", project=tmp_path)
    assert small_render == [path, path]
    assert len(load_dataset(path, "classify", "train")) == SMALL["train"]


def test_rendering_is_the_same_in_every_project(small_render, tmp_path):
    one = dataset_path("shapes-shortcut", project=tmp_path / "a")
    two = dataset_path("shapes-shortcut", project=tmp_path / "b")
    assert one != two
    hashes = [{k: h for k, (_, h) in _files(p).items()} for p in (one, two)]
    assert hashes[0] == hashes[1]


def test_neither_a_path_nor_a_synthetic_name_is_named(tmp_path):
    missing = tmp_path / "my-dataset"
    with pytest.raises(DataError) as error:
        dataset_path(missing, project=tmp_path / "runs")
    message = str(error.value)
    assert "\n" not in message and str(missing) in message and "shapes-shortcut" in message
    assert not (tmp_path / "runs").exists()


def test_a_close_but_wrong_synthetic_name_is_not_rendered(tmp_path):
    with pytest.raises(DataError) as error:
        dataset_path("shapes-shortcuts", project=tmp_path)
    assert "shapes-shortcuts" in str(error.value)
    assert list(tmp_path.iterdir()) == []
