"""The weights resolver and the safe reader: round trips, bad files, refused pickles."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from visionkit.errors import ConfigError, WeightsError
from visionkit.models import create_model, load_weights, read_state_file
from visionkit.models.weights import resolve_torchvision_weights, resolve_weights


def _model(num_classes: int = 3, width: int = 4, seed: int = 0):
    torch.manual_seed(seed)
    return create_model("cnn-small", num_classes=num_classes, width=width).eval()


def _outputs(model, seed: int = 1) -> torch.Tensor:
    torch.manual_seed(seed)
    with torch.no_grad():
        return model.eval()(torch.randn(2, 3, 16, 16))


def _save(model, path: Path) -> Path:
    if path.suffix == ".safetensors":
        save_file(model.state_dict(), str(path))
    else:
        torch.save(model.state_dict(), path)
    return path


class _Payload:
    """Unpickling this calls ``open(marker, "w")``: it creates the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize("suffix", [".safetensors", ".pt", ".pth"])
def test_a_saved_model_round_trips_through_a_file(tmp_path, suffix):
    saved = _model()
    path = _save(saved, tmp_path / f"weights{suffix}")

    rebuilt = create_model("cnn-small", width=4, weights=str(path))
    assert rebuilt.num_classes == 3  # taken from the file's head
    assert rebuilt.config.weights == str(path)
    assert torch.equal(_outputs(rebuilt), _outputs(saved))

    assert create_model("cnn-small", width=4, weights=path).config.weights == str(path)
    loaded = load_weights(_model(seed=7), path, model_name="cnn-small")
    assert torch.equal(_outputs(loaded), _outputs(saved))


def test_a_training_checkpoint_is_accepted(tmp_path):
    saved = _model()
    path = tmp_path / "last.pt"
    checkpoint = {"model": saved.state_dict(), "model_config": saved.config.to_dict(), "epoch": 4}
    torch.save(checkpoint, path)

    assert read_state_file(path)["epoch"] == 4  # the whole checkpoint, for the trainer
    rebuilt = create_model("cnn-small", width=4, weights=str(path))
    assert torch.equal(_outputs(rebuilt), _outputs(saved))


def test_another_class_count_loads_the_backbone_and_resets_the_head(tmp_path):
    saved = _model(num_classes=3)
    path = _save(saved, tmp_path / "w.safetensors")

    tuned = create_model("cnn-small", width=4, weights=str(path), num_classes=5).eval()
    x = torch.randn(2, 3, 16, 16)
    assert torch.equal(tuned.forward_features(x), saved.forward_features(x))
    assert tuned.num_classes == 5 and tuned.config.num_classes == 5
    assert torch.count_nonzero(tuned.head.bias) == 0


def test_a_class_count_mismatch_names_the_parameter_and_both_shapes(tmp_path):
    path = _save(_model(num_classes=3), tmp_path / "w.safetensors")
    target = _model(num_classes=5, seed=9)
    before = {k: v.clone() for k, v in target.state_dict().items()}

    with pytest.raises(WeightsError) as error:
        load_weights(target, path, model_name="cnn-small")
    message = str(error.value)
    assert error.value.field == "head.weight" and error.value.file == str(path)
    assert "(3, 16) in the weights but (5, 16) in the model" in message
    assert "num_classes" in message and "drop_head=True" in message
    # Nothing was copied before the refusal.
    assert all(torch.equal(v, before[k]) for k, v in target.state_dict().items())


def test_drop_head_loads_everything_but_the_head(tmp_path):
    saved = _model(num_classes=3)
    path = _save(saved, tmp_path / "w.pt")
    target = _model(num_classes=5, seed=9)
    head = target.head.weight.clone()

    load_weights(target, path, model_name="cnn-small", drop_head=True)
    x = torch.randn(2, 3, 16, 16)
    assert torch.equal(target.forward_features(x), saved.forward_features(x))
    assert torch.equal(target.head.weight, head)


def test_weights_of_another_architecture_are_refused(tmp_path):
    wider = _save(_model(width=8), tmp_path / "wide.pt")
    with pytest.raises(WeightsError, match="build the model with the options") as error:
        load_weights(_model(width=4), wider, model_name="cnn-small")
    assert error.value.field == "backbone.stem.0.weight"

    state = {**_model().state_dict(), "extra.weight": torch.ones(1)}
    extra = tmp_path / "extra.pt"
    torch.save(state, extra)
    with pytest.raises(WeightsError, match=r"1 unexpected \['extra.weight'\]"):
        load_weights(_model(), extra, model_name="cnn-small")
    load_weights(_model(), extra, model_name="cnn-small", strict=False)


