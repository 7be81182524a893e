"""The segmentation task: the losses it names, scoring in original pixels, and torchrun.

Evaluation is measured with models whose logits are known (an *oracle* that returns each
image's own mask as one-hot logits, and a constant one), so what is tested is the task's
bookkeeping: undoing the evaluation letterbox, ignoring 255, merging processes.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812
from torch.utils.data import DataLoader
from torchvision import tv_tensors

from visionkit.data.datasets import load_dataset
from visionkit.data.synthetic.export import export_synthetic
from visionkit.data.transforms import segmentation_transforms
from visionkit.errors import ConfigError, DataError
from visionkit.metrics.segmentation import segmentation_metrics
from visionkit.models import ModelConfig, SemanticSegmenter
from visionkit.ops.losses import class_shares, dice_loss, soft_cross_entropy, soft_dice_loss
from visionkit.train.segment import (
    SegmentationTask,
    WithOriginalMasks,
    class_indices,
    collate_segmentation,
    to_original_size,
)
from visionkit.train.trainer import evaluate

TORCHRUN = Path(sys.executable).with_name("torchrun")
IMAGE_SIDE = 80
EVAL_SIDE = 48  # smaller than the images: predictions must be mapped back to be right
CPU = torch.device("cpu")


class LookupSegmenter(SemanticSegmenter):
    """Logits found by the image's content: ``answers`` maps an image's bytes to logits
    ``[C, S, S]``; unknown images get uniform logits. One parameter, so it trains."""

    def __init__(self, answers: dict[bytes, torch.Tensor], num_classes: int) -> None:
        config = ModelConfig("lookup", "segment", num_classes, EVAL_SIDE, (0, 0, 0), (1, 1, 1))
        super().__init__(config)
        self.answers = answers
        self.scale = torch.nn.Parameter(torch.tensor(1.0))

    def forward_logits(self, x: torch.Tensor) -> torch.Tensor:
        zeros = torch.zeros(self.num_classes, *x.shape[-2:])
        return self.scale * torch.stack([self.answers.get(_key(i), zeros) for i in x])


def _key(image: torch.Tensor) -> bytes:
    return image.detach().contiguous().numpy().tobytes()


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    return export_synthetic(
        tmp_path_factory.mktemp("shapes"), train=2, val=6, imgsz=IMAGE_SIDE, workers=1
    )


@pytest.fixture(scope="module")
def val_set(shapes) -> WithOriginalMasks:
    return WithOriginalMasks(
        load_dataset(shapes, "segment", "val"), segmentation_transforms(False, EVAL_SIDE)
    )


def _oracle(val_set: WithOriginalMasks) -> LookupSegmenter:
    """Each image's evaluation mask as one-hot logits (255 pixels: class 0)."""
    answers = {}
    for image, mask, _ in val_set:
        labels = torch.where(mask == 255, 0, mask).long()
        answers[_key(image)] = 10.0 * F.one_hot(labels, 7).permute(2, 0, 1).float()
    return LookupSegmenter(answers, 7)


def _loader(dataset, batch: int = 4) -> DataLoader:
    return DataLoader(dataset, batch_size=batch, collate_fn=collate_segmentation)


@pytest.mark.parametrize("name", ["ce", "dice", "ce+dice"])
def test_the_loss_is_the_named_terms_and_each_is_logged(name):
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 5, 5, generator=generator)
    masks = torch.randint(0, 3, (2, 5, 5), generator=generator)
    masks[:, 0] = 255
    model = LookupSegmenter({}, 3)
    model.forward_logits = lambda images: logits * model.scale  # the logits of this test
    task = SegmentationTask(3, loss=name)
    total, parts = task.loss(model, (torch.zeros(2, 3, 5, 5), masks), CPU)
    expected = {
        "ce": F.cross_entropy(logits, masks, ignore_index=255).item(),
        "dice": dice_loss(logits, masks).item(),
    }
    wanted = {k: v for k, v in expected.items() if k in name.split("+")}
    assert parts == pytest.approx({"loss": sum(wanted.values()), **wanted})
    assert total.item() == pytest.approx(sum(wanted.values()))
    total.backward()
    assert model.scale.grad is not None and model.scale.grad != 0


