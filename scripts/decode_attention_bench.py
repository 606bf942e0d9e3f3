"""The decode attention operator alone, caches cold, against the machine's read rate.

    python scripts/decode_attention_bench.py [--keys 1024] [--groups 2,4,5,8] [--batch 1]

For each number of query heads per key/value head (Qwen3: 2 for the 0.6B and 1.7B, 4 for the
4B and 8B, 5 for the 14B, 8 for the 32B and 30B-A3B), times ``qwen3core_cpu::attention`` on
one decode token per row over ``--keys`` cached keys of 8 key/value heads of 128 (the 30B-A3B
has 4: the same work per head), cycling through enough layers' caches that they come from
memory, as in a decode step whose weights evicted them (``--hot``: one layer's, called again
and again from cache: what the loops alone cost). Prints microseconds a call and the key and
value bytes read a second, beside ``stream_read``'s rate measured in the same run.
"""

from __future__ import annotations

import argparse
import time

import torch
from qwen3core_backends.cpu.build import load_kernels

from qwen3core.bench.floor import measure_read_rate

KV_HEADS, HEAD_DIM = 8, 128
COLD_BYTES = 256 * 2**20  # caches cycled through per pass: well past a 32 MiB L3


def time_calls(batch: int, groups: int, keys: int, dtype: torch.dtype, rounds: int,
               hot: bool) -> float:
    """Best seconds a call over ``rounds`` passes through the layers' caches."""
    per_layer = 2 * batch * KV_HEADS * keys * HEAD_DIM * dtype.itemsize
    layers = 1 if hot else max(2, COLD_BYTES // per_layer)
    calls = 64 if hot else 1  # passes per timing: enough calls to time
    q = torch.randn(batch, KV_HEADS * groups, 1, HEAD_DIM).to(dtype)
    caches = [(torch.randn(batch, KV_HEADS, keys, HEAD_DIM).to(dtype),
               torch.randn(batch, KV_HEADS, keys, HEAD_DIM).to(dtype)) for _ in range(layers)]
    mask = torch.ones(batch, 1, 1, keys, dtype=torch.bool)
    attention = torch.ops.qwen3core_cpu.attention
    scale = HEAD_DIM ** -0.5
    for k, v in caches:  # first touch, kernel dispatch
        attention(q, k, v, mask, scale)
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(calls):
            for k, v in caches:
                attention(q, k, v, mask, scale)
        best = min(best, (time.perf_counter() - start) / (layers * calls))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=1024)
    parser.add_argument("--groups", default="2,4,5,8",
                        help="query heads per key/value head, comma-separated")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--hot", action="store_true",
                        help="one layer's caches, in cache, instead of many from memory")
    args = parser.parse_args()
    try:
        group_counts = [int(g) for g in args.groups.split(",")]
    except ValueError:
        parser.error(f"--groups takes whole numbers separated by commas, got {args.groups!r}")
    if min(group_counts) < 1 or args.keys < 1 or args.batch < 1:
        parser.error("--groups, --keys and --batch must be at least 1")
    torch.set_num_threads(args.threads)
    load_kernels()
    dtype = getattr(torch, args.dtype)
    rate = measure_read_rate()
    print(f"decode attention, {args.dtype}, batch {args.batch}, {args.keys} keys, "
          f"{KV_HEADS} key/value heads of {HEAD_DIM}, {args.threads} threads, "
          f"{'caches hot' if args.hot else 'caches cold'}; stream_read "
          f"{rate.bytes_per_s / 1e9:.1f} GB/s")
    for groups in group_counts:
        seconds = time_calls(args.batch, groups, args.keys, dtype, args.rounds, args.hot)
        nbytes = 2 * args.batch * KV_HEADS * args.keys * HEAD_DIM * dtype.itemsize
        print(f"  {groups} query heads per key/value head: {seconds * 1e6:7.1f} us a call, "
              f"{nbytes / seconds / 1e9:5.1f} GB/s of keys and values "
              f"({nbytes / seconds / rate.bytes_per_s:.0%} of stream_read)")


if __name__ == "__main__":
    main()
