"""Tests for visionkit.data.synthetic: determinism, exact labels, and the data's statistics."""

from __future__ import annotations

import colorsys
import subprocess
import sys
from collections.abc import Callable

import numpy as np
import pytest

import visionkit.data.synthetic.scenes as scenes_module
from visionkit.data.synthetic import (
    CATEGORIES,
    GENERATORS,
    Clip,
    Scene,
    ShapesConfig,
    ShortcutConfig,
    ShortcutSample,
    VideoConfig,
    make_clip,
    make_scene,
    make_shortcut_sample,
    scene_annotations,
)
from visionkit.data.synthetic._canvas import Canvas, tight_boxes
from visionkit.data.synthetic._shapes import Sprite
from visionkit.data.synthetic.shortcut import cue_hue, shortcut_label
from visionkit.errors import ConfigError
from visionkit.ops.masks import rle_to_bbox, rle_to_mask

SMALL_CLIPS = VideoConfig(imgsz=96, frames=6)
MAKERS = {
    "shapes": make_scene,
    "shapes-shortcut": make_shortcut_sample,
    "shapes-video": lambda seed, index: make_clip(seed, index, SMALL_CLIPS),
}


def _arrays(sample: Scene | ShortcutSample | Clip) -> list[np.ndarray]:
    """Every array of a generator's output, flattened into one list."""
    if isinstance(sample, ShortcutSample):
        return [*_arrays(sample.scene), np.array([sample.label, sample.cue])]
    if isinstance(sample, Clip):
        frames = [a for f in sample.frames for a in [*_arrays(f), f.track_ids]]
        return [*frames, sample.flow]
    return [sample.image, sample.boxes, sample.labels, sample.masks, sample.semantic]


def _same(a: Scene | ShortcutSample | Clip, b: Scene | ShortcutSample | Clip) -> bool:
    arrays_a, arrays_b = _arrays(a), _arrays(b)
    return len(arrays_a) == len(arrays_b) and all(
        x.dtype == y.dtype and np.array_equal(x, y) for x, y in zip(arrays_a, arrays_b, strict=True)
    )


@pytest.fixture(scope="module")
def scenes() -> list[Scene]:
    return [make_scene(0, i) for i in range(200)]


@pytest.fixture(scope="module")
def clips() -> list[Clip]:
    return [make_clip(1, i, SMALL_CLIPS) for i in range(12)]


def test_generators_and_categories() -> None:
    assert set(GENERATORS) == set(MAKERS)
    assert [c.id for c in CATEGORIES] == list(range(1, len(CATEGORIES) + 1))
    assert len(CATEGORIES) >= 5
    assert len({c.name for c in CATEGORIES}) == len(CATEGORIES)


@pytest.mark.parametrize("name", GENERATORS)
def test_pure_function_of_seed_and_index(name: str) -> None:
    make = MAKERS[name]
    later = make(0, 5)
    for index in (4, 3, 2):  # other samples made in between change nothing
        make(0, index)
    assert _same(make(0, 5), later)
    assert not _same(make(0, 6), later)
    assert not _same(make(1, 5), later)


def test_seed_and_index_must_be_non_negative() -> None:
    with pytest.raises(ConfigError, match="seed"):
        make_scene(-1, 0)
    with pytest.raises(ConfigError):
        make_clip(0, -2)


@pytest.mark.parametrize(
    ("make_config", "field"),
    [
        (lambda: ShapesConfig(min_objects=3, max_objects=2), "min_objects"),
        (lambda: ShapesConfig(max_size=0.6), "min_size"),
        (lambda: ShapesConfig(imgsz=16), "imgsz"),
        (lambda: ShapesConfig(min_visible=1.5), "min_visible"),
        (lambda: ShortcutConfig(strength=1.2), "strength"),
        (lambda: VideoConfig(frames=1), "frames"),
        (lambda: VideoConfig(max_speed=0), "max_speed"),
    ],
)
def test_bad_configs_are_refused(make_config: Callable[[], object], field: str) -> None:
    with pytest.raises(ConfigError) as caught:
        make_config()
    assert caught.value.field == field


