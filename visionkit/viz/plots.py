"""Plots of results: precision-recall and metric-confidence curves, confusion matrices, and
training curves, as a run folder keeps them (``PR_curve.png``, ``confusion_matrix.png``,
``results.png``).

Every function returns a :class:`matplotlib.figure.Figure` on an Agg canvas and never touches
pyplot, so nothing global changes and no window opens; with ``path`` it also writes a PNG,
atomically (a temporary file in the same folder, then a rename), so a reader never sees half
a file. matplotlib is imported inside the functions because its import alone takes longer
than ``visionkit --help`` may. Text uses matplotlib's bundled font; nothing is downloaded.
The k-th class of a plot is drawn in palette colour k, as class k is on images.
"""

from __future__ import annotations

import csv
import math
import os
import secrets
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from visionkit.errors import ConfigError, DataError
from visionkit.viz._arrays import to_numpy
from visionkit.viz.palette import color_for

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

DPI = 150
"""Resolution of the figures and of the PNG files, in dots per inch."""

MAX_LEGEND = 20
"""With more classes than this, class curves are drawn in grey and left out of the legend."""

MAX_ANNOTATED = 30
"""Confusion matrices up to this many classes get their values written in the cells."""

_MEAN_COLOR = (0.1, 0.25, 0.65)
_GREY = (0.6, 0.6, 0.6)
_RECALL_GRID = np.linspace(0.0, 1.0, 1001)


def plot_pr_curves(
    curves: Mapping[str, tuple[Any, Any]],
    *,
    ap: Mapping[str, float] | None = None,
    title: str = "",
    path: str | Path | None = None,
) -> Figure:
    """Precision against recall, one curve per class, and their mean in bold.

    Each curve is drawn as its interpolated precision (at each recall, the highest precision
    at that recall or beyond; 0 past the last point), the curve whose area VOC and COCO AP
    measure. The bold mean is the average of these over the classes.

    Args:
        curves: Class name to ``(recall, precision)``, two ``[K]`` arrays, any order. NaN
            points are skipped; a class with only NaN recall (a VOC class without ground
            truth) is not drawn and stays out of the mean. An empty curve is 0 everywhere.
        ap: Class name to AP, written in the legend (``cat 0.812``), with their mean on the
            bold line's entry. Every class in ``curves`` needs one.
        title: Title above the plot (none when empty).
        path: Where to write a PNG; None writes nothing.

    Returns:
        The figure, one axes with recall on x and precision on y, both 0 to 1.

    Raises:
        ConfigError: no curves, a curve whose arrays differ in shape, or a class missing
            from ``ap``.

    Example:
        >>> figure = plot_pr_curves({"cat": ([0.5, 1.0], [1.0, 0.5])}, ap={"cat": 0.75})
        >>> figure.axes[0].get_legend().get_texts()[0].get_text()
        'cat 0.750'
    """
    if not curves:
        raise ConfigError("no curves to plot", field="curves")
    lines = {name: _pr_line(name, pair) for name, pair in curves.items()}
    labels, mean_label = None, "all classes"
    if ap is not None:
        missing = [name for name in lines if name not in ap]
        if missing:
            raise ConfigError(f"no AP for class {missing[0]!r}", field="ap")
        labels = {name: f"{name} {ap[name]:.3f}" for name in lines}
        mean_label = f"all classes {np.nanmean([ap[name] for name in lines]):.3f} mAP"
    figure = _figure(9, 6)
    axes = figure.add_subplot()
    _draw_class_lines(axes, _RECALL_GRID, lines, labels, mean_label)
    _label(axes, "Recall", "Precision", title)
    return _finish(figure, path)


