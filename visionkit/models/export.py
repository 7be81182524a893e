"""ONNX export of detectors: visionkit's ``yolo`` and torchvision's Faster R-CNN.

Two graphs, one per family:

- ``yolo-n``, ``yolo-s``, ``yolo-m``: the network before thresholds and NMS, as
  Ultralytics' default export. Input ``"images"``, ``float32`` ``[B, 3, S, S]`` in 0-1
  (``S`` the export's ``imgsz``, a multiple of 32), letterboxed as the eval path does:
  each image's longer side resized to ``S`` (bilinear), then padded at the bottom and
  right with the grey ``114 / 255``. Outputs ``"boxes"`` ``[B, N, 4]`` ``xyxy`` in input
  pixels and ``"scores"`` ``[B, N, K]`` class probabilities, ``N = (S/8)^2 + (S/16)^2 +
  (S/32)^2`` anchor points. :func:`yolo_detections` applies thresholds and class-wise NMS
  to them exactly as the model's eval mode does.
- ``fasterrcnn_*``: the whole model, its resize, normalisation, RPN, RoI heads and NMS
  included. Input ``"image"``, ``float32`` ``[3, H, W]`` in 0-1, any size, one image a
  run. Outputs ``"boxes"`` ``[M, 4]`` ``xyxy`` in that image's pixels, ``"labels"``
  ``int64`` ``[M]`` in ``0..K-1`` (the shift past torchvision's background index is in
  the graph) and ``"scores"`` ``[M]``. The model's :class:`Thresholds` at export time are
  part of the graph.

Each file carries the model's config (class names, ``image_size``, ``num_classes``...),
the export's family, ``imgsz`` and thresholds as JSON in ``metadata_props["visionkit"]``:
:func:`read_onnx_metadata` reads it back, and so does onnxruntime alone
(``InferenceSession(path).get_modelmeta().custom_metadata_map["visionkit"]``).

The graphs come from torch's TorchScript-based exporter (``torch.onnx.export(...,
dynamo=False)``): the ``torch.export``-based one cannot trace torchvision's detection
post-processing, whose batched NMS branches on the data-dependent number of boxes.

Example:
    >>> model = create_model("yolo-n", num_classes=3, image_size=320).eval()  # doctest: +SKIP
    >>> path = export_onnx(model, "yolo.onnx")  # doctest: +SKIP
    >>> session = onnxruntime.InferenceSession(path)  # doctest: +SKIP
    >>> boxes, scores = session.run(None, {"images": batch})  # doctest: +SKIP
    >>> yolo_detections(boxes, scores, Thresholds(conf=0.25), sizes=[(320, 320)] * len(batch))
    ... # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import io
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from visionkit.data.formats._files import write_bytes_atomic
from visionkit.errors import ConfigError, WeightsError
from visionkit.models._config import ModelConfig
from visionkit.models.detect._detector import Thresholds

if TYPE_CHECKING:
    import torch
    from torch import nn

    from visionkit.models.detect._detector import Detector

__all__ = ["METADATA_KEY", "OnnxMetadata", "export_onnx", "read_onnx_metadata", "yolo_detections"]

METADATA_KEY = "visionkit"
"""The ``metadata_props`` entry that holds the export's JSON description."""

OPSETS = range(13, 21)
"""ONNX opsets accepted: ``yolo`` needs 13 (torchvision's Faster R-CNN 11), and torch's
TorchScript-based exporter writes up to 20."""

_INSTALL = "pip install 'visionkit[export]'"


@dataclass(frozen=True)
class OnnxMetadata:
    """What an exported file says about itself (see the module docs).

    Attributes:
        family: ``"yolo"`` or ``"fasterrcnn"``: which graph layout the file has.
        config: The exported model's config; ``config.names`` are the class names of
            label indices ``0..K-1`` when known.
        imgsz: ``yolo``: the input side ``S``; Faster R-CNN: the longer side that images are
            resized to inside the graph.
        thresholds: ``yolo``: the model's post-processing settings at export time (for
            :func:`yolo_detections`); Faster R-CNN: those built into the graph.
    """

    family: str
    config: ModelConfig
    imgsz: int
    thresholds: Thresholds

    def to_json(self) -> str:
        """The JSON stored in ``metadata_props["visionkit"]``."""
        return json.dumps(
            {
                "family": self.family,
                "config": self.config.to_dict(),
                "imgsz": self.imgsz,
                "thresholds": dataclasses.asdict(self.thresholds),
            }
        )


