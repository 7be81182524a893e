"""Typed containers for model outputs.

:class:`Detections` holds one image's detections as torch tensors and converts to and
from the formats that meet it at the edges: torchvision's detector output (and
torchmetrics' list-of-dicts element) and COCO annotation / result dicts. Every box or
mask conversion goes through :mod:`visionkit.ops`, so the conventions live in one place.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from visionkit.errors import ConfigError, DataError
from visionkit.ops.boxes import box_area, box_convert
from visionkit.ops.masks import mask_to_rle, rle_area, segmentation_to_mask

Index = int | slice | torch.Tensor | np.ndarray | Sequence[int] | Sequence[bool]
"""What :meth:`Detections.__getitem__` takes: a position, a slice, indices or a bool mask."""

CategoryIds = Sequence[int] | Mapping[int, int]
"""Label -> dataset category id, read as ``category_ids[label]`` (a sequence or a mapping)."""

_FIELDS = ("boxes", "scores", "labels", "masks", "track_ids")


class Detections:
    """One image's detections (or ground-truth objects) as torch tensors on one device.

    Args:
        boxes: ``[N, 4]`` boxes, ``xyxy`` absolute pixels; stored as float32.
        scores: ``[N]`` confidences; stored as float32 (1.0 for ground truth).
        labels: ``[N]`` class labels; stored as int64.
        masks: Optional ``[N, H, W]`` bool (or 0/1 integer) instance masks.
        track_ids: Optional ``[N]`` track identities; stored as int64.

    Anything tensor-like (tensors, numpy arrays, lists) is accepted and moved to the
    device of ``boxes``.

    Raises:
        ConfigError: A field has the wrong shape, or masks are soft (floating point).

    Example:
        >>> dets = Detections([[0.0, 0.0, 10.0, 10.0]], [0.9], [3])
        >>> len(dets), dets.labels.dtype
        (1, torch.int64)
    """

    __slots__ = _FIELDS

    def __init__(
        self,
        boxes: Any,
        scores: Any,
        labels: Any,
        masks: Any | None = None,
        track_ids: Any | None = None,
    ) -> None:
        self.boxes = _as_field(boxes, torch.float32, None, ("N", 4), "boxes")
        n, device = len(self.boxes), self.boxes.device
        self.scores = _as_field(scores, torch.float32, device, (n,), "scores")
        self.labels = _as_field(labels, torch.int64, device, (n,), "labels")
        self.masks = None if masks is None else _as_masks(masks, device, n)
        self.track_ids = (
            None
            if track_ids is None
            else _as_field(track_ids, torch.int64, device, (n,), "track_ids")
        )

    def __len__(self) -> int:
        return self.boxes.shape[0]

    @property
    def xyxy(self) -> torch.Tensor:
        """``boxes`` under Ultralytics' name: ``[N, 4]`` xyxy absolute pixels."""
        return self.boxes

    @property
    def conf(self) -> torch.Tensor:
        """``scores`` under Ultralytics' name: ``[N]`` confidences."""
        return self.scores

    @property
    def cls(self) -> torch.Tensor:
        """``labels`` under Ultralytics' name: ``[N]`` class indices."""
        return self.labels

    def __repr__(self) -> str:
        optional = {"masks": self.masks, "track_ids": self.track_ids}
        extras = "".join(f", {k}={list(v.shape)}" for k, v in optional.items() if v is not None)
        return f"Detections(n={len(self)}{extras}, device={self.device})"

    @property
    def device(self) -> torch.device:
        """The device that every field lives on."""
        return self.boxes.device

    def __getitem__(self, key: Index) -> Detections:
        """Select detections; the result is always a :class:`Detections`.

        Args:
            key: An int (gives a length-1 :class:`Detections`), a slice, an index tensor or
                list, or a ``[N]`` bool mask.

        Returns:
            The selected detections, every field indexed alike.
        """
        if isinstance(key, torch.Tensor) and key.ndim == 0:
            key = key.item()
        if isinstance(key, int | np.integer):
            key = self._row(operator.index(key))
        elif not isinstance(key, slice | torch.Tensor):
            key = torch.as_tensor(np.asarray(key))
            if key.numel() == 0:  # np.asarray([]) is float; an empty selection is still valid
                key = key.long()
        return self._apply(lambda t: t[key])

    def _row(self, i: int) -> slice:
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"detection index {i} is out of range for {n} detections")
        i %= n
        return slice(i, i + 1)

    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> Detections:
        """A new :class:`Detections` with ``fn`` applied to every present field."""
        values = {name: getattr(self, name) for name in _FIELDS}
        return Detections(**{k: None if v is None else fn(v) for k, v in values.items()})

    def to(self, device: torch.device | str) -> Detections:
        """A copy with every field on ``device``."""
        return self._apply(lambda t: t.to(device))

    def cpu(self) -> Detections:
        """A copy with every field on the CPU."""
        return self.to("cpu")

    @classmethod
    def empty(
        cls, mask_size: tuple[int, int] | None = None, device: torch.device | str = "cpu"
    ) -> Detections:
        """No detections (``N = 0``).

        Args:
            mask_size: ``(H, W)`` to include ``[0, H, W]`` masks; None for no masks.
            device: Where the empty tensors live.

        Returns:
            A length-0 :class:`Detections`.
        """
        masks = None if mask_size is None else torch.zeros((0, *mask_size), dtype=torch.bool)
        return cls(torch.zeros((0, 4), device=device), [], [], masks=masks)

    @staticmethod
    def cat(parts: Sequence[Detections]) -> Detections:
        """Concatenate detections of one image (for example from tiles or several models).

        Args:
            parts: Detections with the same optional fields (length-0 parts are skipped, so
                :meth:`empty` is a neutral element).

        Returns:
            All detections, in the order given; :meth:`empty` for no parts.

        Raises:
            ConfigError: Only some parts have masks or track ids, or masks differ in size.
        """
        present = [p for p in parts if len(p)]
        if not present:
            return parts[0] if parts else Detections.empty()
        fields = {name: _cat_field([getattr(p, name) for p in present], name) for name in _FIELDS}
        return Detections(**fields)

    @classmethod
    def from_torchvision(
        cls, output: Mapping[str, torch.Tensor], mask_threshold: float = 0.5
    ) -> Detections:
        """Build from a torchvision detector's eval-mode output for one image.

        Args:
            output: ``{"boxes": [N, 4], "scores": [N], "labels": [N]}`` plus optional
                ``"masks"``: ``[N, 1, H, W]`` float probabilities (Mask R-CNN), or ``[N, H, W]``
                bool. A target dict without ``"scores"`` gets 1.0 for every object.
            mask_threshold: Probability at or above which a mask pixel is foreground.

        Returns:
            The detections, on the device of ``output["boxes"]``.
        """
        for key in ("boxes", "labels"):
            if key not in output:
                raise ConfigError(f"detector output lacks {key!r}; it has {sorted(output)}")
        boxes = torch.as_tensor(output["boxes"])
        scores = output.get("scores")
        masks = output.get("masks")
        return cls(
            boxes,
            torch.ones(len(boxes)) if scores is None else scores,
            output["labels"],
            masks=None if masks is None else _threshold_masks(masks, mask_threshold),
        )

    def to_torchvision(self) -> dict[str, torch.Tensor]:
        """The torchmetrics / torchvision list-of-dicts element for this image.

        Returns:
            ``{"boxes": float32 [N, 4] xyxy, "scores": float32 [N], "labels": int64 [N]}``
            plus ``"masks": bool [N, H, W]`` when present (torchmetrics' ``segm`` format).
            Track ids are not part of the format and are left out.
        """
        out = {"boxes": self.boxes, "scores": self.scores, "labels": self.labels}
        if self.masks is not None:
            out["masks"] = self.masks
        return out

    def to_coco(
        self, image_id: int, category_ids: CategoryIds | None = None
    ) -> list[dict[str, Any]]:
        """COCO annotation / result dicts, one per detection.

        Args:
            image_id: The COCO ``image_id`` of this image.
            category_ids: Maps each label to its dataset category id (a sequence indexed by
                label, or a mapping); None keeps labels as category ids.

        Returns:
            Dicts with ``image_id``, ``category_id``, ``bbox`` (``[x, y, w, h]`` floats),
            ``score`` and ``area`` (mask area with masks, else box area), plus
            ``segmentation`` (compressed RLE) with masks and ``track_id`` with track ids.

        Raises:
            ConfigError: A label has no entry in ``category_ids``.
        """
        dets = self.cpu()
        columns: dict[str, list] = {
            "category_id": _translate(dets.labels.tolist(), category_ids, inverse=False),
            "bbox": box_convert(dets.boxes, "xyxy", "xywh").tolist(),
            "score": dets.scores.tolist(),
        }
        if dets.masks is None:
            columns["area"] = box_area(dets.boxes).tolist()
        else:
            columns["segmentation"] = [mask_to_rle(m) for m in dets.masks.numpy()]
            columns["area"] = [rle_area(rle) for rle in columns["segmentation"]]
        if dets.track_ids is not None:
            columns["track_id"] = dets.track_ids.tolist()
        return [
            {"image_id": image_id, **{key: values[i] for key, values in columns.items()}}
            for i in range(len(dets))
        ]

    @classmethod
    def from_coco(
        cls,
        annotations: Iterable[Mapping[str, Any]],
        height: int | None = None,
        width: int | None = None,
        *,
        category_ids: CategoryIds | None = None,
    ) -> Detections:
        """Build from COCO annotation or result dicts of one image (inverse of :meth:`to_coco`).

        Args:
            annotations: Dicts with ``bbox`` (``[x, y, w, h]``) and ``category_id``; optional
                ``score`` (1.0 when absent, as for ground truth), ``segmentation`` (polygons
                or RLE) and ``track_id``. Crowd flags are not represented.
            height: Image height; with ``width``, segmentations are decoded to masks.
            width: Image width.
            category_ids: The label -> category id map used by :meth:`to_coco`; category ids
                are turned back into labels. None keeps category ids as labels.

        Returns:
            The detections on the CPU; with masks when every annotation has a
            ``segmentation`` and the image size is given.

        Raises:
            DataError: An annotation lacks a field, has a malformed ``bbox``, or carries a
                ``segmentation`` or ``track_id`` that other annotations lack.
            ConfigError: Only one of ``height`` and ``width`` is given, or a category id has
                no label in ``category_ids``.
        """
        if (height is None) != (width is None):
            raise ConfigError("give both height and width to decode masks, or neither")
        anns = list(annotations)
        boxes = torch.tensor([_coco_bbox(a, i) for i, a in enumerate(anns)], dtype=torch.float32)
        categories = [_required(a, "category_id", i) for i, a in enumerate(anns)]
        segmentations = _optional_column(anns, "segmentation")
        masks = None
        if segmentations is not None and height is not None:
            masks = _decode_masks(segmentations, height, width)
        return cls(
            box_convert(boxes.reshape(-1, 4), "xywh", "xyxy"),
            [float(a.get("score", 1.0)) for a in anns],
            _translate(categories, category_ids, inverse=True),
            masks=masks,
            track_ids=_optional_column(anns, "track_id"),
        )


