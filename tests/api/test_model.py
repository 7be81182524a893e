"""The :class:`visionkit.Model` facade: train, val and predict on real data, resume,
distillation, synthetic data by name, and bad input refused before any work."""

from __future__ import annotations

import csv
import shutil

import numpy as np
import pytest
import torch

import visionkit
from visionkit.errors import ConfigError, DataError, VisionKitError, WeightsError


def _one_line(error: pytest.ExceptionInfo[VisionKitError]) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


def test_cnn_small_learns_held_out_digits_and_its_checkpoint_reproduces_them(digits, digits_run):
    result = digits_run.result
    print(f"\ndigits: cnn-small {result.best_fitness:.4f} top-1 in {digits_run.seconds:.1f} s")
    assert result.best_fitness >= 0.97
    assert result.best_path == result.run_dir / "weights" / "best.pt"
    reloaded = visionkit.Model(result.best_path)
    assert reloaded.names == tuple(str(d) for d in range(10))
    # Same weights, same images, same transforms: exactly the same count of right answers.
    metrics = reloaded.val(data=digits.path, split="val")
    assert metrics["accuracy_top1"] == result.best_fitness
    # After training, the model itself holds the best epoch's weights, not the last one's.
    assert digits_run.model.val(data=digits.path)["accuracy_top1"] == result.best_fitness
    predicted = [r.name for r in reloaded.predict(digits.val_files)]
    right = np.mean([p == t for p, t in zip(predicted, digits.val_names, strict=True)])
    assert right == result.best_fitness


