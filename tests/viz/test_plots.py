"""Plots: the saved PNGs show what was drawn where it belongs, saving is atomic, bad input errs."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import confusion_matrix

from visionkit.errors import ConfigError, DataError
from visionkit.viz import color_for
from visionkit.viz.plots import (
    DPI,
    plot_confusion_matrix,
    plot_metric_curves,
    plot_pr_curves,
    plot_training_curves,
)


def _pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB")).astype(int)


def _at(pixels: np.ndarray, axes, x: float, y: float) -> np.ndarray:
    """The PNG pixel under data point ``(x, y)`` (display y counts up from the bottom)."""
    col, row = axes.transData.transform((x, y))
    return pixels[pixels.shape[0] - round(row), round(col)]


def _near(pixels, axes, x, y, color, tolerance=40) -> bool:
    """Whether a pixel within 2 rows of ``(x, y)`` has ``color`` (lines are antialiased)."""
    col, row = axes.transData.transform((x, y))
    row, col = pixels.shape[0] - round(row), round(col)
    window = pixels[row - 2 : row + 3, col]
    return bool((np.abs(window - np.asarray(color)).max(axis=1) <= tolerance).any())


def test_pr_curves_draw_each_class_and_the_mean(tmp_path):
    # a: precision 0.5 up to recall 1; b: 0.9 up to recall 1; the mean: 0.7.
    curves = {"a": ([0.5, 1.0], [0.5, 0.5]), "b": (np.array([1.0]), np.array([0.9]))}
    figure = plot_pr_curves(curves, ap={"a": 0.5, "b": 0.9}, path=tmp_path / "pr.png")
    pixels, axes = _pixels(tmp_path / "pr.png"), figure.axes[0]
    assert pixels.shape == (6 * DPI, 9 * DPI, 3)
    assert _near(pixels, axes, 0.3, 0.5, color_for(0))
    assert _near(pixels, axes, 0.3, 0.9, color_for(1))
    assert _near(pixels, axes, 0.3, 0.7, (26, 64, 166))  # the bold mean
    assert (_at(pixels, axes, 0.3, 0.3) == 255).all()  # nothing drawn there
    legend = [text.get_text() for text in axes.get_legend().get_texts()]
    assert legend == ["a 0.500", "b 0.900", "all classes 0.700 mAP"]


def test_pr_curves_are_interpolated_precision():
    # Recall 0.25 at precision 1, 0.5 at 0.5, 0.75 at 0.75: the drawn precision at recall r is
    # the best at recall >= r, so 1 up to 0.25, then 0.75 up to 0.75, then 0.
    figure = plot_pr_curves({"a": ([0.25, 0.5, 0.75], [1.0, 0.5, 0.75])})
    x, y = figure.axes[0].lines[0].get_data()
    expected = np.select([x <= 0.25, x <= 0.75], [1.0, 0.75], 0.0)
    np.testing.assert_allclose(y, expected)
    assert len(figure.axes[0].lines) == 1  # one class: no separate mean line


def test_pr_class_without_ground_truth_is_left_out_of_the_mean():
    figure = plot_pr_curves({"a": ([1.0], [0.8]), "none": ([np.nan], [0.0]), "b": ([], [])})
    mean = figure.axes[0].lines[-1].get_ydata()
    np.testing.assert_allclose(mean[:-1], 0.4)  # (0.8 + 0) / 2: "none" does not count


def test_confusion_matrix_hot_cell_is_darkest_where_it_belongs(tmp_path):
    names = ["cat", "dog", "bird", "background"]
    matrix = np.ones((4, 4), int)
    matrix[2, 1] = 40  # 40 dogs predicted as birds; rows are predicted
    figure = plot_confusion_matrix(
        matrix, names, rows="predicted", normalize=False, path=tmp_path / "cm.png"
    )
    pixels, axes = _pixels(tmp_path / "cm.png"), figure.axes[0]
    # Sample each cell off its centre, away from the written value: true across, predicted down.
    darkness = np.array(
        [[-_at(pixels, axes, t + 0.35, p + 0.35).sum() for t in range(4)] for p in range(4)]
    )
    assert np.unravel_index(darkness.argmax(), darkness.shape) == (2, 1)
    assert [t.get_text() for t in axes.get_xticklabels()] == names
    assert "40" in [t.get_text() for t in axes.texts]
    # The same matrix given in the [true, pred] layout draws the same picture.
    plot_confusion_matrix(matrix.T, names, rows="true", normalize=False, path=tmp_path / "t.png")
    np.testing.assert_array_equal(_pixels(tmp_path / "t.png"), pixels)


def test_confusion_matrix_normalizes_each_true_class_like_sklearn():
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 3, 200)
    y_pred = np.where(rng.uniform(size=200) < 0.7, y_true, rng.integers(0, 3, 200))
    counts = confusion_matrix(y_true, y_pred)  # [true, pred]
    figure = plot_confusion_matrix(counts, ["a", "b", "c"], rows="true")
    shown = np.asarray(figure.axes[0].images[0].get_array())  # [pred, true] as drawn
    np.testing.assert_allclose(shown.T, confusion_matrix(y_true, y_pred, normalize="true"))


def test_confusion_matrix_without_annotations_for_many_classes():
    figure = plot_confusion_matrix(np.eye(40), [str(i) for i in range(40)], rows="true")
    assert len(figure.axes[0].texts) == 0


def test_metric_curves_mark_the_best_mean(tmp_path):
    x = np.linspace(0, 1, 101)
    curves = {"a": 4 * x * (1 - x), "b": 2 * x * (1 - x)}  # mean 3x(1 - x): 0.75 at 0.5
    figure = plot_metric_curves(x, curves, metric="F1", path=tmp_path / "f1.png")
    legend = [text.get_text() for text in figure.axes[0].get_legend().get_texts()]
    assert legend == ["a", "b", "all classes 0.75 at 0.500"]
    assert figure.axes[0].get_ylabel() == "F1"
    assert _near(_pixels(tmp_path / "f1.png"), figure.axes[0], 0.5, 1.0, color_for(0))


RESULTS = """\
                  epoch,         train/box_loss,       metrics/mAP50(B)
                      1,                    1.5,                    0.1
                      2,                    1.2,
                      3,                    1.0,                    0.3
