"""One combination, measured in a process of its own (so peak memory is its own).

Run as ``python -m qwen3core.bench.worker '<job json>'``; prints the result as one JSON line
prefixed with ``RESULT `` on stdout.
"""

from __future__ import annotations

import json
import sys
import time

import torch

from qwen3core.bench.clock import now, peak_memory_bytes
from qwen3core.bench.job import Job, prompt_ids
from qwen3core.bench.stats import summarize


def run_qwen3core(job: Job) -> dict:
    import qwen3core
    from qwen3core.generation.steps import Steps

    started = time.perf_counter()
    loaded = qwen3core.load(job.model, dtype=job.dtype, device=job.device,
                            backends=job.selection)
    load_seconds = time.perf_counter() - started
    device, model = loaded.device, loaded.model
    steps = Steps(model)

    def one_run(batch: int, new_tokens: int):
        ids = prompt_ids(job, loaded.spec.vocab_size, batch).to(device)
        cache = model.new_cache(batch, job.prompt_len + new_tokens)
        t0 = now(device)
        logits = steps.prefill(ids, None, cache)
        token = logits.argmax(-1, keepdim=True)
        t_first = now(device)
        tokens = [token]
        for _ in range(new_tokens - 1):
            token = steps.decode_one(token, cache).argmax(-1, keepdim=True)
            tokens.append(token)
        t_end = now(device)
        return t_first - t0, t_end - t_first, torch.cat(tokens, 1)

    one_run(1, min(4, job.new_tokens))  # warm-up: first-call costs, compilation
    result = {"load_seconds": load_seconds, "backends": loaded.backends,
              "dtype": str(loaded.dtype).replace("torch.", ""), "device": str(device),
              "batches": {}}
    for batch in job.batch_sizes:
        if batch != 1:
            one_run(batch, min(4, job.new_tokens))  # warm-up for this shape
        ttft, decode_tps, prefill_tps = [], [], []
        for _ in range(job.repeats):
            first, decode, tokens = one_run(batch, job.new_tokens)
            ttft.append(first)
            prefill_tps.append(batch * job.prompt_len / first)
            decode_tps.append(batch * (job.new_tokens - 1) / decode)
        result["batches"][str(batch)] = {
            "ttft_seconds": summarize(ttft), "prefill_tokens_per_s": summarize(prefill_tps),
            "decode_tokens_per_s": summarize(decode_tps),
            "greedy_tokens": tokens[0].tolist(),
            "rows_agree": bool((tokens == tokens[:1]).all()),
        }
    result["peak_memory_bytes"] = peak_memory_bytes(device)
    return result


def main(argv: list[str]) -> int:
    job = Job(**json.loads(argv[0]))
    if job.threads:
        torch.set_num_threads(job.threads)
    if job.engine == "transformers":
        from qwen3core.bench.transformers_worker import run_transformers
        result = run_transformers(job)
    else:
        result = run_qwen3core(job)
    print("RESULT " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
