"""The read floor of a batch-1 decode on the CPU, measured in the same run as the combinations.

A batch-1 decode step reads every weight a token passes through and the KV cache once, so no
engine decodes faster than this machine reads those bytes. ``qwen3 bench`` measures the read
rate around the combinations (before and after: a host's memory speed drifts by the minute;
the best counts) with the cpu backend's ``stream_read``, the fastest read loop measured on
these machines (``backends/cpu/csrc/stream_op.cpp``), over a buffer several times the size of
any cache, on huge pages as the packed weights are. The bytes of a token come from
:mod:`qwen3core.quant.sizes`, as ``qwen3 info`` prints them, plus the KV cache at the mean
position of the timed steps. Speed is then reported as a share of that floor.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from qwen3core.sources import RANDOM_PREFIX, parse_random

#: Bytes read per pass: 16 times a 32 MiB L3, so a pass streams from memory.
READ_BYTES = 512 << 20
READ_PASSES = 5


@dataclass(frozen=True)
class ReadRate:
    """Best bytes per second of a read-only pass, or why there is none."""

    bytes_per_s: float | None
    why_not: str = ""


def measure_read_rate(passes: int = READ_PASSES) -> ReadRate:
    """The best of ``passes`` reads of :data:`READ_BYTES` with ``stream_read`` on torch's
    threads; the buffer is freed before returning."""
    try:
        from qwen3core_backends.cpu import build
        from qwen3core_backends.cpu.huge_pages import rehome_huge_pages
    except ImportError:
        return ReadRate(None, "the cpu backend (its read loop) is not installed")
    reason = build.unavailable_reason()
    if reason is not None:
        return ReadRate(None, f"the cpu backend's read loop is unavailable here: {reason}")
    build.load_kernels()
    buffer = torch.ones(READ_BYTES // 8, dtype=torch.int64)  # every page touched
    rehome_huge_pages([buffer])
    best = float("inf")
    for _ in range(passes):
        start = time.perf_counter()
        torch.ops.qwen3core_cpu.stream_read(buffer)
        best = min(best, time.perf_counter() - start)
    del buffer
    return ReadRate(READ_BYTES / best)


def decode_bytes_per_token(source: str, dtype: torch.dtype, quantize: str | None,
                           quantize_head: bool, prompt_len: int, new_tokens: int
                           ) -> tuple[int | None, str]:
    """(bytes a batch-1 decode step of ``source`` reads, "") or (None, why not): the weights
    a token passes through (``quantize``'s scheme where given) and the KV cache at the mean
    position of the timed steps, ``prompt_len + (new_tokens - 2) / 2`` (the first token comes
    from the prefill)."""
    from qwen3core.quant.sizes import kv_cache_bytes_per_token, weight_bytes

    if source.startswith(RANDOM_PREFIX):
        spec = parse_random(source).spec
    else:
        from qwen3core.checkpoint.config import spec_from_config
        from qwen3core.checkpoint.loader import read_source_config

        config, where = read_source_config(source)
        if config.get("quantization_config") and quantize is None:
            return None, ("a prequantized checkpoint: its bytes per token are not computed "
                          "here")
        spec = spec_from_config(config, where)
    scheme = None
    if quantize is not None:
        from qwen3core.quant.registry import resolve_scheme

        scheme = resolve_scheme(quantize)
    weights = weight_bytes(spec, dtype, scheme, quantize_head).per_token
    position = prompt_len + max(new_tokens - 2, 0) / 2
    return int(weights + kv_cache_bytes_per_token(spec, dtype) * position), ""


def floor_lines(rate: ReadRate, table: list[dict], qwen3core_bytes: tuple[int | None, str],
                dense_bytes: tuple[int | None, str]) -> list[str]:
    """What ``qwen3 bench`` prints: the read rate, each engine's bytes per token and floor,
    and each combination's batch-1 decode as a share of its floor (transformers is never
    quantized: it reads the dense bytes)."""
    if rate.bytes_per_s is None:
        return [f"read floor: not measured ({rate.why_not})"]
    lines = [(f"read floor: {rate.bytes_per_s / 1e9:.1f} GB/s (stream_read, best of the "
              f"passes before and after the combinations)")]
    for row in table:
        if "error" in row:
            continue
        needed, why = dense_bytes if row["combination"] == "transformers" else qwen3core_bytes
        if needed is None:
            lines.append(f"{row['combination']}: no floor ({why})")
            continue
        floor = rate.bytes_per_s / needed
        share = row["decode_b1_tok_s"] / floor
        row["read_floor_b1_tok_s"], row["decode_b1_share_of_floor"] = floor, share
        lines.append(f"{row['combination']} decode b=1: {100 * share:.0f} % of its read floor "
                     f"({needed / 1e9:.3f} GB a token: at most {floor:.1f} tok/s)")
    return lines
