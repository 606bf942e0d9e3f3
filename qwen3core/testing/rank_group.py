"""A group of tensor-parallel worker processes that run greedy examples on request.

Starting processes costs seconds, so a test starts one group (``world_size`` processes joined
over gloo on 127.0.0.1) and sends it many examples: each rank builds its shard of the random
model of a spec, every rank runs :func:`~qwen3core.testing.harness.greedy` (the same calls in
the same order, as a tensor-parallel run requires) and sends back its run. The runs must be
bit-identical across ranks, and rank 0's is compared with one process's run by the suite's
own assertions (:func:`assert_parallel_equal`, on examples drawn by
:func:`parallel_examples`).
"""

from __future__ import annotations

import datetime
import os
import queue
import socket
import traceback
from dataclasses import dataclass

import torch
import torch.multiprocessing as mp
from hypothesis import assume
from hypothesis import strategies as st

from qwen3core.errors import ParallelError
from qwen3core.parallel.layout import ParallelLayout
from qwen3core.registry import get_registry
from qwen3core.spec import Qwen3Spec
from qwen3core.testing.compare import assert_greedy_equivalent
from qwen3core.testing.harness import GreedyRun
from qwen3core.testing.strategies import Workload, selections, specs, workloads
from qwen3core.testing.tolerances import tolerance_for

#: Seconds to wait for one example (or for the group to start) before giving up.
WAIT = 300


@dataclass(frozen=True)
class Example:
    spec: Qwen3Spec
    dtype: torch.dtype
    workload: Workload
    backends: dict[str, str]
    seed: int = 0
    #: A checkpoint directory holding the random model of ``spec`` and ``seed``: the ranks load
    #: their slices from it instead of drawing them.
    source: str | None = None


class RankGroup:
    """``world_size`` worker processes in one process group; use as a context manager."""

    def __init__(self, world_size: int, backend: str = "gloo", device: str = "cpu"):
        self.world_size = world_size
        context = mp.get_context("spawn")
        self._requests = [context.Queue() for _ in range(world_size)]
        self._results = context.Queue()
        address = f"tcp://127.0.0.1:{_free_port()}"
        self._workers = [
            context.Process(target=_serve, daemon=True, args=(
                rank, world_size, address, backend, device, self._requests[rank],
                self._results))
            for rank in range(world_size)]
        for worker in self._workers:
            worker.start()
        self._expect("ready")

    def run(self, example: Example) -> GreedyRun:
        """Rank 0's greedy run of ``example``. Every rank ran it, and every rank must have
        chosen the same tokens from bit-identical logits (the reductions are deterministic):
        a rank that diverged would run different steps from the others."""
        for requests in self._requests:
            requests.put(example)
        runs = self._expect("done")
        for rank, run in runs.items():
            same = run.tokens == runs[0].tokens and run.rows == runs[0].rows and all(
                torch.equal(a, b) for a, b in zip(run.logits, runs[0].logits, strict=True))
            if not same:
                raise AssertionError(f"rank {rank}'s greedy run differs from rank 0's")
        return runs[0]

    def _expect(self, kind: str) -> dict:
        answers = {}
        while len(answers) < self.world_size:
            try:
                rank, got, value = self._results.get(timeout=WAIT)
            except queue.Empty:
                self.close()
                raise RuntimeError(f"tensor-parallel workers sent no {kind!r} within {WAIT} s"
                                   ) from None
            if got == "error":
                self.close()
                raise RuntimeError(f"tensor-parallel rank {rank} failed:\n{value}")
            answers[rank] = value
        return answers

    def close(self) -> None:
        for requests in self._requests:
            requests.put(None)
        for worker in self._workers:
            worker.join(timeout=10)
            if worker.is_alive():
                worker.terminate()

    def __enter__(self):  # returns self
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def splits(spec: Qwen3Spec, world_size: int) -> bool:
    """Whether ``spec`` can be split over ``world_size`` ranks."""
    try:
        ParallelLayout(0, world_size).check(spec)
    except ParallelError:
        return False
    return True


@st.composite
def parallel_examples(draw: st.DrawFn, world_size: int, dtype: torch.dtype,
                      device: str = "cpu") -> tuple[Qwen3Spec, Workload, dict[str, str]]:
    """(spec, workload, backend names) from the suite's strategies, for specs that split over
    ``world_size`` ranks; the eager runner (the compiling ones are not run under parallelism)."""
    spec = draw(specs())
    assume(splits(spec, world_size))
    workload = draw(workloads(spec.vocab_size))
    backends = draw(selections(get_registry(), device, dtype, runners=["eager"]))
    return spec, workload, backends


def assert_parallel_equal(group: RankGroup, spec: Qwen3Spec, dtype: torch.dtype,
                          workload: Workload, backends: dict[str, str],
                          device: str = "cpu", source: str | None = None) -> int:
    """The group's greedy run equals one process's eager reference run on ``device`` under
    the dtype's tolerance (every token in float64; the margin rule in float32); returns the
    number of steps compared."""
    from qwen3core.testing.properties import exact_run, reference_run

    prompts, new, reorder = workload.prompts, workload.max_new_tokens, workload.reorder
    reference = reference_run(spec, dtype, device, prompts, new, reorder)
    exact = exact_run(spec, dtype, device, prompts, new, reorder)
    parallel = group.run(Example(spec, dtype, workload, backends, source=source))
    return assert_greedy_equivalent(reference, parallel, tolerance_for(dtype),
                                    context=f"{group.world_size} ranks, {backends}",
                                    exact=exact)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(rank: int, world_size: int, address: str, backend: str, device: str,
           requests, results) -> None:
    import torch.distributed as dist

    from qwen3core.build import build_random, select_backends
    from qwen3core.checkpoint import load_pretrained
    from qwen3core.parallel.communicator import ProcessGroupCommunicator
    from qwen3core.parallel.layout import ParallelLayout
    from qwen3core.testing.harness import greedy

    torch.set_num_threads(1)  # tiny matrices; several ranks share few cores
    try:
        if device.startswith("cuda"):
            torch.cuda.set_device(rank)
            device = f"cuda:{rank}"
        dist.init_process_group(backend, init_method=address, rank=rank,
                                world_size=world_size,
                                timeout=datetime.timedelta(seconds=WAIT))
        layout = ParallelLayout(rank, world_size, ProcessGroupCommunicator())
        results.put((rank, "ready", None))
    except Exception:  # noqa: BLE001 - reported to the parent, which raises it
        results.put((rank, "error", traceback.format_exc()))
        return
    while (example := requests.get()) is not None:
        try:
            torch_device = torch.device(device)
            selection = select_backends(example.backends, device=torch_device,
                                        dtype=example.dtype)
            if example.source is None:
                model = build_random(example.spec, selection, dtype=example.dtype,
                                     device=torch_device, seed=example.seed, parallel=layout)
            else:
                model = load_pretrained(example.source, dtype=example.dtype,
                                        device=torch_device, backends=example.backends,
                                        parallel=layout).model
            work = example.workload
            run = greedy(model, work.prompt_lists(), work.max_new_tokens,
                         prefill_chunks=work.prefill_chunks, reorder=work.reorder)
            run = GreedyRun(run.tokens, [t.cpu() for t in run.logits], run.rows)
            results.put((rank, "done", run))
        except Exception:  # noqa: BLE001
            results.put((rank, "error", traceback.format_exc()))
    dist.destroy_process_group()
    os._exit(0)  # skip interpreter teardown of queues the parent may already have closed
