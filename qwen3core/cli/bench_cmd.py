"""``qwen3 bench``: compare backend combinations side by side on one model."""

from __future__ import annotations

import argparse
import json
import platform
import sys
from datetime import datetime, timezone

import torch

from qwen3core.bench.combos import parse_combo
from qwen3core.bench.job import Job
from qwen3core.errors import Qwen3CoreError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="benchmark backend combinations side by side")
    p.add_argument("--model", default="random:0.6B", metavar="SRC",
                   help="model source (default: random:0.6B, random weights of the real shape)")
    p.add_argument("--combo", action="append", default=[], metavar="SPEC",
                   help="'eager', 'auto', or '[label:]component=name,...' (repeatable; "
                        "default: eager and auto)")
    p.add_argument("--dtype", default="bfloat16", help="default: bfloat16")
    p.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    p.add_argument("--prompt-len", type=int, default=16)
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--batch-sizes", default="1,8", help="comma-separated (default: 1,8)")
    p.add_argument("--repeats", type=int, default=3, help="runs per measurement; the median "
                                                          "and the range are reported")
    p.add_argument("--threads", type=int, default=None, help="torch threads (CPU)")
    p.add_argument("--quantize", default=None, metavar="SCHEME",
                   help="quantize qwen3core's projections on load: int8, int4, int4:g64 ...")
    p.add_argument("--compare-transformers", action="store_true",
                   help="also measure Hugging Face transformers on the same weights")
    p.add_argument("--tensor-parallel", type=int, default=1, metavar="N",
                   help="split the model over N processes (each combination; launched through "
                        "torch.distributed.run; see docs/parallel.md)")
    p.add_argument("--json", metavar="FILE", help="write all results as JSON")
    p.add_argument("--markdown", metavar="FILE", help="write the table as markdown")
    p.add_argument("--plot", metavar="FILE.png", help="write a bar chart of decode speed")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from qwen3core.bench.orchestrate import run_all
    from qwen3core.bench.report import format_table, plot, rows
    from qwen3core.build import resolve_device

    try:
        batch_sizes = sorted({int(b) for b in args.batch_sizes.split(",")})
    except ValueError:
        raise Qwen3CoreError(f"--batch-sizes expects integers like 1,8, got {args.batch_sizes!r}")
    if args.tensor_parallel < 1:
        raise Qwen3CoreError(f"--tensor-parallel must be >= 1, got {args.tensor_parallel}")
    if args.tensor_parallel > 1:
        from qwen3core.parallel.launch import check_splits

        check_splits(args.model, args.tensor_parallel)
    if min(batch_sizes) < 1 or args.prompt_len < 1 or args.new_tokens < 2 or args.repeats < 1:
        raise Qwen3CoreError("batch sizes, --prompt-len and --repeats must be >= 1 and "
                             "--new-tokens >= 2")
    if 1 not in batch_sizes:
        batch_sizes = [1] + batch_sizes  # batch 1 carries TTFT and the greedy comparison
    combos = [parse_combo(c) for c in (args.combo or ["eager", "auto"])]
    device = str(resolve_device(args.device))  # fail here, not in every worker
    base = Job(model=args.model, dtype=args.dtype, device=device, selection=None,
               prompt_len=args.prompt_len, new_tokens=args.new_tokens,
               batch_sizes=batch_sizes, repeats=args.repeats, threads=args.threads,
               tensor_parallel=args.tensor_parallel, quantize=args.quantize)
    results = run_all(base, combos, compare_transformers=args.compare_transformers,
                      progress=sys.stderr.isatty())
    table = rows(results, batch_sizes)
    quantized = f", qwen3core quantized {args.quantize}" if args.quantize else ""
    print(f"qwen3 bench: {args.model}, {args.dtype}{quantized}, {device}, prompt {args.prompt_len}, "
          f"{args.new_tokens} new tokens, median of {args.repeats} (range)")
    print(format_table(table, batch_sizes))
    for r in results:
        if "error" not in r:
            print(f"  {r['label']}: " + ", ".join(f"{k}={v}" for k, v in r["backends"].items()))
    _print_ratios(table, batch_sizes)
    meta = {"command": "qwen3 " + " ".join(sys.argv[1:]), "model": args.model,
            "dtype": args.dtype, "device": device, "prompt_len": args.prompt_len,
            "new_tokens": args.new_tokens, "repeats": args.repeats, "threads": args.threads,
            "machine": platform.machine(), "processor": _cpu_name(), "torch": torch.__version__,
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "results": results, "table": table}, f, indent=2)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(f"`{meta['command']}` on {meta['processor']}, torch {meta['torch']}, "
                    f"{meta['date']}\n\n{format_table(table, batch_sizes, markdown=True)}\n")
    if args.plot:
        plot(table, batch_sizes, args.plot)
    return 0 if all("error" not in r for r in results) else 1


def _print_ratios(table: list[dict], batch_sizes: list[int]) -> None:
    ref = next((r for r in table if r["combination"] == "transformers" and "error" not in r),
               None)
    if ref is None:
        return
    for row in table:
        if row is ref or "error" in row:
            continue
        ratios = ", ".join(f"b={b} x{row[f'decode_b{b}_tok_s'] / ref[f'decode_b{b}_tok_s']:.2f}"
                           for b in batch_sizes)
        print(f"  {row['combination']} decode vs transformers: {ratios}")


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip() + f" ({torch.get_num_threads()} threads)"
    except OSError:
        pass
    return platform.processor() or "unknown"
