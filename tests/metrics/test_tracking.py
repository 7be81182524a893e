"""Tests for visionkit.metrics.tracking: HOTA, CLEAR and Identity held to TrackEval 1.3.0 on
the same data, MOTChallenge folders end to end against TrackEval's own reader, and the
single-object measures on hand-worked values."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from trackeval.datasets import MotChallenge2DBox
from trackeval.datasets._base_dataset import _BaseDataset
from trackeval.metrics import CLEAR, HOTA, Identity

from visionkit.errors import ConfigError, DataError
from visionkit.metrics.tracking import (
    HOTA_ALPHAS,
    TrackingSequence,
    Tracks,
    evaluate_mot_folders,
    evaluate_tracking,
    sot_average_iou,
    sot_precision,
    sot_success,
    write_mot_file,
)
from visionkit.ops.boxes import box_convert

TRACKEVAL = {
    "hota": HOTA(),
    "clear": CLEAR({"PRINT_CONFIG": False}),
    "identity": Identity({"PRINT_CONFIG": False}),
}
# visionkit key -> TrackEval field; float fields of HOTA are per-alpha arrays.
HOTA_FIELDS = {
    "hota": "HOTA",
    "deta": "DetA",
    "assa": "AssA",
    "loca": "LocA",
    "detre": "DetRe",
    "detpr": "DetPr",
    "assre": "AssRe",
    "asspr": "AssPr",
}
CLEAR_FIELDS = {
    "mota": "MOTA",
    "moda": "MODA",
    "motp": "MOTP",
    "true_positives": "CLR_TP",
    "false_positives": "CLR_FP",
    "false_negatives": "CLR_FN",
    "id_switches": "IDSW",
    "fragmentations": "Frag",
    "mostly_tracked": "MT",
    "partially_tracked": "PT",
    "mostly_lost": "ML",
}
IDENTITY_FIELDS = {
    "idf1": "IDF1",
    "idp": "IDP",
    "idr": "IDR",
    "idtp": "IDTP",
    "idfp": "IDFP",
    "idfn": "IDFN",
}
ATOL = 1e-6


def random_frames(seed: int, num_frames: int = 40, num_objects: int = 8) -> dict[str, list]:
    """A random scene and a flawed tracker on it, per frame, ``xywh`` boxes.

    Objects enter and leave, hide for a while (ground truth absent), are missed for a few
    frames by the tracker and come back (fragmentations), swap track ids or get new ones (ID
    switches); the tracker adds false positives; some frames have no ground truth, no
    tracker output, or neither. Ids are sparse, not 0-based.
    """
    rng = np.random.default_rng(seed)
    start = rng.integers(0, num_frames // 2, num_objects)
    stop = start + rng.integers(4, num_frames, num_objects)
    hidden = rng.integers(0, num_frames, num_objects)  # ground truth absent 3 frames from here
    missed = rng.integers(0, num_frames, num_objects)  # tracker misses 4 frames from here
    xy = rng.uniform(0, 300, (num_objects, 2))
    velocity = rng.normal(0, 3, (num_objects, 2))
    size = rng.uniform(20, 80, (num_objects, 2))
    noise = rng.uniform(0.02, 0.3, num_objects)  # some tracks sit near the IoU thresholds
    track_id = np.arange(num_objects) * 7 + 100
    empty_gt, empty_pred, empty_both = rng.choice(num_frames, 3, replace=False)
    frames: dict[str, list] = {"gt_ids": [], "gt_xywh": [], "pred_ids": [], "pred_xywh": []}
    for t in range(num_frames):
        present = (start <= t) & (t < stop) & ~((hidden <= t) & (t < hidden + 3))
        gt_boxes = np.concatenate([xy + velocity * t, size], axis=1)[present]
        gt_ids = np.flatnonzero(present) * 3 + 11
        if rng.random() < 0.1:
            a, b = rng.choice(num_objects, 2, replace=False)
            track_id[[a, b]] = track_id[[b, a]]
        renamed = rng.random(num_objects) < 0.03
        track_id[renamed] = rng.choice(np.arange(1000, 10**6), renamed.sum(), replace=False)
        seen = present & ~((missed <= t) & (t < missed + 4)) & (rng.random(num_objects) < 0.9)
        jitter = rng.normal(0, 1, (num_objects, 4)) * noise[:, None] * np.tile(size, 2)
        pred_boxes = np.concatenate([xy + velocity * t, size], axis=1) + jitter
        pred_boxes[:, 2:] = np.abs(pred_boxes[:, 2:])
        num_fp = rng.poisson(0.8)
        fp_boxes = np.concatenate(
            [rng.uniform(0, 300, (num_fp, 2)), rng.uniform(10, 60, (num_fp, 2))], 1
        )
        fp_ids = rng.choice(np.arange(5) + 50, num_fp, replace=False)
        pred_ids = np.concatenate([track_id[seen], fp_ids])
        pred_boxes = np.concatenate([pred_boxes[seen], fp_boxes])
        if t in (empty_gt, empty_both):
            gt_ids, gt_boxes = gt_ids[:0], gt_boxes[:0]
        if t in (empty_pred, empty_both):
            pred_ids, pred_boxes = pred_ids[:0], pred_boxes[:0]
        for key, value in zip(frames, (gt_ids, gt_boxes, pred_ids, pred_boxes), strict=True):
            frames[key].append(value)
    return frames


def special_frames(kind: str, num_frames: int = 6) -> dict[str, list]:
    """Degenerate sequences: nothing at all, ground truth only, tracker only, no frames."""
    box = np.array([[10.0, 10.0, 20.0, 30.0]])
    has_gt, has_pred = {"nothing": (0, 0), "gt_only": (1, 0), "pred_only": (0, 1)}.get(kind, (0, 0))
    num_frames = 0 if kind == "no_frames" else num_frames
    return {
        "gt_ids": [np.arange(has_gt)] * num_frames,
        "gt_xywh": [box[:has_gt]] * num_frames,
        "pred_ids": [np.arange(has_pred) + 4] * num_frames,
        "pred_xywh": [box[:has_pred]] * num_frames,
    }


def ours_from_frames(frames: dict[str, list]) -> TrackingSequence:
    return TrackingSequence.from_boxes(
        gt_ids=frames["gt_ids"],
        gt_boxes=[box_convert(b, "xywh", "xyxy") for b in frames["gt_xywh"]],
        pred_ids=frames["pred_ids"],
        pred_boxes=[box_convert(b, "xywh", "xyxy") for b in frames["pred_xywh"]],
    )


def trackeval_data(gt_ids: list, pred_ids: list, similarity: list) -> dict:
    """TrackEval's per-sequence data dict: ids relabelled 0-based and contiguous."""

    def relabel(frames: list) -> tuple[list, int]:
        unique = np.unique(np.concatenate([np.zeros(0, int), *frames]).astype(int))
        return [np.searchsorted(unique, np.asarray(f, int)) for f in frames], len(unique)

    gt, num_gt = relabel(gt_ids)
    pred, num_pred = relabel(pred_ids)
    return {
        "num_timesteps": len(gt),
        "num_gt_ids": num_gt,
        "num_tracker_ids": num_pred,
        "num_gt_dets": sum(len(f) for f in gt),
        "num_tracker_dets": sum(len(f) for f in pred),
        "gt_ids": gt,
        "tracker_ids": pred,
        "similarity_scores": similarity,
    }