def _as_field(
    value: Any,
    dtype: torch.dtype,
    device: torch.device | None,
    shape: tuple[int | str, ...],
    name: str,
) -> torch.Tensor:
    """``value`` as a tensor of ``dtype`` on ``device``; ``shape``'s str entries are free."""
    tensor = torch.as_tensor(value, dtype=dtype, device=device)
    if len(tensor.shape) != len(shape) or any(
        isinstance(want, int) and want != got for want, got in zip(shape, tensor.shape, strict=True)
    ):
        wanted = ", ".join(map(str, shape))
        raise ConfigError(
            f"must have shape [{wanted}], got {list(tensor.shape)} (boxes are [N, 4]; scores, "
            "labels and track_ids [N]; masks [N, H, W])",
            record="Detections",
            field=name,
        )
    return tensor


def _as_masks(masks: Any, device: torch.device, n: int) -> torch.Tensor:
    tensor = torch.as_tensor(masks)
    if tensor.is_floating_point():
        raise ConfigError(
            "masks must be bool or 0/1 integers; threshold soft masks first "
            "(Detections.from_torchvision does)",
            record="Detections",
            field="masks",
        )
    return _as_field(tensor, torch.bool, device, (n, "H", "W"), "masks")


def _threshold_masks(masks: torch.Tensor, threshold: float) -> torch.Tensor:
    """torchvision's ``[N, 1, H, W]`` mask probabilities as ``[N, H, W]`` bool masks."""
    if masks.ndim == 4 and masks.shape[1] == 1:
        masks = masks[:, 0]
    return masks >= threshold if masks.is_floating_point() else masks


