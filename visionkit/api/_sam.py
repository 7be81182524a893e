"""Promptable segmentation behind ``visionkit segment predict model=sam``: SAM on every image
of a source with the same prompts, optionally written as mask and overlay PNGs."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from visionkit.api._sources import Frame, Source, iter_images
from visionkit.errors import ConfigError
from visionkit.models.foundation import PromptMasks, load_sam
from visionkit.train.distributed import select_device
from visionkit.viz import draw_detections, save_image

DEFAULT_OUT = Path("runs") / "segment" / "predict"
"""Where ``save=True`` writes when no ``out`` is given (relative to the working folder)."""

__all__ = ["DEFAULT_OUT", "draw_prompt_masks", "predict_prompts"]


def predict_prompts(
    model: str,
    source: Source,
    *,
    points: list[tuple[float, float]] | None = None,
    point_labels: list[int] | None = None,
    box: tuple[float, float, float, float] | None = None,
    multimask: bool = True,
    save: bool = False,
    out: str | Path | None = None,
    device: str = "cpu",
) -> list[PromptMasks]:
    """Segment what the prompts point at in every image (or video frame) of ``source``.

    The model is loaded once, and each image is embedded once.

    Args:
        model: A SAM spec: ``"sam"``, ``"sam-vit-base"``, ``"sam-vit-large"``,
            ``"sam-vit-huge"``, ``"hf:<repo-id>"`` or a folder written by
            ``save_pretrained`` (see :func:`~visionkit.models.foundation.load_sam`).
        source: An image file, a folder, a glob or a video (see
            :func:`~visionkit.api._sources.iter_images`).
        points: ``(x, y)`` prompts in each image's own pixels.
        point_labels: 1 (foreground) or 0 (background) per point; all 1 when None.
        box: An ``(x0, y0, x1, y1)`` box prompt in each image's own pixels.
        multimask: Three candidate masks per image instead of one.
        save: Write ``<out>/<stem>_mask.png`` (the best mask, 0/255 gray) and
            ``<out>/<stem>_overlay.png`` (:func:`draw_prompt_masks`) for each image;
            video frames get ``<stem>_<frame>``, a repeated stem ``<stem>_<index>``.
        out: The folder for ``save``; :data:`DEFAULT_OUT` when None.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"``.

    Returns:
        One :class:`~visionkit.models.foundation.PromptMasks` per image, in order.

    Raises:
        ConfigError: A bad prompt (outside an image, wrong shape, no prompt): the message
            names the image file and the field; an unknown model name or device.
        WeightsError: The checkpoint is missing, or offline and not cached.
        DataError: ``source`` names no image.

    Example:
        >>> results = predict_prompts("sam", "photos/", points=[(320, 240)], save=True)
        ... # doctest: +SKIP
    """
    predictor = load_sam(model, device=select_device(device))
    folder = DEFAULT_OUT if out is None else Path(out)
    results: list[PromptMasks] = []
    taken: set[str] = set()
    for index, frame in enumerate(iter_images(source)):
        predictor.set_image(frame.image)
        try:
            result = predictor.predict(
                points=points, point_labels=point_labels, box=box, multimask=multimask
            )
        except ConfigError as error:  # the same prompt may fit one image and not the next
            raise ConfigError(error.message, file=frame.path, field=error.field) from None
        results.append(result)
        if save:
            stem = _stem(frame, index, taken)
            best = result.masks[result.best].astype(np.uint8) * 255
            save_image(best, folder / f"{stem}_mask.png")
            save_image(draw_prompt_masks(frame.image, result), folder / f"{stem}_overlay.png")
    return results


def draw_prompt_masks(image: np.ndarray, result: PromptMasks) -> np.ndarray:
    """``image`` with every non-empty mask of ``result`` tinted, boxed and tagged with its
    index and predicted IoU; the best mask is drawn last, on top.

    Args:
        image: ``uint8`` RGB ``[H, W, 3]``, the image that ``result`` is of.
        result: Its :class:`~visionkit.models.foundation.PromptMasks`.

    Returns:
        A new ``uint8`` ``[H, W, 3]`` array.
    """
    order = [int(i) for i in np.argsort(result.scores, kind="stable") if result.masks[i].any()]
    return draw_detections(
        image,
        result.boxes[order],
        np.asarray(order, dtype=np.int64),
        names=[f"mask {i}" for i in range(len(result))],
        scores=result.scores[order],
        masks=result.masks[order],
    )


def _stem(frame: Frame, index: int, taken: set[str]) -> str:
    """A file stem for ``frame`` that no earlier frame of this call has used."""
    if frame.path is None:
        stem = f"image{index:05d}"
    elif frame.frame is None:
        stem = frame.path.stem
    else:
        stem = f"{frame.path.stem}_{frame.frame:05d}"
    if stem in taken:
        stem = f"{stem}_{index}"
    taken.add(stem)
    return stem