def trackeval_from_frames(frames: dict[str, list]) -> dict:
    """The data dict with TrackEval's own ``xywh`` box IoU."""
    similarity = [
        _BaseDataset._calculate_box_ious(np.asarray(g, float), np.asarray(p, float), "xywh")
        for g, p in zip(frames["gt_xywh"], frames["pred_xywh"], strict=True)
    ]
    return trackeval_data(frames["gt_ids"], frames["pred_ids"], similarity)


def run_trackeval(datas: dict[str, dict]) -> dict[str, dict]:
    """TrackEval's results per sequence and ``"combined"``, all metrics merged in one dict."""
    merged: dict[str, dict] = {name: {} for name in [*datas, "combined"]}
    for metric in TRACKEVAL.values():
        per_seq = {name: metric.eval_sequence(data) for name, data in datas.items()}
        per_seq["combined"] = metric.combine_sequences(per_seq)
        for name, res in per_seq.items():
            merged[name] |= res
    return merged


def max_difference(ours: dict, theirs: dict) -> float:
    """Largest absolute difference over every compared field (arrays and scalars)."""
    diffs = [abs(ours[k] - float(theirs[f])) for k, f in (CLEAR_FIELDS | IDENTITY_FIELDS).items()]
    for key, field in HOTA_FIELDS.items():
        diffs.append(abs(ours[key] - np.mean(theirs[field])))
        if f"{key}_alpha" in ours:
            diffs.append(np.max(np.abs(ours[f"{key}_alpha"] - theirs[field])))
    return float(max(diffs))


