"""The check that a train-mode detection target fits the contract, shared by the adapters.

A wrapped library meets a bad target with a shape traceback, a silent wrong loss (a label
past the head) or a NaN (a box of zero width); each adapter checks its targets here
first, so the user gets one :class:`~visionkit.errors.ConfigError` naming the target.
"""

from __future__ import annotations

import torch

from visionkit.errors import ConfigError

__all__ = ["checked_target"]


def checked_target(
    target: dict[str, torch.Tensor], index: int, num_classes: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The boxes and labels of one target, checked.

    Args:
        target: ``"boxes"`` ``[N, 4]`` xyxy pixels and ``"labels"`` ``[N]``.
        index: The target's position in the batch, for messages.
        num_classes: ``K``; labels must be in ``0..K-1``.

    Returns:
        ``float32`` boxes ``[N, 4]`` and ``int64`` labels ``[N]`` on the boxes' device.

    Raises:
        ConfigError: A key is missing, the labels do not match the boxes or leave
            ``0..K-1``, or a box lacks positive width and height.
    """
    record = f"target {index}"
    for key in ("boxes", "labels"):
        if key not in target:
            raise ConfigError(
                "a train-mode target needs boxes and labels", record=record, field=key
            )
    boxes = torch.as_tensor(target["boxes"], dtype=torch.float32)
    if boxes.numel() == 0:
        boxes = boxes.reshape(0, 4)
    if boxes.dim() != 2 or boxes.shape[1] != 4:
        raise ConfigError(f"must be [N, 4], got {list(boxes.shape)}", record=record, field="boxes")
    labels = torch.as_tensor(target["labels"], device=boxes.device).to(torch.int64)
    if labels.shape != (len(boxes),) or ((labels < 0) | (labels >= num_classes)).any():
        raise ConfigError(
            f"need {len(boxes)} labels in 0..{num_classes - 1}", record=record, field="labels"
        )
    if (boxes[:, 2:] <= boxes[:, :2]).any():
        raise ConfigError("boxes need x2 > x1 and y2 > y1", record=record, field="boxes")
    return boxes, labels
