"""Tests of visionkit.train.features: one backbone pass, a head fitted on the cache, put back."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from visionkit.errors import ConfigError
from visionkit.train.features import extract_features, install_head, train_linear_head

N_IMAGES = 40


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def model(protocol_classifier) -> nn.Module:
    """The classifier protocol on a small conv backbone that counts the images it sees
    (``images_seen``) and the modes it saw them in (``modes_seen``)."""
    torch.manual_seed(0)
    backbone = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1),
        nn.BatchNorm2d(6),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    )
    model = protocol_classifier(backbone, 6, ("0", "2"))
    model.images_seen = 0
    model.modes_seen = set()

    def count(module: nn.Module, args: tuple[torch.Tensor], output: torch.Tensor) -> None:
        model.images_seen += len(args[0])
        model.modes_seen.add(module.training)

    backbone.register_forward_hook(count)
    return model


@pytest.fixture
def images() -> torch.Tensor:
    return torch.randn(N_IMAGES, 3, 8, 8, generator=torch.Generator().manual_seed(0))


def _separable_labels(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Labels that a linear head on the model's features can fit exactly."""
    with torch.no_grad():
        features = model.eval().forward_features(images)
    model.images_seen = 0
    direction = torch.randn(6, 3, generator=torch.Generator().manual_seed(2))
    return ((features - features.mean(0)) @ direction).argmax(1)


def test_extraction_runs_the_backbone_once_per_image_in_eval_mode(model, images):
    labels = torch.arange(N_IMAGES) % 3
    model.train()

    features, got_labels = extract_features(model, TensorDataset(images, labels), batch=16)

    assert model.images_seen == N_IMAGES and model.modes_seen == {False}
    assert model.training and model.backbone[1].training  # every mode restored
    assert torch.equal(got_labels, labels) and not features.requires_grad
    with torch.no_grad():
        torch.testing.assert_close(features, model.eval().forward_features(images))


def test_a_loader_gives_the_same_features_as_its_dataset(model, images):
    dataset = TensorDataset(images, torch.zeros(N_IMAGES, dtype=torch.long))
    from_dataset = extract_features(model, dataset, batch=8)
    from_loader = extract_features(model, DataLoader(dataset, batch_size=13))
    torch.testing.assert_close(from_loader[0], from_dataset[0])


def test_a_head_fitted_on_cached_features_predicts_what_the_model_predicts(model, images):
    labels = _separable_labels(model, images)
    features, labels = extract_features(model, TensorDataset(images, labels), batch=16)
    head = train_linear_head(features, labels, 3, epochs=400, lr=0.2, batch=None)
    install_head(model, head)

    # 400 end-to-end epochs would have run the backbone 400 * N times.
    assert model.images_seen == N_IMAGES
    assert (head(features).argmax(1) == labels).float().mean() >= 0.9
    with torch.no_grad():
        expected = model.forward_head(features)
        torch.testing.assert_close(model.eval()(images), expected)
        torch.testing.assert_close(expected, head(features))


def test_head_training_is_a_function_of_the_seed():
    features = torch.randn(30, 5, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(30) % 4
    first = train_linear_head(features, labels, 4, epochs=3, batch=7, seed=5)
    again = train_linear_head(features, labels, 4, epochs=3, batch=7, seed=5)
    other = train_linear_head(features, labels, 4, epochs=3, batch=7, seed=6)
    assert torch.equal(first.weight, again.weight)
    assert not torch.equal(first.weight, other.weight)


def test_installing_a_head_with_other_classes_resets_the_classifier(model):
    head = nn.Linear(6, 5)
    install_head(model, head)
    assert model.num_classes == 5
    assert torch.equal(model.head.weight, head.weight) and model.head is not head
    with pytest.raises(ConfigError) as caught:
        install_head(model, nn.Linear(7, 5))
    assert caught.value.field == "head"


@pytest.mark.parametrize(
    ("labels", "field"),
    [
        (torch.tensor([0, 1, 3]), "labels"),
        (torch.tensor([0.0, 1.0, 2.0]), "labels"),
        (torch.tensor([0, 1]), "features"),
    ],
)
def test_bad_training_input_names_its_field(labels, field):
    with pytest.raises(ConfigError) as caught:
        train_linear_head(torch.randn(3, 4), labels, 3)
    assert caught.value.field == field


def test_empty_data_and_bad_batch_are_refused(model):
    empty = TensorDataset(torch.zeros(0, 3, 8, 8), torch.zeros(0, dtype=torch.long))
    with pytest.raises(ConfigError) as caught:
        extract_features(model, empty)
    assert caught.value.field == "data"
    with pytest.raises(ConfigError) as caught:
        train_linear_head(torch.randn(3, 4), torch.tensor([0, 1, 2]), 3, batch=0)
    assert caught.value.field == "batch"
