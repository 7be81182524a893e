"""Tests of visionkit.train.distill: DeiT's soft and hard distillation losses."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from visionkit.errors import ConfigError
from visionkit.train.distill import DistillationLoss

# Fixed logits and labels: 3 samples, 4 classes.
STUDENT = torch.tensor([[2.0, -1.0, 0.5, 0.0], [0.1, 0.2, 0.3, 0.4], [-2.0, 3.0, 1.0, -0.5]])
SECOND = torch.tensor([[0.0, 1.0, -1.0, 2.0], [1.5, -0.5, 0.0, 0.5], [0.3, 0.3, -2.0, 1.0]])
TEACHER = torch.tensor([[1.0, 0.0, 3.0, -1.0], [0.5, 2.5, -1.0, 0.0], [-1.0, 0.0, 0.5, 2.0]])
LABELS = torch.tensor([0, 3, 1])


pytestmark = pytest.mark.usefixtures("one_thread")


class Replay(nn.Module):
    """A teacher that answers every batch with fixed logits (and has a weight and a norm)."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = logits
        self.scale = nn.Parameter(torch.ones(()))
        self.norm = nn.BatchNorm1d(logits.shape[1], eps=0.0)  # identity in eval mode

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.norm(self.logits * self.scale + 0 * inputs.sum())


def _cross_entropy(logits: list[list[float]], targets: list[int]) -> float:
    """Mean of -log softmax(logits)[target], with plain floats."""
    total = 0.0
    for row, target in zip(logits, targets, strict=True):
        log_z = math.log(sum(math.exp(v) for v in row))
        total += log_z - row[target]
    return total / len(targets)


def _kl_teacher_student(
    student: list[list[float]], teacher: list[list[float]], tau: float
) -> float:
    """Mean over rows of sum_c p_t (log p_t - log p_s), both softmaxes at temperature tau."""
    total = 0.0
    for s_row, t_row in zip(student, teacher, strict=True):
        s_z = math.log(sum(math.exp(v / tau) for v in s_row))
        t_z = math.log(sum(math.exp(v / tau) for v in t_row))
        for s, t in zip(s_row, t_row, strict=True):
            log_pt, log_ps = t / tau - t_z, s / tau - s_z
            total += math.exp(log_pt) * (log_pt - log_ps)
    return total / len(student)


def _loss(kind: str, outputs, **kwargs) -> float:
    criterion = DistillationLoss(Replay(TEACHER), kind=kind, **kwargs)
    return criterion(torch.zeros(3, 2), outputs, LABELS).item()


@pytest.mark.parametrize(("alpha", "tau"), [(0.5, 1.0), (0.3, 3.0), (1.0, 2.0)])
def test_soft_loss_matches_the_formula(alpha, tau):
    s, t, y = STUDENT.tolist(), TEACHER.tolist(), LABELS.tolist()
    expected = (1 - alpha) * _cross_entropy(s, y) + alpha * tau**2 * _kl_teacher_student(s, t, tau)
    assert _loss("soft", STUDENT, alpha=alpha, tau=tau) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("alpha", [0.5, 0.2])
def test_hard_loss_matches_the_formula(alpha):
    s, y = STUDENT.tolist(), LABELS.tolist()
    teacher_labels = [2, 1, 3]  # arg-max of each TEACHER row
    expected = (1 - alpha) * _cross_entropy(s, y) + alpha * _cross_entropy(s, teacher_labels)
    assert _loss("hard", STUDENT, alpha=alpha) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("kind", ["soft", "hard"])
def test_a_distillation_token_takes_the_distillation_term(kind):
    s, d, y = STUDENT.tolist(), SECOND.tolist(), LABELS.tolist()
    term = (
        _kl_teacher_student(d, TEACHER.tolist(), 1.0)
        if kind == "soft"
        else _cross_entropy(d, [2, 1, 3])
    )
    expected = 0.5 * _cross_entropy(s, y) + 0.5 * term
    assert _loss(kind, (STUDENT, SECOND)) == pytest.approx(expected, rel=1e-5)


def test_the_teacher_stays_in_eval_mode_and_gets_no_gradient():
    teacher = Replay(TEACHER).train()
    criterion = DistillationLoss(teacher, kind="soft").train()
    student = nn.Linear(2, 4)

    loss = criterion(torch.randn(3, 2), student(torch.randn(3, 2)), LABELS)
    loss.backward()

    assert not teacher.training and criterion.training
    assert teacher.scale.grad is None and student.weight.grad is not None
    # In eval mode the norm uses its running statistics and never updates them.
    assert torch.equal(teacher.norm.running_mean, torch.zeros(4))


def test_teacher_and_student_must_agree_on_the_classes():
    criterion = DistillationLoss(Replay(TEACHER))
    with pytest.raises(ConfigError, match="teacher predicts 4 classes but the student 5") as caught:
        criterion(torch.zeros(3, 2), torch.zeros(3, 5), LABELS)
    assert caught.value.field == "teacher"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"kind": "feature"}, "kind"), ({"alpha": 1.5}, "alpha"), ({"tau": 0.0}, "tau")],
)
def test_bad_settings_name_their_field(kwargs, field):
    with pytest.raises(ConfigError) as caught:
        DistillationLoss(Replay(TEACHER), **kwargs)
    assert caught.value.field == field


def _cnn_teacher() -> nn.Module:
    """A fixed convolutional teacher with confident, fairly balanced predictions."""
    torch.manual_seed(3)
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 4, 4), nn.Flatten())
    with torch.no_grad():
        net[2].weight.mul_(4)
        net[2].bias.zero_()
    return net


def _agreement(student: nn.Module, x: torch.Tensor, teacher_labels: torch.Tensor) -> float:
    with torch.no_grad():
        return (student(x).argmax(1) == teacher_labels).float().mean().item()


def _distilled_agreement(kind: str, alpha: float, tau: float) -> tuple[float, float]:
    """Agreement with the teacher of a fully connected student before and after training."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(512, 3, 6, 6, generator=generator)
    labels = torch.randint(0, 4, (512,), generator=generator)  # uninformative
    teacher = _cnn_teacher()
    with torch.no_grad():
        teacher_labels = teacher(x).argmax(1)
    torch.manual_seed(4)
    student = nn.Sequential(nn.Flatten(), nn.Linear(3 * 6 * 6, 4))
    before = _agreement(student, x, teacher_labels)
    criterion = DistillationLoss(teacher, kind=kind, alpha=alpha, tau=tau)
    optimizer = torch.optim.Adam(student.parameters(), lr=1e-2)
    for _ in range(100):
        optimizer.zero_grad()
        criterion(x, student(x), labels).backward()
        optimizer.step()
    return before, _agreement(student, x, teacher_labels)


@pytest.mark.parametrize(("kind", "tau"), [("soft", 2.0), ("hard", 1.0)])
def test_a_cnn_teacher_pulls_a_fully_connected_student_towards_its_predictions(kind, tau):
    before, after = _distilled_agreement(kind, alpha=0.5, tau=tau)
    _, labels_only = _distilled_agreement(kind, alpha=0.0, tau=tau)
    assert after > before + 0.2
    assert after > labels_only + 0.15
