"""Classification behind the facade: loading checkpoints safely, checking classes on val,
and turning every kind of ``predict`` source into results in order."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import visionkit
from visionkit.api import _classify
from visionkit.api._classify import load_classifier
from visionkit.data.images import read_image
from visionkit.errors import ConfigError, DataError, ImageError, VisionKitError, WeightsError
from visionkit.train import ClassificationTask


def _one_line(error: pytest.ExceptionInfo[VisionKitError]) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


@pytest.fixture(scope="module")
def small_run(small_digits, tmp_path_factory):
    """``cnn-small`` after one epoch on digits 0-2: a 3-class checkpoint to misuse."""
    model = visionkit.Model("cnn-small")
    project = tmp_path_factory.mktemp("small-runs")
    result = model.train(
        data=small_digits.path, project=project, imgsz=16, epochs=1, batch=16,
        flip=0.0, colour=False, workers=0, quiet=True, deterministic=False,
    )  # fmt: skip
    return result


def _edited_checkpoint(source: Path, target: Path, edit) -> Path:
    state = torch.load(source, weights_only=True)
    edit(state)
    torch.save(state, target)
    return target


# --- loading checkpoints -------------------------------------------------------------


def test_checkpoint_rebuilds_the_trained_network(digits_run):
    trained = digits_run.model.network.state_dict()
    loaded = load_classifier(digits_run.result.best_path)
    assert not loaded.training
    assert loaded.config.names == tuple(str(d) for d in range(10))
    assert loaded.config.image_size == 16
    assert loaded.state_dict().keys() == trained.keys()
    for key, value in loaded.state_dict().items():
        assert torch.equal(value, trained[key]), key


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_damaged_checkpoint_is_a_weights_error_naming_the_file(damage, digits_run, tmp_path):
    data = digits_run.result.best_path.read_bytes()
    content = {
        "truncated": data[: len(data) // 2],
        "garbage": bytes(range(256)) * 64,
        "empty": b"",
    }[damage]
    path = tmp_path / "best.pt"
    path.write_bytes(content)
    with pytest.raises(WeightsError) as error:
        visionkit.Model(path)
    assert str(path) in _one_line(error)


class _MakesFolder:
    """Unpickling this runs ``os.mkdir(marker)``: what a malicious checkpoint would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_checkpoint_that_runs_code_is_refused_before_it_runs(digits_run, tmp_path):
    def payload(marker: Path) -> Path:
        config = load_classifier(digits_run.result.best_path).config.to_dict()
        path = tmp_path / f"{marker.name}.pt"
        torch.save({"model": _MakesFolder(marker), "model_config": config}, path)
        return path

    # The payload is live: an unsafe load runs it.
    control = tmp_path / "control-marker"
    torch.load(payload(control), weights_only=False)
    assert control.is_dir()

    marker = tmp_path / "marker"
    path = payload(marker)
    with pytest.raises(WeightsError) as error:
        visionkit.Model(path)
    assert str(path) in _one_line(error)
    assert not marker.exists()


def test_state_dict_alone_is_not_a_checkpoint(digits_run, tmp_path):
    path = tmp_path / "weights.pt"
    torch.save(digits_run.model.network.state_dict(), path)
    with pytest.raises(WeightsError) as error:
        visionkit.Model(path)
    assert str(path) in _one_line(error) and "model_config" in str(error.value)


@pytest.mark.parametrize(
    ("field", "edit"),
    [
        (
            "head.weight",
            lambda s: s["model"].update({"head.weight": s["model"]["head.weight"][:5]}),
        ),
        ("model", lambda s: s["model_config"].update({"name": "no-such-net"})),
        ("num_classes", lambda s: s["model_config"].pop("num_classes")),
    ],
)
def test_checkpoint_that_builds_no_model_names_file_and_field(field, edit, digits_run, tmp_path):
    path = _edited_checkpoint(digits_run.result.best_path, tmp_path / "edited.pt", edit)
    with pytest.raises(WeightsError) as error:
        visionkit.Model(path)
    assert str(path) in _one_line(error) and f"field {field!r}" in str(error.value)


def test_checkpoint_missing_a_tensor_is_refused(digits_run, tmp_path):
    path = _edited_checkpoint(
        digits_run.result.best_path, tmp_path / "cut.pt", lambda s: s["model"].pop("head.bias")
    )
    with pytest.raises(WeightsError) as error:
        visionkit.Model(path)
    assert "head.bias" in _one_line(error)


