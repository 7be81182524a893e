"""The yolo detectors: builders, letterboxing, the detector contract, the tensor path, training."""

from __future__ import annotations

import pytest
import torch
from torchvision.ops import batched_nms as tv_batched_nms
from torchvision.ops import box_iou

from visionkit.data.synthetic import ShapesConfig, make_scene
from visionkit.errors import ConfigError, WeightsError
from visionkit.metrics.detection import DetectionEvaluator
from visionkit.models import Detector, create_model, list_models
from visionkit.models.detect._yolo import Yolo

SIZES = ("yolo-n", "yolo-s", "yolo-m")


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: these small convolutions gain nothing from more, and on a busy
    machine waiting threads slow them down many times over."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _model(image_size: int = 64, num_classes: int = 3) -> Yolo:
    torch.manual_seed(0)
    return create_model("yolo-n", num_classes=num_classes, image_size=image_size)


def _calibrated(model: Yolo) -> Yolo:
    """``model`` in eval mode, its batch-norm statistics those of random images (at init
    they would make every feature vanish, and every score equal)."""
    model.train()
    with torch.no_grad():
        for _ in range(30):
            model.net(torch.rand(2, 3, 64, 64))
    return model.eval()


def _target(boxes: list[list[float]], labels: list[int]) -> dict[str, torch.Tensor]:
    return {
        "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        "labels": torch.tensor(labels, dtype=torch.int64),
    }


def test_sizes_are_registered_detectors_of_growing_capacity() -> None:
    assert set(SIZES) <= set(list_models("detect"))
    counts = []
    for name in SIZES:
        model = create_model(name, num_classes=5, image_size=64)
        assert isinstance(model, Detector) and model.uses_mosaic
        assert model.num_classes == 5 and model.config.task == "detect"
        counts.append(sum(p.numel() for p in model.parameters()))
    assert counts == sorted(counts) and len(set(counts)) == 3


def test_config_rebuilds_the_same_architecture() -> None:
    model = create_model("yolo-s", num_classes=4, image_size=96)
    config = model.config
    again = create_model(config.name, num_classes=config.num_classes, **config.kwargs)
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    assert shapes == {k: v.shape for k, v in again.state_dict().items()}
    assert again.config.image_size == 96
    assert create_model("yolo-n").num_classes == 80


def test_letterbox_resizes_the_longer_side_and_pads_bottom_right() -> None:
    model = _model(image_size=64)
    image = torch.zeros(3, 100, 200)
    image[:, 50:75, 100:150] = 1.0
    batch, scales = model.letterbox([image, torch.zeros(3, 64, 64)])
    assert batch.shape == (2, 3, 64, 64)  # 32 x 64 and 64 x 64 in one batch
    assert torch.allclose(scales[0], torch.tensor([64 / 200, 32 / 100]))
    assert torch.equal(scales[1], torch.ones(2))
    # the bright rectangle lands at its coordinates times the scale; padding is grey
    assert batch[0, :, 17:23, 33:47].min() > 0.99
    assert batch[0, :, :16, :].max() < 0.5
    assert torch.allclose(batch[0, :, 32:, :], torch.tensor(114 / 255))


