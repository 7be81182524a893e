"""Dense prediction metrics: monocular depth (KITTI/NYU errors) and optical flow (EPE, Fl).

Both metrics stream per-image pixel sums. By default a metric is averaged over the valid
pixels of all images together; ``per_image=True`` averages it within each image first and
then over the images (Monodepth2's depth evaluation, and KITTI's per-image EPE). Images
without a valid pixel add nothing. ``compute()`` sums the state over
``torch.distributed`` processes, so it is collective when two or more are running.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from visionkit.errors import ConfigError, DataError
from visionkit.metrics._streaming import as_array, divide, sum_across_processes

ALIGNMENTS = ("none", "median", "least_squares", "least_squares_disparity")


class _DenseMetric:
    """State shared by the dense metrics.

    A subclass turns each image into a row of pixel sums (the valid pixel count first, then
    one sum per metric, in the order of ``names``) and passes the rows to :meth:`_add`;
    the metric is the sum over the count, square-rooted for the columns in ``root_columns``
    (root-mean-square errors).
    """

    names: tuple[str, ...] = ()
    root_columns: tuple[int, ...] = ()

    def __init__(self, per_image: bool) -> None:
        self.per_image = per_image
        self.reset()

    def reset(self) -> None:
        """Forget every batch seen so far."""
        self._total = np.zeros(len(self.names) + (0 if self.per_image else 1))
        self._averaged_images = 0
        self._images = 0

    def _add(self, sums: np.ndarray) -> None:
        """Add ``[B, 1 + len(names)]`` per-image pixel sums."""
        if self.per_image:
            seen = sums[sums[:, 0] > 0]
            self._total += self._finalise(seen).sum(axis=0)
            self._averaged_images += len(seen)
        else:
            self._total += sums.sum(axis=0)
        self._images += len(sums)

    def _finalise(self, sums: np.ndarray) -> np.ndarray:
        """``[M, len(names)]`` metrics of ``[M, 1 + len(names)]`` pixel sums."""
        means = divide(sums[:, 1:], sums[:, :1])
        roots = list(self.root_columns)
        means[:, roots] = np.sqrt(means[:, roots])
        return means

    def compute(self) -> dict[str, float]:
        """The metrics of every batch added since the last reset; NaN without valid pixels."""
        state = sum_across_processes(
            {"total": self._total, "images": np.array([self._averaged_images])}
        )
        if self.per_image:
            values = divide(state["total"], state["images"][0])
        else:
            values = self._finalise(state["total"][None])[0]
        return {name: float(value) for name, value in zip(self.names, values, strict=True)}

    def _check_finite(self, finite: np.ndarray, valid: np.ndarray) -> None:
        """Raise :class:`DataError` if a valid pixel's prediction is not finite (``[B, H, W]``)."""
        bad = (valid & ~finite).reshape(len(valid), -1).any(axis=1)
        if bad.any():
            raise DataError(
                "predictions must be finite at valid pixels",
                record=f"image {self._images + int(np.argmax(bad))}",
                field="pred",
            )


