"""The tensor-parallel equality check with NCCL, for a machine with several GPUs.

    python scripts/parallel_nccl_check.py [--ranks N] [--examples 20] [--dtype float32 ...]

The same check the gloo tests run on CPU (tests/parallel/test_tensor_parallel.py): N worker
processes, one GPU each, joined over NCCL, build their shards of random models of specs drawn
by the suite's strategies and greedy-decode workloads drawn by the suite's strategies with
backend selections available on CUDA; rank 0's run must equal one process's eager reference
on cuda:0 (float64: every token and logits to 1e-9 of scale; float32 and bfloat16: the
margin rule of qwen3core.testing.tolerances). Then ``qwen3 generate --tensor-parallel N
--device cuda`` must print the tokens one process prints. Exits 0 when everything held.
``--ranks`` defaults to every visible GPU (at least 2 are needed: NCCL refuses two ranks on
one GPU). ``--cpu`` runs the very same script with gloo on CPU (to check the script itself on
a machine without GPUs).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import torch
from hypothesis import HealthCheck, given, settings

from qwen3core.dtypes import parse_dtype
from qwen3core.testing.rank_group import RankGroup, assert_parallel_equal, parallel_examples


def check_dtype(group: RankGroup, dtype: torch.dtype, examples: int, device: str
                ) -> dict[str, int]:
    counted = {"examples": 0, "steps": 0}
    reference_device = "cuda:0" if device == "cuda" else device

    @settings(max_examples=examples, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(example=parallel_examples(group.world_size, dtype, device))
    def prop(example):
        spec, workload, backends = example
        counted["steps"] += assert_parallel_equal(group, spec, dtype, workload, backends,
                                                  device=reference_device)
        counted["examples"] += 1

    prop()
    return counted


def check_cli(ranks: int, device: str) -> None:
    def tokens(*extra: str) -> list[int]:
        proc = subprocess.run(
            [sys.executable, "-m", "qwen3core.cli", "generate", "--model", "random:tiny-moe",
             "--device", device, "--dtype", "float64", "--prompt-ids", "3,14,15,92,65",
             "--max-new-tokens", "8", "--json", *extra],
            capture_output=True, text=True, check=False, timeout=600)
        if proc.returncode:
            raise RuntimeError(proc.stderr[-3000:])
        return json.loads(proc.stdout.strip().splitlines()[-1])["token_ids"]

    alone, split = tokens(), tokens("--tensor-parallel", str(ranks))
    if alone != split:
        raise AssertionError(f"qwen3 generate: one process {alone}, {ranks} ranks {split}")
    print(f"qwen3 generate --tensor-parallel {ranks}: same tokens as one process {alone}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", type=int, default=None)
    parser.add_argument("--examples", type=int, default=20, help="per dtype")
    parser.add_argument("--dtype", nargs="+", default=["float64", "float32", "bfloat16"])
    parser.add_argument("--cpu", action="store_true", help="gloo on CPU instead of NCCL")
    args = parser.parse_args()
    if args.cpu:
        return run(args.ranks or 2, "gloo", "cpu", args)
    if not torch.cuda.is_available():
        print("no CUDA GPU is visible; this check needs at least 2", file=sys.stderr)
        return 2
    ranks = args.ranks or torch.cuda.device_count()
    if ranks < 2 or ranks > torch.cuda.device_count():
        print(f"need 2..{torch.cuda.device_count()} ranks (one GPU each), got {ranks}",
              file=sys.stderr)
        return 2
    os.environ.setdefault("NCCL_DEBUG", "WARN")
    return run(ranks, "nccl", "cuda", args)


def run(ranks: int, backend: str, device: str, args: argparse.Namespace) -> int:
    where = torch.cuda.get_device_name(0) if device == "cuda" else "cpu"
    print(f"{ranks} ranks over {backend} on {where}, torch {torch.__version__}")
    with RankGroup(ranks, backend=backend, device=device) as group:
        for name in args.dtype:
            started = time.perf_counter()
            counted = check_dtype(group, parse_dtype(name), args.examples, device)
            print(f"{name}: {counted['examples']} examples, {counted['steps']} steps compared, "
                  f"all equal ({time.perf_counter() - started:.0f} s)")
    check_cli(ranks, device)
    return 0


if __name__ == "__main__":
    sys.exit(main())
