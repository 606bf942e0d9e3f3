"""Memory of one tensor-parallel rank against one process, on a real model shape.

    python scripts/parallel_memory.py [--model random:8B] [--dtype bfloat16]
                                      [--tensor-parallel 2] [--rank 0] [--layers L]

Builds the shard rank ``--rank`` of ``--tensor-parallel`` holds of a random model, the way
``qwen3core.load(..., tensor_parallel=N)`` does on that rank: the skeleton on ``meta``, only
the local parameters allocated, filled tile by tile with exactly the values the one-process
model has there. No process group is needed to build (only to run), so one rank is measured
alone: a shared machine need not hold N copies at once. It prints the rank's weight bytes,
its resident memory (VmRSS, VmHWM = peak, RssAnon from /proc/self/status) before and after,
and the ratio of the rank's peak to the one-process model's weight bytes (from its parameter
count; the one-process model is not built, it may not fit beside anything else).
``--layers`` overrides the layer count (a quick check of the script on a smaller model).

With ``--run`` (for shapes where N ranks and one process fit in memory one after the other)
it instead loads the model with ``qwen3core.load(..., tensor_parallel=N)`` in N ranks launched
by torch.distributed.run, greedy-decodes ``--new-tokens`` tokens, and prints every rank's peak
resident memory next to one process doing the same (measured, not computed).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import torch

EAGER = {"attention": "eager", "norm": "eager", "rope": "eager", "kv_cache": "dynamic",
         "linear": "eager", "mlp": "eager", "moe": "eager", "runner": "eager"}


def status_bytes() -> dict[str, int]:
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "RssAnon"):
                out[key] = int(value.split()[0]) * 1024
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="random:8B")
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--tensor-parallel", type=int, default=2)
    parser.add_argument("--rank", type=int, default=0)
    parser.add_argument("--layers", type=int, default=None)
    parser.add_argument("--run", action="store_true",
                        help="load and decode in N real ranks and in one process; measure both")
    parser.add_argument("--new-tokens", type=int, default=8)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return run_worker(args)
    if args.run:
        return run_and_compare(args)

    from qwen3core.build import build_random, select_backends
    from qwen3core.dtypes import parse_dtype
    from qwen3core.parallel import ParallelLayout
    from qwen3core.parallel.memory import weight_bytes_per_rank
    from qwen3core.sources import parse_random

    torch.set_num_threads(1)
    rnd = parse_random(args.model)
    spec = rnd.spec if args.layers is None else rnd.spec.replace(num_hidden_layers=args.layers)
    dtype = parse_dtype(args.dtype)
    device = torch.device("cpu")
    selection = select_backends(EAGER, device=device, dtype=dtype)
    size = torch.empty((), dtype=dtype).element_size()
    one_process = spec.parameter_count(count_tied_twice=False) * size
    planned = weight_bytes_per_rank(spec, selection, dtype, args.tensor_parallel)
    before = status_bytes()
    started = time.perf_counter()
    layout = ParallelLayout(args.rank, args.tensor_parallel)
    model = build_random(spec, selection, dtype=dtype, device=device, seed=rnd.seed,
                         parallel=layout)
    seconds = time.perf_counter() - started
    after = status_bytes()
    held = sum(p.numel() * p.element_size() for p in model.parameters())
    gib = 2 ** 30
    result = {
        "model": args.model, "layers": spec.num_hidden_layers, "dtype": args.dtype,
        "tensor_parallel": args.tensor_parallel, "rank": args.rank,
        "one_process_weight_bytes": one_process, "rank_weight_bytes": held,
        "planned_bytes_per_rank": planned, "before": before, "after": after,
        "build_seconds": round(seconds, 1),
        "rank_peak_rss_over_one_process_weights": round(after["VmHWM"] / one_process, 4),
        "rank_weights_over_one_process_weights": round(held / one_process, 4),
    }
    print(json.dumps(result, indent=2))
    print(f"\n{args.model} ({spec.num_hidden_layers} layers) in {args.dtype}: one process holds "
          f"{one_process / gib:.2f} GiB of weights; rank {args.rank} of "
          f"{args.tensor_parallel} holds {held / gib:.2f} GiB ({held / one_process:.3f}x), "
          f"peak resident {after['VmHWM'] / gib:.2f} GiB "
          f"({after['VmHWM'] / one_process:.3f}x; {before['VmRSS'] / gib:.2f} GiB before "
          f"building), built in {seconds:.0f} s")


def run_worker(args: argparse.Namespace) -> None:
    """One rank (or the one process): load, decode, report peak memory."""
    import qwen3core
    from qwen3core.generation.steps import Steps

    parallel = args.tensor_parallel if args.tensor_parallel > 1 else None
    loaded = qwen3core.load(args.model, dtype=args.dtype, device="cpu", backends=EAGER,
                            tensor_parallel=parallel)
    after_load = status_bytes()
    model, steps = loaded.model, Steps(loaded.model)
    ids = torch.arange(1, 17)[None]
    cache = model.new_cache(1, ids.shape[1] + args.new_tokens)
    token = steps.prefill(ids, None, cache).argmax(-1, keepdim=True)
    tokens = [int(token)]
    for _ in range(args.new_tokens - 1):
        token = steps.decode_one(token, cache).argmax(-1, keepdim=True)
        tokens.append(int(token))
    report = {"rank": int(os.environ.get("RANK", "0")), "after_load": after_load,
              "after_decode": status_bytes(), "tokens": tokens,
              "weight_bytes": sum(p.numel() * p.element_size() for p in model.parameters())}
    if parallel:
        import torch.distributed as dist

        everyone = [None] * dist.get_world_size()
        dist.all_gather_object(everyone, report)
        if dist.get_rank() == 0:
            print("MEMORY " + json.dumps(everyone), flush=True)
        dist.destroy_process_group()
    else:
        print("MEMORY " + json.dumps([report]), flush=True)


def run_and_compare(args: argparse.Namespace) -> None:
    base = [__file__, "--worker", "--model", args.model, "--dtype", args.dtype,
            "--new-tokens", str(args.new_tokens)]

    def measured(command: list[str]) -> list[dict]:
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        proc = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
        lines = [line for line in proc.stdout.splitlines() if line.startswith("MEMORY ")]
        if proc.returncode or not lines:
            raise SystemExit(proc.stderr[-3000:])
        return json.loads(lines[-1][len("MEMORY "):])

    one = measured([sys.executable, *base, "--tensor-parallel", "1"])[0]
    ranks = measured([sys.executable, "-m", "torch.distributed.run", "--standalone",
                      f"--nproc-per-node={args.tensor_parallel}",
                      *base, "--tensor-parallel", str(args.tensor_parallel)])
    gib = 2 ** 30
    peak_one = one["after_decode"]["VmHWM"]
    print(json.dumps({"one_process": one, "ranks": ranks}, indent=2))
    print(f"\n{args.model} in {args.dtype}, {args.new_tokens} tokens decoded: one process "
          f"peak {peak_one / gib:.2f} GiB (weights {one['weight_bytes'] / gib:.2f} GiB)")
    for r in ranks:
        peak = r["after_decode"]["VmHWM"]
        print(f"  rank {r['rank']} of {len(ranks)}: peak {peak / gib:.2f} GiB "
              f"({peak / peak_one:.3f}x), weights {r['weight_bytes'] / gib:.2f} GiB, "
              f"same greedy tokens as one process: {r['tokens'] == one['tokens']}")


if __name__ == "__main__":
    main()