def test_scene_dtypes_and_shapes() -> None:
    scene = make_scene(3, 9, ShapesConfig(imgsz=128))
    n = len(scene.labels)
    assert scene.image.shape == (128, 128, 3) and scene.image.dtype == np.uint8
    assert scene.boxes.shape == (n, 4) and scene.boxes.dtype == np.float32
    assert scene.labels.dtype == np.int64
    assert scene.masks.shape == (n, 128, 128) and scene.masks.dtype == bool
    assert scene.semantic.shape == (128, 128) and scene.semantic.dtype == np.uint8


def test_tight_boxes_use_pixel_edges() -> None:
    masks = np.zeros((1, 10, 12), dtype=bool)
    masks[0, 2:5, 3:8] = True  # rows 2..4, columns 3..7
    assert tight_boxes(masks).tolist() == [[3.0, 2.0, 8.0, 5.0]]


def test_boxes_masks_and_semantic_agree(scenes: list[Scene]) -> None:
    for scene in scenes[:60]:
        assert 1 <= len(scene.labels) <= ShapesConfig().max_objects
        assert scene.masks.any(axis=(1, 2)).all()  # no object without visible pixels
        assert scene.masks.sum(axis=0).max() <= 1  # visible parts never overlap
        annotations = scene_annotations(scene.boxes, scene.labels, scene.masks, first_id=1)
        for box, annotation in zip(
            scene.boxes, annotations, strict=True
        ):  # pycocotools' toBbox agrees
            assert rle_to_bbox(annotation.segmentation) == tuple(box.tolist())
        expected = np.zeros_like(scene.semantic)
        for mask, label in zip(scene.masks, scene.labels, strict=True):
            expected[mask] = label
        assert np.array_equal(scene.semantic, expected)


def test_sizes_cover_coco_ranges(scenes: list[Scene]) -> None:
    areas = np.concatenate([scene.masks.sum(axis=(1, 2)) for scene in scenes])
    shares = [np.mean(areas < 32**2), np.mean((areas >= 32**2) & (areas <= 96**2))]
    shares.append(np.mean(areas > 96**2))
    assert min(shares) > 0.03, shares
    assert set(np.concatenate([s.labels for s in scenes]).tolist()) == {c.id for c in CATEGORIES}