def plot_metric_curves(
    confidence: Any,
    curves: Mapping[str, Any],
    *,
    metric: str = "F1",
    title: str = "",
    path: str | Path | None = None,
) -> Figure:
    """A metric (F1, precision, recall) against the confidence threshold, per class and mean.

    The bold mean's legend entry gives its best value and the confidence where it is reached,
    the threshold a deployment would pick (``all classes 0.71 at 0.412``).

    Args:
        confidence: ``[K]`` thresholds in ``[0, 1]``, increasing.
        curves: Class name to ``[K]`` metric values at those thresholds.
        metric: The metric's name, on the y axis.
        title: Title above the plot (none when empty).
        path: Where to write a PNG; None writes nothing.

    Returns:
        The figure, one axes with confidence on x and the metric on y, both 0 to 1.

    Raises:
        ConfigError: no curves, or a curve whose length differs from ``confidence``'s.
    """
    if not curves:
        raise ConfigError("no curves to plot", field="curves")
    x = _vector(confidence, "confidence")
    lines = {name: _vector(values, "curves", name, len(x)) for name, values in curves.items()}
    mean = np.nanmean(np.stack(list(lines.values())), axis=0)
    best = int(np.nanargmax(mean)) if np.isfinite(mean).any() else 0
    figure = _figure(9, 6)
    axes = figure.add_subplot()
    mean_label = f"all classes {mean[best]:.2f} at {x[best]:.3f}" if len(x) else "all classes"
    _draw_class_lines(axes, x, lines, None, mean_label)
    _label(axes, "Confidence", metric, title)
    return _finish(figure, path)


def plot_confusion_matrix(
    matrix: Any,
    names: Sequence[str],
    *,
    rows: str,
    normalize: bool = True,
    title: str = "",
    path: str | Path | None = None,
) -> Figure:
    """A confusion matrix as a heat map: true class across, predicted class down.

    Works for detection matrices (pass ``"background"`` as the last name) and for
    classification or segmentation ones. Matrices up to :data:`MAX_ANNOTATED` classes get
    their values written in the cells (values under 0.005 are left blank).

    Args:
        matrix: ``[C, C]`` counts (or any non-negative values).
        names: ``C`` class names, in the matrix's order.
        rows: What the matrix's rows are: ``"predicted"`` (visionkit's and Ultralytics'
            detection matrix, ``[pred, true]``) or ``"true"`` (scikit-learn's and
            torchmetrics' layout, ``[true, pred]``). Required: the two layouts look alike.
        normalize: Divide each true class by its total, so its cells are the shares of it
            predicted as each class (a class that never occurs stays 0).
        title: Title above the plot (none when empty).
        path: Where to write a PNG; None writes nothing.

    Returns:
        The figure: the heat map (true classes on x, predicted on y) and a colour bar.

    Raises:
        ConfigError: a matrix that is not square, non-finite or negative, a name count that
            differs, or ``rows`` not one of the two layouts.
    """
    if rows not in ("predicted", "true"):
        raise ConfigError(f"must be 'predicted' or 'true', got {rows!r}", field="rows")
    values = to_numpy(matrix).astype(np.float64)
    if values.ndim != 2 or values.shape[0] != values.shape[1] or values.size == 0:
        raise ConfigError(f"must be square [C, C], got {list(values.shape)}", field="matrix")
    if not np.isfinite(values).all() or (values < 0).any():
        raise ConfigError("values must be finite and non-negative", field="matrix")
    if len(names) != len(values):
        raise ConfigError(f"{len(names)} names for {len(values)} classes", field="names")
    shown = values if rows == "predicted" else values.T  # shown[pred, true]
    if normalize:
        totals = shown.sum(axis=0, keepdims=True)
        shown = shown / np.where(totals > 0, totals, 1)
    side = min(max(0.45 * len(names) + 3, 6), 16)
    figure = _figure(side, side * 0.85)
    axes = figure.add_subplot()
    top = 1.0 if normalize else max(float(shown.max()), 1.0)
    image = axes.imshow(shown, cmap="Blues", vmin=0.0, vmax=top)
    figure.colorbar(image, ax=axes, shrink=0.8)
    if len(names) <= MAX_ANNOTATED:
        _annotate(axes, shown, top, "{:.2f}" if normalize else "{:.0f}")
    _tick_names(axes, names)
    _label(axes, "True", "Predicted", title)
    return _finish(figure, path)


