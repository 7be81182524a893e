"""The train-target check that every adapter runs before its library sees a target."""

from __future__ import annotations

import pytest
import torch

from visionkit.errors import ConfigError
from visionkit.models.detect._targets import checked_target


def test_a_good_target_comes_back_as_float_boxes_and_int64_labels():
    boxes, labels = checked_target(
        {"boxes": torch.tensor([[1, 2, 3, 4]]), "labels": torch.tensor([2], dtype=torch.int32)},
        0,
        3,
    )
    assert boxes.dtype == torch.float32 and labels.dtype == torch.int64
    assert boxes.tolist() == [[1.0, 2.0, 3.0, 4.0]] and labels.tolist() == [2]


def test_an_image_without_boxes_gives_empty_tensors_of_the_right_shape():
    boxes, labels = checked_target({"boxes": torch.zeros(0), "labels": torch.zeros(0)}, 0, 3)
    assert boxes.shape == (0, 4) and labels.shape == (0,)


@pytest.mark.parametrize(
    ("target", "field"),
    [
        ({"boxes": torch.tensor([[0.0, 0, 5, 5]]), "labels": torch.tensor([3])}, "labels"),
        ({"boxes": torch.tensor([[0.0, 0, 5, 5]]), "labels": torch.tensor([-1])}, "labels"),
        ({"boxes": torch.tensor([[0.0, 0, 5, 5]]), "labels": torch.tensor([0, 1])}, "labels"),
        ({"boxes": torch.tensor([[5.0, 0, 5, 5]]), "labels": torch.tensor([0])}, "boxes"),
        ({"boxes": torch.tensor([0.0, 0, 5]), "labels": torch.tensor([0])}, "boxes"),
        ({"boxes": torch.tensor([[0.0, 0, 5, 5]])}, "labels"),
    ],
)
def test_a_bad_target_is_one_error_naming_the_target_and_field(target, field):
    with pytest.raises(ConfigError) as error:
        checked_target(target, 4, 3)
    assert error.value.record == "target 4" and error.value.field == field
