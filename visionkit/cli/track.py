"""``visionkit track val``: evaluate MOTChallenge tracker files against ground truth.

No model is needed and torch is not imported: HOTA, CLEAR and Identity metrics equal to
TrackEval's, printed as one row per sequence and a combined row.
"""

from __future__ import annotations

import argparse

from visionkit.cli._parsing import Option, add_group, add_mode, given, parse_bool
from visionkit.cli._tables import format_table, to_json

# (column header, result key) of the table, in TrackEval's order.
_COLUMNS = (
    ("HOTA", "hota"),
    ("DetA", "deta"),
    ("AssA", "assa"),
    ("LocA", "loca"),
    ("MOTA", "mota"),
    ("MOTP", "motp"),
    ("IDF1", "idf1"),
    ("IDSW", "id_switches"),
    ("Frag", "fragmentations"),
    ("FP", "false_positives"),
    ("FN", "false_negatives"),
)


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``track`` and its modes to the top-level ``commands``."""
    modes = add_group(commands, "track", "Multi-object tracking: evaluate tracker output.")
    add_mode(
        modes,
        "val",
        _val,
        "score MOTChallenge tracker files against ground truth (HOTA, MOTA, IDF1)",
        [
            Option("gt", "ground-truth folder (<seq>.txt files or <seq>/gt/gt.txt)", required=True),
            Option("pred", "tracker folder (<seq>.txt files)", required=True),
            Option("json", "print one JSON object instead of a table (true/false)", parse_bool),
        ],
    )


def _val(args: argparse.Namespace) -> int:
    from visionkit.metrics.tracking import evaluate_mot_folders

    kwargs = given(args, drop=("json",))
    result = evaluate_mot_folders(kwargs["gt"], kwargs["pred"])
    if getattr(args, "json", False):
        print(to_json(result))
        return 0
    rows = [[name, *(metrics[key] for _, key in _COLUMNS)] for name, metrics in _rows(result)]
    print(format_table(["sequence", *(header for header, _ in _COLUMNS)], rows))
    return 0


def _rows(result: dict) -> list[tuple[str, dict]]:
    """(name, metrics) per sequence, then the combined row."""
    return [*result["per_sequence"].items(), ("COMBINED", result["combined"])]
