"""The measurement loop both engines share: warm up, repeat, summarise per batch size."""

from __future__ import annotations

from collections.abc import Callable

import torch

from qwen3core.bench.clock import peak_memory_bytes
from qwen3core.bench.job import Job
from qwen3core.bench.stats import summarize

#: one_run(batch, new_tokens) -> (seconds to first token, seconds for the rest, tokens [B, N])
OneRun = Callable[[int, int], "tuple[float, float, torch.Tensor]"]


def report_phase(text: str) -> None:
    """Tell the bench command what this worker is doing (it reads stdout line by line)."""
    print(f"PHASE {text}", flush=True)


def measure(job: Job, one_run: OneRun, device: torch.device, header: dict,
            margins: Callable[[int], dict] | None = None) -> dict:
    """``margins(new_tokens)``, when given, runs batch 1 greedily once more, untimed, and
    returns its per-step top-1/top-2 logit margins and logit scales: what a greedy
    disagreement with this run is judged by (see qwen3core.bench.report)."""
    result = dict(header, batches={})
    for batch in job.batch_sizes:
        report_phase(f"batch {batch}: warm-up")
        # First-call costs and compilation stay out of the numbers. The warm-up generates as
        # many tokens as the timed runs: a static cache sizes itself from the request, and a
        # shorter warm-up would leave a compiled decode step to recompile inside the timing.
        one_run(batch, job.new_tokens)
        ttft, decode_tps, prefill_tps = [], [], []
        for repeat in range(job.repeats):
            report_phase(f"batch {batch}: run {repeat + 1}/{job.repeats}")
            first, decode, tokens = one_run(batch, job.new_tokens)
            ttft.append(first)
            prefill_tps.append(batch * job.prompt_len / first)
            decode_tps.append(batch * (job.new_tokens - 1) / decode)
        result["batches"][str(batch)] = {
            "ttft_seconds": summarize(ttft), "prefill_tokens_per_s": summarize(prefill_tps),
            "decode_tokens_per_s": summarize(decode_tps),
            "greedy_tokens": tokens[0].tolist(),
            "rows_agree": bool((tokens == tokens[:1]).all()),  # identical rows, identical output
        }
    if margins is not None:
        report_phase("batch 1: recording logit margins")
        result["batches"]["1"].update(margins(job.new_tokens))
    result["peak_memory_bytes"] = peak_memory_bytes(device)
    return result
