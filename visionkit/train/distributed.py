"""Where and how a run executes: devices, seeding, torchrun process groups and data loaders.

One process trains on one device. Launched by ``torchrun`` (``RANK``, ``WORLD_SIZE`` and
``LOCAL_RANK`` in the environment), every process runs the same script; the trainer then
joins them in a process group (gloo for CPU tensors, NCCL for CUDA ones), wraps the model
in ``DistributedDataParallel`` and gives each process its share of the data, and only the
main process writes files or prints.

Shuffling never draws from the global random generators: each epoch's order comes from a
generator seeded by ``(seed, epoch)``, so a resumed run sees the same batches as an
uninterrupted one, and loader workers seed numpy and :mod:`random` from their torch seed.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Iterator, Sized
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from visionkit.errors import ConfigError

__all__ = [
    "DistContext",
    "EpochSampler",
    "ShardSampler",
    "all_reduce_sum",
    "barrier",
    "broadcast_from_main",
    "deterministic_mode",
    "dist_context",
    "epoch_seed",
    "gather_from_all",
    "init_distributed",
    "make_loader",
    "seed_everything",
    "select_device",
    "set_epoch",
    "shutdown_distributed",
    "unwrap",
    "wrap_model",
]

T = TypeVar("T")
_owned_group = False  # whether init_distributed started the current process group


@dataclass(frozen=True)
class DistContext:
    """This process's place in a torchrun launch (``rank 0 of 1`` when launched alone)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        """More than one process trains together."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """This process writes the run's files and prints."""
        return self.rank == 0


def dist_context() -> DistContext:
    """This process's rank, world size and local rank: from the joined process group, else
    from torchrun's environment."""
    if dist.is_initialized():
        local_rank = int(os.environ.get("LOCAL_RANK", dist.get_rank()))
        return DistContext(dist.get_rank(), dist.get_world_size(), local_rank)
    try:
        values = [int(os.environ.get(key, default)) for key, default in _ENV]
    except ValueError:
        found = {key: os.environ.get(key) for key, _ in _ENV}
        raise ConfigError(f"torchrun variables must be integers, got {found}") from None
    return DistContext(*values)


_ENV = (("RANK", "0"), ("WORLD_SIZE", "1"), ("LOCAL_RANK", "0"))


def init_distributed() -> DistContext:
    """Join torchrun's process group if launched by it and not joined yet (else nothing).

    The group speaks gloo for CPU tensors and, where CUDA exists, NCCL for CUDA tensors.
    :func:`shutdown_distributed` leaves a group started here; one the caller started is
    the caller's to end.
    """
    global _owned_group
    context = dist_context()
    if context.enabled and not dist.is_initialized():
        backend = "gloo"
        if torch.cuda.is_available():
            torch.cuda.set_device(context.local_rank)
            backend = "cpu:gloo,cuda:nccl"
        dist.init_process_group(backend, rank=context.rank, world_size=context.world_size)
        _owned_group = True
    return context


def shutdown_distributed() -> None:
    """Wait for every process, then leave the process group if :func:`init_distributed`
    started it."""
    global _owned_group
    barrier()
    if _owned_group and dist.is_initialized():
        dist.destroy_process_group()
    _owned_group = False


