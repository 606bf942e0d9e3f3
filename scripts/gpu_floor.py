"""Decode speed on a GPU as a share of its read-bandwidth floor, measured in the same run.

    python scripts/gpu_floor.py gpu-results/bench_0.6B.json gpu-results/bench_8B.json \
        [--gib 4] [--repeats 20] [--markdown gpu-results/floor.md]

Reads the JSON that ``qwen3 bench --json`` wrote for a random-weights shape, then measures
how fast this GPU reads memory: a sum over a ``--gib`` GiB bfloat16 tensor (a reduction reads
every byte once and writes nothing), timed with CUDA events, the best of ``--repeats``. Also
prints a device-to-device copy for reference (its bytes counted read and written).

The floor of a batch-1 decode step is the bytes it must read divided by that read rate: the
weights a token passes through (``qwen3core.quant.sizes.weight_bytes``: every projection, the
head, the norms, one embedding row), plus the KV cache of the average position of the timed
tokens. No kernel can decode one sequence faster. ``--bandwidth GB/s`` skips the measurement
(to recompute a table from a known rate, or on a machine without a GPU).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from qwen3core.dtypes import parse_dtype
from qwen3core.quant.sizes import kv_cache_bytes_per_token, weight_bytes
from qwen3core.sources import RANDOM_PREFIX, parse_random


def read_rate_gbps(gib: float, repeats: int) -> tuple[float, float]:
    """(read GB/s of a sum, read + write GB/s of a copy), best of ``repeats`` each."""
    x = torch.ones(int(gib * 2**30) // 2, dtype=torch.bfloat16, device="cuda")
    y = torch.empty_like(x)

    def best(run) -> float:
        run()  # warm-up
        times = []
        for _ in range(repeats):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            run()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
        return min(times)

    read = x.nbytes / best(lambda: torch.sum(x, dtype=torch.float32)) / 1e9
    copy = 2 * x.nbytes / best(lambda: y.copy_(x)) / 1e9
    return read, copy


def bytes_per_token(bench: dict) -> int:
    """Bytes a batch-1 decode step of the bench's shape reads, at its average timed position."""
    meta = bench["meta"]
    model = meta["model"]
    if not model.startswith(RANDOM_PREFIX):
        raise SystemExit(f"{model}: only random:<shape> benches can be sized from their name")
    spec = parse_random(model).spec
    dtype = parse_dtype(meta["dtype"])
    average_position = meta["prompt_len"] + meta["new_tokens"] / 2
    return (weight_bytes(spec, dtype).per_token
            + int(kv_cache_bytes_per_token(spec, dtype) * average_position))


def rows(bench: dict, read_gbps: float) -> list[dict]:
    needed = bytes_per_token(bench)
    floor = read_gbps * 1e9 / needed
    found = []
    for result in bench["results"]:
        batch1 = result.get("batches", {}).get("1")
        if not batch1 or "decode_tokens_per_s" not in batch1:
            continue
        speed = batch1["decode_tokens_per_s"]["median"]
        found.append({"model": bench["meta"]["model"], "combination": result["label"],
                      "decode_b1": speed, "bytes_per_token": needed, "floor_tok_s": floor,
                      "share": speed / floor})
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("benches", nargs="+", type=Path, help="qwen3 bench --json files")
    parser.add_argument("--gib", type=float, default=4.0, help="size of the tensor read (GiB)")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--bandwidth", type=float, default=None, metavar="GB/s",
                        help="use this read rate instead of measuring one")
    parser.add_argument("--markdown", type=Path, default=None, help="also write the table here")
    args = parser.parse_args(argv)

    benches = []
    for path in args.benches:
        try:
            benches.append(json.loads(path.read_text()))
        except (OSError, ValueError) as exc:
            print(f"{path}: cannot read a bench result ({exc})", file=sys.stderr)
            return 2
    if args.bandwidth is not None:
        read, note = args.bandwidth, f"read rate given: {args.bandwidth:.0f} GB/s"
    elif torch.cuda.is_available():
        read, copy = read_rate_gbps(args.gib, args.repeats)
        note = (f"read rate measured on {torch.cuda.get_device_name()}: {read:.0f} GB/s (sum "
                f"over {args.gib:g} GiB, best of {args.repeats}); a copy moves {copy:.0f} GB/s "
                f"read + written")
    else:
        print("no CUDA device is visible: pass --bandwidth GB/s", file=sys.stderr)
        return 2

    table = [row for bench in benches for row in rows(bench, read)]
    header = ("| model | combination | decode b=1 tok/s | GB read per token | floor tok/s | "
              "share of floor |")
    lines = [note, "", header, "|---|---|---:|---:|---:|---:|"]
    lines += [f"| {r['model']} | {r['combination']} | {r['decode_b1']:.1f} | "
              f"{r['bytes_per_token'] / 1e9:.3f} | {r['floor_tok_s']:.0f} | "
              f"{100 * r['share']:.0f}% |" for r in table]
    text = "\n".join(lines) + "\n"
    print(text, end="")
    if args.markdown is not None:
        args.markdown.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