def test_training_records_one_row_an_epoch(digits_run):
    with (digits_run.result.run_dir / "results.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [int(row["epoch"]) for row in rows] == list(range(1, 7))
    best = max(rows, key=lambda row: float(row["val/accuracy_top1"]))
    assert float(best["val/accuracy_top1"]) == pytest.approx(digits_run.result.best_fitness)


def test_resume_finishes_an_interrupted_run(small_digits, fast, tmp_path, capsys):
    settings = {"data": small_digits.path, "imgsz": 16, "epochs": 2, "batch": 16}
    run = {"project": tmp_path, "name": "r", "save_period": 1}  # keeps weights/epoch1.pt
    first = visionkit.Model("cnn-small").train(**settings, **run, **fast)
    weights = first.run_dir / "weights"
    # What a run killed during epoch 2 leaves: last.pt of epoch 1.
    (weights / "last.pt").write_bytes((weights / "epoch1.pt").read_bytes())
    rows_before = (first.run_dir / "results.csv").read_text().splitlines()
    capsys.readouterr()

    resumed = visionkit.Model("cnn-small").train(
        **settings, **run, resume=True, **{**fast, "quiet": False}
    )
    printed = capsys.readouterr().out
    assert resumed.run_dir == first.run_dir
    assert resumed.epochs_run == 2
    assert "epoch 2/2" in printed and "epoch 1/2" not in printed  # only epoch 2 trained again
    rows_after = (first.run_dir / "results.csv").read_text().splitlines()
    assert rows_after[:2] == rows_before[:2]  # header and epoch 1 kept as they were
    assert len(rows_after) == 3


def test_resume_refuses_a_changed_setting(small_digits, fast, tmp_path):
    settings = {"data": small_digits.path, "imgsz": 16, "batch": 16, "project": tmp_path}
    visionkit.Model("cnn-small").train(**settings, epochs=1, name="r", **fast)
    with pytest.raises(ConfigError) as error:
        visionkit.Model("cnn-small").train(**settings, epochs=2, name="r", resume=True, **fast)
    assert "last.pt" in _one_line(error) and "'epochs'" in str(error.value)


def test_resuming_a_run_that_never_started_names_the_missing_checkpoint(
    small_digits, fast, tmp_path
):
    settings = {"data": small_digits.path, "imgsz": 16, "project": tmp_path, "name": "ghost"}
    with pytest.raises(WeightsError) as error:
        visionkit.Model("cnn-small").train(**settings, resume=True, **fast)
    assert "ghost/weights/last.pt" in _one_line(error)
    assert not (tmp_path / "classify" / "ghost").exists()  # the name stays free


def test_hard_distillation_passes_the_teacher_on(noisy_digits, digits_run, fast, tmp_path):
    """A ViT student trained on shuffled labels: without a teacher it can only guess, so
    it agrees with the teacher about as often as chance (1 in 10); with the teacher's
    arg-max as its second label it learns the teacher's digits. Same data, same budget;
    the gap (0.40-0.56 against 0.10 in trials) is far wider than run-to-run noise."""
    teacher = digits_run.model
    truth = [r.name for r in teacher.predict(noisy_digits.val_files)]
    common = {"data": noisy_digits.path, "imgsz": 16, "epochs": 2, "lr": 3e-3, "project": tmp_path}

    def agreement(**extra) -> float:
        student = visionkit.Model("vit-tiny")
        student.train(**common, **extra, **fast)
        names = [r.name for r in student.predict(noisy_digits.val_files)]
        return float(np.mean([a == b for a, b in zip(names, truth, strict=True)]))

    # The teacher as a checkpoint: Model.train loads it like any other.
    taught = agreement(teacher=digits_run.result.best_path, distill="hard", alpha=0.5)
    alone = agreement()
    print(f"\nagreement with the teacher: {taught:.3f} distilled, {alone:.3f} alone")
    assert alone < 0.25
    assert taught > alone + 0.15


def test_teacher_with_other_classes_is_refused_before_training(small_digits, digits_run, tmp_path):
    with pytest.raises(ConfigError) as error:
        visionkit.Model("vit-tiny").train(
            data=small_digits.path, teacher=digits_run.result.best_path, project=tmp_path
        )
    assert "teacher" in _one_line(error)
    assert not (tmp_path / "classify").exists()


def test_synthetic_name_trains_on_data_rendered_beside_the_runs(fast, tmp_path):
    model = visionkit.Model("cnn-small")
    result = model.train(
        data="shapes-shortcut", project=tmp_path, imgsz=32, epochs=1, batch=64, **fast
    )
    assert (tmp_path / "datasets" / "shapes-shortcut" / ".complete").is_file()
    assert result.run_dir == tmp_path / "classify" / "train"
    assert model.names == ("circle", "cross", "hexagon", "square", "star", "triangle")


@pytest.mark.parametrize("name", ["cnn-smal", "cnn_small", "cnnsmall"])
def test_unknown_model_name_suggests_the_closest(name, small_digits, tmp_path):
    with pytest.raises(ConfigError) as error:
        visionkit.Model(name).train(data=small_digits.path, project=tmp_path)
    assert "'cnn-small'" in _one_line(error) and repr(name) in str(error.value)
    assert list(tmp_path.iterdir()) == []


def test_unknown_task_is_refused():
    with pytest.raises(ConfigError) as error:
        visionkit.Model("cnn-small", task="detectt")
    assert "'detectt'" in _one_line(error) and "classify" in str(error.value)


@pytest.mark.parametrize("layout", ["no class folders", "empty class folders"])
def test_a_train_split_without_images_is_refused(layout, tmp_path, small_digits):
    data = tmp_path / "data"
    (data / "train").mkdir(parents=True)
    if layout == "empty class folders":
        (data / "train" / "0").mkdir()
    for file in small_digits.val_files[:2]:
        target = data / "val" / file.parent.name / file.name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(file.read_bytes())
    with pytest.raises(DataError) as error:
        visionkit.Model("cnn-small").train(data=data, project=tmp_path / "runs")
    assert str(data) in _one_line(error)
    assert not (tmp_path / "runs").exists()


def test_a_misspelt_setting_is_refused_before_data_is_rendered(tmp_path):
    with pytest.raises(ConfigError) as error:
        visionkit.Model("cnn-small").train(data="shapes-shortcut", project=tmp_path, lr0=0.1)
    assert "'lr0'" in _one_line(error)
    assert list(tmp_path.iterdir()) == []


def test_imgsz_other_than_a_loaded_models_is_refused(digits_run, small_digits, tmp_path):
    model = visionkit.Model(digits_run.result.best_path)  # built for 16 px
    with pytest.raises(ConfigError) as error:
        model.train(data=small_digits.path, imgsz=32, project=tmp_path)
    assert "'imgsz'" in _one_line(error) and "16" in str(error.value)
    assert list(tmp_path.iterdir()) == []


def test_missing_checkpoint_is_named(tmp_path):
    missing = tmp_path / "weights" / "best.pt"
    with pytest.raises(VisionKitError) as error:
        visionkit.Model(missing)
    assert str(missing) in _one_line(error)


def test_the_same_seed_trains_the_same_weights(small_digits, fast, tmp_path):
    settings = {"data": small_digits.path, "imgsz": 16, "epochs": 1, "project": tmp_path}
    first = visionkit.Model("cnn-small").train(**settings, seed=3, **fast)
    second = visionkit.Model("cnn-small").train(**settings, seed=3, **fast)
    a, b = (torch.load(r.best_path, weights_only=True)["model"] for r in (first, second))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_checkpoint_trained_on_other_classes_gets_a_new_head(small_digits, fast, tmp_path):
    settings = {"data": small_digits.path, "imgsz": 16, "epochs": 1, "project": tmp_path}
    source = visionkit.Model("cnn-small").train(**settings, **fast)
    renamed = tmp_path / "renamed"
    shutil.copytree(small_digits.path, renamed)
    for split in ("train", "val"):
        for index, folder in enumerate(sorted((renamed / split).iterdir())):
            folder.rename(folder.with_name(f"class{index}"))
    model = visionkit.Model(source.best_path)
    old_head = model.network.head.weight.detach().clone()
    model.train(**{**settings, "data": renamed}, strategy="linear", lr=1e-9, **fast)
    assert model.names == ("class0", "class1", "class2")
    assert not torch.equal(model.network.head.weight, old_head)
