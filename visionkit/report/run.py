"""An HTML page for a run folder: its settings, its final metrics and every plot it holds.

The page links the PNGs beside it by relative path, so the run folder can be moved or
zipped and the page still opens in any browser; nothing is fetched from the network.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import yaml

__all__ = ["PLOTS", "write_run_report"]

PLOTS = (
    ("results.png", "Training curves"),
    ("pr_curve.png", "Precision-recall curves (IoU 0.5)"),
    ("confusion_matrix.png", "Confusion matrix"),
    ("val_predictions.png", "Validation images with predictions"),
)
"""The plots a run folder may hold, in page order, with their headings."""


def write_run_report(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write ``index.html`` (or ``out``) for ``run_dir`` and return its path.

    The metrics come from ``val_metrics.json`` (the final validation) when the run has
    one, else from the best epoch in ``metrics.json``; scalar values only.
    """
    run_dir = Path(run_dir)
    out = Path(out) if out is not None else run_dir / "index.html"
    args = _read_yaml(run_dir / "args.yaml")
    metrics = _final_metrics(run_dir)
    sections = [f"<h1>{html.escape(str(run_dir))}</h1>"]
    if metrics:
        sections.append("<h2>Metrics</h2>" + _table(metrics))
    for name, heading in PLOTS:
        if (run_dir / name).is_file():
            sections.append(f'<h2>{heading}</h2><img src="{name}" alt="{heading}">')
    if args:
        sections.append("<h2>Settings</h2>" + _table(args))
    page = (
        '<!doctype html><html><head><meta charset="utf-8"><title>visionkit run</title>'
        "<style>body{font-family:sans-serif;margin:2em}img{max-width:100%}"
        "td{padding:2px 12px}</style></head><body>" + "\n".join(sections) + "</body></html>\n"
    )
    out.write_text(page, encoding="utf-8")
    return out


def _read_yaml(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text()) or {} if path.is_file() else {}


def _final_metrics(run_dir: Path) -> dict[str, Any]:
    final = run_dir / "val_metrics.json"
    if final.is_file():
        metrics = json.loads(final.read_text())
    elif (run_dir / "metrics.json").is_file():
        metrics = json.loads((run_dir / "metrics.json").read_text()).get("best", {})
    else:
        return {}
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and v is not None}


def _table(values: dict[str, Any]) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(_format(v))}</td></tr>"
        for k, v in values.items()
    )
    return f"<table>{rows}</table>"


def _format(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)
