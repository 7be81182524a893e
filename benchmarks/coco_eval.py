"""COCO bbox evaluation: visionkit against pycocotools, faster-coco-eval and torchmetrics.

Usage:
    python benchmarks/coco_eval.py [--images 5000] [--seed 0] [--libraries visionkit ...]

One COCO-sized set (``make_evaluation_set``: 5,000 images, 80 categories, about 7 objects
and 25 predictions per image, crowd regions, small/medium/large objects) is evaluated by
each library from the in-memory dataset dict and results list to the 12 COCO statistics.
Each library runs alone in its own fresh process (spawned), which builds the set, imports
the library and prepares its input (torchmetrics' tensors) before the clock starts.

Peak memory is what the timed evaluation adds to the process: the kernel's resident-set
high-water mark (``VmHWM``) is reset through ``/proc/self/clear_refs`` just before the
clock starts, and the resident size at that moment (``VmRSS``) is subtracted from the mark
reached at the end. Where ``/proc`` cannot be used, ``ru_maxrss`` growth stands in (it
misses memory freed and reused below the data generation's own peak).

The table gives seconds, peak MiB, speed-up over pycocotools and the largest absolute
difference of any of the 12 statistics from pycocotools'. Libraries that are not installed
are reported, not fatal. Exit status 1 when visionkit differs from pycocotools by more
than 1e-9.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import multiprocessing
import resource
import time
from collections.abc import Callable, Sequence
from typing import Any

STATS = (
    *("map", "map_50", "map_75", "map_small", "map_medium", "map_large"),
    *("mar_1", "mar_10", "mar_100", "mar_small", "mar_medium", "mar_large"),
)
TOLERANCE = 1e-9
LIBRARIES = ("visionkit", "pycocotools", "faster-coco-eval", "torchmetrics")

Runner = Callable[[], list[float]]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5000, help="images in the set")
    parser.add_argument("--seed", type=int, default=0, help="seed of the set")
    parser.add_argument("--categories", type=int, default=80, help="categories in the set")
    parser.add_argument("--gt-per-image", type=float, default=7.0, help="mean objects per image")
    parser.add_argument(
        "--preds-per-image", type=float, default=25.0, help="mean predictions per image"
    )
    parser.add_argument("--libraries", nargs="+", default=list(LIBRARIES), choices=LIBRARIES)
    return parser


def _visionkit(gt: dict, results: list) -> Runner:
    from visionkit.metrics.detection import evaluate_coco

    def run() -> list[float]:
        result = evaluate_coco(gt, results)
        return [result[key] for key in STATS]

    return run


def _pycocotools(gt: dict, results: list) -> Runner:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    def run() -> list[float]:
        with contextlib.redirect_stdout(io.StringIO()):
            coco = COCO()
            coco.dataset = gt
            coco.createIndex()
            evaluation = COCOeval(coco, coco.loadRes(results), "bbox")
            evaluation.evaluate()
            evaluation.accumulate()
            evaluation.summarize()
        return evaluation.stats[:12].tolist()

    return run


def _faster_coco_eval(gt: dict, results: list) -> Runner:
    from faster_coco_eval import COCO, COCOeval_faster

    def run() -> list[float]:
        coco = COCO(gt)
        evaluation = COCOeval_faster(coco, coco.loadRes(results), "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
        return [float(v) for v in evaluation.stats[:12]]

    return run


def _torchmetrics(gt: dict, results: list) -> Runner:
    """torchmetrics' ``MeanAveragePrecision`` with its defaults, on tensors built beforehand."""
    import torch
    from torchmetrics.detection import MeanAveragePrecision

    def boxes(records: list) -> torch.Tensor:
        return torch.tensor([r["bbox"] for r in records], dtype=torch.float64).reshape(-1, 4)

    by_image: dict[int, tuple[list, list]] = {im["id"]: ([], []) for im in gt["images"]}
    for ann in gt["annotations"]:
        by_image[ann["image_id"]][0].append(ann)
    for det in results:
        by_image[det["image_id"]][1].append(det)
    targets = [
        {
            "boxes": boxes(anns),
            "labels": torch.tensor([a["category_id"] for a in anns], dtype=torch.int64),
            "iscrowd": torch.tensor([a["iscrowd"] for a in anns], dtype=torch.int64),
            "area": torch.tensor([a["area"] for a in anns], dtype=torch.float64),
        }
        for anns, _ in by_image.values()
    ]
    preds = [
        {
            "boxes": boxes(dets),
            "scores": torch.tensor([d["score"] for d in dets], dtype=torch.float64),
            "labels": torch.tensor([d["category_id"] for d in dets], dtype=torch.int64),
        }
        for _, dets in by_image.values()
    ]

    def run() -> list[float]:
        metric = MeanAveragePrecision(box_format="xywh")
        metric.warn_on_many_detections = False
        metric.update(preds, targets)
        result = metric.compute()
        return [float(result[key]) for key in STATS]

    return run