def test_an_unknown_loss_and_bad_settings_are_refused():
    with pytest.raises(ConfigError, match="field 'loss': unknown loss 'focal'"):
        SegmentationTask(3, loss="focal")
    with pytest.raises(ConfigError, match="label_smoothing"):
        SegmentationTask(3, label_smoothing=1.0)
    with pytest.raises(ConfigError, match="num_classes"):
        SegmentationTask(0)


def test_label_smoothing_reaches_the_cross_entropy():
    logits, masks = torch.randn(1, 3, 4, 4), torch.randint(0, 3, (1, 4, 4))
    model = LookupSegmenter({}, 3)
    model.forward_logits = lambda images: logits
    _, parts = SegmentationTask(3, loss="ce", label_smoothing=0.2).loss(
        model, (torch.zeros(1, 3, 4, 4), masks), CPU
    )
    assert parts["ce"] == pytest.approx(F.cross_entropy(logits, masks, label_smoothing=0.2).item())


def test_coarse_logits_are_trained_against_the_class_shares_of_their_cells():
    # a quarter-size model: its 2x2 logits meet the shares of 2x2-pixel cells, and are
    # never upsampled; a model that is not a SemanticSegmenter gets its plain call.
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 2, 2, generator=generator)
    masks = torch.randint(0, 3, (2, 4, 4), generator=generator)
    masks[0, 0] = 255
    model = LookupSegmenter({}, 3)
    model.forward_logits = lambda images: logits * model.scale
    _, parts = SegmentationTask(3).loss(model, (torch.zeros(2, 3, 4, 4), masks), CPU)
    shares = class_shares(masks, 3, (2, 2))
    assert parts["ce"] == pytest.approx(soft_cross_entropy(logits, shares).item())
    assert parts["dice"] == pytest.approx(soft_dice_loss(logits, shares).item())
    upsampled = F.interpolate(logits, size=(4, 4), mode="bilinear", align_corners=False)
    assert parts["ce"] != pytest.approx(F.cross_entropy(upsampled, masks, ignore_index=255).item())

    plain = torch.nn.Conv2d(3, 3, 1)
    images = torch.randn(2, 3, 4, 4, generator=generator)
    _, parts = SegmentationTask(3, loss="ce").loss(plain, (images, masks), CPU)
    expected = F.cross_entropy(plain(images), masks, ignore_index=255).item()
    assert parts["ce"] == pytest.approx(expected)


def test_a_perfect_model_scores_near_one_in_the_original_pixels(val_set):
    metrics = evaluate(_oracle(val_set), SegmentationTask(7), _loader(val_set), CPU)
    # Mapped back from 48 px to 80 px, the one-hot logits stay right away from edges and
    # objects of a few pixels: near, not exactly, one; every original pixel counts once.
    assert 0.8 < metrics["miou"] < 1.0 and metrics["pixel_accuracy"] > 0.95
    originals = [original for _, _, original in val_set]
    total = sum(int((o != 255).sum()) for o in originals)
    assert np.asarray(metrics["confusion_matrix"]).sum() == total
    assert set(metrics) >= {"loss", "miou", "mdice", "mboundary_iou", "iou_per_class"}


def test_metrics_equal_the_metrics_of_the_same_labels_in_original_pixels(val_set):
    model = _oracle(val_set)
    found, truth = [], []
    for image, _, original in val_set:
        logits = model(image[None])[0]
        found.append(to_original_size(logits, tuple(original.shape)).argmax(0))
        truth.append(original)
    expected = segmentation_metrics(torch.stack(found), torch.stack(truth), 7)
    metrics = evaluate(model, SegmentationTask(7), _loader(val_set, batch=5), CPU)
    for key in ("miou", "mdice", "mboundary_iou", "pixel_accuracy", "mean_accuracy"):
        assert metrics[key] == pytest.approx(expected[key], abs=1e-12), key


def test_without_original_masks_the_evaluation_size_is_scored(shapes):
    dataset = load_dataset(shapes, "segment", "val", transforms=segmentation_transforms(False, 48))
    metrics = evaluate(LookupSegmenter({}, 7), SegmentationTask(7), _loader(dataset), CPU)
    masks = torch.stack([mask for _, mask in dataset])
    # uniform logits: every pixel is class 0, and the padding (255) counts nowhere
    expected = segmentation_metrics(torch.zeros_like(masks), masks, 7)
    assert metrics["miou"] == pytest.approx(expected["miou"])
    assert np.asarray(metrics["confusion_matrix"]).sum() == int((masks != 255).sum())


