"""Tests of visionkit.models.detect._yolo_blocks: the folded convolution of inference."""

from __future__ import annotations

import torch

from visionkit.models.detect._yolo_blocks import ConvBlock


def _block() -> ConvBlock:
    torch.manual_seed(0)
    block = ConvBlock(3, 8, kernel=3, stride=2)
    with torch.no_grad():  # statistics away from the initial 0 and 1, as after training
        block[1].running_mean.uniform_(-1, 1)
        block[1].running_var.uniform_(0.5, 2)
        block[1].weight.uniform_(0.5, 1.5)
        block[1].bias.uniform_(-0.5, 0.5)
    return block.eval()


def _layer_by_layer(block: ConvBlock, x: torch.Tensor) -> torch.Tensor:
    with torch.enable_grad():  # gradients on: the three layers run one after the other
        return torch.nn.Sequential.forward(block, x).detach()


def _shifted_block(mean_shift: float) -> ConvBlock:
    block = _block()
    with torch.no_grad():
        block[1].running_mean.add_(mean_shift)
    return block


def test_folded_inference_equals_the_three_layers() -> None:
    block, x = _block(), torch.randn(2, 3, 17, 16)
    with torch.no_grad():
        folded = block(x)
    assert block._folded is not None  # the folded path was taken
    torch.testing.assert_close(folded, _layer_by_layer(block, x), atol=1e-5, rtol=1e-5)
    assert folded.shape == (2, 8, 9, 8)


def test_the_folded_weights_follow_in_place_updates_and_loaded_weights() -> None:
    block, x = _block(), torch.randn(1, 3, 8, 8)
    with torch.no_grad():
        before = block(x)
        block[1].running_mean.add_(0.5)  # e.g. an EMA step, in place
        after_update = block(x)
        block.load_state_dict(_block().state_dict() | {"0.weight": torch.zeros(8, 3, 3, 3)})
        after_load = block(x)
    assert not torch.allclose(before, after_update)
    torch.testing.assert_close(after_update, _layer_by_layer(_shifted_block(0.5), x))
    torch.testing.assert_close(after_load, _layer_by_layer(block, x))


def test_training_mode_and_gradients_use_the_unfolded_layers() -> None:
    block, x = _block().train(), torch.randn(4, 3, 8, 8)
    block(x).sum().backward()
    assert block._folded is None and block[1].weight.grad is not None
    block.eval()
    x.requires_grad_(True)
    block(x).sum().backward()  # e.g. an attack or Grad-CAM on the eval model
    assert block._folded is None and x.grad is not None and block[0].weight.grad is not None