def export_onnx(
    model: Detector,
    path: str | Path,
    *,
    imgsz: int | None = None,
    opset: int = 17,
    dynamic_batch: bool = True,
) -> Path:
    """Write ``model`` as an ONNX file (graphs and metadata as the module docs say).

    The model is traced in eval mode on its own device; its modules' train/eval modes are
    as before afterwards. The file is written whole or not at all (temporary file, rename).

    Args:
        model: A ``yolo-*`` or ``fasterrcnn_*`` detector.
        path: The ``.onnx`` file to create or replace; its folder is created if missing.
        imgsz: ``yolo``: the input side ``S``, a multiple of 32. Faster R-CNN: the longer
            side that images are resized to inside the graph (the model is rebuilt at that
            size with the same weights; ``model`` itself is not changed). ``None``:
            ``model.config.image_size``.
        opset: ONNX opset version, 13 to 20.
        dynamic_batch: ``yolo``: whether the batch size of ``"images"`` is free (else 1).
            Faster R-CNN takes one ``[3, H, W]`` image a run, of any size, either way.

    Returns:
        ``path``, as a :class:`~pathlib.Path`.

    Raises:
        ConfigError: Another model family, a bad ``imgsz`` or ``opset``, or ``onnx`` not
            installed.

    Example:
        >>> export_onnx(create_model("yolo-n", num_classes=3), "out/yolo.onnx")  # doctest: +SKIP
        PosixPath('out/yolo.onnx')
    """
    family = _family(model)
    if isinstance(opset, bool) or opset not in OPSETS:
        raise ConfigError(
            f"must be an int in {OPSETS.start}..{OPSETS.stop - 1}, got {opset!r}", field="opset"
        )
    onnx = _import_onnx()
    side = model.config.image_size if imgsz is None else imgsz
    if isinstance(side, bool) or not isinstance(side, int) or side < 32:
        raise ConfigError(f"must be an int of at least 32, got {side!r}", field="imgsz")
    if family == "fasterrcnn":
        model = _at_size(model, side)
    graph = _yolo_graph(model, side, dynamic_batch) if family == "yolo" else _rcnn_graph(model)
    proto = onnx.load_model_from_string(_trace(graph, opset))
    _name_dims(proto, graph.output_dims)
    onnx.helper.set_model_props(
        proto, {METADATA_KEY: OnnxMetadata(family, model.config, side, model.thresholds).to_json()}
    )
    onnx.checker.check_model(proto)
    path = Path(path)
    write_bytes_atomic(path, lambda handle: handle.write(proto.SerializeToString()))
    return path


def read_onnx_metadata(path: str | Path) -> OnnxMetadata:
    """The description that :func:`export_onnx` stored in an ONNX file.

    Raises:
        WeightsError: The file is missing, not ONNX, or not exported by visionkit.
        ConfigError: ``onnx`` is not installed.
    """
    onnx = _import_onnx()
    from google.protobuf.message import DecodeError

    if not Path(path).is_file():
        raise WeightsError("no such ONNX file", file=path)
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except DecodeError as error:
        raise WeightsError(f"not an ONNX model: {error}", file=path) from None
    props = {p.key: p.value for p in proto.metadata_props}
    if METADATA_KEY not in props:
        raise WeightsError(
            "not exported by visionkit: no visionkit metadata", file=path, field="metadata_props"
        )
    try:
        data = json.loads(props[METADATA_KEY])
        return OnnxMetadata(
            data["family"],
            ModelConfig.from_dict(data["config"]),
            int(data["imgsz"]),
            Thresholds(**data["thresholds"]),
        )
    except (ValueError, KeyError, TypeError, ConfigError) as error:
        raise WeightsError(
            f"unreadable visionkit metadata: {error}", file=path, field="metadata_props"
        ) from None


