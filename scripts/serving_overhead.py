"""Per-token time of one request through the serving scheduler vs offline ``generate``, batch 1.

Both run in this process on the same model, alternating round by round so that the shared
machine's load falls on both alike, and both on a worker thread as the server runs its steps
(on this loaded 2-core machine a decode step measured 10-20x faster on a worker thread than on
the main thread, presumably from how the OpenMP thread team behaves under contention, so mixing
the two would compare threads, not code paths); the decode time per token (first token to last, over the
tokens after the first) is compared by median. No HTTP: this is the scheduler's own overhead
(per-row bookkeeping, events, joining); the server adds its event-loop hop on top.

    python scripts/serving_overhead.py --model random:0.6B --dtype bfloat16 --tokens 32 --rounds 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time

import qwen3core
from qwen3core.serving import Scheduler, ServeRequest


def scheduler_per_token(model, prompt: list[int], tokens: int) -> float:
    scheduler = Scheduler(model, max_batch=1, max_context=len(prompt) + tokens)
    times: list[float] = []
    scheduler.submit(ServeRequest(prompt, tokens, lambda e: times.append(time.perf_counter())))
    while not scheduler.idle:
        scheduler.step()
    return (times[tokens - 1] - times[0]) / (tokens - 1)


def in_thread(fn, *args):
    """fn(*args) on a fresh worker thread; -> its result."""
    out = []
    worker = threading.Thread(target=lambda: out.append(fn(*args)))
    worker.start()
    worker.join()
    return out[0]


def offline_per_token(loaded, prompt: list[int], tokens: int) -> float:
    result = loaded.generate(prompt, max_new_tokens=tokens, temperature=0)
    return result.timings.decode_s / (len(result.token_ids) - 1)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="random:0.6B")
    p.add_argument("--dtype", default="bfloat16")
    p.add_argument("--tokens", type=int, default=32)
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()
    loaded = qwen3core.load(args.model, dtype=args.dtype)
    prompt = list(range(1000, 1016))
    offline, served = [], []
    in_thread(offline_per_token, loaded, prompt, 4)  # warm up both paths
    in_thread(scheduler_per_token, loaded.model, prompt, 4)
    for _ in range(args.rounds):
        offline.append(in_thread(offline_per_token, loaded, prompt, args.tokens))
        served.append(in_thread(scheduler_per_token, loaded.model, prompt, args.tokens))
    a, b = statistics.median(offline), statistics.median(served)
    print(json.dumps({"model": args.model, "dtype": args.dtype, "tokens": args.tokens,
                      "rounds": args.rounds, "offline_s_per_token": offline,
                      "scheduler_s_per_token": served, "offline_median": a,
                      "scheduler_median": b, "overhead": b / a - 1}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