"""


def test_training_curves_from_an_ultralytics_results_csv(tmp_path):
    (tmp_path / "results.csv").write_text(RESULTS)
    figure = plot_training_curves(tmp_path / "results.csv", path=tmp_path / "results.png")
    assert [axes.get_title() for axes in figure.axes] == ["train/box_loss", "metrics/mAP50(B)"]
    x, y = figure.axes[0].lines[0].get_data()
    np.testing.assert_array_equal(x, [1, 2, 3])
    np.testing.assert_array_equal(y, [1.5, 1.2, 1.0])
    assert np.isnan(figure.axes[1].lines[0].get_ydata()[1])  # an empty value is a gap
    pixels = _pixels(tmp_path / "results.png")
    assert _near(pixels, figure.axes[0], 2, 1.2, color_for(9))


def test_training_curves_from_columns_in_rows_of_five():
    columns = {"epoch": [0, 1]} | {f"m{i}": [i, i + 1] for i in range(7)}
    figure = plot_training_curves(columns, title="run")
    assert len(figure.axes) == 7
    assert figure.axes[5].get_subplotspec().rowspan.start == 1
    assert figure.get_suptitle() == "run"


def test_training_curves_bad_input(tmp_path):
    path = tmp_path / "results.csv"
    path.write_text("loss\n1.0\n")
    with pytest.raises(DataError, match=r"results\.csv: field 'epoch'"):
        plot_training_curves(path)
    path.write_text("epoch,loss\n1,1.0\n2,nan?\n")
    with pytest.raises(DataError, match=r"results\.csv: line 3: field 'loss': 'nan\?'"):
        plot_training_curves(path)
    with pytest.raises(DataError, match="cannot read"):
        plot_training_curves(tmp_path / "missing.csv")
    with pytest.raises(ConfigError, match="differ in length"):
        plot_training_curves({"epoch": [1, 2], "loss": [1.0]})
    with pytest.raises(ConfigError, match="besides 'epoch'"):
        plot_training_curves({"epoch": [1, 2]})


def test_bad_curves_and_matrices_are_refused():
    with pytest.raises(ConfigError, match="no curves"):
        plot_pr_curves({})
    with pytest.raises(ConfigError, match="class 'a': field 'curves'"):
        plot_pr_curves({"a": ([0.1, 0.2], [1.0])})
    with pytest.raises(ConfigError, match="field 'ap'"):
        plot_pr_curves({"a": ([0.1], [1.0])}, ap={"b": 0.5})
    with pytest.raises(ConfigError, match="class 'a': field 'curves'"):
        plot_metric_curves(np.linspace(0, 1, 5), {"a": np.zeros(4)})
    with pytest.raises(ConfigError, match="square"):
        plot_confusion_matrix(np.zeros((2, 3)), ["a", "b"], rows="true")
    with pytest.raises(ConfigError, match="names"):
        plot_confusion_matrix(np.zeros((2, 2)), ["a"], rows="true")
    with pytest.raises(ConfigError, match="non-negative"):
        plot_confusion_matrix(-np.eye(2), ["a", "b"], rows="true")
    with pytest.raises(ConfigError, match="rows"):
        plot_confusion_matrix(np.eye(2), ["a", "b"], rows="columns")


def test_saving_replaces_the_file_atomically(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    path = tmp_path / "plots" / "pr.png"
    plot_pr_curves({"a": ([1.0], [1.0])}, path=path)
    plot_pr_curves({"a": ([1.0], [0.5])}, path=path)  # over an existing file
    assert [p.name for p in path.parent.iterdir()] == ["pr.png"]
    before = path.read_bytes()

    def broken_savefig(self, file, **kwargs):
        file.write(b"half a png")
        raise RuntimeError("disk full")

    monkeypatch.setattr(Figure, "savefig", broken_savefig)
    with pytest.raises(RuntimeError, match="disk full"):
        plot_pr_curves({"a": ([1.0], [0.2])}, path=path)
    assert path.read_bytes() == before  # the old plot is intact, no temporary file is left
    assert [p.name for p in path.parent.iterdir()] == ["pr.png"]


def test_no_pyplot_and_matplotlib_only_when_plotting():
    code = (
        "import sys, visionkit.viz.plots as plots\n"
        "print('matplotlib' in sys.modules)\n"
        "plots.plot_pr_curves({'a': ([1.0], [1.0])})\n"
        "print('matplotlib' in sys.modules, 'matplotlib.pyplot' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "True", "False"]
