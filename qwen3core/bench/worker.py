"""One combination, measured in a process of its own (so peak memory is its own).

Run as ``python -m qwen3core.bench.worker '<job json>'``; prints the result as one JSON line
prefixed with ``RESULT `` on stdout.
"""

from __future__ import annotations

import json
import sys
import time

import torch

from qwen3core.bench.clock import now
from qwen3core.bench.job import Job, prompt_ids
from qwen3core.bench.measure import measure, report_phase


def run_qwen3core(job: Job) -> dict:
    import qwen3core
    from qwen3core.generation.greedy import greedy_tokens
    from qwen3core.generation.steps import Steps

    report_phase("loading the model")
    started = time.perf_counter()
    loaded = qwen3core.load(job.model, dtype=job.dtype, device=job.device,
                            backends=job.selection, tensor_parallel=job.tensor_parallel,
                            quantize=job.quantize, quantize_head=job.quantize_head)
    load_seconds = time.perf_counter() - started
    device, model = loaded.device, loaded.model
    steps = Steps(model)

    def one_run(batch: int, new_tokens: int):
        ids = prompt_ids(job, loaded.spec.vocab_size, batch).to(device)
        cache = model.new_cache(batch, job.prompt_len + new_tokens)
        t0 = now(device)
        logits = steps.prefill(ids, None, cache)
        token = greedy_tokens(logits)[:, None]
        t_first = now(device)
        tokens = [token]
        for _ in range(new_tokens - 1):
            token = greedy_tokens(steps.decode_one(token, cache))[:, None]
            tokens.append(token)
        t_end = now(device)
        return t_first - t0, t_end - t_first, torch.cat(tokens, 1)

    def margins(new_tokens: int) -> dict:
        ids = prompt_ids(job, loaded.spec.vocab_size, 1).to(device)
        cache = model.new_cache(1, job.prompt_len + new_tokens)
        logits = steps.prefill(ids, None, cache)
        found: dict[str, list[float]] = {"greedy_margins": [], "greedy_logit_scales": []}
        for step in range(new_tokens):
            row = logits[0].float()
            top = torch.topk(row, 2).values
            found["greedy_margins"].append(float(top[0] - top[1]))
            found["greedy_logit_scales"].append(float(row.abs().max()))
            if step + 1 < new_tokens:
                logits = steps.decode_one(greedy_tokens(logits)[:, None], cache)
        return found

    header = {"load_seconds": load_seconds, "backends": loaded.backends,
              "tensor_parallel": job.tensor_parallel,
              "dtype": str(loaded.dtype).replace("torch.", ""), "device": str(device)}
    return measure(job, one_run, device, header, margins)


def main(argv: list[str]) -> int:
    job = Job(**json.loads(argv[0]))
    if job.threads:
        torch.set_num_threads(job.threads)
    if job.engine == "transformers":
        from qwen3core.bench.transformers_worker import run_transformers
        result = run_transformers(job)
    else:
        result = run_qwen3core(job)
    from qwen3core.parallel import launch

    if launch.rank() == 0:  # with tensor parallelism every rank measured the same steps
        print("RESULT " + json.dumps(result), flush=True)
    launch.finish()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
