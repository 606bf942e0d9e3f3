"""Joining the process group ``torchrun`` (or ``qwen3 ... --tensor-parallel``) set up."""

from __future__ import annotations

import datetime
import os

import torch

from qwen3core.errors import ParallelError
from qwen3core.parallel.communicator import ProcessGroupCommunicator
from qwen3core.parallel.layout import SINGLE_PROCESS, ParallelLayout

#: How long a collective may wait for the other ranks before the process group gives up.
TIMEOUT = datetime.timedelta(minutes=10)


def backend_for(device: torch.device) -> str:
    return "nccl" if device.type == "cuda" else "gloo"


def join(tensor_parallel: int | None, device: torch.device | None) -> ParallelLayout:
    """The layout of this process among ``tensor_parallel`` ranks; initialises the default
    process group from torchrun's environment (RANK, WORLD_SIZE, MASTER_ADDR...) if needed."""
    if tensor_parallel is None or tensor_parallel == 1:
        return SINGLE_PROCESS
    if not isinstance(tensor_parallel, int) or tensor_parallel < 1:
        raise ParallelError(f"tensor_parallel must be a positive integer, got "
                            f"{tensor_parallel!r}")
    import torch.distributed as dist

    if not dist.is_available():
        raise ParallelError("this torch build has no torch.distributed support")
    if not dist.is_initialized():
        if "WORLD_SIZE" not in os.environ:
            raise ParallelError(
                f"tensor_parallel={tensor_parallel} runs one process per rank: launch with "
                f"`torchrun --nproc-per-node {tensor_parallel} your_script.py`, or use "
                f"`qwen3 generate --tensor-parallel {tensor_parallel}` (see docs/parallel.md)")
        device = device or torch.device("cpu")
        dist.init_process_group(backend_for(device), timeout=TIMEOUT)
    world = dist.get_world_size()
    if world != tensor_parallel:
        raise ParallelError(f"tensor_parallel={tensor_parallel} but the process group has "
                            f"{world} ranks; launch {tensor_parallel} processes "
                            f"(torchrun --nproc-per-node {tensor_parallel})")
    return ParallelLayout(dist.get_rank(), world, ProcessGroupCommunicator())


def rank_device(device: torch.device, layout: ParallelLayout) -> torch.device:
    """Each rank its own GPU: ``cuda`` becomes ``cuda:<LOCAL_RANK>``."""
    if device.type == "cuda" and device.index is None and layout.is_parallel:
        local = int(os.environ.get("LOCAL_RANK", layout.rank))
        torch.cuda.set_device(local)
        return torch.device("cuda", local)
    return device
