"""The ``shapes-shortcut`` generator: one shape per image, and a background hue that tells.

Each image shows one object whose class is the image label, drawn as in ``shapes``. The
background's hue is a *cue*: every class owns one hue (evenly spaced on the colour wheel),
and the background takes the hue of the label's class with probability ``strength``, else
that of another class. A classifier can then score well by reading the background alone;
the ``counterfactual`` split always shows another class's hue and exposes it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from visionkit.data.synthetic._canvas import Canvas, Scene, generator_rng
from visionkit.data.synthetic._shapes import (
    CATEGORIES,
    check_sizes,
    log_uniform,
    random_category,
    random_shape,
    textured,
)
from visionkit.data.synthetic._textures import hue_colours
from visionkit.data.synthetic.scenes import background, random_position
from visionkit.errors import ConfigError

_STREAM = 1  # random stream of this generator (see generator_rng)
_HUE_JITTER = 0.04  # turns; classes' hues are 1/6 apart, so neighbours never meet


@dataclass(frozen=True)
class ShortcutConfig:
    """Settings of the ``shapes-shortcut`` generator.

    Args:
        imgsz: Image side in pixels (images are square).
        strength: Probability (0-1) that the background cue names the image's class.
        counterfactual: Always show another class's cue (a split that breaks the shortcut).
        min_size: Smallest object size (square root of its area) as a fraction of ``imgsz``.
        max_size: Largest object size as a fraction of ``imgsz`` (at most 0.5).
    """

    imgsz: int = 256
    strength: float = 0.9
    counterfactual: bool = False
    min_size: float = 0.2
    max_size: float = 0.5

    def __post_init__(self) -> None:
        check_sizes(self.imgsz, self.min_size, self.max_size)
        if not 0 <= self.strength <= 1:
            raise ConfigError(f"must be in [0, 1], got {self.strength}", field="strength")


@dataclass(frozen=True, eq=False)
class ShortcutSample:
    """One image of ``shapes-shortcut``.

    Args:
        scene: The image and the annotations of its one object.
        label: Category id of the object: the image's class.
        cue: Category id whose hue the background shows.
    """

    scene: Scene
    label: int
    cue: int

    @property
    def image(self) -> np.ndarray:
        """uint8 ``[H, W, 3]`` RGB."""
        return self.scene.image

    @property
    def agrees(self) -> bool:
        """Whether the background cue names the image's class."""
        return self.cue == self.label


def cue_hue(cue: int) -> float:
    """The background hue (in turns, 0-1) of class ``cue``."""
    return (cue - 1) / len(CATEGORIES)


def make_shortcut_sample(
    seed: int,
    index: int,
    config: ShortcutConfig = ShortcutConfig(),
) -> ShortcutSample:
    """Make sample ``index`` of the ``shapes-shortcut`` data set drawn with ``seed``.

    Args:
        seed: Data set seed (>= 0).
        index: Sample index (>= 0); any index can be made alone, in any order.
        config: Generator settings.

    Returns:
        The sample; the same arguments always give identical arrays.

    Example:
        >>> sample = make_shortcut_sample(0, 3, ShortcutConfig(counterfactual=True))
        >>> sample.agrees, sample.scene.labels.tolist() == [sample.label]
        (False, True)
    """
    rng, label = _label_draw(seed, index)
    cue = _draw_cue(rng, label, config)
    hue = cue_hue(cue) + rng.uniform(-_HUE_JITTER, _HUE_JITTER)
    canvas = Canvas(background(rng, config.imgsz, hue_colours(rng, hue)))
    size = log_uniform(rng, config.min_size * config.imgsz, config.max_size * config.imgsz)
    mask = random_shape(rng, label, size)
    x, y = random_position(rng, mask.shape, config.imgsz)
    canvas.paint(textured(rng, label, mask), x, y)
    return ShortcutSample(canvas.scene(), label, cue)


def shortcut_label(seed: int, index: int) -> int:
    """The class (category id) of sample ``index`` of ``shapes-shortcut`` with ``seed``.

    It is the sample's first random draw, so this costs microseconds where rendering costs
    milliseconds: an exporter picks the indices of the classes it wants before drawing any.
    The label does not depend on the :class:`ShortcutConfig`.

    Example:
        >>> shortcut_label(0, 3) == make_shortcut_sample(0, 3).label
        True
    """
    return _label_draw(seed, index)[1]


def _label_draw(seed: int, index: int) -> tuple[np.random.Generator, int]:
    """The sample's random source and its label, drawn first from it."""
    rng = generator_rng(seed, index, _STREAM)
    return rng, random_category(rng)


def _draw_cue(rng: np.random.Generator, label: int, config: ShortcutConfig) -> int:
    """The label itself with probability ``strength`` (never when counterfactual), else
    another class, uniformly."""
    if not config.counterfactual and rng.random() < config.strength:
        return label
    other = int(rng.integers(1, len(CATEGORIES)))  # one of the K - 1 other ids
    return other if other < label else other + 1