def yolo_detections(
    boxes: np.ndarray,
    scores: np.ndarray,
    thresholds: Thresholds,
    *,
    sizes: list[tuple[int, int]],
    scales: np.ndarray | None = None,
) -> list[dict[str, np.ndarray]]:
    """Detections from a ``yolo`` export's outputs, post-processed as the model's eval mode.

    Per image: the ``(box, class)`` pairs of the 3000 highest scores, those scoring at
    least ``thresholds.conf`` kept, boxes mapped to the image's pixels and clipped to it,
    class-wise NMS at ``thresholds.iou``, at most ``thresholds.max_det`` by decreasing score.

    Args:
        boxes: ``[B, N, 4]`` ``"boxes"`` output, ``xyxy`` input pixels.
        scores: ``[B, N, K]`` ``"scores"`` output.
        thresholds: The post-processing settings (the model's are in the file's metadata).
        sizes: ``(height, width)`` of each original image, which its boxes are clipped to.
        scales: ``[B, 2]`` letterbox factors ``(x, y)`` from image pixels to input pixels
            (the resized width over the original width, and the same for heights);
            ``None``: 1, the images were not resized.

    Returns:
        Per image ``"boxes"`` ``float32`` ``[D, 4]`` ``xyxy`` in its pixels, ``"scores"``
        ``[D]`` and ``"labels"`` ``int64`` ``[D]`` in ``0..K-1``.
    """
    import torch

    from visionkit.models.detect._yolo import PRE_NMS_TOPK
    from visionkit.ops.boxes import batched_nms, clip_boxes

    boxes, scores = torch.as_tensor(boxes), torch.as_tensor(scores)
    factors = torch.ones(len(boxes), 2) if scales is None else torch.as_tensor(scales)
    detections = []
    for image_boxes, image_scores, factor, size in zip(
        boxes, scores, factors.float().repeat(1, 2), sizes, strict=True
    ):
        top, index = image_scores.flatten().topk(min(PRE_NMS_TOPK, image_scores.numel()))
        keep = top >= thresholds.conf
        top, index = top[keep], index[keep]
        labels = index % image_scores.shape[-1]
        candidates = clip_boxes(image_boxes[index // image_scores.shape[-1]] / factor, *size)
        kept = batched_nms(candidates, top, labels, thresholds.iou)[: thresholds.max_det]
        detections.append({"boxes": candidates[kept], "scores": top[kept], "labels": labels[kept]})
    return [{key: value.numpy() for key, value in d.items()} for d in detections]


@dataclass(frozen=True)
class _Graph:
    """What to trace: the module, its example arguments and the ONNX names and free axes."""

    module: nn.Module
    args: tuple
    inputs: list[str]
    outputs: list[str]
    dynamic_axes: dict[str, dict[int, str]]
    output_dims: dict[str, list[int | str]]


def _family(model: Detector) -> str:
    """``"yolo"`` or ``"fasterrcnn"``; a ConfigError for a model without an ONNX export."""
    from visionkit.models.detect._torchvision_adapter import TorchvisionDetector
    from visionkit.models.detect._yolo import Yolo

    name = getattr(getattr(model, "config", None), "name", type(model).__name__)
    if isinstance(model, Yolo):
        return "yolo"
    if isinstance(model, TorchvisionDetector) and name.startswith("fasterrcnn"):
        return "fasterrcnn"
    raise ConfigError(
        f"{name} has no ONNX export; the families that export are "
        "yolo-n/s/m and fasterrcnn_* (Faster R-CNN)",
        field="model",
    )


def _import_onnx() -> Any:
    """The ``onnx`` package, or a ConfigError saying how to install it."""
    try:
        import onnx
    except ImportError:
        raise ConfigError(f"ONNX export needs the onnx package: `{_INSTALL}`") from None
    return onnx


def _yolo_graph(model: Detector, side: int, dynamic_batch: bool) -> _Graph:
    """``forward_tensor`` on a ``[B, 3, side, side]`` batch."""
    import torch
    from torch import nn

    from visionkit.models.detect._yolo import PAD_MULTIPLE
    from visionkit.models.detect._yolo_blocks import STRIDES

    if side % PAD_MULTIPLE:
        raise ConfigError(
            f"a yolo export's input side must be a multiple of {PAD_MULTIPLE}, got {side}",
            field="imgsz",
        )

    class TensorPath(nn.Module):
        """The traceable core of the detector as a module's ``forward``."""

        def __init__(self, detector: nn.Module) -> None:
            super().__init__()
            self.detector = detector

        def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return self.detector.forward_tensor(images)

    # A batch of 2 when the batch is free, so no size-1 dimension is folded into the graph.
    batch = 2 if dynamic_batch else 1
    example = torch.full((batch, 3, side, side), 0.5, device=_device(model))
    points = sum((side // stride) ** 2 for stride in STRIDES)
    size: int | str = "batch" if dynamic_batch else 1
    free = {0: "batch"}
    return _Graph(
        TensorPath(model),
        (example,),
        ["images"],
        ["boxes", "scores"],
        {"images": free, "boxes": free, "scores": free} if dynamic_batch else {},
        {"boxes": [size, points, 4], "scores": [size, points, model.num_classes]},
    )


def _rcnn_graph(model: Detector) -> _Graph:
    """The whole detector on a list holding one ``[3, H, W]`` image of any size."""
    import torch

    side = model.config.image_size
    generator = torch.Generator().manual_seed(0)
    example = torch.rand(3, side, side, generator=generator).to(_device(model))
    return _Graph(
        model,
        ([example],),
        ["image"],
        ["boxes", "labels", "scores"],
        {
            "image": {1: "height", 2: "width"},
            **{name: {0: "detections"} for name in ("boxes", "labels", "scores")},
        },
        {},
    )


def _at_size(model: Detector, side: int) -> Detector:
    """``model``, or a copy rebuilt to resize images to ``side`` inside, with its weights."""
    if side == model.config.image_size:
        return model
    from visionkit.models.registry import create_model

    kwargs = {**model.config.kwargs, "image_size": side}
    resized = create_model(model.config.name, num_classes=model.num_classes, **kwargs)
    resized.load_state_dict(model.state_dict())
    resized.config = dataclasses.replace(
        model.config, image_size=side, kwargs=resized.config.kwargs
    )
    resized.set_thresholds(**dataclasses.asdict(model.thresholds))
    return resized.to(_device(model))


def _device(model: nn.Module) -> torch.device:
    """Where ``model``'s parameters are (the CPU for a model without any)."""
    import torch

    return next(model.parameters(), torch.empty(0)).device


def _trace(graph: _Graph, opset: int) -> bytes:
    """Trace ``graph.module`` in eval mode to ONNX bytes; every module's mode is restored."""
    import torch

    modes = {module: module.training for module in graph.module.modules()}
    buffer = io.BytesIO()
    try:
        graph.module.eval()
        with warnings.catch_warnings(), torch.no_grad():
            # Notes on torch's and torchvision's own code, not on the model or the call: the
            # tracer's remarks on Python values in torchvision's detection code, and notices
            # that the TorchScript tools are the older path (chosen: see the module docs).
            warnings.filterwarnings("ignore", module="torch")  # and "torchvision"
            warnings.simplefilter("ignore", torch.jit.TracerWarning)  # the detector's checks too
            warnings.filterwarnings("ignore", "You are using the legacy TorchScript-based")
            torch.onnx.export(
                graph.module,
                graph.args,
                buffer,
                input_names=graph.inputs,
                output_names=graph.outputs,
                dynamic_axes=graph.dynamic_axes or None,
                opset_version=opset,
                dynamo=False,
            )
    finally:
        for module, training in modes.items():
            module.training = training
    return buffer.getvalue()


def _name_dims(proto: Any, dims: dict[str, list[int | str]]) -> None:
    """Write the output shapes ``dims`` into the ONNX ``proto`` (the tracer leaves the sizes
    that follow from the input's shape as anonymous symbols)."""
    for output in proto.graph.output:
        shape = output.type.tensor_type.shape
        for dim, value in zip(shape.dim, dims.get(output.name, []), strict=False):
            if isinstance(value, int):
                dim.dim_value = value
            else:
                dim.dim_param = value