def assert_same_results(ours: dict, datas: dict[str, dict]) -> None:
    theirs = run_trackeval(datas)
    results = {"combined": ours["combined"], **ours["per_sequence"]}
    assert results.keys() == theirs.keys()
    for name, result in results.items():
        for key in [*CLEAR_FIELDS, *IDENTITY_FIELDS]:
            if isinstance(result[key], int):
                assert result[key] == theirs[name][(CLEAR_FIELDS | IDENTITY_FIELDS)[key]], key
        assert max_difference(result, theirs[name]) < ATOL, name


@pytest.fixture(scope="module")
def scenes() -> dict[str, dict[str, list]]:
    frames = {f"random{seed}": random_frames(seed) for seed in range(6)}
    frames["long"] = random_frames(99, num_frames=120, num_objects=15)
    for kind in ("nothing", "gt_only", "pred_only", "no_frames"):
        frames[kind] = special_frames(kind)
    return frames


def test_random_scenes_match_trackeval(scenes):
    ours = evaluate_tracking({name: ours_from_frames(f) for name, f in scenes.items()})
    assert_same_results(ours, {name: trackeval_from_frames(f) for name, f in scenes.items()})


def test_random_scenes_exercise_every_count(scenes):
    """The parity test above is only worth something if the scenes hit every rule."""
    combined = evaluate_tracking({name: ours_from_frames(f) for name, f in scenes.items()})
    result = combined["combined"]
    for key in ("id_switches", "fragmentations", "false_positives", "false_negatives"):
        assert result[key] > 0, key
    assert result["mostly_tracked"] and result["partially_tracked"] and result["mostly_lost"]
    assert 0 < result["hota"] < 1 and 0 < result["idf1"] < 1
    assert len(result["hota_alpha"]) == 19 and np.all(np.diff(result["deta_alpha"]) <= 0)


@pytest.mark.parametrize("seed", range(4))
def test_quantised_similarity_matches_trackeval(seed):
    """Similarity given directly, on a grid that makes ties and values on the thresholds."""
    rng = np.random.default_rng(seed)
    gt_ids, pred_ids, similarity = [], [], []
    for _ in range(25):
        gt_ids.append(rng.choice(6, rng.integers(0, 5), replace=False))
        pred_ids.append(rng.choice(np.arange(8) * 2, rng.integers(0, 6), replace=False))
        grid = rng.integers(0, 5, (len(gt_ids[-1]), len(pred_ids[-1]))) / 4
        similarity.append(np.where(rng.random(grid.shape) < 0.5, grid, 0.0))
    ours = evaluate_tracking({"seq": TrackingSequence(gt_ids, pred_ids, similarity)})
    assert_same_results(ours, {"seq": trackeval_data(gt_ids, pred_ids, similarity)})


def test_hand_worked_id_switch():
    """One object over 4 frames, tracked perfectly but by track 10 then track 11."""
    box = [[0.0, 0.0, 10.0, 10.0]]
    seq = TrackingSequence.from_boxes([[1]] * 4, [box] * 4, [[10], [10], [11], [11]], [box] * 4)
    result = evaluate_tracking({"s": seq})["combined"]
    assert (result["true_positives"], result["id_switches"], result["fragmentations"]) == (4, 1, 0)
    assert result["mota"] == 0.75 and result["motp"] == 1.0 and result["mostly_tracked"] == 1
    assert (result["idtp"], result["idfp"], result["idfn"], result["idf1"]) == (2, 2, 2, 0.5)
    # Every alpha: DetA 1; each of the two id pairs has 2 matches, Jaccard 2 / (4 + 2 - 2).
    np.testing.assert_allclose(result["assa_alpha"], 0.5)
    np.testing.assert_allclose(result["hota_alpha"], np.sqrt(0.5))
    assert result["deta"] == 1.0 and result["loca"] == 1.0


