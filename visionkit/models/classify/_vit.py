"""Vision Transformer backbone (Dosovitskiy et al. 2021) and the small from-scratch ViTs.

:class:`ViTBackbone` is patch embedding (a strided conv), a CLS token, a learned positional
embedding, pre-norm transformer blocks and a final norm; it returns the normed CLS token.
It carries both visionkit's small ViTs (``vit-tiny``, ``vit-small``: few, narrow blocks
that train from scratch on a CPU) and torchvision's ``vit_b_16``, whose modules it reuses,
so one class serves pretrained fine-tuning and from-scratch training. The positional
embedding is resampled (bicubic) for inputs of another size, as in DeiT's fine-tuning at
higher resolution, so any input side works, not only ``image_size``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from visionkit.errors import ConfigError
from visionkit.models.classify._build import build_classifier, make_config, register_classifier
from visionkit.models.classify._classifier import ImageClassifier

__all__ = ["ViTBackbone", "ViTEmbed", "vit_small", "vit_tiny"]


def resample_pos_embed(pos_embed: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resample ``[1, 1 + g*g, D]`` positional embeddings (CLS first) to a ``size`` grid.

    Returns ``[1, 1 + h*w, D]``; the CLS position is kept as is.
    """
    side = math.isqrt(pos_embed.shape[1] - 1)
    if (side, side) == size:
        return pos_embed
    cls, grid = pos_embed[:, :1], pos_embed[:, 1:]
    grid = grid.reshape(1, side, side, -1).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=size, mode="bicubic", align_corners=False)
    return torch.cat([cls, grid.permute(0, 2, 3, 1).flatten(1, 2)], dim=1)


class ViTEmbed(nn.Module):
    """Images ``[B, 3, H, W]`` -> tokens ``[B, 1 + (H/p)(W/p), D]``: CLS + patches + positions.

    Args:
        proj: ``nn.Conv2d(3, D, p, stride=p)``, the patch embedding.
        cls_token: ``[1, 1, D]`` learned CLS token.
        pos_embed: ``[1, 1 + g*g, D]`` learned positions for a ``g x g`` patch grid.
        dropout: Dropout on the tokens.
    """

    def __init__(
        self, proj: nn.Conv2d, cls_token: nn.Parameter, pos_embed: nn.Parameter, dropout: float
    ) -> None:
        super().__init__()
        self.proj = proj
        self.cls_token = cls_token
        self.pos_embed = pos_embed
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Token sequence of a batch of images, CLS token first."""
        patches = self.proj(x)
        grid = (patches.shape[-2], patches.shape[-1])
        tokens = patches.flatten(2).transpose(1, 2)
        cls = self.cls_token.expand(tokens.shape[0], -1, -1)
        tokens = torch.cat([cls, tokens], dim=1) + resample_pos_embed(self.pos_embed, grid)
        return self.dropout(tokens)

    def resize_grid(self, side: int) -> None:
        """Resample the stored positional embedding to a ``side x side`` grid, in place."""
        with torch.no_grad():
            resized = resample_pos_embed(self.pos_embed, (side, side))
        self.pos_embed = nn.Parameter(resized.contiguous())


class ViTBackbone(nn.Module):
    """Images ``[B, 3, H, W]`` -> the normed CLS token ``[B, D]``.

    Args:
        embed: The :class:`ViTEmbed`.
        blocks: Transformer blocks, each ``[B, N, D] -> [B, N, D]``.
        norm: The final norm.
    """

    def __init__(self, embed: ViTEmbed, blocks: nn.Sequential, norm: nn.Module) -> None:
        super().__init__()
        self.embed = embed
        self.blocks = blocks
        self.norm = norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features: the CLS token after every block and the final norm."""
        return self.norm(self.blocks(self.embed(x))[:, 0])

    def stage_names(self) -> tuple[str, ...]:
        """Embedding, each block, final norm: the stages from input to output."""
        return ("embed", *(f"blocks.{i}" for i in range(len(self.blocks))), "norm")


@dataclass(frozen=True)
class _ViTArch:
    """Width and depth of a small ViT."""

    embed_dim: int
    depth: int
    num_heads: int
    mlp_ratio: int = 4


_ARCHS = {"vit-tiny": _ViTArch(64, 4, 4), "vit-small": _ViTArch(128, 6, 4)}


def _scratch_backbone(arch: _ViTArch, image_size: int, patch_size: int) -> ViTBackbone:
    """A randomly initialised ViT with a ``(image_size // patch_size)``-square position grid."""
    from torchvision.models.vision_transformer import EncoderBlock

    dim, grid = arch.embed_dim, image_size // patch_size
    embed = ViTEmbed(
        nn.Conv2d(3, dim, patch_size, stride=patch_size),
        nn.Parameter(torch.zeros(1, 1, dim)),
        nn.Parameter(torch.randn(1, 1 + grid * grid, dim) * 0.02),  # ViT's init of positions
        dropout=0.0,
    )
    blocks = nn.Sequential(
        *(
            EncoderBlock(arch.num_heads, dim, dim * arch.mlp_ratio, 0.0, 0.0)
            for _ in range(arch.depth)
        )
    )
    return ViTBackbone(embed, blocks, nn.LayerNorm(dim, eps=1e-6))


def _build_vit(
    name: str,
    num_classes: int | None,
    weights: str | None,
    image_size: int,
    patch_size: int,
    drop_rate: float,
) -> ImageClassifier:
    """Build the small ViT ``name`` (see ``_ARCHS``) at ``image_size`` with ``patch_size``."""
    if not 1 <= patch_size <= image_size:
        raise ConfigError(
            f"patch_size must be between 1 and image_size ({image_size}), got {patch_size}",
            field="patch_size",
        )
    arch = _ARCHS[name]
    options = {"image_size": image_size, "patch_size": patch_size, "drop_rate": drop_rate}

    def make(classes: int) -> ImageClassifier:
        backbone = _scratch_backbone(arch, image_size, patch_size)
        config = make_config(name, classes, image_size, weights, options)
        head = nn.Linear(arch.embed_dim, classes)
        return ImageClassifier(backbone, head, config, backbone.stage_names(), drop_rate)

    return build_classifier(make, model_name=name, weights=weights, num_classes=num_classes)


@register_classifier(
    "vit-tiny", "ViT, 4 blocks of width 64 (0.2 M parameters): trains from scratch on a CPU"
)
def vit_tiny(
    *,
    num_classes: int | None = None,
    weights: str | None = None,
    image_size: int = 32,
    patch_size: int = 4,
    drop_rate: float = 0.0,
) -> ImageClassifier:
    """A tiny ViT for small images: 4 blocks, width 64, 4 heads, ``patch_size`` patches."""
    return _build_vit("vit-tiny", num_classes, weights, image_size, patch_size, drop_rate)


@register_classifier(
    "vit-small", "ViT, 6 blocks of width 128 (1.2 M parameters): trains from scratch on a CPU"
)
def vit_small(
    *,
    num_classes: int | None = None,
    weights: str | None = None,
    image_size: int = 32,
    patch_size: int = 4,
    drop_rate: float = 0.0,
) -> ImageClassifier:
    """A small ViT for small images: 6 blocks, width 128, 4 heads, ``patch_size`` patches."""
    return _build_vit("vit-small", num_classes, weights, image_size, patch_size, drop_rate)