def _cat_field(values: list[torch.Tensor | None], name: str) -> torch.Tensor | None:
    if all(v is None for v in values):
        return None
    if any(v is None for v in values):
        raise ConfigError("only some of the detections to concatenate have it", field=name)
    if len({tuple(v.shape[1:]) for v in values}) > 1:
        sizes = sorted({tuple(v.shape[1:]) for v in values})
        raise ConfigError(f"detections to concatenate differ in size: {sizes}", field=name)
    return torch.cat(values)


def _category_lookup(category_ids: CategoryIds, inverse: bool) -> Mapping[int, int]:
    """Label -> category id, or category id -> label when ``inverse``."""
    lookup = category_ids if isinstance(category_ids, Mapping) else dict(enumerate(category_ids))
    return {int(c): int(lbl) for lbl, c in lookup.items()} if inverse else lookup


def _translate(values: list[int], category_ids: CategoryIds | None, inverse: bool) -> list[int]:
    """Labels to category ids (or back, when ``inverse``) through ``category_ids``."""
    if category_ids is None:
        return values
    lookup = _category_lookup(category_ids, inverse)
    missing = sorted(set(values) - set(lookup))
    if missing:
        what = "category ids" if inverse else "labels"
        raise ConfigError(f"{what} {missing} are not in category_ids", field="category_ids")
    return [int(lookup[v]) for v in values]