@pytest.mark.parametrize(("frame2_pred", "fragmentations"), [([], 0), ([[50.0, 50, 60, 60]], 1)])
def test_fragmentation_needs_a_scored_frame(frame2_pred, fragmentations):
    """A miss counts as a break only in a frame that has tracker output (TrackEval's rule)."""
    box = [[0.0, 0.0, 10.0, 10.0]]
    pred_ids = [[3], [7] if frame2_pred else [], [3]]
    seq = TrackingSequence.from_boxes([[1]] * 3, [box] * 3, pred_ids, [box, frame2_pred, box])
    ours = evaluate_tracking({"s": seq}, metrics=["clear"])
    assert ours["combined"]["fragmentations"] == fragmentations
    data = trackeval_data(seq.gt_ids, seq.pred_ids, list(seq.similarity))
    assert TRACKEVAL["clear"].eval_sequence(data)["Frag"] == fragmentations


def test_perfect_tracking_scores_one():
    frames = random_frames(5)
    frames["pred_ids"], frames["pred_xywh"] = frames["gt_ids"], frames["gt_xywh"]
    result = evaluate_tracking({"s": ours_from_frames(frames)})["combined"]
    for key in ("hota", "deta", "assa", "loca", "mota", "motp", "idf1", "idp", "idr"):
        assert result[key] == pytest.approx(1.0), key


def test_metrics_selection_and_unknown_names():
    seq = ours_from_frames(random_frames(1))
    result = evaluate_tracking({"s": seq}, metrics=("identity",))
    assert set(result["combined"]) == set(IDENTITY_FIELDS)
    with pytest.raises(ConfigError, match="unknown tracking metrics"):
        evaluate_tracking({"s": seq}, metrics=("mota",))
    with pytest.raises(ConfigError, match="no sequence"):
        evaluate_tracking({})
    assert len(HOTA_ALPHAS) == 19 and HOTA_ALPHAS[0] == pytest.approx(0.05)


@pytest.mark.parametrize(
    ("kwargs", "record", "field"),
    [
        ({"gt_ids": [[1], [2, 2]]}, "frame 2", "gt_ids"),
        ({"pred_ids": [[1], [5, 5, 6]]}, "frame 2", "pred_ids"),
        ({"similarity": [[[0.5]], [[1.5]]]}, "frame 2", "similarity"),
        ({"similarity": [[[0.5]], [[np.nan]]]}, "frame 2", "similarity"),
        ({"similarity": [[[0.5]], [[0.1, 0.2]]]}, "frame 2", "similarity"),
        ({"similarity": [[[0.5]]]}, None, None),
    ],
)
def test_bad_sequences_raise_data_error(kwargs, record, field):
    good = {"gt_ids": [[1], [2]], "pred_ids": [[1], [5]], "similarity": [[[0.5]], [[0.25]]]}
    with pytest.raises(DataError) as info:
        TrackingSequence(**(good | kwargs))
    assert (info.value.record, info.value.field) == (record, field)


@pytest.mark.parametrize(
    ("boxes", "field"),
    [([[[0, 0, 1, 1]], [[5, 0, 4, 1]]], "boxes"), ([[[0, 0, 1, 1]], [[0, 0, np.inf, 1]]], "boxes")],
)
def test_bad_tracks_raise_data_error(boxes, field):
    with pytest.raises(DataError) as info:
        Tracks(ids=[[1], [1]], boxes=boxes)
    assert (info.value.record, info.value.field) == ("frame 2", field)


def write_mot17_gt(folder: Path, name: str, frames: dict[str, list], length: int) -> None:
    """MOT17-style ground truth with 9 columns and some zero-marked (not evaluated) lines."""
    (folder / name / "gt").mkdir(parents=True)
    (folder / name / "seqinfo.ini").write_text(f"[Sequence]\nname={name}\nseqLength={length}\n")
    lines = []
    for t, (ids, boxes) in enumerate(zip(frames["gt_ids"], frames["gt_xywh"], strict=True)):
        for i, (x, y, w, h) in zip(ids, boxes, strict=True):
            xywh = ",".join(repr(float(v)) for v in (x, y, w, h))
            lines.append(f"{t + 1},{i},{xywh},{int(i % 5 != 0)},1,1.0\n")
    (folder / name / "gt" / "gt.txt").write_text("".join(lines))