PREPARE = {
    "visionkit": _visionkit,
    "pycocotools": _pycocotools,
    "faster-coco-eval": _faster_coco_eval,
    "torchmetrics": _torchmetrics,
}


def _proc_status(key: str) -> float | None:
    """A ``VmRSS``/``VmHWM`` line of ``/proc/self/status`` in MiB, or None off Linux."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _start_peak() -> tuple[str, float]:
    """Reset the peak-memory mark; return how it will be read and the baseline in MiB."""
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")  # resets VmHWM to the current resident size (Linux >= 4.0)
        baseline = _proc_status("VmRSS")
        if baseline is not None:
            return "VmHWM", baseline
    except OSError:
        pass
    return "ru_maxrss", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _peak(how: str) -> float:
    if how == "VmHWM":
        return _proc_status("VmHWM") or 0.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _measure(name: str, options: dict[str, Any], queue: Any) -> None:
    """Child process: build the set and the library's input, then time one evaluation."""
    from visionkit.data.synthetic.evaluation import make_evaluation_set

    gt, results = make_evaluation_set(**options)
    try:
        run = PREPARE[name](gt, results)
    except ImportError as error:
        queue.put({"name": name, "missing": str(error)})
        return
    gc.collect()
    how, baseline = _start_peak()
    start = time.perf_counter()
    stats = run()
    seconds = time.perf_counter() - start
    queue.put({"name": name, "seconds": seconds, "memory": _peak(how) - baseline, "stats": stats})


def _run_child(name: str, options: dict[str, Any]) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    child = context.Process(target=_measure, args=(name, options, queue))
    child.start()
    child.join()
    if child.exitcode != 0 or queue.empty():
        return {"name": name, "failed": f"exit status {child.exitcode}"}
    return queue.get()


def _table(rows: list[dict[str, Any]]) -> None:
    reference = next((r for r in rows if r["name"] == "pycocotools" and "stats" in r), None)
    print(f"{'library':<17} {'seconds':>8} {'peak MiB':>9} {'speed-up':>9} {'max |diff|':>11}")
    for row in rows:
        if "stats" not in row:
            status = "not installed" if "missing" in row else row["failed"]
            print(f"{row['name']:<17} {status}")
            continue
        speed = diff = "-"
        if reference is not None:
            speed = f"{reference['seconds'] / row['seconds']:.1f}x"
            diff = f"{_difference(row, reference):.1e}"
        print(
            f"{row['name']:<17} {row['seconds']:>8.3f} {row['memory']:>9.1f} {speed:>9} {diff:>11}"
        )


def _difference(row: dict[str, Any], reference: dict[str, Any]) -> float:
    return max(abs(a - b) for a, b in zip(row["stats"], reference["stats"], strict=True))


def _targets(rows: dict[str, dict[str, Any]]) -> None:
    """Print whether visionkit meets its speed and memory targets."""
    ours, coco, faster = (rows.get(n, {}) for n in ("visionkit", "pycocotools", "faster-coco-eval"))
    if "stats" in ours and "stats" in coco:
        speed = coco["seconds"] / ours["seconds"]
        print(f"target >= 5x faster than pycocotools: {speed:.1f}x -> {_verdict(speed >= 5)}")
        memory = ours["memory"] <= coco["memory"]
        print(f"target peak memory <= pycocotools': {_verdict(memory)}")
    if "stats" in ours and "stats" in faster:
        ratio = faster["seconds"] / ours["seconds"]
        print(f"target not slower than faster-coco-eval: {ratio:.1f}x -> {_verdict(ratio >= 1)}")


def _verdict(met: bool) -> str:
    return "met" if met else "NOT MET"


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    options = {
        "seed": args.seed,
        "num_images": args.images,
        "num_categories": args.categories,
        "gt_per_image": args.gt_per_image,
        "preds_per_image": args.preds_per_image,
    }
    print(f"COCO bbox evaluation of make_evaluation_set({options}), one process each")
    rows = [_run_child(name, options) for name in args.libraries]
    _table(rows)
    by_name = {row["name"]: row for row in rows}
    _targets(by_name)
    ours, coco = by_name.get("visionkit", {}), by_name.get("pycocotools", {})
    if "stats" in ours and "stats" in coco and _difference(ours, coco) > TOLERANCE:
        print(f"visionkit differs from pycocotools by more than {TOLERANCE}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
