"""DeiT-style knowledge distillation: a fixed teacher's predictions as extra supervision.

Touvron et al., "Training data-efficient image transformers & distillation through
attention" (arXiv:2012.12877), section 5: a student learns from the labels and from a
teacher at once. *Soft* distillation matches the teacher's softened distribution
(Hinton et al., arXiv:1503.02531); *hard* distillation takes the teacher's arg-max as a
second label. A student with a distillation token returns ``(class_logits,
distillation_logits)`` and only the second one learns from the teacher. Teacher and
student are any modules with ``[B, C]`` logits, so a CNN can teach a vision transformer,
the pairing DeiT found best.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.nn import functional as F  # noqa: N812  (the name torch's own docs use)

from visionkit.errors import ConfigError
from visionkit.train.classify import ClassificationTask, images_and_labels

__all__ = ["DistillationLoss", "DistillationTask"]


class DistillationLoss(nn.Module):
    """Cross-entropy on the labels blended with a distillation term from ``teacher``.

    With student logits ``s`` (class output), ``d`` (distillation output; ``s`` itself
    when the student returns one tensor) and teacher logits ``t``:

    - ``soft``: ``(1 - alpha) * CE(s, y) + alpha * tau**2 * KL(softmax(t/tau) || softmax(d/tau))``
      with the KL divergence averaged over the batch (``batchmean``). DeiT's code divides
      the summed KL by ``B * C`` instead of ``B``, which equals a ``C`` times smaller alpha;
    - ``hard``: ``(1 - alpha) * CE(s, y) + alpha * CE(d, argmax t)``, DeiT's choice, with
      its ``alpha = 0.5``.

    The teacher always runs in eval mode under ``torch.no_grad()``: it gets no gradient,
    and ``train()`` on this loss leaves it in eval mode. It is a submodule, so ``.to()``
    moves it with the loss. Labels may be class indices ``[B]`` or class probabilities
    ``[B, C]`` (after mixup), as ``F.cross_entropy`` takes both.

    Args:
        teacher: Any module mapping the inputs to logits ``[B, C]``.
        kind: ``"soft"`` or ``"hard"``.
        alpha: Weight of the distillation term, in ``[0, 1]``.
        tau: Softmax temperature of the soft term, positive.

    Raises:
        ConfigError: A bad ``kind``, ``alpha`` or ``tau``; at call time, teacher and
            student logits with different class counts.

    Example:
        >>> criterion = DistillationLoss(cnn_teacher, kind="hard")  # doctest: +SKIP
        >>> loss = criterion(images, vit_student(images), labels)
    """

    def __init__(
        self,
        teacher: nn.Module,
        *,
        kind: Literal["soft", "hard"] = "soft",
        alpha: float = 0.5,
        tau: float = 1.0,
    ) -> None:
        super().__init__()
        if kind not in ("soft", "hard"):
            raise ConfigError(f"unknown kind {kind!r}; expected 'soft' or 'hard'", field="kind")
        if not 0.0 <= alpha <= 1.0:
            raise ConfigError(f"alpha must be in [0, 1], got {alpha}", field="alpha")
        if not tau > 0:
            raise ConfigError(f"tau must be positive, got {tau}", field="tau")
        self.teacher = teacher.eval()
        self.kind = kind
        self.alpha = alpha
        self.tau = tau

    def train(self, mode: bool = True) -> DistillationLoss:
        """Set the mode of the loss; the teacher stays in eval mode."""
        super().train(mode)
        self.teacher.eval()
        return self

    def forward(
        self, inputs: Tensor, outputs: Tensor | tuple[Tensor, Tensor], labels: Tensor
    ) -> Tensor:
        """The blended loss, a scalar.

        Args:
            inputs: The batch the student saw; the teacher sees it too.
            outputs: Student logits ``[B, C]``, or ``(class_logits, distillation_logits)``.
            labels: Class indices ``[B]`` or class probabilities ``[B, C]``.
        """
        logits, distill_logits = outputs if isinstance(outputs, tuple) else (outputs, outputs)
        with torch.no_grad():
            teacher_logits = self.teacher(inputs)
        if teacher_logits.shape[-1] != distill_logits.shape[-1]:
            raise ConfigError(
                f"teacher predicts {teacher_logits.shape[-1]} classes but the student "
                f"{distill_logits.shape[-1]}; they must agree",
                field="teacher",
            )
        term = self._distillation(distill_logits, teacher_logits)
        return (1 - self.alpha) * F.cross_entropy(logits, labels) + self.alpha * term

    def _distillation(self, student: Tensor, teacher: Tensor) -> Tensor:
        """The distillation term of ``self.kind`` between student and teacher logits."""
        if self.kind == "hard":
            return F.cross_entropy(student, teacher.argmax(dim=-1))
        tau = self.tau
        divergence = F.kl_div(
            F.log_softmax(student / tau, dim=-1),
            F.log_softmax(teacher / tau, dim=-1),
            reduction="batchmean",
            log_target=True,  # log-probabilities on both sides, as DeiT, for stability
        )
        return tau * tau * divergence


class DistillationTask(ClassificationTask):
    """Classification whose training loss also learns from ``teacher`` (:class:`DistillationLoss`).

    Evaluation, metrics and fitness are :class:`~visionkit.train.classify.ClassificationTask`'s,
    so a distilled run is scored exactly as a plain one.

    Args:
        num_classes: Number of classes ``C`` of student and teacher.
        teacher: The fixed teacher, any module with ``[B, C]`` logits.
        kind: ``"soft"`` or ``"hard"`` distillation.
        alpha: Weight of the distillation term.
        tau: Softmax temperature of soft distillation.
        top_k: The ``k`` of the top-k accuracies.
    """

    def __init__(
        self,
        num_classes: int,
        teacher: nn.Module,
        *,
        kind: Literal["soft", "hard"] = "soft",
        alpha: float = 0.5,
        tau: float = 1.0,
        top_k: tuple[int, ...] = (1, 5),
    ) -> None:
        super().__init__(num_classes, top_k=top_k)
        self.criterion = DistillationLoss(teacher, kind=kind, alpha=alpha, tau=tau)

    def loss(self, model: nn.Module, batch: Any, device: torch.device) -> tuple[Tensor, dict]:
        """The distillation loss of one batch; ``{"loss": value}`` for the log."""
        images, labels = images_and_labels(batch, device)
        loss = self.criterion.to(device)(images, model(images), labels)
        return loss, {"loss": loss.item()}
