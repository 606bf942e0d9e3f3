"""Starting the ranks of a tensor-parallel command: the same ``qwen3`` command, run once per
rank by ``torch.distributed.run`` (torchrun) on this machine.

The command the user typed re-runs itself under torchrun; each copy sees torchrun's
environment (RANK, WORLD_SIZE, ...), loads its shard and runs the same steps; rank 0 alone
writes the output.
"""

from __future__ import annotations

import os
import subprocess
import sys


def in_worker() -> bool:
    """Whether this process is one of torchrun's ranks."""
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def torchrun_command(nproc: int, module: str, args: list[str]) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc-per-node={nproc}", "-m", module, *args]


def check_splits(source: str, nproc: int) -> None:
    """Raise :class:`~qwen3core.errors.ParallelError` before any process starts when the model
    ``source`` names cannot be split over ``nproc`` ranks (reads config.json only)."""
    from qwen3core.parallel.layout import ParallelLayout
    from qwen3core.sources import RANDOM_PREFIX, parse_random

    if source.startswith(RANDOM_PREFIX):
        spec = parse_random(source).spec
    else:
        from qwen3core.checkpoint import read_spec

        spec = read_spec(source)[0]
    ParallelLayout(0, nproc).check(spec)


def relaunch(nproc: int, module: str, args: list[str]) -> int:
    """Run ``python -m module args`` as ``nproc`` ranks and wait; the ranks' exit status.

    The ranks' stdout and stderr pass through; torch.distributed.run's own report of a failed
    rank (a traceback of the launcher, not of the error) is replaced by one line, since the
    rank has already printed its error."""
    env = dict(os.environ)
    # torchrun otherwise sets 1 thread per rank with a warning; share the cores out instead.
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    proc = subprocess.Popen(torchrun_command(nproc, module, args), env=env,
                            stderr=subprocess.PIPE, text=True, errors="replace")
    launcher_report = False
    for line in proc.stderr:
        launcher_report = launcher_report or "torch/distributed/elastic" in line
        if not launcher_report:
            sys.stderr.write(line)
            sys.stderr.flush()
    status = proc.wait()
    if status:
        print(f"qwen3: {nproc} tensor-parallel ranks stopped with exit status {status}",
              file=sys.stderr)
    return status


def silence_other_ranks() -> None:
    """Only rank 0 writes to stdout."""
    if rank() != 0:
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - for the life of the process


def shared_seed(seed: int | None) -> int | None:
    """Sampling must draw the same numbers on every rank: rank 0's seed, given to all."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return seed
    if seed is None and dist.get_rank() == 0:
        seed = int.from_bytes(os.urandom(8), "little")
    box = [seed]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def finish() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
