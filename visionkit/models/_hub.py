"""Remote weights on local disk: the torch hub cache for torchvision, the Hugging Face cache for hf.

Both caches are located from the environment at call time (``TORCH_HOME``; ``HF_HUB_CACHE``
or ``HF_HOME``), and ``VISIONKIT_OFFLINE=1`` is read at call time too, so a test or a user
can point them elsewhere without restarting Python. A miss that cannot be downloaded
raises one :class:`~visionkit.errors.WeightsError` that names the file or folder to put in
place; nothing here runs at import.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlparse

import torch

from visionkit.errors import WeightsError

LoadedT = TypeVar("LoadedT")

_TRUE = {"1", "ON", "YES", "TRUE"}


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().upper() in _TRUE


def offline() -> bool:
    """Whether downloads are off: ``VISIONKIT_OFFLINE`` set to 1/true/yes/on, read now."""
    return _env_flag("VISIONKIT_OFFLINE")


def torchvision_cache_path(url: str) -> Path:
    """Where torch hub keeps the checkpoint at ``url``: ``<hub dir>/checkpoints/<file name>``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(url).path).name


def fetch_torchvision(url: str) -> Path:
    """The local copy of a torchvision checkpoint: cached, else downloaded unless offline.

    The download is checked against the hash prefix in the file name, as torchvision does.

    Raises:
        WeightsError: Not cached and offline, or the download failed; the message names
            the file and the folder to place it in.
    """
    path = torchvision_cache_path(url)
    if path.is_file():
        return path
    hint = f"download {url} and place it as {path.name} in {path.parent}"
    if offline():
        raise WeightsError(
            f"not cached and downloads are off (VISIONKIT_OFFLINE); {hint}", file=path
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    digest = torch.hub.HASH_REGEX.search(path.name)
    try:
        torch.hub.download_url_to_file(
            url,
            str(path),
            hash_prefix=digest.group(1) if digest else None,
            progress=sys.stderr.isatty(),
        )
    except (OSError, RuntimeError) as error:  # URLError is an OSError; a bad hash a RuntimeError
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise WeightsError(f"download failed ({reason}); {hint}", file=path) from error
    return path


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache folder, from the environment as it is now."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    xdg = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(os.environ.get("HF_HOME") or Path(xdg) / "huggingface") / "hub"


def _looks_like_folder(ref: str) -> bool:
    """Whether an hf reference names a folder (a repo id is ``name`` or ``org/name``)."""
    return ref.startswith(("/", ".", "~")) or ref.count("/") > 1 or "\\" in ref


def hf_from_pretrained(ref: str, factory: Callable[..., LoadedT], **kwargs: Any) -> LoadedT:
    """Call a transformers ``from_pretrained`` on a repo id or a local folder, offline-aware.

    Args:
        ref: ``org/name`` on the Hugging Face Hub, or a folder written by ``save_pretrained``.
        factory: The ``from_pretrained`` to call (``AutoModelForImageClassification...``).
        **kwargs: Passed on to ``factory``.

    Returns:
        What ``factory`` returns.

    Raises:
        WeightsError: The folder is missing or unreadable, or the repo is neither cached nor
            downloadable; the message says which folder to fill.
    """
    folder = Path(ref).expanduser()
    if folder.is_dir() or _looks_like_folder(ref):
        if not folder.is_dir():
            raise WeightsError("no such folder for hf weights", file=folder)
        try:
            return factory(str(folder), **kwargs)
        except (OSError, ValueError) as error:
            raise WeightsError(f"cannot load it with transformers: {error}", file=folder) from error
    cache = hf_cache_dir()
    local = offline() or _env_flag("HF_HUB_OFFLINE")
    hub = {"cache_dir": str(cache), "local_files_only": local}
    try:
        # The adapter lookup of the Auto classes ignores local_files_only unless told again.
        return factory(ref, **hub, adapter_kwargs=dict(hub), **kwargs)
    except OSError as error:
        target = cache / f"models--{ref.replace('/', '--')}"
        why = "downloads are off (VISIONKIT_OFFLINE/HF_HUB_OFFLINE)" if local else "download failed"
        raise WeightsError(
            f"hf:{ref} is not in the Hugging Face cache and {why}; on a connected machine run "
            f"`hf download {ref}` and copy its folder {target.name} into {cache}, or pass "
            "weights='hf:<folder>' with a folder written by save_pretrained",
            file=target,
        ) from error
