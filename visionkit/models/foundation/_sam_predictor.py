"""SAM's promptable segmentation of one image: embed the image once, then answer prompts.

:class:`SamPredictor` follows segment-anything's ``SamPredictor``: :meth:`~SamPredictor.set_image`
runs the heavy ViT image encoder once and caches its embedding, so every prompt after it
runs only the light prompt encoder and mask decoder. The image goes through transformers'
``SamImageProcessor`` (longest side resized to the model's input side, ImageNet
normalisation, zero padding at the bottom and right); prompts are given in the original
image's pixels and mapped through that same resize, and the decoder's low-resolution
logits are upsampled back with the processor's ``post_process_masks``. The masks are
therefore those of transformers' own ``SamProcessor`` pipeline on the same inputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from visionkit.errors import ConfigError
from visionkit.models.foundation._sam_prompts import (
    check_box,
    check_mask_input,
    check_points,
    rgb_image,
)

if TYPE_CHECKING:
    from transformers import SamImageProcessor, SamModel, SamProcessor

__all__ = ["MASK_THRESHOLD", "PromptMasks", "SamPredictor", "mask_boxes"]

MASK_THRESHOLD = 0.0
"""Mask logits above this are inside the mask (SAM's ``mask_threshold``)."""


def mask_boxes(masks: torch.Tensor, *, inclusive: bool = False) -> torch.Tensor:
    """Tight boxes around binary masks.

    Args:
        masks: ``bool`` ``[N, H, W]``.
        inclusive: ``False`` gives pixel-edge boxes (visionkit's and COCO's convention: a
            mask holding only pixel ``(row 2, col 3)`` has box ``[3, 2, 4, 3]``); ``True``
            gives segment-anything's boxes, whose far corner is the last pixel's index
            (``[3, 2, 3, 2]``), which its box NMS runs on.

    Returns:
        ``float32`` ``[N, 4]`` ``xyxy``; ``[0, 0, 0, 0]`` for an empty mask.
    """
    from torchvision.ops import masks_to_boxes

    boxes = masks_to_boxes(masks) if len(masks) else masks.new_zeros((0, 4), dtype=torch.float32)
    if inclusive:
        return boxes
    filled = masks.flatten(1).any(1) if len(masks) else masks.new_zeros(0, dtype=torch.bool)
    return boxes + filled[:, None] * boxes.new_tensor([0.0, 0.0, 1.0, 1.0])


@dataclass(frozen=True, eq=False)
class PromptMasks:
    """SAM's answer to one prompt on one image.

    Attributes:
        masks: ``bool`` ``[K, H, W]`` at the original image's size; ``K`` is 3 with
            ``multimask`` (SAM's whole / part / subpart guesses, in the model's order),
            else 1.
        scores: ``float32`` ``[K]``: the model's predicted IoU of each mask.
        logits: ``float32`` ``[K, L, L]``: the decoder's low-resolution mask logits
            (``L`` is 256 for the released checkpoints, four times the embedding side);
            pass one as ``mask_input`` to refine it with more prompts.
    """

    masks: np.ndarray
    scores: np.ndarray
    logits: np.ndarray

    def __len__(self) -> int:
        return len(self.masks)

    @property
    def best(self) -> int:
        """Index of the mask with the highest predicted IoU."""
        return int(np.argmax(self.scores))

    @property
    def boxes(self) -> np.ndarray:
        """``float32`` ``[K, 4]`` ``xyxy`` pixel-edge boxes of the masks (zeros if empty)."""
        return mask_boxes(torch.from_numpy(self.masks)).numpy()


class SamPredictor:
    """Promptable segmentation with a transformers ``SamModel``; one image at a time.

    Args:
        model: The ``SamModel``; its device is where the work runs. It is used as it is
            (:func:`~visionkit.models.foundation.load_sam` returns it in eval mode).
        processor: A ``SamProcessor`` or ``SamImageProcessor`` saved with the checkpoint;
            ``None`` builds SAM's standard one for the model's input side.

    Raises:
        ConfigError: The processor does not resize and pad to the model's input side.

    Example:
        >>> predictor = load_sam("sam")  # doctest: +SKIP
        >>> predictor.set_image("dog.jpg")  # doctest: +SKIP
        >>> result = predictor.predict(points=[(320, 240)])  # doctest: +SKIP
        >>> result.masks[result.best].shape  # doctest: +SKIP
        (480, 640)
    """

    def __init__(
        self, model: SamModel, processor: SamProcessor | SamImageProcessor | None = None
    ) -> None:
        self.model = model
        self.image_processor = _image_processor(model, processor)
        self._embedding: torch.Tensor | None = None
        self._original_size = (0, 0)
        self._resized_size = (0, 0)

    @property
    def device(self) -> torch.device:
        """The device that the model's parameters are on."""
        return next(self.model.parameters()).device

    @property
    def low_res_size(self) -> int:
        """Side ``L`` of the low-resolution mask logits (and of ``mask_input``)."""
        return 4 * int(self.model.config.prompt_encoder_config.image_embedding_size)

    @property
    def is_image_set(self) -> bool:
        """Whether :meth:`set_image` has embedded an image."""
        return self._embedding is not None

    @property
    def original_size(self) -> tuple[int, int]:
        """``(H, W)`` of the image set by :meth:`set_image`.

        Raises:
            ConfigError: No image is set.
        """
        self._require_image()
        return self._original_size

    def set_image(self, image: np.ndarray | Any | str | Path) -> None:
        """Embed ``image`` with the image encoder and keep the embedding for the prompts.

        Args:
            image: ``uint8`` RGB ``[H, W, 3]`` (or gray ``[H, W]``) numpy array, a PIL
                image, or an image file; any size.

        Raises:
            ConfigError: An array of another dtype or shape, or another type.
            ImageError: The file cannot be read.
        """
        array = rgb_image(image)
        encoded = self.image_processor(
            images=array, return_tensors="pt", input_data_format="channels_last"
        )
        pixels = encoded["pixel_values"].to(self.device, self.model.dtype)
        with torch.no_grad():
            self._embedding = self.model.get_image_embeddings(pixels)
        self._original_size = (int(array.shape[0]), int(array.shape[1]))
        resized = encoded["reshaped_input_sizes"][0]
        self._resized_size = (int(resized[0]), int(resized[1]))

    def reset_image(self) -> None:
        """Drop the cached embedding (freeing its memory)."""
        self._embedding = None

    def predict(
        self,
        points: Any | None = None,
        point_labels: Any | None = None,
        box: Any | None = None,
        mask_input: Any | None = None,
        multimask: bool = True,
    ) -> PromptMasks:
        """Segment what the prompts point at in the image set by :meth:`set_image`.

        Args:
            points: ``[N, 2]`` ``(x, y)`` in the original image's pixels (one point may be
                given as ``(x, y)``), within ``[0, W] x [0, H]``.
            point_labels: ``[N]`` 1 (foreground) or 0 (background); all 1 when None.
            box: ``(x0, y0, x1, y1)`` in the original image's pixels, inside the image,
                with ``x0 < x1`` and ``y0 < y1``.
            mask_input: ``[L, L]`` low-resolution logits (a row of a previous
                :attr:`PromptMasks.logits`), SAM's iterative refinement.
            multimask: Three masks (whole, part, subpart) for an ambiguous prompt; False
                gives one, which suits several points or a box.

        Returns:
            The :class:`PromptMasks`.

        Raises:
            ConfigError: No image is set (field ``image``), no prompt is given, or a
                prompt has the wrong shape or lies outside the image (the message names
                ``points``, ``point_labels``, ``box`` or ``mask_input``).
        """
        height, width = self.original_size
        coords, labels = check_points(points, point_labels, width, height)
        boxes = None if box is None else check_box(box, width, height)[None]
        masks = None if mask_input is None else check_mask_input(mask_input, self.low_res_size)
        if coords is None and boxes is None and masks is None:
            raise ConfigError("no prompt: give points, a box or mask_input", field="points")
        logits, scores, low_res = self.predict_torch(
            points=None if coords is None else coords[None],
            labels=None if labels is None else labels[None],
            boxes=boxes,
            mask_input=masks,
            multimask=multimask,
        )
        return PromptMasks(
            masks=(logits[0] > MASK_THRESHOLD).cpu().numpy(),
            scores=scores[0].float().cpu().numpy(),
            logits=low_res[0].float().cpu().numpy(),
        )

    def predict_torch(
        self,
        points: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        boxes: torch.Tensor | None = None,
        mask_input: torch.Tensor | None = None,
        multimask: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """A batch of ``B`` prompts on the image set by :meth:`set_image`, unchecked.

        Args:
            points: ``[B, N, 2]`` ``(x, y)`` in the original image's pixels.
            labels: ``[B, N]`` 1 (foreground) or 0 (background); required with ``points``.
            boxes: ``[B, 4]`` ``xyxy`` in the original image's pixels (one per prompt; with
                ``points`` both have the same ``B``).
            mask_input: ``[L, L]`` low-resolution logits, shared by the batch.
            multimask: Three masks per prompt instead of one.

        Returns:
            ``(logits, scores, low_res)``: mask logits ``float32`` ``[B, K, H, W]`` at the
            original size (inside where above :data:`MASK_THRESHOLD`), predicted IoU
            ``[B, K]`` and decoder logits ``[B, K, L, L]``.

        Raises:
            ConfigError: No image is set.
        """
        embedding = self._require_image()
        prompts: dict[str, torch.Tensor] = {}
        if points is not None:
            prompts["input_points"] = self._to_input_frame(points)[None]
            prompts["input_labels"] = torch.as_tensor(labels, device=self.device)[None].long()
        if boxes is not None:
            corners = self._to_input_frame(torch.as_tensor(boxes).reshape(-1, 2, 2))
            prompts["input_boxes"] = corners.reshape(1, -1, 4)
        if mask_input is not None:
            side = self.low_res_size
            prompts["input_masks"] = (
                torch.as_tensor(mask_input, device=self.device)
                .reshape(1, 1, side, side)
                .to(self.model.dtype)
            )
        with torch.no_grad():
            out = self.model(image_embeddings=embedding, multimask_output=multimask, **prompts)
        low_res = out.pred_masks[0].float()
        logits = self.image_processor.post_process_masks(
            [low_res], [self._original_size], [self._resized_size], binarize=False
        )[0]
        return logits, out.iou_scores[0].float(), low_res

    def _require_image(self) -> torch.Tensor:
        if self._embedding is None:
            raise ConfigError("no image is set: call set_image(image) first", field="image")
        return self._embedding

    def _to_input_frame(self, coords: torch.Tensor) -> torch.Tensor:
        """``(x, y)`` in original pixels -> in the resized model input, in float64.

        The arithmetic is transformers' ``SamProcessor`` (float64, one scale per axis), so
        the prompt embeddings are bit for bit the processor's.
        """
        (height, width), (new_h, new_w) = self._original_size, self._resized_size
        scaled = torch.as_tensor(coords, dtype=torch.float64).clone()
        scaled[..., 0] *= new_w / width
        scaled[..., 1] *= new_h / height
        # MPS has no float64; elsewhere the model takes float64 points as the processor's.
        return scaled.to(self.device, torch.float32 if self.device.type == "mps" else None)


def _image_processor(
    model: SamModel, processor: SamProcessor | SamImageProcessor | None
) -> SamImageProcessor:
    """The image processor to use: ``processor``'s, or SAM's standard one, checked."""
    side = int(model.config.vision_config.image_size)
    if processor is None:
        from transformers import SamImageProcessor

        return SamImageProcessor(
            size={"longest_edge": side}, pad_size={"height": side, "width": side}
        )
    image_processor = getattr(processor, "image_processor", processor)
    size = getattr(image_processor, "size", None) or {}
    pad = getattr(image_processor, "pad_size", None) or {}
    fits = (
        getattr(image_processor, "do_resize", False)
        and getattr(image_processor, "do_pad", False)
        and size.get("longest_edge") == side
        and (pad.get("height"), pad.get("width")) == (side, side)
    )
    if not fits or not hasattr(image_processor, "post_process_masks"):
        raise ConfigError(
            f"the processor must be a SamProcessor or SamImageProcessor that resizes the "
            f"longest side to the model's input side {side} and pads to {side}x{side}; "
            f"it has size {dict(size)} and pad_size {dict(pad)}",
            field="processor",
        )
    return image_processor