def test_mot_folders_match_trackeval_reader(tmp_path):
    """Files written by visionkit, scored by visionkit and by TrackEval's MOTChallenge reader."""
    gt_dir, pred_dir = tmp_path / "gt", tmp_path / "trackers" / "vk" / "data"
    lengths = {}
    for seed in range(3):
        name, frames = f"SEQ-{seed:02d}", random_frames(seed + 10, num_frames=30)
        lengths[name] = 30 + seed  # trailing frames with nothing, from seqinfo.ini
        write_mot17_gt(gt_dir, name, frames, lengths[name])
        pred = Tracks(
            frames["pred_ids"], [box_convert(b, "xywh", "xyxy") for b in frames["pred_xywh"]]
        )
        write_mot_file(pred_dir / f"{name}.txt", pred)
    ours = evaluate_mot_folders(gt_dir, pred_dir)
    dataset = MotChallenge2DBox(
        {
            "GT_FOLDER": str(gt_dir),
            "TRACKERS_FOLDER": str(tmp_path / "trackers"),
            "TRACKERS_TO_EVAL": ["vk"],
            "BENCHMARK": "MOT15",  # no class-based preprocessing: zero-marked lines only
            "SKIP_SPLIT_FOL": True,
            "SEQ_INFO": dict.fromkeys(lengths),
            "PRINT_CONFIG": False,
        }
    )
    datas = {}
    for name in lengths:
        raw = dataset.get_raw_seq_data("vk", name)
        datas[name] = dataset.get_preprocessed_seq_data(raw, "pedestrian")
    assert_same_results(ours, datas)


def test_mot_folders_refuse_unpaired_sequences(tmp_path):
    frames = random_frames(0, num_frames=5)
    write_mot17_gt(tmp_path / "gt", "A", frames, 5)
    (tmp_path / "pred").mkdir()
    with pytest.raises(DataError, match="no prediction file for sequence 'A'"):
        evaluate_mot_folders(tmp_path / "gt", tmp_path / "pred")
    (tmp_path / "pred" / "A.txt").write_text("")
    (tmp_path / "pred" / "B.txt").write_text("")
    with pytest.raises(DataError, match="no ground truth for sequence 'B'") as info:
        evaluate_mot_folders(tmp_path / "gt", tmp_path / "pred")
    assert info.value.file == str(tmp_path / "pred" / "B.txt")
    (tmp_path / "pred" / "B.txt").unlink()
    result = evaluate_mot_folders(tmp_path / "gt", tmp_path / "pred")["combined"]
    assert result["true_positives"] == 0 and result["false_negatives"] > 0


# Single-object tracking. Six frames against a 10x10 target: exact (IoU 1, centre error 0),
# half height (IoU 1/2, error 2.5), shifted by half (IoU 1/3, error 5), lost (NaN), then two
# frames where the target is absent (gt zeros, gt NaN), which are left out.
SOT_GT = np.array([[0.0, 0, 10, 10]] * 4 + [[0, 0, 0, 0], [np.nan] * 4])
SOT_PRED = np.array(
    [[0.0, 0, 10, 10], [0, 0, 10, 5], [5, 0, 15, 10], [np.nan] * 4, [0, 0, 10, 10], [0, 0, 1, 1]]
)


def test_sot_average_iou_hand_values():
    assert sot_average_iou(SOT_PRED, SOT_GT) == pytest.approx((1 + 0.5 + 1 / 3 + 0) / 4)


def test_sot_success_hand_values():
    thresholds, rates, auc = sot_success(SOT_PRED, SOT_GT, thresholds=[0.0, 0.4, 0.5, 0.9])
    np.testing.assert_array_equal(rates, [0.75, 0.5, 0.25, 0.25])  # IoU 0.5 is not > 0.5
    assert auc == pytest.approx(0.4375)
    thresholds, rates, auc = sot_success(SOT_PRED, SOT_GT)
    np.testing.assert_allclose(thresholds, np.arange(21) / 20)
    # 3 frames pass thresholds 0..0.30 (7), 2 pass 0.35..0.45 (3), 1 passes 0.5..0.95 (10).
    assert auc == pytest.approx((3 * 7 + 2 * 3 + 1 * 10) / (4 * 21))


def test_sot_precision_hand_values():
    assert sot_precision(SOT_PRED, SOT_GT) == 0.75
    assert sot_precision(SOT_PRED, SOT_GT, threshold=2.5) == 0.5  # <= counts


def test_sot_bad_input():
    with pytest.raises(DataError, match="absent in every frame"):
        sot_average_iou(SOT_PRED[4:], SOT_GT[4:])
    with pytest.raises(ConfigError, match=r"\[N, 4\]"):
        sot_success(SOT_PRED[:3], SOT_GT)


def test_importing_tracking_does_not_import_torch():
    code = "import sys, visionkit.metrics.tracking; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
