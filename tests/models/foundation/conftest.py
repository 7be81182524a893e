"""Fixtures of the foundation-model tests: a tiny SAM built offline, and a non-square image."""

from __future__ import annotations

import numpy as np
import pytest
import torch


def tiny_sam_config():
    """A ``SamConfig`` of SAM's architecture at toy sizes: 64-pixel input, 8-pixel patches
    (an 8 x 8 embedding, 32 x 32 low-resolution masks), two encoder layers.

    The wide initialisation (SAM's own is 1e-10 in the encoder) gives logits of order one
    that depend on the image and the prompt, so masks differ between prompts instead of
    sitting on the threshold.
    """
    from transformers import SamConfig

    return SamConfig(
        vision_config={
            "hidden_size": 32,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "mlp_dim": 64,
            "image_size": 64,
            "patch_size": 8,
            "output_channels": 32,
            "window_size": 4,
            "global_attn_indexes": [1],
            "num_pos_feats": 16,
            "initializer_range": 0.3,
        },
        prompt_encoder_config={
            "hidden_size": 32,
            "image_size": 64,
            "patch_size": 8,
            "mask_input_channels": 4,
        },
        mask_decoder_config={
            "hidden_size": 32,
            "mlp_dim": 32,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "iou_head_hidden_dim": 16,
        },
        initializer_range=0.3,
    )


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread(one_torch_thread: None) -> None:
    """Every test here runs on one torch thread (see the root ``one_torch_thread``)."""


@pytest.fixture
def tiny_sam():
    """A randomly initialised tiny ``SamModel`` (fixed seed), in eval mode."""
    from transformers import SamModel

    torch.manual_seed(0)
    return SamModel(tiny_sam_config()).eval()


@pytest.fixture
def scene() -> np.ndarray:
    """A 90 x 130 RGB image (not square, so the model resizes and pads it): a bright
    rectangle on a dark, noisy background."""
    image = np.zeros((90, 130, 3), np.uint8)
    image[20:60, 30:90] = (200, 180, 160)
    noise = np.random.default_rng(0).integers(0, 30, image.shape)
    return (image + noise).astype(np.uint8)