def test_a_missing_file_is_named(tmp_path):
    path = tmp_path / "nope.pt"
    with pytest.raises(WeightsError, match="no such weights file") as error:
        read_state_file(path)
    assert error.value.file == str(path)


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_a_truncated_file_is_refused(tmp_path, suffix):
    path = _save(_model(), tmp_path / f"w{suffix}")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(WeightsError, match="corrupt or truncated") as error:
        read_state_file(path)
    assert error.value.file == str(path)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", bytes(range(256)) * 4])
def test_a_corrupt_file_is_refused(tmp_path, content):
    path = tmp_path / "w.pth"
    path.write_bytes(content)
    with pytest.raises(WeightsError) as error:
        create_model("cnn-small", weights=str(path))
    assert error.value.file == str(path)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
def test_a_pickle_that_would_run_code_is_refused_and_not_run(tmp_path, writer):
    marker = tmp_path / "marker"
    path = tmp_path / "evil.pt"
    payload = {"model": {"w": torch.ones(1)}, "note": _Payload(marker)}
    if writer == "torch.save":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload))

    with pytest.raises(WeightsError, match="nothing was executed") as error:
        read_state_file(path)
    assert error.value.file == str(path) and "\n" not in str(error.value)
    with pytest.raises(WeightsError):
        create_model("cnn-small", weights=str(path))
    assert not marker.exists()

    # The payload is live: an unsafe load runs it.
    if writer == "torch.save":
        torch.load(path, weights_only=False)
    else:
        pickle.loads(path.read_bytes())
    assert marker.exists()


def test_a_file_that_holds_no_dict_is_refused(tmp_path):
    path = tmp_path / "tensor.pt"
    torch.save(torch.ones(3), path)
    with pytest.raises(WeightsError, match="holds a Tensor"):
        read_state_file(path)
    torch.save({"epoch": 3}, path)
    with pytest.raises(WeightsError, match="neither a state dict"):
        load_weights(_model(), path, model_name="cnn-small")


def test_a_state_dict_without_a_head_cannot_build_a_classifier(tmp_path):
    path = tmp_path / "backbone.pt"
    torch.save(_model().backbone.state_dict(), path)
    with pytest.raises(WeightsError, match=r"no 2-D 'head\.weight'") as error:
        create_model("cnn-small", width=4, weights=str(path))
    assert error.value.field == "head.weight"


def test_specs_resolve_to_their_kind(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    assert resolve_weights(None, model_name="resnet18") is None
    assert resolve_weights("hf:org/repo", model_name="deit-tiny").location == "org/repo"
    enum = resolve_weights("IMAGENET1K_V1", model_name="resnet18")
    expected = tmp_path / "torch" / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    assert (enum.kind, enum.location, enum.num_classes) == ("torchvision", str(expected), 1000)
    qualified = resolve_weights("ResNet50_Weights.IMAGENET1K_V2", model_name="resnet50")
    assert qualified.url.endswith("resnet50-11ad3fa6.pth")
    assert resolve_weights(str(tmp_path), model_name="deit-tiny").kind == "hf"
    path = _save(_model(), tmp_path / "w.pt")
    assert resolve_weights(path, model_name="resnet18").kind == "file"


def test_an_unknown_spec_lists_the_torchvision_names():
    with pytest.raises(WeightsError, match=r"\(IMAGENET1K_V1, DEFAULT\)") as error:
        create_model("resnet18", weights="IMAGENET1K_V9")
    assert error.value.field == "weights"


def test_load_weights_leaves_hf_specs_to_the_builders():
    with pytest.raises(ConfigError, match="loaded by the model builder"):
        load_weights(_model(), "hf:org/repo", model_name="deit-tiny")
    model = _model()
    assert load_weights(model, None, model_name="cnn-small") is model


def test_a_missing_weights_path_is_named(tmp_path):
    path = tmp_path / "best.pt"
    with pytest.raises(WeightsError, match="no such weights file") as error:
        create_model("cnn-small", weights=str(path))
    assert error.value.file == str(path)


@pytest.mark.parametrize("model", ["fcn_resnet50", "fasterrcnn_resnet50_fpn"])
def test_torchvision_models_refuse_hf_checkpoints_by_name(model, tmp_path):
    folder = tmp_path / "checkpoint"
    folder.mkdir()  # a folder is a Hugging Face checkpoint spec
    assert resolve_torchvision_weights("DEFAULT", model_name=model).kind == "torchvision"
    for spec in ("hf:org/repo", str(folder)):
        with pytest.raises(WeightsError, match=f"{model} loads torchvision weights") as caught:
            create_model(model, weights=spec)
        assert caught.value.field == "weights"