def test_objects_occlude_but_stay_mostly_visible(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[Canvas] = []

    def recording_canvas(background: np.ndarray) -> Canvas:
        made.append(Canvas(background))
        return made[-1]

    monkeypatch.setattr(scenes_module, "Canvas", recording_canvas)
    for index in range(80):
        make_scene(2, index)
    shares = [canvas.visible / canvas.areas for canvas in made]
    assert min(s.min() for s in shares) >= ShapesConfig().min_visible
    occluded = np.mean([s.min() < 0.95 for s in shares])
    assert occluded > 0.2, occluded


def test_canvas_refuses_hiding_too_much() -> None:
    canvas = Canvas(np.zeros((20, 20, 3), dtype=np.uint8))
    square = np.ones((10, 10), dtype=bool)
    canvas.paint(Sprite(1, square, np.full((10, 10, 3), 7, np.uint8)), 0, 0)
    assert canvas.keeps_visible(square, 5, 0, fraction=0.5)  # hides half
    assert not canvas.keeps_visible(square, 3, 0, fraction=0.5)  # hides 70 %
    assert canvas.keeps_visible(square, 0, 0, fraction=0.0)  # anything goes at 0


def test_scene_annotations_round_trip() -> None:
    scene = make_scene(5, 1)
    annotations = scene_annotations(scene.boxes, scene.labels, scene.masks, first_id=40)
    assert [a.id for a in annotations] == list(range(40, 40 + len(scene.labels)))
    for annotation, box, label, mask in zip(
        annotations, scene.boxes, scene.labels, scene.masks, strict=True
    ):
        assert annotation.bbox == tuple(box.tolist())
        assert annotation.category_id == label and isinstance(annotation.category_id, int)
        assert annotation.area == mask.sum()
        assert np.array_equal(rle_to_mask(annotation.segmentation), mask)
        assert isinstance(annotation.segmentation["counts"], str)


def _cue_rate(config: ShortcutConfig, n: int = 600) -> float:
    return float(np.mean([make_shortcut_sample(4, i, config).agrees for i in range(n)]))


@pytest.mark.parametrize("strength", [0.0, 0.7, 1.0])
def test_shortcut_cue_agrees_at_strength(strength: float) -> None:
    assert abs(_cue_rate(ShortcutConfig(imgsz=64, strength=strength)) - strength) < 0.06


def test_shortcut_label_is_the_label_of_the_sample_whatever_the_config() -> None:
    configs = [ShortcutConfig(imgsz=32), ShortcutConfig(imgsz=40, counterfactual=True)]
    for index in range(40):
        label = shortcut_label(3, index)
        assert all(make_shortcut_sample(3, index, c).label == label for c in configs)
    assert len({shortcut_label(3, index) for index in range(40)}) == len(CATEGORIES)


def test_counterfactual_cue_never_agrees() -> None:
    assert _cue_rate(ShortcutConfig(imgsz=64, strength=1.0, counterfactual=True), 300) == 0.0


def test_shortcut_sample_has_one_object_and_a_visible_cue() -> None:
    for index in range(30):
        sample = make_shortcut_sample(7, index)
        assert sample.scene.labels.tolist() == [sample.label]
        assert sample.image.shape == (256, 256, 3) and sample.scene.masks.any()
        background = sample.image[sample.scene.semantic == 0].astype(float) / 255
        hues = np.array([colorsys.rgb_to_hsv(*rgb)[0] for rgb in background[::50]])
        offset = np.median((hues - cue_hue(sample.cue) + 0.5) % 1) - 0.5  # cyclic distance
        assert abs(offset) < 0.06, (index, offset)


def test_clip_shapes_and_dtypes(clips: list[Clip]) -> None:
    clip = clips[0]
    t, size = SMALL_CLIPS.frames, SMALL_CLIPS.imgsz
    assert len(clip.frames) == t and clip.images.shape == (t, size, size, 3)
    assert clip.flow.shape == (t - 1, size, size, 2) and clip.flow.dtype == np.float32
    for frame in clip.frames:
        assert frame.track_ids.dtype == np.int64 and frame.track_ids.shape == frame.labels.shape
        assert frame.masks.any(axis=(1, 2)).all()


def test_track_ids_keep_their_labels(clips: list[Clip]) -> None:
    for clip in clips:
        seen: dict[int, int] = {}
        for frame in clip.frames:
            assert len(set(frame.track_ids.tolist())) == len(frame.track_ids)
            for track, label in zip(frame.track_ids.tolist(), frame.labels.tolist(), strict=True):
                assert seen.setdefault(track, label) == label


def _track_map(frame) -> np.ndarray:
    """int ``[H, W]``: the track id on top at each pixel, 0 for background."""
    tracks = np.zeros(frame.semantic.shape, dtype=np.int64)
    for track, mask in zip(frame.track_ids, frame.masks, strict=True):
        tracks[mask] = track
    return tracks


def test_flow_moves_each_object_onto_itself(clips: list[Clip]) -> None:
    for clip in clips:
        for t, flow in enumerate(clip.flow):
            now, later = clip.frames[t], clip.frames[t + 1]
            assert not flow[now.semantic == 0].any()  # static background
            after = _track_map(later)
            for track, mask in zip(now.track_ids, now.masks, strict=True):
                moves = np.unique(flow[mask], axis=0)
                assert len(moves) == 1  # one object, one displacement
                dx, dy = moves[0].astype(int)
                assert max(abs(dx), abs(dy)) <= SMALL_CLIPS.max_speed
                ys, xs = np.nonzero(mask)
                target = after[ys + dy, xs + dx]
                assert (target >= track).all()  # itself, or an object in front of it
                same = target == track
                assert np.array_equal(
                    later.image[ys[same] + dy, xs[same] + dx], now.image[ys[same], xs[same]]
                )


def test_objects_bounce_off_borders() -> None:
    config = VideoConfig(imgsz=64, frames=24, min_objects=1, max_objects=1, max_speed=6)
    bounced = 0
    for index in range(10):
        clip = make_clip(3, index, config)
        frames = clip.frames[:-1]
        steps = np.array([flow[f.masks[0]][0] for flow, f in zip(clip.flow, frames, strict=True)])
        bounced += bool((np.sign(steps[1:]) * np.sign(steps[:-1]) < 0).any())  # [T-2, 2]
    assert bounced >= 5


def test_package_does_not_import_torch() -> None:
    code = "import sys, visionkit.data.synthetic; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "False", result.stderr
