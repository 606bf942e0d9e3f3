"""Decode speed of each quantization scheme against the read-bandwidth floor of its own bytes.

    python scripts/quant_bench.py [--model random:0.6B] [--schemes none,int8,int4]
                                  [--new-tokens 32] [--rounds 3] [--threads 2] [--head]
    python scripts/quant_bench.py --kernels --schemes int8,w8a8,int4,w4a8 --rounds 5

For each scheme: load the model (default selection, quantized on load), then, alternating
round by round, (1) time batch-1 and batch-8 greedy decode steps and (2) stream-read every
tensor a decode step reads (the packed weights and their scales; ``stream_read`` of the cpu
kernels, a read-only loop: 512-bit loads with ``prefetchnta`` 2 KiB ahead, the fastest read
measured on this machine, which the kernels do not beat) to get this run's read rate. The floor is bytes per token / read
rate: no batch-1 kernel can decode faster. Also prints the resident weight bytes and, for
quantized schemes, the logit error against the unquantized model on the same weights.

``--cpu-time`` (with ``--threads 1``) times by the process's CPU time: on a machine other jobs
load, it measures what one core achieves, for the decode steps and the read rate alike.

``--kernels`` instead measures each scheme's kernel alone on weights that stay in cache (one
thread, CPU time): GB of weights and GMAC per second at 1, 4 and 8 rows, from the difference
between 768 and 256 outputs x 1024 inputs, so the per-call overhead cancels. That is the
compute rate a core has to spare beyond the bytes it must stream.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

import qwen3core
from qwen3core.generation.greedy import greedy_tokens
from qwen3core.generation.steps import Steps


def read_tensors(model: torch.nn.Module) -> list[torch.Tensor]:
    """Every packed tensor a decode step reads (views resolved to their storage, once)."""
    found: dict[int, torch.Tensor] = {}

    def add(t: torch.Tensor | None) -> None:
        if t is None or t.numel() == 0:
            return
        storage = t.untyped_storage()
        found[storage.data_ptr()] = torch.empty(0, dtype=torch.uint8).set_(storage)

    def add_holder(obj: object) -> None:
        quant = getattr(obj, "quant", None) or getattr(obj, "packed", None)
        if quant is not None and hasattr(quant, "levels"):
            add(quant.levels), add(quant.scales), add(quant.zeros)
        elif isinstance(quant, torch.Tensor):  # a dense layer's tiles (a fused stack's view)
            add(quant)

    for module in model.modules():
        add_holder(module)
        for fused in ("qkv", "gate_up"):
            if getattr(module, fused, None) is not None:
                add_holder(getattr(module, fused))
    return list(found.values())


CLOCK = time.perf_counter


def decode_seconds(model, steps: Steps, batch: int, new_tokens: int, vocab: int) -> float:
    ids = torch.randint(0, vocab, (1, 16), generator=torch.Generator().manual_seed(0))
    ids = ids.expand(batch, -1).contiguous()
    cache = model.new_cache(batch, 16 + new_tokens)
    token = greedy_tokens(steps.prefill(ids, None, cache))[:, None]
    start = CLOCK()
    for _ in range(new_tokens):  # the generation loop's greedy pick (generation/greedy.py)
        token = greedy_tokens(steps.decode_one(token, cache))[:, None]
    return CLOCK() - start


def kernel_rates(schemes: list[str], rounds: int) -> None:
    from qwen3core_backends.cpu.quant_linear import pack_quantized

    from qwen3core.quant import resolve_scheme

    torch.set_num_threads(1)
    inp, sizes = 1024, (256, 768)

    def per_call(packed, x, out: int, calls: int = 300) -> float:
        for _ in range(30):
            packed(x, out)
        best = float("inf")
        for _ in range(rounds):
            start = time.process_time()
            for _ in range(calls):
                packed(x, out)
            best = min(best, (time.process_time() - start) / calls)
        return best

    print(f"kernels alone, weights in cache, one thread, CPU time, best of {rounds}")
    for scheme in schemes:
        packs = {n: pack_quantized(resolve_scheme(scheme).quantize(torch.randn(n, inp)))
                 for n in sizes}
        for rows in (1, 4, 8):
            x = torch.randn(rows, inp).to(torch.bfloat16)
            took = {n: per_call(p, x, n) for n, p in packs.items()}
            dt = took[sizes[1]] - took[sizes[0]]
            nbytes = packs[sizes[1]].nbytes - packs[sizes[0]].nbytes
            macs = rows * (sizes[1] - sizes[0]) * inp
            print(f"{scheme:8s} rows {rows}: {nbytes / dt / 1e9:6.1f} GB/s of weights, "
                  f"{macs / dt / 1e9:6.1f} GMAC/s (a call at {sizes[0]} outputs: "
                  f"{took[sizes[0]] * 1e6:.1f} us)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="random:0.6B")
    parser.add_argument("--schemes", default="none,int8,int4")
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--head", action="store_true", help="quantize the LM head too")
    parser.add_argument("--cpu-time", action="store_true")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--kernels", action="store_true",
                        help="measure the kernels alone, in cache (see the module docstring)")
    args = parser.parse_args()
    if args.kernels:
        kernel_rates(args.schemes.split(","), args.rounds)
        return
    global CLOCK
    if args.cpu_time:
        CLOCK = time.process_time
    torch.set_num_threads(args.threads)
    ops = None
    dense_logits = None
    ids = torch.randint(0, 1000, (1, 24), generator=torch.Generator().manual_seed(1))
    results = {}
    print(f"{args.model} {args.dtype}, {args.threads} threads, {args.new_tokens} new tokens, "
          f"best of {args.rounds} rounds; head {'quantized' if args.head else 'as stored'}"
          f"{'; CPU time' if args.cpu_time else ''}")
    for scheme in args.schemes.split(","):
        quantize = None if scheme == "none" else scheme
        started = time.perf_counter()
        loaded = qwen3core.load(args.model, dtype=args.dtype, quantize=quantize,
                                quantize_head=args.head and quantize is not None)
        load_s = time.perf_counter() - started
        model = loaded.model
        if ops is None:
            ops = torch.ops.qwen3core_cpu
        tensors = read_tensors(model)
        per_token = sum(t.nbytes for t in tensors)
        resident = sum(t.nbytes for t in tensors) + sum(
            p.nbytes for n, p in model.named_parameters() if "proj" not in n and "lm_head" not in n)
        steps = Steps(model)
        vocab = loaded.spec.vocab_size
        with torch.no_grad():
            logits = model(ids)[0].float()
            decode_seconds(model, steps, 1, 4, vocab)  # warm-up
            b1, b8, read = [], [], []
            for _ in range(args.rounds):
                b1.append(args.new_tokens / decode_seconds(model, steps, 1, args.new_tokens, vocab))
                b8.append(8 * args.new_tokens / decode_seconds(model, steps, 8, args.new_tokens,
                                                              vocab))
                t0 = CLOCK()
                for t in tensors:
                    ops.stream_read(t)
                read.append(per_token / (CLOCK() - t0))
        floor = max(read) / per_token
        line = (f"{scheme:6s} load {load_s:5.1f} s  bytes/token {per_token / 1e9:.3f} GB  "
                f"resident weights {resident / 2**30:.2f} GiB  read {max(read) / 1e9:.1f} GB/s  "
                f"floor {floor:5.1f} tok/s  batch1 {max(b1):5.1f} tok/s "
                f"({100 * max(b1) / floor:3.0f} % of floor, median {statistics.median(b1):.1f})  "
                f"batch8 {max(b8):6.1f} tok/s ({max(b8) / max(b1):.1f}x)")
        if dense_logits is None and quantize is None:
            dense_logits = logits
        elif dense_logits is not None:
            diff = (logits - dense_logits).abs()
            agree = (logits.argmax(-1) == dense_logits.argmax(-1)).float().mean()
            line += (f"  logit error vs unquantized: max {diff.max():.3f}, mean "
                     f"{diff.mean():.4f} (logit std {dense_logits.std():.2f}), top-1 agree "
                     f"{100 * agree:.0f} %")
        print(line, flush=True)
        results[scheme] = {"bytes_per_token": per_token, "read_bytes_per_s": max(read),
                           "floor_tokens_per_s": floor, "batch1_tokens_per_s": max(b1),
                           "batch8_tokens_per_s": max(b8)}
        del loaded, model, steps, tensors
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump(results, out, indent=1)


if __name__ == "__main__":
    main()