def test_lora_checkpoint_loads_merged_with_the_same_predictions(small_digits, fast, tmp_path):
    model = visionkit.Model("cnn-small")
    result = model.train(
        data=small_digits.path, strategy="lora:2", imgsz=16, epochs=1, batch=16,
        project=tmp_path, lr=1e-2, **fast,
    )  # fmt: skip
    saved = torch.load(result.best_path, weights_only=True)["model"]
    assert any(".lora_A." in name for name in saved)
    loaded = load_classifier(result.best_path)
    assert not any("lora" in name for name in loaded.state_dict())
    images = [read_image(f) for f in small_digits.val_files]
    trained = np.stack([r.probs for r in model.predict(images)])
    merged = np.stack([r.probs for r in visionkit.Model(result.best_path).predict(images)])
    np.testing.assert_allclose(merged, trained, atol=1e-5)


# --- train: the model keeps the best epoch ------------------------------------------------


def test_trained_model_holds_the_best_epoch_not_the_last(small_digits, fast, tmp_path, monkeypatch):
    class WorseEachEpoch(ClassificationTask):
        """Scores epoch ``n`` as ``1 / n``, so the first epoch is the best one."""

        epochs = 0

        def evaluate(self, model, loader, device):
            WorseEachEpoch.epochs += 1
            return {**super().evaluate(model, loader, device), "accuracy_top1": 1 / self.epochs}

    monkeypatch.setattr(_classify, "ClassificationTask", WorseEachEpoch)
    model = visionkit.Model("cnn-small")
    result = model.train(
        data=small_digits.path, imgsz=16, epochs=2, batch=16, project=tmp_path, **fast
    )
    assert (result.best_epoch, result.epochs_run) == (1, 2)
    held = model.network.state_dict()
    best = torch.load(result.best_path, weights_only=True)["model"]
    last = torch.load(result.last_path, weights_only=True)["model"]
    assert all(torch.equal(held[key], value) for key, value in best.items())
    assert not all(torch.equal(held[key], value) for key, value in last.items())


# --- val: classes must match -----------------------------------------------------------


def test_val_with_another_class_count_is_refused(digits_run, small_digits):
    with pytest.raises(ConfigError) as error:
        visionkit.Model(digits_run.result.best_path).val(data=small_digits.path)
    message = _one_line(error)
    assert str(small_digits.path) in message and "field 'data'" in message


def test_val_with_the_same_count_of_other_classes_is_refused(small_run, small_digits, tmp_path):
    data = tmp_path / "letters"
    for split in ("train", "val"):
        for digit, letter in zip("012", "abc", strict=True):
            shutil.copytree(small_digits.path / split / digit, data / split / letter)
    model = visionkit.Model(small_run.best_path)
    with pytest.raises(ConfigError) as error:
        model.val(data=data)
    assert "'a'" in _one_line(error) and "'0'" in str(error.value)
    assert 0 <= model.val(data=small_digits.path)["accuracy_top1"] <= 1  # the right one runs


def test_val_of_a_missing_split_names_it(small_run, small_digits):
    with pytest.raises(DataError) as error:
        visionkit.Model(small_run.best_path).val(data=small_digits.path, split="test")
    assert "'test'" in _one_line(error)


# --- predict: every source, in order -----------------------------------------------------


@pytest.fixture(scope="module")
def folder(digits, tmp_path_factory):
    """Four digit images under one folder, one in a subfolder, named out of order."""
    root = tmp_path_factory.mktemp("images")
    names = ["c.png", "a.png", "sub/b.png", "d.png"]
    for name, file in zip(names, digits.val_files[:4], strict=True):
        (root / name).parent.mkdir(exist_ok=True)
        shutil.copy(file, root / name)
    (root / "notes.txt").write_text("not an image")
    return root


def _probs(results) -> np.ndarray:
    return np.stack([r.probs for r in results])


def test_predict_gives_one_normalised_result_per_image(digits_run, digits):
    results = digits_run.model.predict(digits.val_files[:20])
    assert [r.path for r in results] == digits.val_files[:20]
    for result in results:
        assert result.probs.dtype == np.float32 and result.probs.shape == (10,)
        assert result.probs.min() >= 0 and result.probs.sum() == pytest.approx(1, abs=1e-5)
        assert result.name == result.names[int(result.probs.argmax())]
        assert result.top5[0] == int(result.probs.argmax())
        assert json.loads(json.dumps(result.to_json()))["file"] == str(result.path)
    names = [r.name for r in results]
    assert np.mean([a == b for a, b in zip(names, digits.val_names[:20], strict=True)]) >= 0.9


