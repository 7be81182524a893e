"""Losses: focal and varifocal classification losses, GIoU/DIoU/CIoU box losses, and the
losses of semantic segmentation: soft Dice, and cross-entropy and Dice against each logit
cell's class shares (for logits coarser than the masks).

They live in ``ops`` because a detector computes its loss inside ``forward`` in train
mode (torchvision's contract), so the models must be able to import them;
:mod:`visionkit.train.losses` re-exports them for users of the training API. The box
losses are ``1 - x`` of the paired IoU family in :mod:`visionkit.ops.boxes`, with
torchvision's ``eps``, and give torchvision's values; unlike torchvision's, their
gradients stay finite for zero-area boxes.

Unlike the rest of :mod:`visionkit.ops`, this module imports torch: import it as
``visionkit.ops.losses``, it is not loaded by ``import visionkit.ops``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812 (torch's own convention)

from visionkit.errors import ConfigError, DataError
from visionkit.ops.boxes import (
    paired_complete_box_iou,
    paired_distance_box_iou,
    paired_generalized_box_iou,
)

REDUCTIONS = ("none", "mean", "sum")


def sigmoid_focal_loss(
    inputs: torch.Tensor,
    targets: torch.Tensor,
    alpha: float = 0.25,
    gamma: float = 2.0,
    reduction: str = "none",
) -> torch.Tensor:
    """Focal loss on independent sigmoid outputs (RetinaNet; Lin et al., ICCV 2017).

    ``loss = alpha_t * (1 - p_t)^gamma * BCE(inputs, targets)`` with ``p = sigmoid(inputs)``,
    ``p_t = p * t + (1 - p) * (1 - t)`` and ``alpha_t = alpha * t + (1 - alpha) * (1 - t)``:
    easy examples (``p_t`` near 1) count little, so the many easy background anchors do
    not swamp the few objects. Equal to ``torchvision.ops.sigmoid_focal_loss``.

    Args:
        inputs: Logits of any shape.
        targets: Same shape as ``inputs``: 1 for the positive class, 0 for the negative,
            or soft targets in ``[0, 1]``.
        alpha: Weight of the positives in ``[0, 1]``, or -1 to weigh both sides alike.
        gamma: Focusing exponent; 0 gives plain binary cross-entropy.
        reduction: ``"none"`` (per element, ``inputs``' shape), ``"mean"`` or ``"sum"``.

    Returns:
        The loss with ``reduction`` applied (the mean of no elements is 0).

    Raises:
        ConfigError: ``alpha`` out of range, shapes that differ, or an unknown reduction.

    Example:
        >>> logits, targets = torch.tensor([3.0, -3.0]), torch.tensor([1.0, 1.0])
        >>> sigmoid_focal_loss(logits, targets)  # the easy positive barely counts
        tensor([2.7321e-05, 6.9157e-01])
    """
    _check_reduction(reduction)
    if not 0 <= alpha <= 1 and alpha != -1:
        raise ConfigError(f"alpha must be in [0, 1] or -1, got {alpha}", field="alpha")
    _check_same_shape(inputs, targets, "targets")
    p = torch.sigmoid(inputs)
    ce = F.binary_cross_entropy_with_logits(inputs, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return _reduce(loss, reduction)


def varifocal_loss(
    logits: torch.Tensor,
    quality_targets: torch.Tensor,
    alpha: float = 0.75,
    gamma: float = 2.0,
    reduction: str = "sum",
) -> torch.Tensor:
    """Varifocal loss (Zhang et al., "VarifocalNet: An IoU-aware Dense Object Detector", 2021).

    The classification score is trained to predict the localisation quality ``q`` (the
    IoU of the predicted box with its object, 0 for background):
    ``loss = w * BCE(logits, q)`` with ``w = q`` where ``q > 0`` and
    ``w = alpha * p^gamma`` where ``q = 0``, ``p = sigmoid(logits)``. Only negatives are
    down-weighted (positives are rare); positives with a better box count more. ``w`` is
    not detached, as in the paper's implementation (mmdetection).

    Args:
        logits: Classification logits of any shape, e.g. ``[N, num_classes]``.
        quality_targets: Same shape, in ``[0, 1]``: the IoU target at the object's class,
            0 elsewhere.
        alpha: Weight of the negatives.
        gamma: Focusing exponent of the negatives.
        reduction: ``"none"`` (per element), ``"mean"`` or ``"sum"`` (the default: callers
            divide by the number or the summed quality of the positives).

    Returns:
        The loss with ``reduction`` applied (the mean of no elements is 0).

    Raises:
        ConfigError: Shapes that differ, or an unknown reduction.

    Example:
        >>> varifocal_loss(torch.tensor([0.0, 0.0]), torch.tensor([0.5, 0.0]), reduction="none")
        tensor([0.3466, 0.1300])
    """
    _check_reduction(reduction)
    _check_same_shape(logits, quality_targets, "quality_targets")
    q = quality_targets.to(logits.dtype)
    positive = q > 0
    weight = torch.where(positive, q, alpha * torch.sigmoid(logits) ** gamma)
    loss = F.binary_cross_entropy_with_logits(logits, q, reduction="none") * weight
    return _reduce(loss, reduction)


def giou_loss(
    boxes1: torch.Tensor, boxes2: torch.Tensor, reduction: str = "none", eps: float = 1e-7
) -> torch.Tensor:
    """Generalised IoU loss ``1 - GIoU`` of paired boxes (Rezatofighi et al., CVPR 2019).

    Unlike ``1 - IoU`` it still has a gradient for boxes that do not overlap. Equal to
    ``torchvision.ops.generalized_box_iou_loss``; symmetric in its arguments.

    Args:
        boxes1: ``[N, 4]`` ``xyxy`` boxes (e.g. the predictions).
        boxes2: ``[N, 4]`` ``xyxy`` boxes (e.g. their targets): ``boxes1[i]`` with ``boxes2[i]``.
        reduction: ``"none"`` (``[N]``), ``"mean"`` or ``"sum"``.
        eps: Added to the denominators, as torchvision does.

    Returns:
        The loss, in ``[0, 2]`` per pair, with ``reduction`` applied (the mean of no pairs
        is 0).

    Raises:
        ConfigError: Shapes other than two ``[N, 4]``, or an unknown reduction.

    Example:
        >>> a = torch.tensor([[0.0, 0.0, 1.0, 1.0]])
        >>> giou_loss(a, torch.tensor([[2.0, 0.0, 3.0, 1.0]]))
        tensor([1.3333])
    """
    _check_reduction(reduction)
    return _reduce(1 - paired_generalized_box_iou(boxes1, boxes2, eps), reduction)


def diou_loss(
    boxes1: torch.Tensor, boxes2: torch.Tensor, reduction: str = "none", eps: float = 1e-7
) -> torch.Tensor:
    """Distance IoU loss ``1 - DIoU`` of paired boxes (Zheng et al., AAAI 2020).

    Adds the squared centre distance over the enclosing diagonal, which pulls the centres
    together directly. Equal to ``torchvision.ops.distance_box_iou_loss``; arguments as
    :func:`giou_loss`.

    Example:
        >>> a = torch.tensor([[0.0, 0.0, 1.0, 1.0]])
        >>> diou_loss(a, torch.tensor([[2.0, 0.0, 3.0, 1.0]]))
        tensor([1.4000])
    """
    _check_reduction(reduction)
    return _reduce(1 - paired_distance_box_iou(boxes1, boxes2, eps), reduction)


def ciou_loss(
    boxes1: torch.Tensor, boxes2: torch.Tensor, reduction: str = "none", eps: float = 1e-7
) -> torch.Tensor:
    """Complete IoU loss ``1 - CIoU`` of paired boxes (Zheng et al., 2021): DIoU loss plus
    an aspect-ratio term (see :func:`visionkit.ops.boxes.complete_box_iou`).

    The box loss of YOLOv4 to YOLOv8. Equal to ``torchvision.ops.complete_box_iou_loss``
    (finite gradients where torchvision's are NaN: boxes of zero height); arguments as
    :func:`giou_loss`.

    Example:
        >>> a = torch.tensor([[0.0, 0.0, 2.0, 1.0]])
        >>> ciou_loss(a, torch.tensor([[0.0, 0.0, 1.0, 1.0]]))
        tensor([0.5532])
    """
    _check_reduction(reduction)
    return _reduce(1 - paired_complete_box_iou(boxes1, boxes2, eps), reduction)


def class_shares(
    targets: torch.Tensor,
    num_classes: int,
    size: tuple[int, int] | torch.Size | None = None,
    ignore_index: int | None = 255,
) -> torch.Tensor:
    """Each class's share of every cell of a ``size`` grid laid over class-index targets.

    The one-hot targets are averaged over the pixels of each cell (area interpolation, as
    ``F.adaptive_avg_pool2d`` splits the image), so a model whose logits are coarser than
    its masks, e.g. at a quarter of the input size, can be trained against what each of
    its cells covers instead of upsampling its logits to every pixel. Pixels whose target
    is ``ignore_index`` belong to no class: a cell's shares sum to its fraction of
    labelled pixels (0 for a cell of ignored pixels only).

    Args:
        targets: Integer ``[B, H, W]`` class indices in ``[0, C)`` or ``ignore_index``.
        num_classes: ``C``.
        size: ``(h, w)`` of the grid; ``None`` keeps ``(H, W)`` (plain one-hot targets).
        ignore_index: Target value of unlabelled pixels, or None.

    Returns:
        float32 ``[B, C, h, w]`` shares in ``[0, 1]``.

    Raises:
        ConfigError: ``targets`` are not ``[B, H, W]``.
        DataError: A target outside ``[0, C)`` that is not ``ignore_index`` (names it).

    Example:
        >>> class_shares(torch.tensor([[[0, 1], [1, 255]]]), 2, (1, 1))[0, :, 0, 0]
        tensor([0.2500, 0.5000])
    """
    if targets.dim() != 3:
        raise ConfigError(f"targets must be [B, H, W], got {list(targets.shape)}", field="targets")
    valid = _valid_targets(targets, num_classes, ignore_index)
    if size is None or tuple(size) == tuple(targets.shape[-2:]):
        return _one_hot(targets, valid, num_classes)
    (height, width), (rows, cols) = targets.shape[-2:], size
    if height % rows == 0 and width % cols == 0:
        return _equal_cell_shares(targets, valid, num_classes, rows, cols)
    return F.adaptive_avg_pool2d(_one_hot(targets, valid, num_classes), (rows, cols))


def soft_cross_entropy(
    logits: torch.Tensor, shares: torch.Tensor, label_smoothing: float = 0.0
) -> torch.Tensor:
    """Cross-entropy against class shares (:func:`class_shares`), per labelled pixel.

    Each cell's loss is ``-sum_c t_c * log_softmax(logits)_c`` with ``t`` its shares,
    smoothed as ``F.cross_entropy`` smooths labels (``t * (1 - s) + s / C``, scaled to
    the cell's labelled fraction); the mean divides by the number of labelled pixels, so
    one-hot shares of every pixel give ``F.cross_entropy``'s value with
    ``ignore_index``.

    Args:
        logits: ``[B, C, h, w]`` scores; computed in float32.
        shares: ``[B, C, h, w]`` class shares (summing to at most 1 over ``C``).
        label_smoothing: In ``[0, 1)``.

    Returns:
        A scalar; 0 (still in the graph) when no pixel is labelled.
    """
    _check_same_shape(logits, shares, "shares")
    labelled = shares.sum(dim=1, keepdim=True)
    if label_smoothing:
        shares = shares * (1 - label_smoothing) + labelled * (label_smoothing / shares.shape[1])
    loss = -(shares * logits.float().log_softmax(dim=1)).sum()
    return loss / labelled.sum().clamp(min=1e-12)


def dice_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    ignore_index: int | None = 255,
    eps: float = 1e-7,
) -> torch.Tensor:
    """Soft multi-class Dice loss on softmax probabilities (Milletari et al., "V-Net", 2016).

    With ``p = softmax(logits)`` over the class dimension and ``t`` the one-hot targets,
    per class ``c`` over every valid pixel of the batch:
    ``dice_c = 2 * sum(p_c * t_c) / (sum(p_c) + sum(t_c))``, and the loss is
    ``1 - mean(dice_c)`` over the classes present in the valid targets. Classes absent
    from the batch are left out rather than counted as perfect (which would hide false
    positives) or as zero (which would reward nothing); pixels whose target is
    ``ignore_index`` count nowhere. The sums run over the whole batch, so a class with a
    few pixels in one image weighs as much as a class that fills the others: Dice
    balances classes by region, where cross-entropy weighs every pixel alike.

    Args:
        logits: ``[B, C, *]`` scores (e.g. ``[B, C, H, W]``); computed in float32.
        targets: Integer ``[B, *]`` class indices in ``[0, C)`` or ``ignore_index``.
        ignore_index: Target value of unlabelled pixels, or None.
        eps: Added to each denominator against division by zero.

    Returns:
        A scalar in ``[0, 1]``; 0 (still in the graph) when no pixel is valid.

    Raises:
        ConfigError: Shapes that do not fit.
        DataError: A target outside ``[0, C)`` that is not ``ignore_index`` (names it).

    Example:
        >>> logits = torch.tensor([[[[9.0, -9.0]], [[-9.0, 9.0]]]])  # [1, 2, 1, 2]
        >>> dice_loss(logits, torch.tensor([[[0, 1]]])).abs() < 1e-4
        tensor(True)
    """
    if logits.dim() < 2 or targets.shape != logits.shape[:1] + logits.shape[2:]:
        raise ConfigError(
            f"targets must be [B, *] for logits [B, C, *] {list(logits.shape)}, "
            f"got {list(targets.shape)}",
            field="targets",
        )
    num_classes = logits.shape[1]
    valid = _valid_targets(targets, num_classes, ignore_index)
    return soft_dice_loss(logits, _one_hot(targets, valid, num_classes), eps)


def soft_dice_loss(logits: torch.Tensor, shares: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """:func:`dice_loss` against class shares (:func:`class_shares`) instead of indices.

    A cell's probabilities are weighted by its labelled fraction (the sum of its shares),
    so a partly ignored cell counts in proportion and a wholly ignored one nowhere; a class
    is present when any cell has a share of it. One-hot shares give :func:`dice_loss`.

    Args:
        logits: ``[B, C, *]`` scores; computed in float32.
        shares: ``[B, C, *]`` class shares (summing to at most 1 over ``C``).
        eps: Added to each denominator against division by zero.

    Returns:
        A scalar in ``[0, 1]``; 0 (still in the graph) when no class is present.
    """
    _check_same_shape(logits, shares, "shares")
    dims = [0, *range(2, logits.dim())]  # every dimension but the classes'
    probs = logits.float().softmax(dim=1) * shares.sum(dim=1, keepdim=True)
    intersection = (probs * shares).sum(dim=dims)
    truth = shares.sum(dim=dims)
    present = truth > 0
    if not present.any():
        return 0.0 * logits.sum()
    dice = 2 * intersection[present] / (probs.sum(dim=dims)[present] + truth[present] + eps)
    return 1 - dice.mean()


def _one_hot(targets: torch.Tensor, valid: torch.Tensor, num_classes: int) -> torch.Tensor:
    """float32 one-hot ``[B, C, *]`` of ``targets`` ``[B, *]``, all zeros where not ``valid``."""
    batch, *rest = targets.shape
    onehot = torch.zeros(batch, num_classes, *rest, device=targets.device)
    index = torch.where(valid, targets, 0).long().unsqueeze(1)
    return onehot.scatter_(1, index, valid.unsqueeze(1).float())


def _equal_cell_shares(
    targets: torch.Tensor, valid: torch.Tensor, num_classes: int, rows: int, cols: int
) -> torch.Tensor:
    """:func:`class_shares` on a grid whose cells are equal (``rows`` and ``cols`` divide
    the targets' sides): each class's labelled pixels in every cell, counted by one
    ``bincount`` and divided by the cell's area. This skips the float one-hot tensor,
    ``C`` times the targets' size, that pooling would average (350 MB for 16 masks of 512
    px and 21 classes), and takes half its time on a CPU."""
    batch, height, width = targets.shape
    device = targets.device
    cell_rows = torch.arange(height, device=device) // (height // rows)
    cell_cols = torch.arange(width, device=device) // (width // cols)
    cells = cell_rows[:, None] * cols + cell_cols  # [H, W]: the cell of each pixel
    planes = torch.arange(batch, device=device)[:, None, None] * num_classes + targets.long()
    bins = batch * num_classes * rows * cols  # one more bin collects the unlabelled pixels
    index = torch.where(valid, planes * (rows * cols) + cells, bins)
    counts = torch.bincount(index.view(-1), minlength=bins + 1)[:bins]
    area = (height // rows) * (width // cols)
    return counts.view(batch, num_classes, rows, cols).float() / area


def _valid_targets(
    targets: torch.Tensor, num_classes: int, ignore_index: int | None
) -> torch.Tensor:
    """bool mask of the labelled targets; raises :class:`DataError` naming any value
    outside ``[0, num_classes)`` that is not ``ignore_index``."""
    valid = torch.ones_like(targets, dtype=torch.bool)
    if ignore_index is not None:
        valid = targets != ignore_index
    bad = valid & ((targets < 0) | (targets >= num_classes))
    if bad.any():
        values = sorted({int(v) for v in targets[bad].unique().tolist()})
        raise DataError(
            f"target values {values} are outside 0..{num_classes - 1} and not the ignore "
            f"value {ignore_index}",
            field="targets",
        )
    return valid


def _check_reduction(reduction: str) -> None:
    if reduction not in REDUCTIONS:
        raise ConfigError(
            f"unknown reduction {reduction!r}; expected one of {REDUCTIONS}", field="reduction"
        )


def _check_same_shape(inputs: torch.Tensor, targets: torch.Tensor, name: str) -> None:
    if inputs.shape != targets.shape:
        raise ConfigError(
            f"{name} must have the shape of the logits {list(inputs.shape)}, "
            f"got {list(targets.shape)}",
            field=name,
        )


def _reduce(loss: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "sum":
        return loss.sum()
    if reduction == "mean":
        # torchvision's box losses: 0 (still in the graph) rather than NaN for no elements
        return loss.mean() if loss.numel() else 0.0 * loss.sum()
    return loss
