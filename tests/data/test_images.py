"""Tests for visionkit.data.images: every Pillow mode to RGB, EXIF orientation, broken files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import skimage.data
from PIL import ExifTags, Image, ImageFile

from visionkit.data.images import (
    ALPHA_BACKGROUND,
    image_size,
    is_image_file,
    read_image,
    read_mask,
    verify_image,
)
from visionkit.errors import ImageError


def _save(image: Image.Image, path: Path, **kwargs: object) -> Path:
    image.save(path, **kwargs)
    return path


def _pixel(path: Path) -> list[int]:
    return read_image(path)[0, 0].tolist()


def test_rgb_png_round_trips_a_real_photo(tmp_path: Path) -> None:
    photo = skimage.data.astronaut()
    path = _save(Image.fromarray(photo), tmp_path / "astronaut.png")
    image = read_image(path)
    assert image.dtype == np.uint8 and image.shape == (512, 512, 3)
    np.testing.assert_array_equal(image, photo)


def test_real_jpeg_decodes_close_to_the_original(tmp_path: Path) -> None:
    photo = skimage.data.chelsea()
    path = _save(Image.fromarray(photo), tmp_path / "chelsea.jpg", quality=95)
    image = read_image(path)
    assert image.shape == photo.shape
    assert np.abs(image.astype(int) - photo.astype(int)).mean() < 3
    assert image_size(path) == (451, 300)


def test_gray_photo_becomes_three_equal_channels(tmp_path: Path) -> None:
    camera = skimage.data.camera()
    image = read_image(_save(Image.fromarray(camera), tmp_path / "camera.png"))
    assert image.shape == (512, 512, 3)
    for channel in range(3):
        np.testing.assert_array_equal(image[:, :, channel], camera)


def test_one_bit_maps_to_black_and_white(tmp_path: Path) -> None:
    bits = Image.new("1", (2, 1))
    bits.putpixel((1, 0), 1)
    image = read_image(_save(bits, tmp_path / "bits.png"))
    assert image[0].tolist() == [[0, 0, 0], [255, 255, 255]]


def test_palette_gives_palette_colours(tmp_path: Path) -> None:
    palette = Image.new("P", (2, 1))
    palette.putpalette([0, 0, 0, 200, 100, 50] + [0] * 762)
    palette.putpixel((1, 0), 1)
    image = read_image(_save(palette, tmp_path / "palette.png"))
    assert image[0].tolist() == [[0, 0, 0], [200, 100, 50]]


def test_palette_transparency_composites_over_the_background(tmp_path: Path) -> None:
    palette = Image.new("P", (2, 1))
    palette.putpalette([10, 20, 30, 200, 100, 50] + [0] * 762)
    palette.putpixel((1, 0), 1)
    path = _save(palette, tmp_path / "palette.png", transparency=0)
    assert read_image(path)[0].tolist() == [list(ALPHA_BACKGROUND), [200, 100, 50]]


@pytest.mark.parametrize(
    ("alpha", "expected"),
    [(255, [10, 20, 30]), (0, list(ALPHA_BACKGROUND)), (128, [132, 137, 142])],
)
def test_rgba_composites_over_the_background(tmp_path: Path, alpha: int, expected: list) -> None:
    path = _save(Image.new("RGBA", (3, 2), (10, 20, 30, alpha)), tmp_path / "rgba.png")
    assert _pixel(path) == expected


def test_gray_with_alpha_composites_over_the_background(tmp_path: Path) -> None:
    path = _save(Image.new("LA", (3, 2), (0, 0)), tmp_path / "la.png")
    assert _pixel(path) == list(ALPHA_BACKGROUND)


@pytest.mark.parametrize(
    ("cmyk", "expected"), [((0, 0, 0, 0), [255, 255, 255]), ((0, 0, 0, 255), [0, 0, 0])]
)
def test_cmyk_converts_to_rgb(tmp_path: Path, cmyk: tuple, expected: list) -> None:
    for suffix in ("tiff", "jpg"):
        path = _save(Image.new("CMYK", (4, 4), cmyk), tmp_path / f"cmyk.{suffix}")
        assert np.abs(np.array(_pixel(path)) - expected).max() <= 2


def test_16bit_png_scales_the_full_range(tmp_path: Path) -> None:
    depth = np.array([[0, 257, 1000, 32896, 65535]], dtype=np.uint16)
    path = _save(Image.fromarray(depth), tmp_path / "depth.png")
    assert Image.open(path).mode.startswith("I;16")
    assert read_image(path)[0, :, 0].tolist() == [0, 1, 4, 128, 255]


def test_32bit_integer_is_read_as_16bit_and_clipped(tmp_path: Path) -> None:
    values = np.array([[-5, 65535, 70000]], dtype=np.int32)
    path = _save(Image.fromarray(values, mode="I"), tmp_path / "int.tiff")
    assert read_image(path)[0, :, 0].tolist() == [0, 255, 255]


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([0.0, 0.5, 1.0], [0, 128, 255]),
        ([-2.0, 0.0, 2.0], [0, 128, 255]),
        ([3.0, 3.0, 3.0], [0, 0, 0]),
        ([np.nan, 0.0, 4.0], [0, 0, 255]),
    ],
)
def test_float_is_stretched_to_its_own_range(tmp_path: Path, values: list, expected: list) -> None:
    path = _save(Image.fromarray(np.array([values], dtype=np.float32)), tmp_path / "f.tiff")
    assert Image.open(path).mode == "F"
    image = read_image(path)
    assert image.dtype == np.uint8 and image[0, :, 0].tolist() == expected


def _two_halves(width: int = 40, height: int = 20) -> Image.Image:
    """Stored image: left half red, right half blue."""
    pixels = np.zeros((height, width, 3), dtype=np.uint8)
    pixels[:, : width // 2, 0] = 255
    pixels[:, width // 2 :, 2] = 255
    return Image.fromarray(pixels)


def _with_orientation(orientation: int) -> Image.Exif:
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = orientation
    return exif


# Where the stored left (red) half ends up once each orientation is applied.
@pytest.mark.parametrize(
    ("orientation", "size", "red_at"),
    [(1, (40, 20), "left"), (3, (40, 20), "right"), (6, (20, 40), "top"), (8, (20, 40), "bottom")],
)
@pytest.mark.parametrize("suffix", ["jpg", "png"])
def test_exif_orientation_is_applied(
    tmp_path: Path, orientation: int, size: tuple, red_at: str, suffix: str
) -> None:
    path = _save(_two_halves(), tmp_path / f"o.{suffix}", exif=_with_orientation(orientation))
    image = read_image(path)
    assert image_size(path) == size
    assert image.shape == (size[1], size[0], 3)
    corners = {
        "left": image[10, 2],
        "right": image[10, -3],
        "top": image[2, 10],
        "bottom": image[-3, 10],
    }
    assert corners[red_at][0] > 200 and corners[red_at][2] < 60


@pytest.mark.parametrize("suffix", ["jpg", "png"])
def test_truncated_file_raises_naming_the_file(tmp_path: Path, suffix: str) -> None:
    whole = _save(Image.fromarray(skimage.data.astronaut()), tmp_path / f"whole.{suffix}")
    cut = tmp_path / f"cut.{suffix}"
    data = whole.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    with pytest.raises(ImageError, match=str(cut)):
        read_image(cut)
    error = verify_image(cut)
    assert isinstance(error, ImageError) and str(cut) in str(error)
    assert verify_image(whole) is None
    assert image_size(cut) == (512, 512)  # the header is intact


def test_missing_file_folder_and_non_image_raise(tmp_path: Path) -> None:
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    for path, reason in [
        (tmp_path / "missing.png", "no such image file"),
        (tmp_path, "folder"),
        (text, "not an image"),
    ]:
        for read in (read_image, image_size, read_mask):
            with pytest.raises(ImageError, match=reason):
                read(path)
        assert isinstance(verify_image(path), ImageError)


def test_read_mask_keeps_gray_values(tmp_path: Path) -> None:
    values = np.array([[0, 1, 2], [255, 7, 0]], dtype=np.uint8)
    mask = read_mask(_save(Image.fromarray(values), tmp_path / "mask.png"))
    assert mask.dtype == np.uint8
    np.testing.assert_array_equal(mask, values)


def test_read_mask_gives_palette_indices_not_colours(tmp_path: Path) -> None:
    indices = np.array([[0, 1], [2, 255]], dtype=np.uint8)
    palette = Image.fromarray(indices, mode="P")
    palette.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0] + [0] * 756 + [224, 224, 192])
    np.testing.assert_array_equal(read_mask(_save(palette, tmp_path / "voc.png")), indices)


@pytest.mark.parametrize(
    "image",
    [Image.new("RGB", (2, 2)), Image.new("RGBA", (2, 2)), Image.new("I;16", (2, 2))],
    ids=["rgb", "rgba", "16bit"],
)
def test_read_mask_rejects_other_modes(tmp_path: Path, image: Image.Image) -> None:
    path = _save(image, tmp_path / "mask.png")
    with pytest.raises(ImageError, match=r"gray.*palette") as raised:
        read_mask(path)
    assert str(path) in str(raised.value)


def test_is_image_file_looks_at_the_suffix_only(tmp_path: Path) -> None:
    assert is_image_file("a/b.JPG") and is_image_file(tmp_path / "x.tiff")
    assert not is_image_file("labels.txt") and not is_image_file("photo")