def test_eval_boxes_map_back_to_each_input_image(monkeypatch: pytest.MonkeyPatch) -> None:
    """A box the network places in batch pixels comes out in the input image's pixels."""
    model = _model(image_size=64).eval()
    in_batch = torch.tensor([[10.0, 8.0, 40.0, 24.0]])

    def fake_tensor_path(batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        boxes = in_batch.expand(len(batch), 1, 4)
        return boxes, torch.tensor([0.0, 0.9, 0.0]).expand(len(batch), 1, 3)

    monkeypatch.setattr(model, "forward_tensor", fake_tensor_path)
    wide, small = torch.rand(3, 100, 200), torch.rand(3, 32, 16)
    out = model([wide, small])
    assert torch.allclose(out[0]["boxes"], in_batch / (64 / 200))  # 32/100 == 64/200
    assert torch.allclose(out[1]["boxes"], torch.tensor([[5.0, 4.0, 16.0, 12.0]]))  # clipped
    assert out[0]["labels"].tolist() == [1] and out[0]["scores"].tolist() == [pytest.approx(0.9)]


def test_train_mode_losses_with_images_of_any_size_and_without_boxes() -> None:
    model = _model().train()
    images = [torch.rand(3, 64, 64), torch.rand(3, 50, 90), torch.rand(3, 64, 64)]
    targets = [
        _target([[4, 6, 30, 40], [30, 30, 60, 50]], [0, 2]),
        _target([], []),
        _target([[10, 10, 20, 18]], [1]),
    ]
    losses = model(images, targets)
    assert set(losses) == {"loss_cls", "loss_box", "loss_dfl"}
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_loss_gains_scale_their_terms_and_unknown_or_negative_ones_are_refused() -> None:
    model = _model().train()
    images, targets = [torch.rand(3, 64, 64)], [_target([[4, 6, 30, 40]], [2])]
    before = model(images, targets)
    model.set_loss_gains(cls=2.0, dfl=0.0)  # YOLOv8's cls is 0.5: four times; dfl off
    after = model(images, targets)
    assert after["loss_cls"].item() == pytest.approx(4 * before["loss_cls"].item())
    assert after["loss_box"].item() == pytest.approx(before["loss_box"].item())
    assert after["loss_dfl"].item() == 0
    model.set_loss_gains()  # the defaults again
    assert model(images, targets)["loss_cls"].item() == pytest.approx(before["loss_cls"].item())
    for gains, field in (({"obj": 1.0}, "obj"), ({"box": -1.0}, "box"), ({"cls": "1"}, "cls")):
        with pytest.raises(ConfigError) as caught:
            model.set_loss_gains(**gains)
        assert caught.value.field == field


def test_a_family_without_loss_gains_refuses_them() -> None:
    model = create_model("fasterrcnn-small", num_classes=3)
    model.set_loss_gains()  # nothing asked: nothing to refuse
    with pytest.raises(ConfigError, match="fasterrcnn-small's loss has no gains") as caught:
        model.set_loss_gains(cls=1.0)
    assert caught.value.field == "cls"


def test_labels_outside_the_classes_are_refused() -> None:
    model = _model(num_classes=3).train()
    with pytest.raises(ConfigError, match="labels"):
        model([torch.rand(3, 64, 64)], [_target([[4, 4, 20, 20]], [3])])


def test_a_batch_without_any_box_trains_the_classifier_towards_background() -> None:
    model = _model().train()
    images, targets = [torch.rand(3, 64, 64)] * 2, [_target([], [])] * 2
    losses = model(images, targets)
    assert losses["loss_box"].item() == 0 and losses["loss_dfl"].item() == 0
    assert losses["loss_cls"].item() > 0
    sum(losses.values()).backward()
    assert model.net.head[0].cls[-1].bias.grad.gt(0).all()  # pushes every score down


def test_eval_path_is_the_tensor_path_then_thresholds_and_nms() -> None:
    torch.manual_seed(0)  # random heads can tie scores, and NMS may order ties either way
    model = _calibrated(_model(image_size=64))
    for level in model.net.head:  # scores that differ by point and class, as after training
        torch.nn.init.normal_(level.cls[-1].bias, -3.0, 1.0)
    model.set_thresholds(conf=0.005, iou=0.5, max_det=50)
    images = [torch.rand(3, 64, 64), torch.rand(3, 64, 48)]
    with torch.inference_mode():
        out = model(images)
        batch, _ = model.letterbox(images)
        boxes, scores = model.forward_tensor(batch)
    assert boxes.shape == (2, 64 * 64 // 64 + 64 * 64 // 256 + 64 * 64 // 1024, 4)
    assert scores.shape == (2, boxes.shape[1], 3) and scores.min() >= 0 and scores.max() <= 1
    for i, found in enumerate(out):
        point, label = (scores[i] >= 0.005).nonzero(as_tuple=True)
        candidates, values = boxes[i][point], scores[i][point, label]
        candidates[:, 0::2] = candidates[:, 0::2].clamp(0, images[i].shape[-1])
        candidates[:, 1::2] = candidates[:, 1::2].clamp(0, images[i].shape[-2])
        keep = tv_batched_nms(candidates, values, label, 0.5)[:50]
        assert torch.allclose(found["scores"], values[keep])
        assert torch.equal(found["labels"], label[keep])
        assert torch.allclose(found["boxes"], candidates[keep])


def test_thresholds_are_respected() -> None:
    model = _calibrated(_model(image_size=64))
    image = [torch.rand(3, 64, 64)]
    with torch.inference_mode():
        everything = model(image)[0]
        model.set_thresholds(conf=float(everything["scores"].median()), iou=0.3, max_det=7)
        found = model(image)[0]
    assert 0 < len(found["scores"]) <= 7
    assert (found["scores"] >= model.thresholds.conf).all()
    assert torch.equal(found["scores"], found["scores"].sort(descending=True).values)
    for label in found["labels"].unique():
        same = found["boxes"][found["labels"] == label]
        assert (torch.triu(box_iou(same, same), diagonal=1) <= 0.3 + 1e-6).all()


class _TensorPath(torch.nn.Module):
    """The module an exporter sees: the detector's tensor path as its ``forward``."""

    def __init__(self, model: Yolo) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model.forward_tensor(batch)


def test_forward_tensor_exports_as_one_graph() -> None:
    """torch.export refuses data-dependent Python control flow: the path is one graph."""
    module = _TensorPath(_model(image_size=64)).eval()
    batch = torch.rand(2, 3, 64, 96)
    program = torch.export.export(module, (batch,))
    other = torch.rand(2, 3, 64, 96)
    with torch.no_grad():
        expected, got = module(other), program.module()(other)
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(expected, got, strict=True))


def test_weights_files_load_and_bad_specs_are_refused(tmp_path) -> None:
    model = _model(num_classes=3).eval()
    path = tmp_path / "yolo.pt"
    torch.save({"model": model.state_dict(), "model_config": model.config.to_dict()}, path)
    loaded = create_model("yolo-n", weights=str(path), image_size=64).eval()
    image = [torch.rand(3, 64, 64)]
    with torch.inference_mode():
        assert torch.equal(model(image)[0]["scores"], loaded(image)[0]["scores"])
    other = create_model("yolo-n", num_classes=7, weights=str(path), image_size=64)
    assert other.num_classes == 7 and other.net.head[2].cls[-1].out_channels == 7
    assert torch.equal(other.net.backbone.stem[0].weight, model.net.backbone.stem[0].weight)
    with pytest.raises(WeightsError):
        create_model("yolo-n", weights="COCO_V1")
    with pytest.raises(WeightsError):
        create_model("yolo-s", weights=str(path))  # another size
    torch.save({"head.weight": torch.zeros(2, 2)}, tmp_path / "classifier.pt")
    with pytest.raises(WeightsError, match="yolo"):
        create_model("yolo-n", weights=str(tmp_path / "classifier.pt"))
    with pytest.raises(ConfigError):
        create_model("yolo-n", image_size=16)


def _scenes(count: int, imgsz: int) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    config = ShapesConfig(imgsz=imgsz, min_size=0.12, max_size=0.4, max_objects=4)
    images, targets = [], []
    for index in range(count):
        scene = make_scene(0, index, config)
        images.append(torch.from_numpy(scene.image).permute(2, 0, 1).float() / 255)
        targets.append(_target(scene.boxes.tolist(), (scene.labels - 1).tolist()))
    return images, targets


def test_overfitting_a_few_images_finds_their_boxes(overfit) -> None:
    torch.manual_seed(0)
    images, targets = _scenes(4, 128)
    model = create_model("yolo-n", num_classes=6, image_size=128)
    losses = overfit(model, images, targets, steps=120, lr=4e-3)
    assert losses[-1] < losses[0] / 5
    evaluator = DetectionEvaluator()
    with torch.inference_mode():
        evaluator.update(model.eval()(images), targets)
    assert evaluator.compute()["map_50"] > 0.9
