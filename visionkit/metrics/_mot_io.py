"""MOTChallenge text files: read and write track sets, find the sequences of a folder.

A MOTChallenge file has one box per line: ``frame, id, x, y, w, h, conf`` and then either
``class, visibility`` (ground truth) or ``x, y, z`` (tracker output, ``-1`` each); frames
count from 1 and boxes are ``xywh`` pixels, converted to ``xyxy`` here, once. Columns
past the seventh are read past, not checked. Values may be separated by commas or spaces.

Of TrackEval's MOT preprocessing only the "zero-marked" rule is applied, to ground truth:
a line whose ``conf`` is 0 is not evaluated and is dropped. Not applied, since it is
specific to the MOT17/MOT20 annotation: keeping only the pedestrian class (column 8) and
removing tracker boxes that match a distractor-class box (static person, reflection...).
To score a MOT17 ground truth as the benchmark does, filter those lines out first.
"""

from __future__ import annotations

import configparser
import re
from itertools import pairwise
from pathlib import Path

import numpy as np

from visionkit.errors import DataError
from visionkit.metrics._mot_data import Tracks
from visionkit.ops.boxes import box_convert

COLUMNS = ("frame", "id", "x", "y", "width", "height", "conf")
MIN_COLUMNS, MAX_COLUMNS = 6, 10
_SEPARATOR = re.compile(r"\s*,\s*|\s+")


def read_mot_file(
    path: str | Path, *, ground_truth: bool = False, num_frames: int | None = None
) -> Tracks:
    """Read one MOTChallenge file (ground truth or tracker output) into :class:`Tracks`.

    Args:
        path: The ``.txt`` file.
        ground_truth: Drop lines whose ``conf`` column is 0 (not evaluated, as TrackEval).
        num_frames: Length of the sequence (``seqLength`` of ``seqinfo.ini``); frames past it
            are refused. ``None``: the last frame in the file.

    Returns:
        Per-frame ids, ``xyxy`` boxes and confidences (1 where the file has 6 columns).

    Raises:
        DataError: Naming file, line and field, for an unreadable file, a wrong column
            count, a non-numeric, NaN or infinite value, a frame number below 1 (or past
            ``num_frames``), a non-integer frame or id, a negative width or height, or an id
            given twice in one frame.
    """
    path = Path(path)
    rows, lines = _parse(path)
    _check_rows(rows, lines, path, num_frames)
    if ground_truth:
        rows = rows[rows[:, 6] != 0]
    frames = rows[:, 0].astype(np.int64)
    last = int(frames.max(initial=0)) if num_frames is None else num_frames
    order = np.argsort(frames, kind="stable")
    rows = rows[order]
    bounds = np.searchsorted(frames[order], np.arange(1, last + 2))
    parts = [rows[start:stop] for start, stop in pairwise(bounds)]
    return Tracks(
        ids=[p[:, 1] for p in parts],
        boxes=[box_convert(p[:, 2:6], "xywh", "xyxy") for p in parts],
        scores=[p[:, 6] for p in parts],
    )


def write_mot_file(path: str | Path, tracks: Tracks) -> None:
    """Write ``tracks`` as a MOTChallenge tracker file (10 columns, ``xywh``, frames from 1).

    Each line is ``frame,id,x,y,w,h,conf,-1,-1,-1``; numbers are written in the shortest
    form that reads back exactly. The parent folder is created if needed.
    """
    lines = []
    for t, (ids, boxes, scores) in enumerate(
        zip(tracks.ids, tracks.boxes, tracks.scores, strict=True)
    ):
        for i, box, score in zip(ids, box_convert(boxes, "xyxy", "xywh"), scores, strict=True):
            values = ",".join(_number(v) for v in (*box, score))
            lines.append(f"{t + 1},{i},{values},-1,-1,-1\n")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(lines))


