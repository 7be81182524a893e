"""ONNX exports that onnxruntime runs to the detections of the PyTorch models they came from."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnxruntime.capi.onnxruntime_pybind11_state import InvalidArgument
from torch import nn

from visionkit.errors import ConfigError, WeightsError
from visionkit.models import Detector, ModelConfig, Thresholds, create_model
from visionkit.models.export import (
    METADATA_KEY,
    OnnxMetadata,
    export_onnx,
    read_onnx_metadata,
    yolo_detections,
)

ATOL = 1e-3
"""Largest difference allowed between onnxruntime's and PyTorch's boxes and scores."""


def _live_batchnorm(module: nn.Module, batch: torch.Tensor) -> None:
    """Give every BatchNorm layer under ``module`` the statistics of ``batch``.

    Under BatchNorm's initial statistics the activations of a random-init network shrink
    layer by layer until every position scores alike (to ~1e-9), and NMS among tied
    scores keeps whichever box each runtime sorts first; one train-mode pass with
    cumulative averages makes the scores differ, so the comparison is of real boxes. (A
    batch of a few images, so that no channel's variance comes from a handful of values and
    magnifies float32 rounding.)
    """
    for layer in module.modules():
        if isinstance(layer, nn.BatchNorm2d):
            layer.momentum = None
            layer.reset_running_stats()
    module.train()
    with torch.no_grad():
        module(batch)
    module.eval()


def _images(*sizes: tuple[int, int]) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return [torch.rand(3, *size, generator=generator) for size in sizes]


def _session(path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _assert_same_detections(got: dict, expected: dict, min_count: int = 10) -> None:
    """``got`` (numpy) holds the detections of ``expected`` (torch) to :data:`ATOL`, in the
    same order but for scores equal to within :data:`ATOL`, which the runtimes may sort
    either way."""
    expected = {key: value.numpy() for key, value in expected.items()}
    assert len(got["boxes"]) == len(expected["boxes"]) >= min_count
    gaps = np.abs(got["boxes"][:, None] - expected["boxes"][None]).max(-1)
    gaps[got["labels"][:, None] != expected["labels"][None]] = np.inf
    match = gaps.argmin(1)  # each detection's counterpart in expected
    assert sorted(match) == list(range(len(match)))
    np.testing.assert_allclose(got["boxes"], expected["boxes"][match], rtol=0, atol=ATOL)
    np.testing.assert_allclose(got["scores"], expected["scores"][match], rtol=0, atol=ATOL)
    np.testing.assert_allclose(expected["scores"][match], expected["scores"], rtol=0, atol=ATOL)


@pytest.fixture
def yolo() -> Detector:
    """``yolo-n`` at 128 pixels, 3 named classes, with scores spread over (0, 1)."""
    torch.manual_seed(0)
    model = create_model("yolo-n", num_classes=3, image_size=128)
    _live_batchnorm(model.net, model.letterbox(_images(*[(128, 128)] * 8))[0])
    for level in model.net.head:
        nn.init.zeros_(level.cls[-1].bias)  # from the 0.01 prior to scores around 0.5
    model.config = dataclasses.replace(model.config, names=("circle", "square", "star"))
    model.set_thresholds(conf=0.3, iou=0.6)
    return model


@pytest.fixture(scope="module")
def rcnn() -> Detector:
    """Faster R-CNN (MobileNetV3, 320 recipe) resizing to 128 pixels, 3 classes, with
    distinct scores of which many pass ``conf``."""
    torch.manual_seed(0)
    model = create_model(
        "fasterrcnn_mobilenet_v3_large_320_fpn", num_classes=3, image_size=128
    ).eval()
    batch = model.net.transform(_images(*[(128, 128)] * 8))[0].tensors
    _live_batchnorm(model.net.backbone.body, batch)
    with torch.no_grad():
        model.net.roi_heads.box_predictor.cls_score.weight.mul_(10)
    model.set_thresholds(conf=0.3)
    return model


def test_yolo_export_matches_eval_mode(yolo, tmp_path):
    yolo.eval()
    images = _images((128, 128), (64, 64))  # the second is enlarged 2x by the letterbox
    batch, scales = yolo.letterbox(images)
    with torch.no_grad():
        expected = yolo(images)
        raw = yolo.forward_tensor(batch)
    session = _session(export_onnx(yolo, tmp_path / "yolo.onnx"))
    boxes, scores = session.run(["boxes", "scores"], {"images": batch.numpy()})
    np.testing.assert_allclose(boxes, raw[0].numpy(), rtol=0, atol=ATOL)
    np.testing.assert_allclose(scores, raw[1].numpy(), rtol=0, atol=ATOL)
    got = yolo_detections(
        boxes, scores, yolo.thresholds, sizes=[(128, 128), (64, 64)], scales=scales.numpy()
    )
    for one, reference in zip(got, expected, strict=True):
        _assert_same_detections(one, reference)
        assert one["boxes"].dtype == np.float32 and one["labels"].dtype == np.int64


@pytest.mark.parametrize("dynamic", [True, False])
def test_yolo_batch_is_free_only_when_asked(yolo, tmp_path, dynamic):
    session = _session(export_onnx(yolo, tmp_path / "yolo.onnx", dynamic_batch=dynamic))
    batch = "batch" if dynamic else 1
    assert session.get_inputs()[0].shape == [batch, 3, 128, 128]
    points = 16**2 + 8**2 + 4**2  # strides 8, 16 and 32 on 128 pixels
    shapes = {o.name: o.shape for o in session.get_outputs()}
    assert shapes == {"boxes": [batch, points, 4], "scores": [batch, points, 3]}
    three = np.random.default_rng(0).random((3, 3, 128, 128), dtype=np.float32)
    if dynamic:
        boxes, scores = session.run(None, {"images": three})
        assert boxes.shape == (3, points, 4) and scores.shape == (3, points, 3)
    else:
        with pytest.raises(InvalidArgument):
            session.run(None, {"images": three})


def test_export_traces_eval_mode_and_keeps_modes(yolo, tmp_path):
    yolo.train()
    yolo.net.head.eval()
    modes = {name: m.training for name, m in yolo.named_modules()}
    path = export_onnx(yolo, tmp_path / "yolo.onnx")
    assert {name: m.training for name, m in yolo.named_modules()} == modes
    batch = yolo.letterbox(_images((128, 128)))[0]
    yolo.eval()
    with torch.no_grad():
        expected = yolo.forward_tensor(batch)[1]
    (scores,) = _session(path).run(["scores"], {"images": batch.numpy()})
    np.testing.assert_allclose(scores, expected.numpy(), rtol=0, atol=ATOL)


def test_fasterrcnn_export_matches_eval_mode(rcnn, tmp_path):
    session = _session(export_onnx(rcnn, tmp_path / "rcnn.onnx"))
    assert [i.name for i in session.get_inputs()] == ["image"]
    assert [o.name for o in session.get_outputs()] == ["boxes", "labels", "scores"]
    # One graph for every size: as is (128 x 96) and resized inside (150 -> 128).
    for image in _images((128, 96), (100, 150)):
        with torch.no_grad():
            (expected,) = rcnn([image])  # one at a time: a batch pads images to one size
        boxes, labels, scores = session.run(None, {"image": image.numpy()})
        _assert_same_detections({"boxes": boxes, "labels": labels, "scores": scores}, expected)
        assert labels.min() >= 0 and labels.max() < 3 and scores.min() >= 0.3


def test_fasterrcnn_export_at_another_size(rcnn, tmp_path):
    path = export_onnx(rcnn, tmp_path / "rcnn.onnx", imgsz=160)
    assert rcnn.config.image_size == 128
    meta = read_onnx_metadata(path)
    assert meta.imgsz == meta.config.image_size == meta.config.kwargs["image_size"] == 160
    resized = create_model(rcnn.config.name, num_classes=3, image_size=160).eval()
    resized.load_state_dict(rcnn.state_dict())
    resized.set_thresholds(conf=rcnn.thresholds.conf)
    (image,) = _images((100, 150))
    with torch.no_grad():
        (expected,) = resized([image])
    boxes, labels, scores = _session(path).run(None, {"image": image.numpy()})
    _assert_same_detections({"boxes": boxes, "labels": labels, "scores": scores}, expected)


def test_metadata_round_trip(yolo, tmp_path):
    yolo.set_thresholds(conf=0.25, max_det=50)
    path = export_onnx(yolo, tmp_path / "yolo.onnx", imgsz=160)
    assert read_onnx_metadata(path) == OnnxMetadata(
        "yolo", yolo.config, 160, Thresholds(conf=0.25, iou=0.6, max_det=50)
    )
    stored = json.loads(_session(path).get_modelmeta().custom_metadata_map[METADATA_KEY])
    assert stored["config"]["names"] == ["circle", "square", "star"]
    assert stored["config"]["num_classes"] == 3 and stored["config"]["image_size"] == 128


def test_writes_whole_files_and_replaces_old_ones(yolo, tmp_path):
    path = tmp_path / "new" / "folder" / "yolo.onnx"
    assert export_onnx(yolo, str(path)) == path
    path.write_bytes(b"an older file")
    export_onnx(yolo, path, opset=13)
    assert onnx.load(str(path)).opset_import[0].version == 13
    assert list(path.parent.iterdir()) == [path]  # no temporary file left


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"imgsz": 100}, "imgsz"),  # not a multiple of 32
        ({"imgsz": 16}, "imgsz"),
        ({"opset": 12}, "opset"),
        ({"opset": 21}, "opset"),
        ({"opset": True}, "opset"),
    ],
)
def test_bad_options_are_refused(yolo, tmp_path, options, field):
    with pytest.raises(ConfigError) as error:
        export_onnx(yolo, tmp_path / "yolo.onnx", **options)
    assert error.value.field == field
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("name", ["plain", "ssdlite320_mobilenet_v3_large"])
def test_other_models_are_refused(tmp_path, name):
    if name == "plain":
        model = Detector(ModelConfig(name, "detect", 2, 64, (0, 0, 0), (1, 1, 1)))
    else:
        model = create_model(name, num_classes=2)
    with pytest.raises(ConfigError, match=f"{name} has no ONNX export.*yolo.*fasterrcnn"):
        export_onnx(model, tmp_path / "model.onnx")
    assert not list(tmp_path.iterdir())


def test_reading_metadata_of_other_files_fails_clearly(tmp_path):
    with pytest.raises(WeightsError, match="no such ONNX file"):
        read_onnx_metadata(tmp_path / "missing.onnx")
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\xff" * 64)
    with pytest.raises(WeightsError, match="not an ONNX model"):
        read_onnx_metadata(garbage)
    value = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Identity", ["x"], ["y"])],
        "g",
        [value],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])],
    )
    foreign = tmp_path / "foreign.onnx"
    onnx.save(onnx.helper.make_model(graph), str(foreign))
    with pytest.raises(WeightsError, match="not exported by visionkit") as error:
        read_onnx_metadata(foreign)
    assert error.value.field == "metadata_props"
