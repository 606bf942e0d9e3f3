"""Counters and histograms for ``/metrics``, in the Prometheus text exposition format."""

from __future__ import annotations

import threading

#: Upper bounds (seconds) of the latency histograms' buckets.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Histogram:
    def __init__(self) -> None:
        self.counts = [0] * len(BUCKETS)
        self.total = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        for i, bound in enumerate(BUCKETS):
            if value <= bound:
                self.counts[i] += 1
        self.total += value
        self.count += 1

    def lines(self, name: str) -> list[str]:
        out = [f'{name}_bucket{{le="{b}"}} {c}' for b, c in zip(BUCKETS, self.counts)]
        out += [f'{name}_bucket{{le="+Inf"}} {self.count}', f"{name}_sum {self.total}",
                f"{name}_count {self.count}"]
        return out


class Metrics:
    """Updated from the event loop (requests, tokens, latencies) and the worker (steps)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, str], int] = {}  # (endpoint, status) -> count
        self.prompt_tokens = 0
        self.generation_tokens = 0
        self.running = 0
        self.waiting = 0
        self.steps = 0
        self.step_seconds = Histogram()
        self.time_to_first_token = Histogram()
        self.inter_token = Histogram()
        self.request_seconds = Histogram()

    def count_request(self, endpoint: str, status: int) -> None:
        with self._lock:
            key = (endpoint, str(status))
            self.requests[key] = self.requests.get(key, 0) + 1

    def observe_step(self, seconds: float, running: int, waiting: int) -> None:
        with self._lock:
            self.steps += 1
            self.step_seconds.observe(seconds)
            self.running, self.waiting = running, waiting

    def observe_tokens(self, prompt: int, generated: int) -> None:
        with self._lock:
            self.prompt_tokens += prompt
            self.generation_tokens += generated

    def observe_latency(self, histogram: Histogram, seconds: float) -> None:
        with self._lock:
            histogram.observe(seconds)

    def render(self, running: int, waiting: int) -> str:
        with self._lock:
            lines = ["# TYPE qwen3core_requests_total counter"]
            lines += [f'qwen3core_requests_total{{endpoint="{e}",status="{s}"}} {n}'
                      for (e, s), n in sorted(self.requests.items())]
            lines += ["# TYPE qwen3core_prompt_tokens_total counter",
                      f"qwen3core_prompt_tokens_total {self.prompt_tokens}",
                      "# TYPE qwen3core_generation_tokens_total counter",
                      f"qwen3core_generation_tokens_total {self.generation_tokens}",
                      "# TYPE qwen3core_batch_size gauge", f"qwen3core_batch_size {running}",
                      "# TYPE qwen3core_queue_depth gauge", f"qwen3core_queue_depth {waiting}",
                      "# TYPE qwen3core_steps_total counter", f"qwen3core_steps_total {self.steps}"]
            for name, hist in (("qwen3core_step_seconds", self.step_seconds),
                               ("qwen3core_time_to_first_token_seconds",
                                self.time_to_first_token),
                               ("qwen3core_inter_token_seconds", self.inter_token),
                               ("qwen3core_request_seconds", self.request_seconds)):
                lines += [f"# TYPE {name} histogram", *hist.lines(name)]
        return "\n".join(lines) + "\n"
