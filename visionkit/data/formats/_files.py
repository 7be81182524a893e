"""File helpers shared by the format writers (and the trainer's atomic writes)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO


def place_file(src: Path, dst: Path) -> None:
    """Put ``src`` at ``dst``: nothing when they are the same file, else a hard link, else a copy.

    Hard links make converting a large dataset between formats cost no disk space; a copy
    is the fallback across file systems.
    """
    if dst.exists() and src.resolve() == dst.resolve():
        return
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists():
        dst.unlink()
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def write_bytes_atomic(
    path: Path, write: Callable[[IO[bytes]], None], *, mode: int | None = None
) -> None:
    """Create or replace ``path`` whole: ``write`` fills a temporary file in the same folder,
    which is flushed to disk and renamed over ``path``, so a reader (or a process killed at
    any moment) finds either the old file or the new one, never half of one.

    Args:
        path: The file to create or replace; its folder is created if missing.
        write: Writes the content to the binary file object it is given.
        mode: Permission bits of the file; ``None`` gives those of a plain ``open``
            (``0o666`` less the umask).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        # mkstemp makes 0600; give the file the permissions asked for, or normal ones.
        os.chmod(tmp, 0o666 & ~_umask() if mode is None else mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` through :func:`write_bytes_atomic`, so a reader
    never sees a half-written label file."""
    # "\n" becomes os.linesep, as a file opened in text mode writes it.
    write_bytes_atomic(path, lambda handle: handle.write(text.replace("\n", os.linesep).encode()))


def _umask() -> int:
    """The process umask (reading it means setting it, so set it straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
