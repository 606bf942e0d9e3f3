"""``qwen3 quantize SRC OUT --scheme int4 [--group-size 64] [--head]``: write a quantized
checkpoint that ``qwen3core.load(OUT)`` (and every command's ``--model OUT``) reads back."""

from __future__ import annotations

import argparse
import time


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("quantize", help="write a quantized (int8/int4) copy of a checkpoint")
    p.add_argument("source", metavar="SRC",
                   help="a local model directory, a hub id, or random:<preset>[@seed]")
    p.add_argument("out", metavar="OUT", help="the directory to write (new or empty)")
    p.add_argument("--scheme", required=True,
                   help="int8 or int4, with options such as int4:sym (see docs/quantization.md)")
    p.add_argument("--group-size", type=int, default=None, metavar="N",
                   help="inputs per scale (32, 64 or 128; default: the scheme's)")
    p.add_argument("--head", action="store_true", help="quantize the LM head too")
    p.add_argument("--revision", default=None, help="hub branch, tag or commit")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from qwen3core.quant import resolve_scheme
    from qwen3core.quant.writer import quantize_checkpoint

    options = {} if args.group_size is None else {"group_size": args.group_size}
    scheme = resolve_scheme(args.scheme, **options)
    started = time.perf_counter()
    out = quantize_checkpoint(args.source, args.out, scheme, quantize_head=args.head,
                              revision=args.revision)
    size = sum(f.stat().st_size for f in out.iterdir() if f.suffix == ".safetensors")
    print(f"wrote {out} ({scheme}, {size / 2**20:.1f} MiB of weights) in "
          f"{time.perf_counter() - started:.1f} s")
    return 0
