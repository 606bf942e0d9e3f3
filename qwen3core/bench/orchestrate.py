"""Running every combination in its own process, showing each one's phase as it goes
(the worker reports ``PHASE <what>`` lines; see :mod:`qwen3core.progress`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from dataclasses import replace

from qwen3core.bench.combos import Combo
from qwen3core.bench.job import Job
from qwen3core.errors import Qwen3CoreError
from qwen3core.progress import phase


def run_job(job: Job, timeout: float | None = None,
            on_phase: Callable[[str], None] = lambda text: None) -> dict:
    env = dict(os.environ)
    if job.threads:
        env.setdefault("OMP_NUM_THREADS", str(job.threads))
    command = [sys.executable, "-m", "qwen3core.bench.worker", json.dumps(job.to_dict())]
    if job.tensor_parallel > 1 and job.engine == "qwen3core":
        from qwen3core.parallel.launch import torchrun_command

        command = torchrun_command(job.tensor_parallel, command[2], command[3:])
    with tempfile.TemporaryFile("w+") as errors:  # a file: a full stderr pipe cannot block it
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors, text=True,
                                env=env)
        timer = threading.Timer(timeout, proc.kill) if timeout else None
        if timer:
            timer.start()
        lines = []
        try:
            for line in proc.stdout:
                if line.startswith("PHASE "):
                    on_phase(line[len("PHASE "):].strip())
                else:
                    lines.append(line)
            proc.wait()
        finally:
            if timer:
                timer.cancel()
        errors.seek(0)
        stderr = errors.read()
    for line in reversed(lines):
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    tail = _before_launcher_summary((stderr or "".join(lines)).strip().splitlines())[-8:]
    return {"error": "\n".join(tail) or f"worker exited with status {proc.returncode}"}


def _before_launcher_summary(lines: list[str]) -> list[str]:
    """A tensor-parallel job's stderr ends with torch.distributed.run's own report of which
    rank failed; the rank's error is just before it."""
    for i, line in enumerate(lines):
        if "torch/distributed/elastic" in line and i > 0:
            return lines[:i]
    return lines


def run_all(base: Job, combos: list[Combo], *, compare_transformers: bool) -> list[dict]:
    """One result dict per combination (and one for transformers), in order; each shows its
    phases while it runs when progress is on (:func:`qwen3core.progress.enable`)."""
    jobs = [(c.label, c.describe(), replace(base, selection=c.selection, label=c.label))
            for c in combos]
    if compare_transformers:
        jobs.append(("transformers", "reference engine",
                     replace(base, selection=None, label="transformers", engine="transformers")))
    results = []
    for number, (label, described, job) in enumerate(jobs, 1):
        with phase(f"bench {label} ({number}/{len(jobs)})") as shown:
            result = run_job(job, on_phase=shown.update)
        result.update(label=label, requested=described, engine=job.engine)
        results.append(result)
    if all("error" in r for r in results):
        raise Qwen3CoreError("every benchmark run failed; first error:\n" + results[0]["error"])
    return results
