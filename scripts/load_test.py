"""Load-test a ``qwen3 serve`` server on this machine: N concurrent clients, M requests each.

Every request is a streamed completion (``stream_options.include_usage``), so the script
measures time to first token and the gaps between tokens, and checks that no token was lost or
duplicated: the stream must carry exactly ``usage.completion_tokens`` token chunks, and a
request that ended by length exactly ``max_tokens``. It reports requests/s, tokens/s, TTFT and
inter-token latency p50/p99, and errors.

Bounded by design: loopback addresses only (refuses anything else), a fixed number of
requests, and a wall-clock limit (``--time-limit``) after which it cancels what is left and
reports. ``--launch "ARGS"`` starts ``qwen3 serve ARGS`` on a free loopback port first and
stops it at the end.

    python scripts/load_test.py --launch "--model random:0.6B --dtype bfloat16 \\
        --tokenizer ../shared/qwen3-tokenizer --max-batch 8" --clients 16 --requests 4
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shlex
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from urllib.parse import urlparse

import httpx

LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}


@dataclass
class Outcome:
    ok: bool
    tokens: int = 0
    ttft: float | None = None
    gaps: list[float] = field(default_factory=list)
    error: str = ""


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


async def one_request(client: httpx.AsyncClient, base: str, body: dict) -> Outcome:
    started = time.perf_counter()
    last = None
    out = Outcome(ok=False)
    chunks = 0
    usage = finish = None
    try:
        async with client.stream("POST", f"{base}/v1/completions", json=body) as response:
            if response.status_code != 200:
                text = (await response.aread()).decode(errors="replace")
                return Outcome(ok=False, error=f"HTTP {response.status_code}: {text[:200]}")
            async for line in response.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                if "error" in chunk:
                    return Outcome(ok=False, error=str(chunk["error"])[:200])
                if chunk.get("usage"):
                    usage = chunk["usage"]
                for choice in chunk.get("choices", []):
                    now = time.perf_counter()
                    if last is None:
                        out.ttft = now - started
                    else:
                        out.gaps.append(now - last)
                    last = now
                    chunks += 1
                    finish = choice.get("finish_reason") or finish
    except httpx.HTTPError as exc:
        return Outcome(ok=False, error=f"{type(exc).__name__}: {exc}")
    if usage is None:
        return Outcome(ok=False, error="no usage chunk")
    if chunks != usage["completion_tokens"]:
        return Outcome(ok=False, error=f"{chunks} token chunks but usage says "
                                       f"{usage['completion_tokens']}: tokens lost or duplicated")
    if finish == "length" and chunks != body["max_tokens"]:
        return Outcome(ok=False, error=f"finish length after {chunks} of {body['max_tokens']}")
    out.ok, out.tokens = True, chunks
    return out


async def run_load(args, base: str, model: str) -> dict:
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    limits = httpx.Limits(max_connections=args.clients)
    outcomes: list[Outcome] = []

    async def client_loop(client: httpx.AsyncClient, index: int) -> None:
        for j in range(args.requests):
            body = {"model": model, "prompt": f"Request {index}-{j}: " + args.prompt,
                    "max_tokens": args.max_tokens, "temperature": 0, "stream": True,
                    "stream_options": {"include_usage": True}}
            outcomes.append(await one_request(client, base, body))

    started = time.perf_counter()
    async with httpx.AsyncClient(headers=headers, limits=limits, timeout=args.time_limit) as c:
        tasks = [asyncio.create_task(client_loop(c, i)) for i in range(args.clients)]
        _, pending = await asyncio.wait(tasks, timeout=args.time_limit)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    wall = time.perf_counter() - started
    good = [o for o in outcomes if o.ok]
    ttfts = [o.ttft for o in good if o.ttft is not None]
    gaps = [g for o in good for g in o.gaps]
    expected = args.clients * args.requests
    errors = [o.error for o in outcomes if not o.ok]
    return {
        "clients": args.clients, "requests_per_client": args.requests,
        "max_tokens": args.max_tokens, "completed": len(good),
        "errors": len(errors) + (expected - len(outcomes)), "error_samples": errors[:5],
        "timed_out": bool(pending), "wall_s": round(wall, 3),
        "requests_per_s": round(len(good) / wall, 3),
        "tokens_per_s": round(sum(o.tokens for o in good) / wall, 2),
        "ttft_p50_s": percentile(ttfts, 50), "ttft_p99_s": percentile(ttfts, 99),
        "itl_p50_s": percentile(gaps, 50), "itl_p99_s": percentile(gaps, 99),
        "itl_mean_s": statistics.fmean(gaps) if gaps else None,
    }


def launch(serve_args: str, api_key: str | None) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [sys.executable, "-m", "qwen3core.cli", "serve", *shlex.split(serve_args),
               "--host", "127.0.0.1", "--port", str(port)]
    if api_key:
        command += ["--api-key", api_key]
    proc = subprocess.Popen(command)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"qwen3 serve exited with {proc.returncode}")
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            time.sleep(0.5)
    proc.kill()
    raise SystemExit("qwen3 serve did not become healthy in 600 s")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base-url", default="http://127.0.0.1:8000",
                   help="a running server (loopback only); ignored with --launch")
    p.add_argument("--launch", metavar="ARGS", default=None,
                   help="start `qwen3 serve ARGS` on a free loopback port, stop it at the end")
    p.add_argument("--api-key", default=None)
    p.add_argument("--model", default=None, help="model id (default: the server's first)")
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--requests", type=int, default=4, help="requests per client")
    p.add_argument("--max-tokens", type=int, default=32)
    p.add_argument("--prompt", default="Write a short story about a lighthouse keeper.")
    p.add_argument("--time-limit", type=float, default=900.0,
                   help="seconds after which the run stops and reports (default 900)")
    p.add_argument("--warmup", type=int, default=1, help="sequential requests before timing")
    args = p.parse_args()
    if args.clients < 1 or args.requests < 1 or args.clients * args.requests > 10_000:
        raise SystemExit("--clients and --requests must be >= 1, at most 10000 requests")
    proc = None
    if args.launch is not None:
        proc, base = launch(args.launch, args.api_key)
    else:
        base = args.base_url.rstrip("/")
        if urlparse(base).hostname not in LOOPBACK:
            raise SystemExit(f"refusing {base}: the load test only targets loopback addresses")
    try:
        headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
        model = args.model or httpx.get(f"{base}/v1/models", headers=headers
                                        ).json()["data"][0]["id"]
        for _ in range(args.warmup):
            httpx.post(f"{base}/v1/completions", headers=headers, timeout=600,
                       json={"model": model, "prompt": args.prompt,
                             "max_tokens": args.max_tokens, "temperature": 0})
        report = asyncio.run(run_load(args, base, model))
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)
    print(json.dumps(report, indent=2))
    return 0 if report["errors"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
