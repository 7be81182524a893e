"""Image grids: cell arithmetic, letterboxing, titles, and saving PNG files."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from visionkit.errors import ConfigError
from visionkit.viz import make_grid, save_image
from visionkit.viz.grid import BACKGROUND


def _tiles(count: int, height: int = 30, width: int = 40) -> list[np.ndarray]:
    return [np.full((height, width, 3), 10 * (i + 1), dtype=np.uint8) for i in range(count)]


@pytest.mark.parametrize(
    ("count", "ncols", "rows", "cols"),
    [
        (5, 2, 3, 2),
        (5, None, 2, 3),
        (4, None, 2, 2),
        (1, None, 1, 1),
        (3, 10, 1, 3),
    ],
)
def test_grid_shape(count, ncols, rows, cols):
    grid = make_grid(_tiles(count), ncols=ncols, pad=3)
    assert grid.shape == (rows * 30 + (rows + 1) * 3, cols * 40 + (cols + 1) * 3, 3)
    assert grid.dtype == np.uint8


def test_tiles_are_placed_row_by_row():
    grid = make_grid(_tiles(3), ncols=2, pad=2)
    assert grid[2, 2, 0] == 10 and grid[2, 44, 0] == 20 and grid[34, 2, 0] == 30
    assert (grid[34:, 44:] == BACKGROUND).all()  # the empty fourth cell
    assert (grid[:2] == BACKGROUND).all()  # padding


def test_images_of_different_sizes_are_letterboxed():
    small = np.full((15, 20, 3), 50, dtype=np.uint8)  # half size: scaled up to fill the cell
    tall = np.full((30, 20, 3), 90, dtype=np.uint8)  # narrow: bars left and right
    grid = make_grid([np.zeros((30, 40, 3), np.uint8), small, tall], ncols=3, pad=0)
    assert grid.shape == (30, 120, 3)
    assert (grid[:, 40:80] == 50).all()
    assert (grid[:, 90:110] == 90).all()
    assert (grid[:, 80:90] == BACKGROUND).all() and (grid[:, 110:] == BACKGROUND).all()


def test_gray_images_become_rgb():
    grid = make_grid([np.zeros((30, 40), np.uint8), _tiles(1)[0]], pad=0)
    assert grid.shape == (30, 80, 3)


def test_titles_add_a_strip_with_text():
    plain = make_grid(_tiles(4), ncols=2, pad=2)
    titled = make_grid(_tiles(4), ncols=2, pad=2, titles=["a", "b", "c", "a very long title"])
    strip = (titled.shape[0] - plain.shape[0]) // 2
    assert strip > 0 and titled.shape[1] == plain.shape[1]
    assert (titled[2 : 2 + strip, 2:42] < BACKGROUND).any()  # text was written
    assert (titled[2 + strip : 32 + strip, 2:42] == 10).all()  # the tile sits below it


def test_bad_arguments_are_refused():
    with pytest.raises(ConfigError, match="no images"):
        make_grid([])
    with pytest.raises(ConfigError, match="titles"):
        make_grid(_tiles(2), titles=["one"])
    with pytest.raises(ConfigError, match="uint8"):
        make_grid([np.zeros((4, 4, 3), np.float32)])


def test_save_image_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (17, 23, 3), dtype=np.uint8)
    path = save_image(rgb, tmp_path / "a" / "b" / "grid.png")
    assert (np.asarray(Image.open(path)) == rgb).all()
    gray = rgb[:, :, 0]
    bare = save_image(gray, tmp_path / "no_suffix")
    with Image.open(bare) as reloaded:
        assert reloaded.format == "PNG" and (np.asarray(reloaded) == gray).all()
