"""Running every combination in its own process, with a progress bar."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace

from tqdm import tqdm

from qwen3core.bench.combos import Combo
from qwen3core.bench.job import Job
from qwen3core.errors import Qwen3CoreError


def run_job(job: Job, timeout: float | None = None) -> dict:
    env = dict(os.environ)
    if job.threads:
        env.setdefault("OMP_NUM_THREADS", str(job.threads))
    command = [sys.executable, "-m", "qwen3core.bench.worker", json.dumps(job.to_dict())]
    if job.tensor_parallel > 1 and job.engine == "qwen3core":
        from qwen3core.parallel.launch import torchrun_command

        command = torchrun_command(job.tensor_parallel, command[2], command[3:])
    proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout,
                          check=False)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    tail = _before_launcher_summary((proc.stderr or proc.stdout).strip().splitlines())[-8:]
    return {"error": "\n".join(tail) or f"worker exited with status {proc.returncode}"}


def _before_launcher_summary(lines: list[str]) -> list[str]:
    """A tensor-parallel job's stderr ends with torch.distributed.run's own report of which
    rank failed; the rank's error is just before it."""
    for i, line in enumerate(lines):
        if "torch/distributed/elastic" in line and i > 0:
            return lines[:i]
    return lines


def run_all(base: Job, combos: list[Combo], *, compare_transformers: bool,
            progress: bool) -> list[dict]:
    """One result dict per combination (and one for transformers), in order."""
    jobs = [(c.label, c.describe(), replace(base, selection=c.selection, label=c.label))
            for c in combos]
    if compare_transformers:
        jobs.append(("transformers", "reference engine",
                     replace(base, selection=None, label="transformers", engine="transformers")))
    results = []
    bar = tqdm(jobs, desc="bench", unit="combo", disable=not progress, file=sys.stderr)
    for label, described, job in bar:
        bar.set_postfix_str(label)
        result = run_job(job)
        result.update(label=label, requested=described, engine=job.engine)
        results.append(result)
    bar.close()
    if all("error" in r for r in results):
        raise Qwen3CoreError("every benchmark run failed; first error:\n" + results[0]["error"])
    return results