def plot_training_curves(
    source: str | Path | Mapping[str, Sequence[float]],
    *,
    title: str = "",
    path: str | Path | None = None,
) -> Figure:
    """Every logged loss and metric against the epoch, one panel each, as ``results.png``.

    Args:
        source: A ``results.csv`` (one row per epoch, a header naming the columns, one of them
            ``epoch``; padding around names and values is ignored, an empty value is a gap),
            or a mapping from column name to values with an ``epoch`` column.
        title: Title above the panels (none when empty).
        path: Where to write a PNG; None writes nothing.

    Returns:
        The figure: one axes per column other than ``epoch``, titled with its name, in rows
        of up to five.

    Raises:
        DataError: the file is missing, has no ``epoch`` column or no other column, or holds
            a value that is not a number (the message names the line and the column).
        ConfigError: the same problems in a mapping, or columns of different lengths.
    """
    if isinstance(source, Mapping):
        columns = {str(name): _vector(values, str(name)) for name, values in source.items()}
        if len({len(values) for values in columns.values()}) > 1:
            raise ConfigError("columns differ in length", field="source")
        error, file = ConfigError, None
    else:
        columns, error, file = _read_results(Path(source)), DataError, source
    if "epoch" not in columns:
        raise error("no 'epoch' column", file=file, field="epoch")
    epoch = columns.pop("epoch")
    if not columns:
        raise error("nothing to plot besides 'epoch'", file=file, field="source")
    ncols = min(len(columns), 5)
    nrows = math.ceil(len(columns) / ncols)
    figure = _figure(3.2 * ncols, 2.6 * nrows + 0.4 * bool(title))
    for index, (name, values) in enumerate(columns.items()):
        axes = figure.add_subplot(nrows, ncols, index + 1)
        axes.plot(epoch, values, marker=".", color=_rgb(9), linewidth=1.5)
        axes.set_title(name, fontsize=10)
        axes.grid(alpha=0.3)
        if index >= len(columns) - ncols:
            axes.set_xlabel("epoch")
    if title:
        figure.suptitle(title)
    return _finish(figure, path)


def _figure(width: float, height: float) -> Figure:
    """A new figure of ``width`` x ``height`` inches on its own Agg canvas (no pyplot)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _finish(figure: Figure, path: str | Path | None) -> Figure:
    """Write ``figure`` to ``path`` as a PNG, atomically, when a path is given."""
    if path is None:
        return figure
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Not tempfile.mkstemp: its files are private (0600); this one gets the umask's mode.
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        with temporary.open("xb") as file:
            figure.savefig(file, format="png", dpi=DPI)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return figure


def _rgb(index: int) -> tuple[float, float, float]:
    """Palette colour ``index`` as matplotlib's 0-1 RGB."""
    red, green, blue = color_for(index)
    return red / 255, green / 255, blue / 255


def _draw_class_lines(
    axes: Axes,
    x: np.ndarray,
    lines: Mapping[str, np.ndarray],
    labels: Mapping[str, str] | None,
    mean_label: str,
) -> None:
    """One thin line per class and a bold mean line; legend entries are ``labels`` or names.

    The ``k``-th class is drawn in palette colour ``k``, or in grey when there are more than
    :data:`MAX_LEGEND` classes (then only the mean is in the legend).
    """
    few = len(lines) <= MAX_LEGEND
    for index, (name, y) in enumerate(lines.items()):
        color, label = (_rgb(index), labels[name] if labels else name) if few else (_GREY, None)
        axes.plot(x, y, linewidth=1, color=color, label=label)
    if len(lines) > 1:
        mean = np.nanmean(np.stack(list(lines.values())), axis=0)
        axes.plot(x, mean, linewidth=3, color=_MEAN_COLOR, label=mean_label)
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1.02)
    axes.grid(alpha=0.3)
    if axes.get_legend_handles_labels()[0]:
        axes.legend(loc="upper left", bbox_to_anchor=(1.02, 1), fontsize=8, frameon=False)


