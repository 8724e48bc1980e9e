"""Data-parallel training across processes (torch.distributed): who this process is, the process group, the
DDP wrapper the training step goes through, and the few collectives the trainer needs.

A run is distributed when it was started by ``torchrun`` (or ``asrkt.bin.train --nproc N``, which starts
torchrun's launcher itself): ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` are in the environment. The backend
follows the device: gloo on the CPU, NCCL on CUDA (one GPU per process, ``cuda:<LOCAL_RANK>``).

The design keeps the single-process result: every rank draws the same global batches (same seed, same
shuffling), each rank takes its share of every batch (:class:`asrkt.data.dataset.ShardedBatchSampler`), and the
loss is normalised by the *global* unit counts, so the summed gradient equals the one-process gradient up to
float rounding. See ``docs/distributed.md``.
"""
from __future__ import annotations

import ctypes
import dataclasses
import logging
import os
import signal
import sys

import torch

from asrkt.utils.errors import AsrktError

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @staticmethod
    def from_env() -> "DistInfo":
        """This process's place, from torchrun's variables (none: a single process)."""
        try:
            world = int(os.environ.get("WORLD_SIZE", "1"))
            rank = int(os.environ.get("RANK", "0"))
            local = int(os.environ.get("LOCAL_RANK", str(rank)))
        except ValueError:
            raise AsrktError("RANK, WORLD_SIZE and LOCAL_RANK must be integers (are they set by torchrun?), got "
                             f"{os.environ.get('RANK')!r}, {os.environ.get('WORLD_SIZE')!r}, "
                             f"{os.environ.get('LOCAL_RANK')!r}") from None
        if world < 1 or not 0 <= rank < world:
            raise AsrktError(f"RANK {rank} must lie in [0, WORLD_SIZE {world})")
        return DistInfo(rank=rank, world=world, local_rank=local)


SINGLE = DistInfo()


def die_with_parent() -> None:
    """torchrun starts its workers in a session of their own: make the kernel kill this worker when its launcher
    dies (even by SIGKILL), so that a killed recipe leaves no trainer behind to race the rerun (Linux only)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        return
    if os.getppid() == 1:  # the launcher died before prctl took effect
        os.kill(os.getpid(), signal.SIGKILL)


def device_for(dist: DistInfo, device: torch.device) -> torch.device:
    """The device of this rank: ``cuda:<LOCAL_RANK>`` when training on CUDA with several processes."""
    if not dist.enabled or device.type != "cuda":
        return device
    if device.index not in (None, dist.local_rank):
        raise AsrktError(f"device {device} with {dist.world} processes: give device cuda (or auto); each process "
                         "takes the GPU of its LOCAL_RANK")
    if dist.local_rank >= torch.cuda.device_count():
        raise AsrktError(f"LOCAL_RANK {dist.local_rank} but only {torch.cuda.device_count()} GPU(s) visible: start at "
                         "most as many processes per node as GPUs")
    return torch.device("cuda", dist.local_rank)


def init_process_group(dist: DistInfo, device: torch.device) -> None:
    """Join the process group (gloo on the CPU, NCCL on CUDA); a no-op for a single process."""
    if not dist.enabled or torch.distributed.is_initialized():
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    torch.distributed.init_process_group(backend=backend, rank=dist.rank, world_size=dist.world,
                                         **({"device_id": device} if device.type == "cuda" else {}))
    logger.info("torch.distributed: rank %d of %d (local rank %d), backend %s, device %s", dist.rank, dist.world,
                dist.local_rank, backend, device)


def destroy_process_group() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def all_reduce_sum(values: list[float], device: torch.device) -> list[float]:
    """Element-wise sum over the ranks of a short list of numbers (float64; on the device NCCL needs)."""
    t = torch.tensor(values, dtype=torch.float64, device=device)
    torch.distributed.all_reduce(t)
    return t.tolist()


class ModelStep(torch.nn.Module):
    """What DDP wraps: the model's forward, or its forward with the hidden layers (for terms on them). DDP syncs
    gradients only for passes through its own ``forward``, so the choice is an argument, not another method."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, feats, lengths, with_hidden: bool = False):
        if with_hidden:
            return self.model.forward_with_hidden(feats, lengths)
        return self.model(feats, lengths)


def wrap(model: torch.nn.Module, dist: DistInfo, device: torch.device) -> torch.nn.Module:
    """The module the training step calls: ``model`` itself for one process, else DDP around it (which
    broadcasts rank 0's parameters, so every rank starts from the same weights)."""
    if not dist.enabled:
        return ModelStep(model)
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(ModelStep(model), device_ids=[device.index] if device.type == "cuda" else None)
