"""Smoke tests generated from the registry: every ``segment`` entry keeps the segmenter contract.

The entries are listed when the tests are collected, so a newly registered segmenter is
covered without editing this file; one that needs options to stay small gets them from
:data:`OPTIONS`.
"""

from __future__ import annotations

import copy
import json

import pytest
import torch
import torch.nn.functional as F  # noqa: N812

from visionkit.models import ModelConfig, SemanticSegmenter, create_model, list_models

NUM_CLASSES = 3
SIZES = [(64, 64), (70, 90)]  # the second is no multiple of 32

TINY_SEGFORMER = {
    "config_overrides": {
        "hidden_sizes": [8, 16, 24, 32],
        "num_attention_heads": [1, 1, 1, 1],
        "depths": [1, 1, 1, 1],
        "decoder_hidden_size": 16,
    }
}
OPTIONS: dict[str, dict] = {
    "unet-l": {"base_width": 8},
    "segformer-b0": TINY_SEGFORMER,
    "segformer-b2": TINY_SEGFORMER,
}


@pytest.fixture(scope="module", autouse=True)
def _offline():
    """No entry may download anything, in any test of this module."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VISIONKIT_OFFLINE", "1")
        patch.setenv("HF_HUB_OFFLINE", "1")
        yield


@pytest.fixture(scope="module", params=list_models("segment"))
def built(request) -> SemanticSegmenter:
    """Each entry built once for this module, randomly initialised, with small options."""
    torch.manual_seed(0)
    return create_model(request.param, num_classes=NUM_CLASSES, **OPTIONS.get(request.param, {}))


@pytest.fixture
def model(built) -> SemanticSegmenter:
    """A private copy of the built entry, in train mode, that a test may change."""
    return copy.deepcopy(built).train()


def _images(size: tuple[int, int]) -> torch.Tensor:
    return torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("size", SIZES)
def test_logits_come_at_the_input_size_in_train_and_eval_mode(model, size):
    assert isinstance(model, SemanticSegmenter) and model.config.task == "segment"
    assert model.num_classes == NUM_CLASSES
    for mode in (True, False):
        model.train(mode)
        with torch.no_grad():
            logits = model(_images(size))
        assert logits.shape == (2, NUM_CLASSES, *size) and logits.dtype == torch.float32
        assert torch.isfinite(logits).all()


def test_the_loss_reaches_every_trainable_parameter(model):
    images = _images(SIZES[1])
    target = torch.randint(NUM_CLASSES, (2, *SIZES[1]), generator=torch.Generator().manual_seed(2))
    target[:, :5] = 255
    F.cross_entropy(model(images), target, ignore_index=255).backward()
    trainable = {name: p for name, p in model.named_parameters() if p.requires_grad}
    assert trainable
    missed = [name for name, p in trainable.items() if p.grad is None]
    assert not missed, f"no gradient reaches {missed[:5]}"
    assert all(torch.isfinite(p.grad).all() for p in trainable.values())


def test_the_config_rebuilds_the_same_model(model):
    config = ModelConfig.from_dict(json.loads(json.dumps(model.config.to_dict())))
    assert config == model.config and config.num_classes == NUM_CLASSES
    assert len(config.mean) == len(config.std) == 3 and config.weights is None
    torch.manual_seed(1)
    rebuilt = create_model(config.name, num_classes=config.num_classes, **config.kwargs)
    rebuilt.load_state_dict(model.state_dict(), strict=True)
    images = _images(SIZES[0])
    with torch.no_grad():
        assert torch.allclose(rebuilt.eval()(images), model.eval()(images), atol=1e-5)