def _label(axes: Axes, xlabel: str, ylabel: str, title: str) -> None:
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    if title:
        axes.set_title(title)


def _annotate(axes: Axes, shown: np.ndarray, top: float, template: str) -> None:
    """Write each cell's value in it, white on dark cells; tiny values stay blank."""
    fontsize = 9 if len(shown) <= 12 else 6
    for (row, col), value in np.ndenumerate(shown):
        if value >= 0.005:
            color = "white" if value > 0.5 * top else "black"
            text = template.format(value)
            axes.text(col, row, text, ha="center", va="center", color=color, fontsize=fontsize)


def _tick_names(axes: Axes, names: Sequence[str]) -> None:
    """Class names on both axes (rotated across the bottom), or none for very many classes."""
    if len(names) > 60:
        axes.set_xticks([])
        axes.set_yticks([])
        return
    ticks = np.arange(len(names))
    fontsize = 9 if len(names) <= 20 else 6
    axes.set_xticks(ticks, [str(n) for n in names], rotation=90, fontsize=fontsize)
    axes.set_yticks(ticks, [str(n) for n in names], fontsize=fontsize)


def _pr_line(name: str, pair: tuple[Any, Any]) -> np.ndarray:
    """A class's interpolated precision on :data:`_RECALL_GRID`, NaN points dropped.

    An empty curve (no detections) is 0 everywhere; one with points but none finite (no
    ground truth) is NaN everywhere, so it is not drawn and stays out of the mean.
    """
    recall, precision = (_vector(values, "curves", name) for values in pair)
    if recall.shape != precision.shape:
        raise ConfigError(
            f"recall has {len(recall)} points, precision {len(precision)}",
            record=f"class {name!r}",
            field="curves",
        )
    keep = np.isfinite(recall) & np.isfinite(precision)
    if len(recall) and not keep.any():
        return np.full(len(_RECALL_GRID), np.nan)
    recall, precision = recall[keep], precision[keep]
    order = np.argsort(recall, kind="stable")
    best_beyond = np.maximum.accumulate(precision[order][::-1])[::-1]
    first = np.searchsorted(recall[order], _RECALL_GRID, side="left")
    return np.append(best_beyond, 0.0)[first]  # past the last point: 0


def _vector(
    values: Any, field: str, name: str | None = None, length: int | None = None
) -> np.ndarray:
    """``values`` as a 1-D float array (of ``length`` entries when given), else ConfigError."""
    record = None if name is None else f"class {name!r}"
    try:
        array = to_numpy(values).astype(np.float64)
    except (TypeError, ValueError):
        raise ConfigError("values must be numbers", record=record, field=field) from None
    if array.ndim != 1 or (length is not None and len(array) != length):
        expected = "[K]" if length is None else f"[{length}]"
        raise ConfigError(
            f"expected shape {expected}, got {list(array.shape)}", record=record, field=field
        )
    return array


def _read_results(path: Path) -> dict[str, np.ndarray]:
    """The columns of a ``results.csv``, as float arrays (empty cells are NaN)."""
    try:
        with path.open(newline="") as file:
            rows = list(csv.reader(file))
    except OSError as error:
        raise DataError(f"cannot read the file: {error.strerror}", file=path) from None
    if not rows:
        raise DataError("the file is empty", file=path)
    header = [name.strip() for name in rows[0]]
    columns: dict[str, list[float]] = {name: [] for name in header}
    for line, row in enumerate(rows[1:], start=2):
        if not row:
            continue  # a blank line
        if len(row) != len(header):
            raise DataError(
                f"{len(row)} values for {len(header)} columns", file=path, record=f"line {line}"
            )
        for name, text in zip(header, row, strict=True):
            try:
                columns[name].append(float(text) if text.strip() else math.nan)
            except ValueError:
                raise DataError(
                    f"{text.strip()!r} is not a number",
                    file=path,
                    record=f"line {line}",
                    field=name,
                ) from None
    return {name: np.asarray(values) for name, values in columns.items()}