def barrier() -> None:
    """Wait until every process gets here (nothing when training alone)."""
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def broadcast_from_main(value: T) -> T:
    """The main process's ``value`` (any picklable object), on every process.

    Raises:
        ConfigError: Launched by torchrun but the process group is not joined yet.
    """
    if not dist_context().enabled:
        return value
    if not dist.is_initialized():
        raise ConfigError(
            "call visionkit.train.distributed.init_distributed() first under torchrun"
        )
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_from_all(value: T) -> list[T]:
    """Every process's ``value`` (any picklable object), in rank order, on every process."""
    if not (dist.is_initialized() and dist.get_world_size() > 1):
        return [value]
    values: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(values, value)
    return values


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` summed over every process, in place (unchanged when training alone)."""
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def select_device(spec: str = "auto", local_rank: int = 0) -> torch.device:
    """The device a ``device`` setting names; ``"auto"`` picks CUDA, then MPS, then CPU.

    Args:
        spec: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:<index>"`` or ``"mps"``.
        local_rank: This process's GPU under torchrun, used for ``"auto"`` and ``"cuda"``.

    Raises:
        ConfigError: The name is not a device, or that device is not available.
    """
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank)
        return torch.device("mps" if torch.backends.mps.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except RuntimeError:
        message = "not a device name; use auto, cpu, cuda, cuda:N or mps"
        raise ConfigError(message, field="device") from None
    if device.type == "cuda":
        return _cuda_device(device, spec, local_rank)
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("MPS is not available on this machine", field="device")
    if device.type not in ("cpu", "mps"):
        raise ConfigError(f"unsupported device {spec!r}", field="device")
    return device


def ready_for_inference(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` on ``device`` in eval mode, visiting its submodules only when that changes
    something: a repeated ``predict`` of one image then costs the network's forward, not two
    walks over every submodule (milliseconds for a small detector on a CPU). The first
    parameter's device and the root's ``training`` flag stand for the whole model, as they
    do after ``model.to(device).eval()``.
    """
    first = next(model.parameters(), None)
    if first is None or first.device != device:
        model.to(device)
    if model.training:
        model.eval()
    return model


def _cuda_device(device: torch.device, spec: str, local_rank: int) -> torch.device:
    index = local_rank if device.index is None else device.index
    if not torch.cuda.is_available() or index >= torch.cuda.device_count():
        raise ConfigError(f"{spec!r} is not available on this machine", field="device")
    return torch.device("cuda", index)


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's global generators (every device)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@contextmanager
def deterministic_mode(enabled: bool) -> Iterator[None]:
    """Ask torch for deterministic kernels inside the block and restore the settings after.

    Operations without a deterministic kernel warn rather than fail, so a run never dies
    midway for it. cuBLAS reads ``CUBLAS_WORKSPACE_CONFIG`` when it first starts, so it is
    set here for runs that had not touched CUDA yet.
    """
    before = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
    )
    if enabled:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = before[2:]


def epoch_seed(seed: int, epoch: int, rank: int = 0) -> int:
    """A well-mixed 63-bit seed for ``(seed, epoch, rank)``: nearby inputs give unrelated
    seeds, unlike ``seed + epoch``."""
    state = np.random.SeedSequence([seed, epoch, rank]).generate_state(2, np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


class EpochSampler(Sampler[int]):
    """A fresh random order of ``range(size)`` each epoch, from ``(seed, epoch)`` alone."""

    def __init__(self, size: int, seed: int) -> None:
        self.size, self.seed, self.epoch = size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose order the next iteration gives."""
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch))
        return iter(torch.randperm(self.size, generator=generator).tolist())

    def __len__(self) -> int:
        return self.size


class ShardSampler(Sampler[int]):
    """Every ``world_size``-th index from ``rank``, in order: the shards of all processes
    cover the data exactly once (``DistributedSampler`` repeats samples to even them out,
    which would count them twice in evaluation)."""

    def __init__(self, size: int, rank: int, world_size: int) -> None:
        self.indices = range(rank, size, world_size)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def make_loader(
    dataset: Dataset,
    *,
    batch: int,
    train: bool,
    seed: int,
    workers: int,
    collate: Callable[[list[Any]], Any] | None = None,
    context: DistContext | None = None,
) -> DataLoader:
    """A loader giving this process its share of ``dataset``.

    Args:
        dataset: A map-style dataset.
        batch: Samples per step over all processes; each process loads
            ``batch // world_size``.
        train: Shuffle per epoch (call :func:`set_epoch` before each); else keep the order.
        seed: Seeds the shuffling and the workers.
        workers: Worker processes.
        collate: Batches a list of samples; ``None`` = torch's default collate.
        context: The torchrun place of this process; ``None`` reads it from the environment.

    Raises:
        ConfigError: ``batch`` is not a multiple of the number of processes.
    """
    context = context or dist_context()
    if batch % context.world_size:
        raise ConfigError(
            f"must be a multiple of the {context.world_size} processes, got {batch}", field="batch"
        )
    size = len(dataset) if isinstance(dataset, Sized) else 0
    sampler: Sampler[int]
    if train and context.enabled:
        sampler = DistributedSampler(
            dataset, num_replicas=context.world_size, rank=context.rank, seed=seed
        )
    elif train:
        sampler = EpochSampler(size, seed)
    else:
        sampler = ShardSampler(size, context.rank, context.world_size)
    return DataLoader(
        dataset,
        batch_size=batch // context.world_size,
        sampler=sampler,
        num_workers=workers,
        collate_fn=collate,
        pin_memory=torch.cuda.is_available(),
        worker_init_fn=_seed_worker,
        generator=torch.Generator().manual_seed(epoch_seed(seed, 0, context.rank)),
    )


def set_epoch(loader: DataLoader, epoch: int, seed: int, rank: int = 0) -> None:
    """Make ``loader``'s next pass the one for ``epoch``: its order, and its workers' seeds."""
    if hasattr(loader.sampler, "set_epoch"):
        loader.sampler.set_epoch(epoch)
    loader.generator.manual_seed(epoch_seed(seed, epoch, rank))


def _seed_worker(worker_id: int) -> None:
    """Seed a loader worker's numpy and :mod:`random` from its torch seed, which torch
    derives from the loader's generator and the worker's id."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def wrap_model(model: nn.Module, device: torch.device, context: DistContext) -> nn.Module:
    """``model`` in ``DistributedDataParallel`` when several processes train, else itself."""
    if not context.enabled:
        return model
    device_ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside a ``DistributedDataParallel`` wrapper (or ``model`` itself)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
