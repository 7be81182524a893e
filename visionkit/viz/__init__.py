"""Pictures of data and predictions: boxes, masks and tags on images, and image grids.

Layer 3: depends on :mod:`visionkit.errors`, numpy and Pillow only, never
on the data layer or torch (tensors are accepted, recognised by their methods), so the
trainer, the CLI and every tool above can draw without loading a model.
"""

from visionkit.viz.draw import draw_detections, draw_semantic
from visionkit.viz.grid import make_grid, save_image
from visionkit.viz.palette import PALETTE, color_for

__all__ = ["PALETTE", "color_for", "draw_detections", "draw_semantic", "make_grid", "save_image"]