def sequence_files(folder: str | Path, *, allow_empty: bool = False) -> dict[str, Path]:
    """The sequences of a folder by name: ``<seq>.txt`` files, or ``<seq>/gt/gt.txt``.

    Raises:
        DataError: The folder does not exist, gives one name twice, or holds no sequence
            (unless ``allow_empty``).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError("no such folder", file=folder)
    found: dict[str, Path] = {}
    for file in sorted([*folder.glob("*.txt"), *folder.glob("*/gt/gt.txt")]):
        name = file.stem if file.parent == folder else file.parent.parent.name
        if name in found:
            raise DataError(f"sequence {name!r} is also given by {found[name]}", file=file)
        found[name] = file
    if not found and not allow_empty:
        raise DataError("no sequence found: expected <seq>.txt or <seq>/gt/gt.txt", file=folder)
    return found


def sequence_length(file: Path) -> int | None:
    """``seqLength`` from the ``seqinfo.ini`` beside a ``<seq>/gt/gt.txt`` file, if any."""
    info = file.parent.parent / "seqinfo.ini"
    if file.name != "gt.txt" or not info.is_file():
        return None
    parser = configparser.ConfigParser()
    try:
        parser.read(info)
        return parser.getint("Sequence", "seqLength")
    except (configparser.Error, ValueError) as error:
        raise DataError(f"cannot read seqLength: {error}", file=info, field="seqLength") from None


def _parse(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``[R, 7]`` float rows (``conf`` 1 where absent) and their ``[R]`` line numbers."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"cannot read the file: {error}", file=path) from None
    rows, lines = [], []
    for number, line in enumerate(text.splitlines(), start=1):
        values = _SEPARATOR.split(line.strip().rstrip(","))
        if values == [""]:
            continue
        if not MIN_COLUMNS <= len(values) <= MAX_COLUMNS:
            raise DataError(
                f"expected {MIN_COLUMNS} to {MAX_COLUMNS} columns, got {len(values)}",
                file=path,
                record=f"line {number}",
            )
        rows.append(
            [_float(v, path, number, field) for v, field in zip(values, COLUMNS, strict=False)]
        )
        rows[-1] += [1.0] * (len(COLUMNS) - len(rows[-1]))
        lines.append(number)
    return np.array(rows, dtype=np.float64).reshape(-1, len(COLUMNS)), np.array(lines)


def _float(value: str, path: Path, line: int, field: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise DataError(
            f"{value!r} is not a number", file=path, record=f"line {line}", field=field
        ) from None


def _check_rows(rows: np.ndarray, lines: np.ndarray, path: Path, num_frames: int | None) -> None:
    """Raise :class:`DataError` at the first line that breaks a rule (see ``read_mot_file``)."""
    checks = [
        (~np.isfinite(rows), COLUMNS, "must be finite (no NaN or inf)"),
        (rows[:, :2] % 1 != 0, COLUMNS[:2], "must be an integer"),
        (rows[:, :1] < 1, COLUMNS[:1], "frames are numbered from 1"),
        (rows[:, 4:6] < 0, COLUMNS[4:6], "must not be negative"),
    ]
    if num_frames is not None:
        checks.append((rows[:, :1] > num_frames, COLUMNS[:1], f"past the last frame {num_frames}"))
    for bad, fields, message in checks:
        if bad.any():
            row, column = np.argwhere(bad)[0]
            raise DataError(message, file=path, record=f"line {lines[row]}", field=fields[column])
    _check_unique(rows[:, 0], rows[:, 1], lines, path)


def _check_unique(frame: np.ndarray, ids: np.ndarray, lines: np.ndarray, path: Path) -> None:
    """Raise :class:`DataError` at the first line that repeats an id within its frame."""
    order = np.lexsort((lines, ids, frame))
    repeated = (np.diff(frame[order]) == 0) & (np.diff(ids[order]) == 0)
    if repeated.any():
        later = order[1:][repeated]
        first = order[:-1][repeated]
        k = np.argmin(lines[later])
        raise DataError(
            f"id {int(ids[later[k]])} appears twice in frame {int(frame[later[k]])} "
            f"(first on line {lines[first[k]]})",
            file=path,
            record=f"line {lines[later[k]]}",
            field="id",
        )


def _number(value: float) -> str:
    """Shortest decimal that reads back as ``value`` exactly, without exponent."""
    return np.format_float_positional(value, trim="-")
