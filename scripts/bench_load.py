"""Load benchmark: qwen3core.load vs transformers from_pretrained on a Qwen3-0.6B-shape checkpoint.

    python scripts/bench_load.py [--dir DIR] [--repeats 3] [--write-doc docs/benchmarks-load.md]

Writes a checkpoint with the Qwen3-0.6B config and random weights through transformers in
bfloat16 (~1.2 GB; into a temporary directory unless ``--dir`` names one that already holds
it), then loads it in fresh interpreters, alternating the loaders, ``--repeats`` times each.
Every child reports wall times (import, load call, first forward) and its peak resident set
(VmHWM from /proc/self/status: anonymous memory plus the mapped file pages it touched) right
after loading and after one forward pass, which reads every weight. The file is read once
before the runs so that every loader starts from a warm page cache.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

EAGER = {"attention": "eager", "norm": "eager", "rope": "eager", "kv_cache": "dynamic",
         "linear": "eager", "mlp": "eager", "moe": "eager", "runner": "eager"}

# Qwen3-0.6B's config.json (REFERENCE.md); only the weights are random.
QWEN3_0_6B = {"vocab_size": 151936, "hidden_size": 1024, "intermediate_size": 3072,
                  "num_hidden_layers": 28, "num_attention_heads": 16, "num_key_value_heads": 8,
                  "head_dim": 128, "max_position_embeddings": 40960, "rms_norm_eps": 1e-6,
                  "rope_theta": 1_000_000.0, "tie_word_embeddings": True, "bos_token_id": 151643,
                  "eos_token_id": 151645}

LOADERS = {
    "qwen3core (eager backends)": ["qwen3core", "eager"],
    "qwen3core (default backends)": ["qwen3core", "default"],
    "transformers from_pretrained": ["transformers", ""],
}


# -- child: one load in a fresh interpreter -------------------------------------------------------
def memory_kib() -> dict[str, int]:
    fields = {}
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(("VmHWM:", "VmRSS:", "RssAnon:")):
                name, value = line.split(":")
                fields[name] = int(value.split()[0])
    return fields


def child(kind: str, variant: str, directory: str) -> None:
    started = time.perf_counter()
    import torch

    if kind == "qwen3core":
        import qwen3core
    else:
        from transformers import Qwen3ForCausalLM
    imported = time.perf_counter()
    baseline = memory_kib()["VmRSS"]
    if kind == "qwen3core":
        loaded = qwen3core.load(directory, device="cpu",
                                backends=EAGER if variant == "eager" else None)
        model, backends = loaded.model, loaded.backends
    else:
        model = Qwen3ForCausalLM.from_pretrained(directory, dtype=torch.bfloat16).eval()
        backends = {"attention": model.config._attn_implementation}
    load_done = time.perf_counter()
    after_load = memory_kib()
    ids = torch.arange(16)[None] + 1000  # [1, 16]
    with torch.inference_mode():
        logits = model(ids)
        logits = logits if isinstance(logits, torch.Tensor) else logits.logits
        assert torch.isfinite(logits.float()).all()
    forward_done = time.perf_counter()
    after_forward = memory_kib()
    print(json.dumps({
        "import_s": imported - started, "load_s": load_done - imported,
        "first_forward_s": forward_done - load_done, "baseline_kib": baseline,
        "peak_after_load_kib": after_load["VmHWM"],
        "peak_after_forward_kib": after_forward["VmHWM"],
        "rss_after_forward_kib": after_forward["VmRSS"],
        "anon_after_forward_kib": after_forward["RssAnon"],
        "dtype": str(next(model.parameters()).dtype),
        "backends": backends,
    }))


# -- parent ---------------------------------------------------------------------------------------
def write_checkpoint(directory: Path) -> None:
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(0)
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)  # build in bfloat16 directly: no float32 copy
    try:
        model = Qwen3ForCausalLM(Qwen3Config(**QWEN3_0_6B))
    finally:
        torch.set_default_dtype(default)
    model.save_pretrained(directory)


def checkpoint_bytes(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.glob("*.safetensors"))


def warm_page_cache(directory: Path) -> None:
    for path in directory.glob("*.safetensors"):
        with open(path, "rb") as f:
            while f.read(1 << 24):
                pass


def run_child(kind: str, variant: str, directory: Path) -> dict:
    done = subprocess.run([sys.executable, __file__, "--child", kind, variant, str(directory)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{kind} {variant} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info
                       if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    import safetensors
    import torch
    import transformers

    return (f"{cpu}, {os.cpu_count()} CPU cores, {mem_gib:.0f} GiB RAM; Linux "
            f"{platform.release()}; Python {platform.python_version()}, torch {torch.__version__}"
            f", transformers {transformers.__version__}, safetensors {safetensors.__version__}")


def summarise(runs: list[dict], size: int) -> dict:
    def med(key: str) -> float:
        return statistics.median(r[key] for r in runs)

    gib = 1024 ** 2  # KiB per GiB
    return {
        "load_s": med("load_s"), "first_forward_s": med("first_forward_s"),
        "import_s": med("import_s"),
        "peak_load_gib": med("peak_after_load_kib") / gib,
        "peak_forward_gib": med("peak_after_forward_kib") / gib,
        "increment_gib": (med("peak_after_forward_kib") - med("baseline_kib")) / gib,
        "anon_gib": med("anon_after_forward_kib") / gib,
        "ratio": med("peak_after_forward_kib") * 1024 / size,
        "increment_ratio": (med("peak_after_forward_kib") - med("baseline_kib")) * 1024 / size,
        "backends": runs[0]["backends"], "dtype": runs[0]["dtype"],
    }


def table(results: dict[str, dict], size: int) -> str:
    lines = [
        ("| loader | load call (s) | first forward (s) | load + forward (s) | peak RSS after "
         "load (GiB) | peak RSS after forward (GiB) | peak / checkpoint | (peak - RSS before "
         "load) / checkpoint | anonymous after forward (GiB) |"),
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        lines.append(
            f"| {name} | {r['load_s']:.2f} | {r['first_forward_s']:.2f} | "
            f"{r['load_s'] + r['first_forward_s']:.2f} | {r['peak_load_gib']:.2f} | "
            f"{r['peak_forward_gib']:.2f} | {r['ratio']:.2f}x | {r['increment_ratio']:.2f}x | "
            f"{r['anon_gib']:.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", type=Path, help="checkpoint directory (written if empty)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--write-doc", type=Path, help="write the markdown report here")
    parser.add_argument("--child", nargs=3, metavar=("KIND", "VARIANT", "DIR"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return

    scratch = None
    directory = args.dir
    if directory is None:
        scratch = Path(tempfile.mkdtemp(prefix="qwen3-0.6b-random-"))
        directory = scratch
    try:
        if not (directory / "config.json").is_file():
            print(f"writing a Qwen3-0.6B-shape bfloat16 checkpoint to {directory} ...",
                  file=sys.stderr)
            write_checkpoint(directory)
        size = checkpoint_bytes(directory)
        warm_page_cache(directory)
        runs: dict[str, list[dict]] = {name: [] for name in LOADERS}
        for repeat in range(args.repeats):
            for name, (kind, variant) in LOADERS.items():
                runs[name].append(run_child(kind, variant, directory))
                print(f"run {repeat + 1}/{args.repeats} {name}: "
                      f"load {runs[name][-1]['load_s']:.2f}s", file=sys.stderr)
        results = {name: summarise(r, size) for name, r in runs.items()}
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)

    command = "python scripts/bench_load.py " + " ".join(
        a for a in sys.argv[1:])
    report = render(results, size, args.repeats, command.strip())
    print(report)
    if args.write_doc:
        args.write_doc.write_text(report)


def render(results: dict[str, dict], size: int, repeats: int, command: str) -> str:
    backends = "\n".join(f"- {name}: dtype {r['dtype']}, "
                         + ", ".join(f"{c}={n}" for c, n in r["backends"].items())
                         for name, r in results.items())
    return f"""# Load benchmark: Qwen3-0.6B shape, bfloat16, CPU

Command: `{command}`
Date: {datetime.date.today().isoformat()}
Machine: {machine()}

Checkpoint: the Qwen3-0.6B config with random weights, written by transformers
`save_pretrained` in bfloat16: one `model.safetensors` of {size / 2**30:.3f} GiB
({size:,} bytes). Each loader runs in a fresh interpreter, {repeats} times, alternating;
the table shows medians. The page cache is warm (the file is read once before the runs).
Peak RSS is the process's VmHWM: it includes the interpreter and torch (the "RSS before load"
column subtracts what the process held after its imports) and the file pages a memory-mapped
tensor has touched. The first forward pass (16 tokens) reads every weight, so the peak after it
is the honest figure for a loader that maps the file instead of copying it. The last column is
the part of the resident set that is anonymous memory (RssAnon): copies the process made, which
the kernel cannot drop under memory pressure, unlike clean pages of the mapped file. The
first-forward time measures the selected implementations' compute, not loading.

{table(results, size)}

Imports (median, not in the load column): """ + ", ".join(
        f"{name} {r['import_s']:.1f} s" for name, r in results.items()) + f"""

Implementations selected:
{backends}
"""


if __name__ == "__main__":
    main()
