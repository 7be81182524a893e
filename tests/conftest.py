"""Fixtures shared across the test packages."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import pytest
import torch

from visionkit.models import Detector, ModelConfig


def image_key(image: torch.Tensor) -> str:
    """A digest of an image tensor's bytes: the same pixels give the same key."""
    return hashlib.sha1(image.detach().cpu().contiguous().numpy().tobytes()).hexdigest()


class OracleDetector(Detector):
    """A detector that knows the answers: in eval mode, the ground truth of each image it
    was given (found by :func:`image_key` of the input), shifted by ``shift`` pixels, with
    scores falling from 0.9 to 0.5 in box order, those under ``thresholds.conf`` dropped,
    and (when the truths hold masks) the masks as ``[N, 1, H, W]`` probabilities of 0 and 1;
    in train mode, a loss dict of two terms of known value (2.0 and 0.5 times one
    parameter)."""

    def __init__(
        self, truths: dict[str, dict], num_classes: int, image_size: int, shift: float = 0.0
    ) -> None:
        super().__init__(
            ModelConfig("oracle", "detect", num_classes, image_size, (0, 0, 0), (1, 1, 1))
        )
        self.truths, self.shift = truths, shift
        self._masks = any("masks" in truth for truth in truths.values())
        self.weight = torch.nn.Parameter(torch.tensor(1.0))
        self.seen_conf: list[float] = []

    @property
    def makes_masks(self) -> bool:
        return self._masks

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
            if self._masks:
                out[-1]["masks"] = truth["masks"][keep][:, None].float()
        return out


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """One torch thread for a module's tests: on two cores shared with other jobs, threads
    that wait on each other run small models several times slower than one thread does."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def make_oracle():
    """``make_oracle(dataset, shift=0.0, masks=False)``: an :class:`OracleDetector` (eval
    mode) that answers every image of ``dataset`` (a detection dataset with evaluation
    transforms), with its instance masks too when ``masks``."""

    def make(dataset, shift: float = 0.0, masks: bool = False) -> OracleDetector:
        truths = {}
        for image, target in dataset:
            truths[image_key(image)] = {
                "boxes": target["boxes"].as_subclass(torch.Tensor).clone(),
                "labels": target["labels"].clone(),
            }
            if masks:
                truths[image_key(image)]["masks"] = target["masks"].as_subclass(torch.Tensor)
        size = int(dataset[0][0].shape[-1])
        return OracleDetector(truths, len(dataset.names), size, shift).eval()

    return make
