"""The layering rule of the design notes, enforced: a module imports only its own layer or lower."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "visionkit"
LAYER = {
    "structures": 1,
    "errors": 1,
    "ops": 1,
    "data": 2,
    "metrics": 3,
    "viz": 3,
    "models": 4,
    "train": 5,
    "track": 5,
    "explain": 5,
    "robust": 5,
    "report": 6,
    "api": 7,
    "cli": 7,
}
# What each layer-3 package may use besides its own layer: the design notes keep metrics and
# viz on layer 1 so the trainer and every tool above can use them.
ONLY_LAYER_ONE = {"metrics", "viz"}


def _imported_packages(path: Path) -> list[tuple[int, str]]:
    """(line, top-level visionkit package) for every visionkit import in ``path``."""
    own = path.relative_to(PACKAGE).with_suffix("").parts
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = list(own[: -node.level])
            parts = base + (node.module.split(".") if node.module else [])
            if parts:
                found.append((node.lineno, parts[0]))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("visionkit."):
            found.append((node.lineno, node.module.split(".")[1]))
        elif isinstance(node, ast.Import):
            found += [
                (node.lineno, a.name.split(".")[1])
                for a in node.names
                if a.name.startswith("visionkit.")
            ]
    return found


def test_no_module_imports_a_higher_layer():
    bad = []
    for path in PACKAGE.rglob("*.py"):
        own = path.relative_to(PACKAGE).with_suffix("").parts[0]
        if own not in LAYER:
            continue
        for line, theirs in _imported_packages(path):
            limit = 1 if own in ONLY_LAYER_ONE and theirs != own else LAYER[own]
            if LAYER.get(theirs, 0) > limit:
                bad.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports visionkit.{theirs}")
    assert bad == []


@pytest.mark.parametrize(
    "module",
    [
        "visionkit",
        "visionkit.cli",
        "visionkit.data.check",
        "visionkit.data.formats.coco",
        "visionkit.data.formats.yolo",
        "visionkit.data.formats.voc",
        "visionkit.data.formats.folder",
        "visionkit.data.formats.masks",
        "visionkit.data.synthetic",
        "visionkit.viz",
        "visionkit.metrics.detection",
        "visionkit.metrics.tracking",
    ],
)
def test_fast_start_modules_do_not_import_torch(module):
    """`--help`, `data check` and `val` on files must answer at once: no torch at import time."""
    code = f"import sys, {module}; print('torch' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"