def test_predict_folder_and_glob_are_sorted_and_skip_other_files(digits_run, folder):
    expected = [folder / "a.png", folder / "c.png", folder / "d.png", folder / "sub" / "b.png"]
    by_folder = digits_run.model.predict(folder)
    assert [r.path for r in by_folder] == expected
    by_glob = digits_run.model.predict(str(folder / "**" / "*.png"))
    assert [r.path for r in by_glob] == expected
    np.testing.assert_array_equal(_probs(by_glob), _probs(by_folder))


def test_file_array_and_list_sources_agree(digits_run, folder):
    model = digits_run.model
    file = folder / "a.png"
    one = model.predict(file)
    assert len(one) == 1 and one[0].path == file
    array = model.predict(read_image(file))
    assert array[0].path is None
    np.testing.assert_allclose(array[0].probs, one[0].probs, atol=1e-6)
    mixed = model.predict([folder / "d.png", read_image(file), folder / "sub"])
    assert [r.path for r in mixed] == [folder / "d.png", None, folder / "sub" / "b.png"]
    singles = [*model.predict(folder / "d.png"), *one, *model.predict(folder / "sub" / "b.png")]
    np.testing.assert_allclose(_probs(mixed), _probs(singles), atol=1e-6)


def test_gray_array_is_read_as_rgb(digits_run, folder):
    rgb = read_image(folder / "a.png")
    gray = digits_run.model.predict(rgb[:, :, 0].copy())
    np.testing.assert_allclose(gray[0].probs, digits_run.model.predict(rgb)[0].probs, atol=1e-6)
    assert gray[0].image.shape == rgb.shape


def test_batch_size_does_not_change_predictions(digits_run, digits):
    files = digits.val_files[:9]
    one_by_one = _probs(digits_run.model.predict(files, batch=1))
    np.testing.assert_allclose(
        _probs(digits_run.model.predict(files, batch=4)), one_by_one, atol=1e-5
    )


def test_prediction_saves_a_picture(digits_run, folder, tmp_path):
    result = digits_run.model.predict(folder / "a.png")[0]
    path = result.save(tmp_path / "out" / "a.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    np.testing.assert_array_equal(read_image(path), result.plot())


def test_untrained_model_names_classes_by_index():
    result = visionkit.Model("cnn-small").predict(np.zeros((16, 16, 3), np.uint8))[0]
    assert len(result.names) == 1000 and result.names[:3] == ("0", "1", "2")
    assert result.name == str(result.top1)


@pytest.mark.parametrize(
    "array",
    [
        np.zeros((16, 16, 3), np.float32),
        np.zeros((2, 16, 16, 3), np.uint8),
        np.zeros((16, 16, 4), np.uint8),
        np.zeros((3, 16, 16), np.uint8),
    ],
    ids=["float", "batch", "rgba", "channels-first"],
)
def test_predict_refuses_arrays_that_are_not_rgb_images(array, digits_run):
    with pytest.raises(DataError) as error:
        digits_run.model.predict(array)
    assert "field 'source'" in _one_line(error) and str(list(array.shape)) in str(error.value)


@pytest.mark.parametrize("source", ["missing.png", "missing-folder", "nothing-*.png", "empty"])
def test_predict_names_a_source_with_no_images(source, digits_run, tmp_path):
    (tmp_path / "empty").mkdir()
    path = str(tmp_path / source)
    with pytest.raises(DataError) as error:
        digits_run.model.predict(path)
    assert path in _one_line(error)


def test_predict_names_a_file_that_is_not_an_image(digits_run, folder):
    with pytest.raises(ImageError) as error:
        digits_run.model.predict(folder / "notes.txt")
    assert str(folder / "notes.txt") in _one_line(error)


def test_cached_linear_probe_trains_only_the_head_and_writes_a_loadable_run(digits, tmp_path, fast):
    source = visionkit.Model("cnn-small", image_size=16)
    source.predict(np.zeros((16, 16, 3), np.uint8))  # builds the random-init network
    before = {k: v.clone() for k, v in source.network.backbone.state_dict().items()}
    result = source.train(
        data=digits.path, strategy="linear", cache=True, epochs=30, lr=0.01, batch=64,
        project=tmp_path, name="probe", **fast,
    )  # fmt: skip
    after = source.network.backbone.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # backbone untouched
    assert result.best_fitness > 0.5  # random features, trained head: well above 0.1
    reloaded = visionkit.Model(result.best_path)
    assert reloaded.val(data=digits.path)["accuracy_top1"] == result.best_fitness
    with pytest.raises(ConfigError, match="cache"):
        source.train(data=digits.path, strategy="full", cache=True, project=tmp_path, **fast)