class DepthMetrics(_DenseMetric):
    """Streaming monocular depth errors (Eigen et al. 2014; Monodepth2's evaluation).

    For predicted depth ``p`` and true depth ``g`` (same unit) over valid pixels:
    ``abs_rel`` = mean ``|p - g| / g``, ``sq_rel`` = mean ``(p - g)^2 / g``, ``rmse`` =
    sqrt mean ``(p - g)^2``, ``rmse_log`` = sqrt mean ``(ln p - ln g)^2``, and
    ``delta{k}`` = fraction with ``max(p / g, g / p) < 1.25^k``. A pixel is valid when its
    target is finite, above ``min_depth``, at most ``max_depth`` and not masked out.

    Relative-depth models are first aligned to the target, per image, over its valid pixels:

    - ``"median"``: ``p * median(g) / median(p)`` (Monodepth2's median scaling).
    - ``"least_squares"``: ``s * p + t`` with the scale and shift that minimise
      ``sum (s * p + t - g)^2``, for affine-invariant depth.
    - ``"least_squares_disparity"``: the prediction is affine-invariant inverse depth
      (MiDaS, DPT, Depth Anything): ``s, t`` minimise ``sum (s * p + t - 1 / g)^2``, as in
      MiDaS' evaluation, and the depth is ``1 / (s * p + t)`` with the disparity held at
      ``1 / max_depth`` or more (MiDaS' depth cap), so ``max_depth`` is required.

    With a constant prediction the least-squares fit is ``s = 0`` and ``t`` the mean
    target. After alignment the prediction is clipped to ``[min_depth, max_depth]``, as
    Monodepth2 does.

    Args:
        alignment: One of :data:`ALIGNMENTS`.
        min_depth: Smallest valid target depth (exclusive; > 0).
        max_depth: Largest valid target depth (inclusive), or None for no limit.
        per_image: Average each image's metrics over images instead of pooling pixels.

    Example:
        >>> metrics = DepthMetrics(alignment="median")
        >>> metrics.update(np.full((1, 2, 2), 0.5), np.full((1, 2, 2), 4.0))
        >>> metrics.compute()["abs_rel"], metrics.compute()["delta1"]
        (0.0, 1.0)
    """

    names = ("abs_rel", "sq_rel", "rmse", "rmse_log", "delta1", "delta2", "delta3")
    root_columns = (2, 3)

    def __init__(
        self,
        *,
        alignment: str = "none",
        min_depth: float = 1e-3,
        max_depth: float | None = None,
        per_image: bool = False,
    ) -> None:
        if alignment not in ALIGNMENTS:
            raise ConfigError(f"must be one of {ALIGNMENTS}, got {alignment!r}", field="alignment")
        if not min_depth > 0:
            raise ConfigError(f"must be > 0, got {min_depth}", field="min_depth")
        if max_depth is not None and not max_depth > min_depth:
            raise ConfigError(
                f"must be > min_depth {min_depth}, got {max_depth}", field="max_depth"
            )
        if alignment == "least_squares_disparity" and max_depth is None:
            raise ConfigError(
                "disparity alignment caps depth at max_depth: give one", field="max_depth"
            )
        self.alignment = alignment
        self.min_depth = min_depth
        self.max_depth = max_depth
        super().__init__(per_image)

    def update(self, pred: Any, target: Any, valid: Any = None) -> None:
        """Add one batch.

        Args:
            pred: Predicted depth ``[B, H, W]`` (or relative depth / disparity, see the
                alignment), numpy or torch.
            target: True depth ``[B, H, W]``; 0, negative or non-finite where unknown.
            valid: Optional bool ``[B, H, W]``; False leaves a pixel out.

        Raises:
            ConfigError: Shapes do not fit.
            DataError: A prediction is not finite at a valid pixel, or is not positive
                where median alignment needs it.
        """
        pred, target = _pair(pred, target, ndim=3)
        valid = _valid_pixels(valid, target.shape) & np.isfinite(target) & (target > self.min_depth)
        if self.max_depth is not None:
            valid &= target <= self.max_depth
        self._check_finite(np.isfinite(pred), valid)
        sums = np.zeros((len(target), 1 + len(self.names)))
        for index, (p, g, keep) in enumerate(zip(pred, target, valid, strict=True)):
            if keep.any():
                aligned = self._aligned(p[keep], g[keep], self._images + index)
                sums[index] = _depth_sums(aligned, g[keep])
        self._add(sums)

    def _aligned(self, pred: np.ndarray, target: np.ndarray, image: int) -> np.ndarray:
        """The valid pixels' prediction, aligned to the target and clipped to the depth range."""
        if self.alignment == "median":
            middle = np.median(pred)
            if not middle > 0:
                raise DataError(
                    f"median alignment needs a positive median prediction, got {middle}",
                    record=f"image {image}",
                    field="pred",
                )
            pred = pred * (np.median(target) / middle)
        elif self.alignment == "least_squares":
            scale, shift = _scale_and_shift(pred, target)
            pred = scale * pred + shift
        elif self.alignment == "least_squares_disparity":
            scale, shift = _scale_and_shift(pred, 1.0 / target)
            pred = 1.0 / np.maximum(scale * pred + shift, 1.0 / self.max_depth)
        return np.clip(pred, self.min_depth, self.max_depth)


