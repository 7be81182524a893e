"""One-to-one assignment of predictions to targets: the Hungarian algorithm and DETR's matcher.

Set-prediction detectors (DETR and its descendants) train each query against at most one
object, chosen by a minimum-cost bipartite matching (Carion et al., "End-to-End Object
Detection with Transformers", ECCV 2020). The assignment is scipy's
``linear_sum_assignment``.

Like :mod:`visionkit.ops.losses` this module imports torch and scipy: import it as
``visionkit.ops.matching``, it is not loaded by ``import visionkit.ops``.
"""

from __future__ import annotations

import torch
from scipy.optimize import linear_sum_assignment

from visionkit.errors import ConfigError
from visionkit.ops.boxes import box_convert, generalized_box_iou

Match = tuple[torch.Tensor, torch.Tensor]


def hungarian_match(cost: torch.Tensor) -> Match:
    """The one-to-one assignment of rows to columns with the least total cost.

    Args:
        cost: ``[N, M]`` finite cost of assigning row ``i`` (a prediction) to column ``j``
            (a target).

    Returns:
        ``(rows, cols)``: int64 ``[min(N, M)]`` each, on ``cost``'s device, sorted by row;
        row ``rows[k]`` goes with column ``cols[k]``. Empty when ``N`` or ``M`` is 0.

    Raises:
        ConfigError: ``cost`` is not 2-D, or holds NaN or inf (a diverged model's scores).

    Example:
        >>> hungarian_match(torch.tensor([[4.0, 1.0, 3.0], [2.0, 0.0, 5.0]]))
        (tensor([0, 1]), tensor([1, 0]))
    """
    if cost.dim() != 2:
        raise ConfigError(f"cost must have shape [N, M], got {list(cost.shape)}", field="cost")
    if not torch.isfinite(cost).all():
        raise ConfigError(
            "cost holds NaN or inf: the scores or boxes it was computed from are not finite",
            field="cost",
        )
    rows, cols = linear_sum_assignment(cost.detach().cpu().numpy())
    return (
        torch.as_tensor(rows, dtype=torch.int64, device=cost.device),
        torch.as_tensor(cols, dtype=torch.int64, device=cost.device),
    )


