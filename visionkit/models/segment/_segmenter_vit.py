"""Segmenter (Strudel et al., "Segmenter: Transformer for Semantic Segmentation", ICCV 2021):
a ViT encoder and the mask-transformer decoder.

The encoder is visionkit's own ViT (``vit-tiny``, ``vit-small``, or torchvision's
``vit_b_16``, see :mod:`visionkit.models.classify`), built through the registry so its
weights (``weights_encoder``) load as a classifier's, and used up to its final norm: its
patch tokens are the features. The decoder projects them to its width and processes them
jointly with ``C`` learnable class embeddings through transformer blocks; the masks are the
scalar products of the L2-normalised patch and class embeddings, one per class and patch,
normalised over the classes (LayerNorm) and upsampled bilinearly to the input size.

Inputs are zero-padded on the bottom and right to a multiple of the patch size and the
logits cropped back, so every pixel is covered by a patch (as the reference code does).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from visionkit.errors import ConfigError
from visionkit.models._config import ModelConfig
from visionkit.models.registry import create_model, register_model
from visionkit.models.segment._build import build_from_options, check_choice, check_int
from visionkit.models.segment._segmenter import SemanticSegmenter

__all__ = ["ClassEmbeddings", "MaskTransformer", "Segmenter", "segmenter"]

ENCODERS = ("vit-tiny", "vit-small", "vit_b_16")
_PATCH = {"vit_b_16": 16}


class ClassEmbeddings(nn.Module):
    """The class-dependent part of the mask transformer: one learned embedding per class,
    and the LayerNorm over the ``C`` class masks.

    Args:
        num_classes: ``C``.
        dim: Width of the decoder.
    """

    def __init__(self, num_classes: int, dim: int) -> None:
        super().__init__()
        self.embeddings = nn.Parameter(torch.randn(num_classes, dim) * 0.02)
        self.mask_norm = nn.LayerNorm(num_classes)


class MaskTransformer(nn.Module):
    """Patch tokens and class embeddings through transformer blocks, then masks.

    Args:
        encoder_dim: Width of the encoder's tokens.
        dim: Width of the decoder (``dim // 64`` attention heads, at least one).
        depth: Number of transformer blocks (2 in the paper).
    """

    def __init__(self, encoder_dim: int, dim: int, depth: int) -> None:
        from torchvision.models.vision_transformer import EncoderBlock

        super().__init__()
        heads = max(1, dim // 64)
        self.project = nn.Linear(encoder_dim, dim)
        self.blocks = nn.Sequential(
            *(EncoderBlock(heads, dim, 4 * dim, 0.0, 0.0) for _ in range(depth))
        )
        self.norm = nn.LayerNorm(dim)
        self.project_patches = nn.Linear(dim, dim, bias=False)
        self.project_classes = nn.Linear(dim, dim, bias=False)

    def forward(
        self, patches: torch.Tensor, grid: tuple[int, int], classes: ClassEmbeddings
    ) -> torch.Tensor:
        """Masks ``[B, C, h, w]`` of patch tokens ``[B, h * w, D_enc]`` on an ``h x w`` grid."""
        count = classes.embeddings.shape[0]
        tokens = self.project(patches)
        queries = classes.embeddings.expand(tokens.shape[0], -1, -1)
        tokens = self.norm(self.blocks(torch.cat([tokens, queries], dim=1)))
        patch_emb = F.normalize(self.project_patches(tokens[:, :-count]), dim=-1)
        class_emb = F.normalize(self.project_classes(tokens[:, -count:]), dim=-1)
        masks = classes.mask_norm(patch_emb @ class_emb.transpose(1, 2))  # [B, h*w, C]
        return masks.transpose(1, 2).reshape(masks.shape[0], count, *grid)


class Segmenter(SemanticSegmenter):
    """Segmenter: ViT patch tokens decoded by a :class:`MaskTransformer`.

    Args:
        config: The model's config.
        encoder: A :class:`~visionkit.models.classify._vit.ViTBackbone` (``embed``,
            ``blocks``, ``norm``; CLS token first).
        decoder_dim: Width of the decoder.
        decoder_depth: Blocks of the decoder.

    Attributes:
        patch_size: The encoder's patch side in pixels.
        head: The :class:`ClassEmbeddings`.
    """

    def __init__(
        self, config: ModelConfig, encoder: nn.Module, *, decoder_dim: int, decoder_depth: int
    ) -> None:
        super().__init__(config)
        proj = encoder.embed.proj
        self.patch_size = proj.stride[0]
        self.encoder = encoder
        self.decoder = MaskTransformer(proj.out_channels, decoder_dim, decoder_depth)
        self.head = ClassEmbeddings(config.num_classes, decoder_dim)

    def patch_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """The encoder's normed patch tokens ``[B, h * w, D_enc]`` (CLS token dropped)."""
        return self.encoder.norm(self.encoder.blocks(self.encoder.embed(x)))[:, 1:]

    def forward_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, C, H, W]`` of normalised images ``[B, 3, H, W]``, at input size."""
        height, width = x.shape[-2:]
        p = self.patch_size
        padded = F.pad(x, (0, -width % p, 0, -height % p))
        grid = (padded.shape[-2] // p, padded.shape[-1] // p)
        masks = self.decoder(self.patch_tokens(padded), grid, self.head)
        masks = F.interpolate(masks, size=padded.shape[-2:], mode="bilinear", align_corners=False)
        return masks[..., :height, :width]


def _encoder(name: str, image_size: int, patch_size: int, weights: str | None) -> nn.Module:
    """The ViT backbone of classifier ``name`` (its weights loaded), its head left out."""
    sized = {"image_size": image_size}
    if name != "vit_b_16":
        sized["patch_size"] = patch_size
    elif patch_size != 16:
        raise ConfigError("vit_b_16 has 16-pixel patches", field="patch_size")
    return create_model(name, num_classes=1, weights=weights, **sized).backbone


@register_model(
    "segmenter",
    task="segment",
    description="Segmenter, ViT-tiny encoder (8-px patches) and mask transformer, 0.4 M parameters",
)
def segmenter(
    *,
    num_classes: int | None = None,
    weights: str | None = None,
    image_size: int = 256,
    encoder: str = "vit-tiny",
    patch_size: int | None = None,
    weights_encoder: str | None = None,
    decoder_dim: int | None = None,
    decoder_depth: int = 2,
) -> Segmenter:
    """Segmenter with the mask-transformer decoder.

    Args:
        num_classes: ``C`` classes, background included; ``None`` keeps the weights' (21
            without weights).
        weights: ``None`` (random init) or a visionkit weights file of this model.
        image_size: Square input side the model is meant for; it sets the encoder's
            positional grid (other sizes resample it).
        encoder: ``"vit-tiny"`` (4 blocks of width 64), ``"vit-small"`` (6 of 128) or
            ``"vit_b_16"`` (torchvision's ViT-B/16, the paper's Seg-B).
        patch_size: Patch side in pixels; ``None``: 8, or 16 for ``vit_b_16`` (its only
            size).
        weights_encoder: Weights of the encoder classifier (``"DEFAULT"`` for
            ``vit_b_16``'s ImageNet weights, or a visionkit weights file of the
            classifier), loaded when ``weights`` is ``None``; not recorded in the config.
        decoder_dim: Width of the decoder; ``None`` takes the encoder's.
        decoder_depth: Transformer blocks of the decoder.

    Returns:
        The model, in train mode.

    Raises:
        ConfigError: An unknown encoder, an option out of range, or ``weights_encoder``
            with ``weights``.
        WeightsError: The weights cannot be found (offline: names the file to place),
            read or fitted.
    """
    if weights is not None and weights_encoder is not None:
        raise ConfigError(
            "weights_encoder applies only without weights (the weights hold the encoder)",
            field="weights_encoder",
        )
    options = {
        "image_size": image_size,
        "encoder": check_choice(encoder, "encoder", ENCODERS),
        "patch_size": check_int(patch_size or _PATCH.get(encoder, 8), "patch_size", 1),
        "decoder_dim": None if decoder_dim is None else check_int(decoder_dim, "decoder_dim", 1),
        "decoder_depth": check_int(decoder_depth, "decoder_depth", 1),
    }

    def make(config: ModelConfig) -> Segmenter:
        vit = _encoder(encoder, image_size, options["patch_size"], weights_encoder)
        width = decoder_dim or vit.embed.proj.out_channels
        return Segmenter(config, vit, decoder_dim=width, decoder_depth=decoder_depth)

    return build_from_options(
        make,
        name="segmenter",
        weights=weights,
        num_classes=num_classes,
        options=options,
        classes_key="head.embeddings",
    )
