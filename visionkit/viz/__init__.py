"""Pictures of data and predictions: boxes, masks and tags on images, image grids, and
plots (PR curves, confusion matrices, training curves).

Layer 3: depends on :mod:`visionkit.errors`, numpy, Pillow and (imported when a plot is
drawn) matplotlib only, never on the data layer or torch (tensors are accepted, recognised
by their methods), so the trainer, the CLI and every tool above can draw without loading a
model.
"""

from visionkit.viz.draw import draw_detections, draw_semantic
from visionkit.viz.grid import make_grid, save_image
from visionkit.viz.palette import PALETTE, color_for
from visionkit.viz.plots import (
    plot_confusion_matrix,
    plot_metric_curves,
    plot_pr_curves,
    plot_training_curves,
)

__all__ = [
    "PALETTE",
    "color_for",
    "draw_detections",
    "draw_semantic",
    "make_grid",
    "plot_confusion_matrix",
    "plot_metric_curves",
    "plot_pr_curves",
    "plot_training_curves",
    "save_image",
]
