"""Synthetic labelled data, deterministic from a seed: the toolkit's offline data sets.

Three generators, each a pure function of ``(seed, index, config)``:

- ``shapes`` (:func:`make_scene`): textured shapes overlapping on textured backgrounds, with
  boxes, visible instance masks, class labels and a semantic map;
- ``shapes-shortcut`` (:func:`make_shortcut_sample`): one shape per image and a background
  hue that names its class with a chosen probability, plus a counterfactual split that
  breaks it;
- ``shapes-video`` (:func:`make_clip`): moving, occluding shapes with track ids and exact
  forward optical flow.

The classes are :data:`CATEGORIES`; :func:`scene_annotations` turns any generator's objects
into :class:`~visionkit.data.records.Annotation` records for the dataset format writers.
Only numpy and PIL are used (pycocotools for RLE), never torch.

Example:
    >>> scene = make_scene(seed=0, index=0)
    >>> scene.image.dtype, scene.boxes.dtype, scene.labels.dtype, scene.masks.dtype
    (dtype('uint8'), dtype('float32'), dtype('int64'), dtype('bool'))
"""

from visionkit.data.synthetic._annotations import scene_annotations
from visionkit.data.synthetic._canvas import Scene
from visionkit.data.synthetic._shapes import CATEGORIES
from visionkit.data.synthetic.scenes import ShapesConfig, make_scene
from visionkit.data.synthetic.shortcut import ShortcutConfig, ShortcutSample, make_shortcut_sample
from visionkit.data.synthetic.video import Clip, Frame, VideoConfig, make_clip

GENERATORS = ("shapes", "shapes-shortcut", "shapes-video")
"""Names of the generators, as the CLI and exporters call them."""

__all__ = [
    "CATEGORIES",
    "GENERATORS",
    "Clip",
    "Frame",
    "Scene",
    "ShapesConfig",
    "ShortcutConfig",
    "ShortcutSample",
    "VideoConfig",
    "make_clip",
    "make_scene",
    "make_shortcut_sample",
    "scene_annotations",
]