def test_to_original_size_undoes_the_letterbox_of_a_non_square_image():
    original = torch.zeros(40, 80, dtype=torch.int64)  # 2:1, so 64 px pads the bottom half
    original[8:24, 16:48], original[24:, 64:] = 1, 2  # edges on even pixels: exact at 1/2
    image = tv_tensors.Image(torch.zeros(3, 40, 80, dtype=torch.uint8))
    _, mask = segmentation_transforms(False, 40)(image, tv_tensors.Mask(original))
    assert (mask[20:] == 255).all()  # the padding
    logits = F.one_hot(torch.where(mask == 255, 0, mask), 3).permute(2, 0, 1).float()
    back = to_original_size(logits, (40, 80))
    assert back.shape == (3, 40, 80)
    assert torch.equal(back.argmax(0), original)


def test_integer_images_and_float_masks_are_refused():
    task, model = SegmentationTask(2), LookupSegmenter({}, 2)
    with pytest.raises(DataError, match=r"images are torch\.uint8"):
        task.loss(model, (torch.zeros(1, 3, 4, 4, dtype=torch.uint8), torch.zeros(1, 4, 4)), CPU)
    with pytest.raises(DataError, match=r"masks are torch\.float32"):
        task.loss(model, (torch.zeros(1, 3, 4, 4), torch.zeros(1, 4, 4)), CPU)


_SCRIPT = """
import json, sys
from pathlib import Path
import torch
from torch import nn
from torch.utils.data import DataLoader
from torchvision import tv_tensors
from visionkit.data.datasets import load_dataset
from visionkit.data.transforms import segmentation_transforms
from visionkit.models import ModelConfig, SemanticSegmenter
from visionkit.train import TrainConfig, Trainer, new_run_dir
from visionkit.train.distributed import init_distributed
from visionkit.train.segment import SegmentationTask, WithOriginalMasks, collate_segmentation
from visionkit.train.trainer import evaluate

class Tiny(SemanticSegmenter):
    def __init__(self):
        super().__init__(ModelConfig("tiny", "segment", 7, 48, (0, 0, 0), (1, 1, 1)))
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 7, 1))
    def forward_logits(self, x):
        return self.body(x)

data, out = sys.argv[1], sys.argv[2]
context = init_distributed()
torch.manual_seed(0)
model = Tiny()
train = load_dataset(data, "segment", "train", transforms=segmentation_transforms(True, 48))
val = WithOriginalMasks(load_dataset(data, "segment", "val"), segmentation_transforms(False, 48))
config = TrainConfig(epochs=1, batch=2, workers=0, quiet=True)
task = SegmentationTask(7)
result = Trainer(model, task, train, val, config, new_run_dir(out, "segment", "t")).fit()
alone = evaluate(model, task, DataLoader(val, batch_size=3, collate_fn=collate_segmentation),
                 torch.device("cpu"))
report = {"miou": result.metrics["miou"], "alone": alone["miou"],
          "pixels": sum(map(sum, result.metrics["confusion_matrix"]))}
Path(out, f"report{context.rank}.json").write_text(json.dumps(report))
"""


def test_torchrun_processes_merge_their_shards(shapes, val_set, tmp_path):
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent(_SCRIPT))
    command = [TORCHRUN, "--standalone", "--nproc_per_node=2", script, shapes, tmp_path]
    run = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stderr[-2000:]
    reports = [json.loads(p.read_text()) for p in sorted(tmp_path.glob("report*.json"))]
    assert len(reports) == 2
    # 6 validation images on 2 processes (3 each): the merged metrics are those of the whole
    # set, as one process finds them for the same weights, on every process.
    pixels = sum(int((original != 255).sum()) for _, _, original in val_set)
    for report in reports:
        assert report["pixels"] == pixels
        assert report["miou"] == pytest.approx(report["alone"], abs=1e-12)
    assert reports[0]["miou"] == reports[1]["miou"]


def test_class_indices_are_argmax_along_the_class_dimension_ties_to_the_first():
    scores = torch.randint(0, 3, (2, 5, 9, 11)).float()  # many ties
    assert torch.equal(class_indices(scores, dim=1), scores.argmax(dim=1))
    channels_last = scores.contiguous(memory_format=torch.channels_last)
    assert torch.equal(class_indices(channels_last[0], dim=0), scores[0].argmax(dim=0))
