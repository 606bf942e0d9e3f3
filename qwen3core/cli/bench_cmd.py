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
from qwen3core.cli.common import DTYPE_HELP, HelpFormatter, check_output_file
from qwen3core.dtypes import default_dtype, dtype_name, parse_dtype
from qwen3core.errors import Qwen3CoreError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="benchmark backend combinations side by side",
                       description="Measure each backend combination in its own process: "
                                   "load time, prefill, time to first token, decode speed per "
                                   "batch size, peak memory, and whether its greedy tokens "
                                   "match the eager reference (with the reason when not).",
                       formatter_class=HelpFormatter)
    p.add_argument("--model", default="random:0.6B", metavar="SRC",
                   help="model source; random:<preset> has random weights of the real shape")
    p.add_argument("--combo", action="append", default=[], metavar="SPEC",
                   help="'eager', 'auto', or '[label:]component=name,...' (repeatable; "
                        "default: eager and auto)")
    p.add_argument("--dtype", default=None, help=DTYPE_HELP)
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if "
                                                  "available, else cpu)")
    p.add_argument("--prompt-len", type=int, default=16, metavar="N",
                   help="prompt length in tokens (random ids)")
    p.add_argument("--new-tokens", type=int, default=64, metavar="N",
                   help="tokens generated per run (at least 2: the first one is the TTFT)")
    p.add_argument("--batch-sizes", default="1,8", metavar="B,B",
                   help="comma-separated batch sizes; batch 1 is always measured")
    p.add_argument("--repeats", type=int, default=3, metavar="N",
                   help="timed runs per measurement after a warm-up; the median and the range "
                        "are reported")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="torch threads per worker on CPU (default: torch's choice)")
    p.add_argument("--quantize", default=None, metavar="SCHEME",
                   help="quantize qwen3core's projections on load: int8, int4, w8a8, w4a8, "
                        "int4:g64 ...")
    p.add_argument("--quantize-head", action="store_true",
                   help="with --quantize: the LM head too (as llama.cpp's q8_0/q4_0 files do)")
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
    from qwen3core.bench.floor import measure_read_rate
    from qwen3core.bench.orchestrate import run_all
    from qwen3core.bench.report import (
        explanations,
        format_table,
        plot,
        require_matplotlib,
        rows,
    )
    from qwen3core.build import resolve_device

    try:
        batch_sizes = sorted({int(b) for b in args.batch_sizes.split(",")})
    except ValueError:
        raise Qwen3CoreError(f"--batch-sizes expects integers like 1,8, got {args.batch_sizes!r}")
    if args.quantize_head and not args.quantize:
        raise Qwen3CoreError("--quantize-head needs --quantize SCHEME")
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
    for flag, path in (("--json", args.json), ("--markdown", args.markdown),
                       ("--plot", args.plot)):
        if path:
            check_output_file(path, flag)
    if args.plot:
        require_matplotlib()
    combos = [parse_combo(c) for c in (args.combo or ["eager", "auto"])]
    device = str(resolve_device(args.device))  # fail here, not in every worker
    args.dtype = dtype_name(parse_dtype(args.dtype)
                            or default_dtype(args.model, torch.device(device)))
    base = Job(model=args.model, dtype=args.dtype, device=device, selection=None,
               prompt_len=args.prompt_len, new_tokens=args.new_tokens,
               batch_sizes=batch_sizes, repeats=args.repeats, threads=args.threads,
               tensor_parallel=args.tensor_parallel, quantize=args.quantize,
               quantize_head=args.quantize_head)
    floor_here = device == "cpu" and args.tensor_parallel == 1
    if floor_here and args.threads:
        torch.set_num_threads(args.threads)  # the read rate on the threads the workers use
    before = measure_read_rate() if floor_here else None
    results = run_all(base, combos, compare_transformers=args.compare_transformers)
    table = rows(results, batch_sizes)
    floor, floor_meta = _read_floor(args, before, table) if floor_here else ([], None)
    runs = "one run each" if args.repeats == 1 else f"median of {args.repeats} runs (range)"
    quantized = f", qwen3core quantized {args.quantize}" if args.quantize else ""
    quantized += " (head too)" if args.quantize and args.quantize_head else ""
    print(f"qwen3 bench: {args.model}, {args.dtype}{quantized}, {device}, prompt "
          f"{args.prompt_len}, {args.new_tokens} new tokens, {runs}; batch > 1 decode speeds "
          f"are totals over the rows")
    print(format_table(table, batch_sizes))
    for r in results:
        if "error" not in r:
            print(f"  {r['label']}: " + ", ".join(f"{k}={v}" for k, v in r["backends"].items()))
    for line in explanations(results, args.dtype):
        print(f"  {line}")
    _print_ratios(table, batch_sizes)
    for line in floor:
        print(f"  {line}")
    meta = {"command": "qwen3 " + " ".join(sys.argv[1:]), "model": args.model,
            "dtype": args.dtype, "device": device, "prompt_len": args.prompt_len,
            "new_tokens": args.new_tokens, "repeats": args.repeats, "threads": args.threads,
            "machine": platform.machine(), "processor": _cpu_name(), "torch": torch.__version__,
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "read_floor": floor_meta}
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "results": results, "table": table}, f, indent=2)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(f"`{meta['command']}` on {meta['processor']}, torch {meta['torch']}, "
                    f"{meta['date']}\n\n{format_table(table, batch_sizes, markdown=True)}\n")
            if floor:
                f.write("\n" + "".join(f"- {line}\n" for line in floor))
    if args.plot:
        where = meta["processor"] if device == "cpu" else device
        plot(table, batch_sizes, args.plot, title=f"{args.model}, {args.dtype}, {device} "
                                                  f"({where}), {meta['date'][:10]}")
    return 0 if all("error" not in r for r in results) else 1


def _read_floor(args: argparse.Namespace, before, table: list[dict]
                ) -> tuple[list[str], dict]:
    """The read rate again after the combinations (the best of both counts), and each row's
    batch-1 decode as a share of its floor (:mod:`qwen3core.bench.floor`): the lines to
    print, and the numbers for the JSON (the rows of ``table`` get their share)."""
    from qwen3core.bench.floor import (
        ReadRate,
        decode_bytes_per_token,
        floor_lines,
        measure_read_rate,
    )

    after = measure_read_rate()
    rates = [r.bytes_per_s for r in (before, after) if r.bytes_per_s is not None]
    rate = ReadRate(max(rates)) if rates else after
    dtype = parse_dtype(args.dtype)
    ours = decode_bytes_per_token(args.model, dtype, args.quantize, args.quantize_head,
                                  args.prompt_len, args.new_tokens)
    dense = (ours if not args.quantize else
             decode_bytes_per_token(args.model, dtype, None, False, args.prompt_len,
                                    args.new_tokens))
    meta = {"read_bytes_per_s": rate.bytes_per_s, "why_not": rate.why_not,
            "bytes_per_token": ours[0], "dense_bytes_per_token": dense[0]}
    return floor_lines(rate, table, ours, dense), meta


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