class HungarianMatcher:
    """DETR's set matcher: for each image, the query-to-object assignment of least cost.

    ``cost = class_weight * class cost + bbox_weight * L1 + giou_weight * (-GIoU)`` between
    every query and every object of the image. The class cost is ``-softmax(logits)`` at
    the object's class (DETR), or with ``focal=True`` the focal cost of Deformable-DETR
    (Zhu et al., ICLR 2021) on ``p = sigmoid(logits)``:
    ``alpha (1 - p)^gamma (-log p) - (1 - alpha) p^gamma (-log(1 - p))``. Boxes are
    normalised ``cxcywh`` (``[0, 1]``, DETR's convention) here, unlike the rest of
    visionkit: the L1 term is computed on them as given.

    Args:
        class_weight: Weight of the class cost.
        bbox_weight: Weight of the L1 distance between the ``cxcywh`` boxes.
        giou_weight: Weight of the negative generalised IoU.
        focal: Use the focal class cost (for sigmoid classifiers) instead of the softmax one.
        alpha: Focal cost's weight of the positive term.
        gamma: Focal cost's focusing exponent.

    Raises:
        ConfigError: All three weights are 0.

    Example:
        >>> matcher = HungarianMatcher()
        >>> logits = torch.tensor([[[5.0, 0.0], [0.0, 5.0]]])
        >>> boxes = torch.tensor([[[0.2, 0.2, 0.1, 0.1], [0.7, 0.7, 0.2, 0.2]]])
        >>> targets = [{"labels": torch.tensor([1]), "boxes": torch.tensor([[0.7, 0.7, 0.2, 0.2]])}]
        >>> matcher(logits, boxes, targets)
        [(tensor([1]), tensor([0]))]
    """

    def __init__(
        self,
        class_weight: float = 1.0,
        bbox_weight: float = 5.0,
        giou_weight: float = 2.0,
        focal: bool = False,
        alpha: float = 0.25,
        gamma: float = 2.0,
    ) -> None:
        if class_weight == 0 and bbox_weight == 0 and giou_weight == 0:
            raise ConfigError("at least one matching cost weight must be non-zero", field="weight")
        self.class_weight = class_weight
        self.bbox_weight = bbox_weight
        self.giou_weight = giou_weight
        self.focal = focal
        self.alpha = alpha
        self.gamma = gamma

    @torch.no_grad()
    def __call__(
        self,
        logits: torch.Tensor,
        pred_boxes: torch.Tensor,
        targets: list[dict[str, torch.Tensor]],
    ) -> list[Match]:
        """Match the queries of each image to its objects.

        Args:
            logits: ``[B, Q, C]`` class logits (with softmax, ``C`` may include DETR's
                no-object class).
            pred_boxes: ``[B, Q, 4]`` predicted boxes, normalised ``cxcywh``.
            targets: ``B`` dicts with ``"labels"`` int64 ``[N]`` in ``0..C-1`` and
                ``"boxes"`` ``[N, 4]`` normalised ``cxcywh``; ``N`` may be 0.

        Returns:
            One ``(pred_idx, target_idx)`` pair per image, int64 ``[min(Q, N)]`` each, sorted
            by query: query ``pred_idx[k]`` is trained against object ``target_idx[k]``.

        Raises:
            ConfigError: Shapes that do not fit, labels out of range, or non-finite costs.
        """
        self._check(logits, pred_boxes, targets)
        return [
            hungarian_match(self.cost(logits[i], pred_boxes[i], t["labels"], t["boxes"]))
            for i, t in enumerate(targets)
        ]

    def cost(
        self,
        logits: torch.Tensor,
        pred_boxes: torch.Tensor,
        labels: torch.Tensor,
        boxes: torch.Tensor,
    ) -> torch.Tensor:
        """The ``[Q, N]`` matching cost of one image's ``Q`` queries against its ``N`` objects.

        Args:
            logits: ``[Q, C]`` class logits.
            pred_boxes: ``[Q, 4]`` normalised ``cxcywh``.
            labels: int64 ``[N]``.
            boxes: ``[N, 4]`` normalised ``cxcywh``.

        Returns:
            ``[Q, N]`` cost; lower is a better match.
        """
        boxes = boxes.to(pred_boxes.dtype)
        giou = generalized_box_iou(
            box_convert(pred_boxes, "cxcywh", "xyxy"), box_convert(boxes, "cxcywh", "xyxy")
        )
        return (
            self.class_weight * self._class_cost(logits)[:, labels]
            + self.bbox_weight * torch.cdist(pred_boxes, boxes, p=1)
            - self.giou_weight * giou
        )

    def _class_cost(self, logits: torch.Tensor) -> torch.Tensor:
        """``[Q, C]`` cost of calling each query each class."""
        if not self.focal:
            return -logits.softmax(-1)
        p = logits.sigmoid()
        # the 1e-8 keeps log finite at saturated probabilities, as in Deformable-DETR
        positive = self.alpha * (1 - p) ** self.gamma * -(p + 1e-8).log()
        negative = (1 - self.alpha) * p**self.gamma * -(1 - p + 1e-8).log()
        return positive - negative

    @staticmethod
    def _check(
        logits: torch.Tensor, pred_boxes: torch.Tensor, targets: list[dict[str, torch.Tensor]]
    ) -> None:
        if logits.dim() != 3 or pred_boxes.shape != (*logits.shape[:2], 4):
            raise ConfigError(
                f"need logits [B, Q, C] and pred_boxes [B, Q, 4], got {list(logits.shape)} "
                f"and {list(pred_boxes.shape)}",
                field="pred_boxes",
            )
        if len(targets) != len(logits):
            raise ConfigError(
                f"need one target per image: {len(logits)} images, {len(targets)} targets",
                field="targets",
            )
        for i, target in enumerate(targets):
            labels, boxes = target.get("labels"), target.get("boxes")
            if labels is None or boxes is None:
                raise ConfigError("needs 'labels' and 'boxes'", record=f"target {i}")
            if labels.dim() != 1 or boxes.shape != (len(labels), 4):
                raise ConfigError(
                    f"need labels [N] and boxes [N, 4], got {list(labels.shape)} and "
                    f"{list(boxes.shape)}",
                    record=f"target {i}",
                    field="boxes",
                )
            low, high = (int(labels.min()), int(labels.max())) if len(labels) else (0, 0)
            if low < 0 or high >= logits.shape[-1]:
                raise ConfigError(
                    f"labels must be in 0..{logits.shape[-1] - 1}, got {low}..{high}",
                    record=f"target {i}",
                    field="labels",
                )
