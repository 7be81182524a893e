"""``yolo-n`` trained from scratch through ``Model.train`` finds shapes it has never seen.

The recipe is the one ``benchmarks/detectors.py`` uses for its 10-minute run (batch 8,
AdamW at 4e-3, an EMA of the weights, whole images with flips only), on fewer images for
fewer steps: about 1,000 optimiser steps on 600 images of 256 px, three to four minutes
on two idle cores.
"""

from __future__ import annotations

import time

import pytest
import torch

import visionkit
from visionkit.data.synthetic.export import export_synthetic

RECIPE = {
    **{"batch": 8, "lr": 4e-3, "ema": True, "ema_decay": 0.999},
    **{"mosaic": 0.0, "scale": (1.0, 1.0), "colour": False},
}


@pytest.mark.slow
def test_yolo_n_from_scratch_finds_unseen_shapes(tmp_path):
    data = export_synthetic(tmp_path / "shapes", train=600, val=100, imgsz=256, workers=2)
    torch.set_num_threads(2)
    model = visionkit.Model("yolo-n")
    start = time.perf_counter()
    model.train(data=data, epochs=14, imgsz=256, workers=0, project=tmp_path, quiet=True, **RECIPE)
    seconds = time.perf_counter() - start
    metrics = model.val(data=data, split="val")
    print(
        f"\nyolo-n: mAP50 {metrics['map_50']:.3f}, mAP50-95 {metrics['map']:.3f} in {seconds:.0f} s"
    )
    assert metrics["map_50"] >= 0.5
