"""Text on drawings: Pillow's bundled font, so nothing is looked up or downloaded."""

from __future__ import annotations

from functools import lru_cache

from PIL import ImageDraw, ImageFont

Font = ImageFont.FreeTypeFont | ImageFont.ImageFont


@lru_cache(maxsize=16)
def default_font(size: int) -> Font:
    """Pillow's built-in font at ``size`` pixels (Pillow >= 10.1 scales it; older ones cannot)."""
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow 10.0: one fixed-size bitmap font
        return ImageFont.load_default()


def font_size(width: int, height: int) -> int:
    """A readable label size for an image of ``width`` x ``height`` pixels."""
    return max(round((width + height) / 2 * 0.025), 10)


def fit_text(draw: ImageDraw.ImageDraw, text: str, font: Font, width: float) -> str:
    """``text``, cut and ended with an ellipsis when it is wider than ``width`` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…" if text else ""