def _decode_masks(segmentations: list[Any], height: int, width: int) -> np.ndarray:
    """COCO segmentations as ``[N, H, W]`` bool masks, each checked against the image size."""
    masks = [segmentation_to_mask(s, height, width) for s in segmentations]
    for i, mask in enumerate(masks):
        if mask.shape != (height, width):
            raise DataError(
                f"decodes to size {list(mask.shape)}, not the image's [{height}, {width}]",
                record=f"annotation {i}",
                field="segmentation",
            )
    return np.stack(masks)


def _required(ann: Mapping[str, Any], key: str, i: int) -> Any:
    if key not in ann:
        raise DataError("missing", record=f"annotation {i}", field=key)
    return ann[key]


def _coco_bbox(ann: Mapping[str, Any], i: int) -> list[float]:
    bbox = _required(ann, "bbox", i)
    try:
        values = [float(v) for v in bbox]
    except (TypeError, ValueError):
        values = []
    if len(values) != 4:
        raise DataError(
            f"must be 4 numbers [x, y, w, h], got {bbox!r}", record=f"annotation {i}", field="bbox"
        )
    return values


def _optional_column(anns: list[Mapping[str, Any]], key: str) -> list[Any] | None:
    """Every annotation's ``key``, or None when none has it."""
    have = [key in a for a in anns]
    if not any(have):
        return None
    if not all(have):
        i = have.index(False)
        raise DataError(
            "missing while other annotations have it", record=f"annotation {i}", field=key
        )
    return [a[key] for a in anns]