class FlowMetrics(_DenseMetric):
    """Streaming optical flow errors: end-point error and KITTI's Fl outlier rate.

    Flow is ``[B, H, W, 2]``: the ``(dx, dy)`` displacement of each pixel, the layout of
    :mod:`visionkit.data.synthetic` and OpenCV (torchvision's RAFT returns ``[B, 2, H, W]``:
    ``permute(0, 2, 3, 1)`` it). Over valid pixels: ``epe`` = mean ``|pred - target|``
    (Euclidean), ``fl_all`` = fraction of outliers, whose EPE exceeds both 3 px and 5 % of
    the true flow's length (KITTI 2015), and ``epe_1px``, ``epe_3px``, ``epe_5px`` =
    fractions with EPE below 1, 3 and 5 px. A pixel is valid when its target is finite and
    it is not masked out.

    Args:
        per_image: Average each image's metrics over images instead of pooling pixels.

    Example:
        >>> metrics = FlowMetrics()
        >>> metrics.update(np.full((1, 2, 2, 2), 4.0), np.zeros((1, 2, 2, 2)))
        >>> round(metrics.compute()["epe"], 4), metrics.compute()["fl_all"]
        (5.6569, 1.0)
    """

    names = ("epe", "fl_all", "epe_1px", "epe_3px", "epe_5px")

    def __init__(self, *, per_image: bool = False) -> None:
        super().__init__(per_image)

    def update(self, pred: Any, target: Any, valid: Any = None) -> None:
        """Add one batch.

        Args:
            pred: Predicted flow ``[B, H, W, 2]`` in pixels, numpy or torch.
            target: True flow ``[B, H, W, 2]``; non-finite where unknown.
            valid: Optional bool ``[B, H, W]``; False leaves a pixel out (KITTI's masks).

        Raises:
            ConfigError: Shapes do not fit.
            DataError: A prediction is not finite at a valid pixel.
        """
        pred, target = _pair(pred, target, ndim=4)
        if target.shape[-1] != 2:
            raise ConfigError(f"must be [B, H, W, 2], got {list(target.shape)}", field="target")
        valid = _valid_pixels(valid, target.shape[:3]) & np.isfinite(target).all(axis=-1)
        self._check_finite(np.isfinite(pred).all(axis=-1), valid)
        keep = valid[..., None]
        pred, target = np.where(keep, pred, 0.0), np.where(keep, target, 0.0)
        error = np.linalg.norm(pred - target, axis=-1)
        length = np.linalg.norm(target, axis=-1)
        outlier = (error > 3.0) & (error > 0.05 * length)
        per_pixel = np.stack([valid, error, outlier, error < 1, error < 3, error < 5], axis=-1)
        self._add(np.where(keep, per_pixel, 0).sum(axis=(1, 2)))


def _pair(pred: Any, target: Any, *, ndim: int) -> tuple[np.ndarray, np.ndarray]:
    """Prediction and target as float64 arrays of one shape with ``ndim`` axes."""
    pred, target = as_array(pred).astype(np.float64), as_array(target).astype(np.float64)
    if target.ndim != ndim:
        raise ConfigError(f"must have {ndim} axes, got shape {list(target.shape)}", field="target")
    if pred.shape != target.shape:
        raise ConfigError(
            f"shape {list(pred.shape)} does not match target {list(target.shape)}", field="pred"
        )
    return pred, target


def _valid_pixels(valid: Any, shape: tuple[int, ...]) -> np.ndarray:
    """The user's validity mask ``[B, H, W]`` as bool, or all True."""
    if valid is None:
        return np.ones(shape, bool)
    valid = as_array(valid)
    if valid.shape != shape:
        raise ConfigError(f"must have shape {list(shape)}, got {list(valid.shape)}", field="valid")
    return valid.astype(bool)


def _scale_and_shift(pred: np.ndarray, target: np.ndarray) -> tuple[float, float]:
    """Least-squares ``s, t`` minimising ``sum (s * pred + t - target)^2`` (1-D arrays).

    The centred closed form of MiDaS' normal equations (better conditioned for many
    pixels); ``s = 0`` and ``t = mean(target)`` when the prediction is constant.
    """
    pred_centred = pred - pred.mean()
    spread = np.sum(pred_centred**2)
    scale = float(np.sum(pred_centred * (target - target.mean())) / spread) if spread > 0 else 0.0
    return scale, float(target.mean() - scale * pred.mean())


def _depth_sums(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Pixel count and the sums of :class:`DepthMetrics`' per-pixel errors (1-D, positive)."""
    difference = pred - target
    ratio = np.maximum(pred / target, target / pred)
    return np.array(
        [
            target.size,
            np.sum(np.abs(difference) / target),
            np.sum(difference**2 / target),
            np.sum(difference**2),
            np.sum((np.log(pred) - np.log(target)) ** 2),
            *(np.sum(ratio < 1.25**k) for k in (1, 2, 3)),
        ]
    )
