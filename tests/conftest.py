"""Fixtures shared across the test packages."""

from __future__ import annotations

import hashlib

import pytest
import torch

from visionkit.models import Detector, ModelConfig


def image_key(image: torch.Tensor) -> str:
    """A digest of an image tensor's bytes: the same pixels give the same key."""
    return hashlib.sha1(image.detach().cpu().contiguous().numpy().tobytes()).hexdigest()


class OracleDetector(Detector):
    """A detector that knows the answers: in eval mode, the ground truth of each image it
    was given (found by :func:`image_key` of the input), shifted by ``shift`` pixels, with
    scores falling from 0.9 to 0.5 in box order, those under ``thresholds.conf`` dropped;
    in train mode, a loss dict of two terms of known value (2.0 and 0.5 times one
    parameter)."""

    def __init__(
        self, truths: dict[str, dict], num_classes: int, image_size: int, shift: float = 0.0
    ) -> None:
        super().__init__(
            ModelConfig("oracle", "detect", num_classes, image_size, (0, 0, 0), (1, 1, 1))
        )
        self.truths, self.shift = truths, shift
        self.weight = torch.nn.Parameter(torch.tensor(1.0))
        self.seen_conf: list[float] = []

    def forward(self, images, targets=None):
        if self.training:
            return {"loss_a": self.weight * 2.0, "loss_b": self.weight * 0.5}
        self.seen_conf.append(self.thresholds.conf)
        out = []
        for image in images:
            truth = self.truths[image_key(image)]
            n = len(truth["boxes"])
            scores = torch.linspace(0.9, 0.5, n) if n else torch.zeros(0)
            keep = scores >= self.thresholds.conf  # the contract: the model applies conf
            out.append(
                {
                    "boxes": truth["boxes"][keep] + self.shift,
                    "labels": truth["labels"][keep],
                    "scores": scores[keep],
                }
            )
        return out


@pytest.fixture
def make_oracle():
    """``make_oracle(dataset, shift=0.0)``: an :class:`OracleDetector` (eval mode) that
    answers every image of ``dataset`` (a detection dataset with evaluation transforms)."""

    def make(dataset, shift: float = 0.0) -> OracleDetector:
        truths = {}
        for image, target in dataset:
            truths[image_key(image)] = {
                "boxes": target["boxes"].as_subclass(torch.Tensor).clone(),
                "labels": target["labels"].clone(),
            }
        size = int(dataset[0][0].shape[-1])
        return OracleDetector(truths, len(dataset.names), size, shift).eval()

    return make
