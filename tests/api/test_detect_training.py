"""``yolo-n`` trained from scratch through ``Model.train`` for about a minute finds shapes it
has never seen.

The recipe is the one ``benchmarks/detectors.py`` uses for its 10-minute run on the full
``shapes`` scenes (batch 8, AdamW at 6e-3, an EMA of the weights, whole images with flips
only, twice YOLOv8's classification gain), with the default one-epoch warmup. A minute of
two CPU cores is about 900 optimiser steps at 128 px, too few to learn the full scenes'
10-pixel shapes, so this run draws scenes of one or two larger shapes (``scene_options``):
what is measured is that the default detector, trained by the default loop, learns to find
and name them, not the benchmark's accuracy.
"""

from __future__ import annotations

import time

import torch

import visionkit
from visionkit.data.synthetic.export import export_synthetic

RECIPE = {
    **{"batch": 8, "lr": 6e-3, "ema": True, "ema_decay": 0.999},
    **{"mosaic": 0.0, "scale": (1.0, 1.0), "colour": False, "cls": 1.0},
}
SCENES = {"min_size": 0.3, "max_objects": 2}
"""One or two shapes of at least 30 % of the image side (38 px) per image."""


def test_yolo_n_from_scratch_finds_unseen_shapes_within_a_minute(tmp_path):
    data = export_synthetic(
        tmp_path / "shapes", train=600, val=100, imgsz=128, scene_options=SCENES, workers=2
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        model = visionkit.Model("yolo-n")
        start = time.perf_counter()
        model.train(data=data, epochs=12, imgsz=128, workers=0, project=tmp_path, quiet=True,
                    **RECIPE)  # fmt: skip
        seconds = time.perf_counter() - start
        metrics = model.val(data=data, split="val")
    finally:
        torch.set_num_threads(threads)
    print(
        f"\nyolo-n: mAP50 {metrics['map_50']:.3f}, mAP50-95 {metrics['map']:.3f} in {seconds:.0f} s"
    )
    assert metrics["map_50"] >= 0.5
