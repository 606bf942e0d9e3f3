"""The C++ engine (llama.cpp) on the same shapes, as a share of this machine's read bandwidth.

    python scripts/llama_cpp_bench.py [--preset 0.6B] [--threads 2]
                                      [--types f32,bf16,q8_0,q4_0,q4_0-pure]
                                      [--qwen3core bfloat16,float32,int8,int4,w8a8,w4a8-sym]
                                      [--rounds 3] [--batch 8] [--prompt-len 16]
                                      [--write docs/benchmarks-llama-cpp.md]

1. Finds or builds llama.cpp's CPU tools (``llama-bench``, ``llama-quantize``,
   ``llama-batched-bench``) from the sources
   vendored in the ``llama-cpp-python`` sdist on PyPI: ``pip download --no-binary :all:``,
   unpacked and built natively with CMake (``-DGGML_NATIVE=ON``, ``-j2``) under
   ``~/.cache/qwen3core/llama.cpp`` (``--cache``), where later runs find it. Needs cmake, a
   C++ compiler and ninja or make (``pip install cmake ninja`` or apt).
2. Writes a random-weights Hugging Face checkpoint of the preset's shape (bfloat16, qwen3core's
   random init) into a temporary folder, with the official tokenizer files copied in from
   ``--tokenizer`` (default /work/shared/qwen3-tokenizer; the converter needs one).
3. Converts it with llama.cpp's own ``convert_hf_to_gguf.py`` (and its vendored ``gguf``
   package) to f32 and bf16, and quantizes the f32 file to q8_0 and q4_0 with ``llama-quantize``
   (its default mix: some tensors stay at higher precision, counted in the bytes below; the
   tied head of a q4_0 file is Q6_K) and, as ``q4_0-pure``, with ``--pure`` (every tensor q4_0).
4. Runs ``llama-bench -p 16 -n 64 -t THREADS``: tg64 is batch-1 decode of 64 tokens, pp16 a
   16-token prompt; and ``qwen3 bench`` (default selection, batch 1, prompt 16, 64 new tokens)
   (``--prompt-len P``: a P-token prompt in both; qwen3 bench then decodes after it, llama-bench
   from an empty context) on the same checkpoint in the ``--qwen3core`` variants, side by side:
   ``--rounds`` times, each llama.cpp type right before the variants compared with it
   (``PEER``), since the host's bandwidth drifts over minutes; it reports the median run of each and the median of
   the per-round ratios.
   With ``--batch B``, also batch-B decode: ``llama-batched-bench -npp 16 -ntg 64 -npl 1,B``
   (B sequences decoded together, total tokens per second, with batch 1 from the same run) and
   ``qwen3 bench --batch-sizes 1,B``, with each engine's batch-B / batch-1 ratio.
5. Measures the read bandwidth in the same run (the cpu backend's ``stream_read`` over a
   0.6B-sized set of weights, as ``scripts/step_bandwidth.py``; before and after the engines,
   the best of both), and reports each decode rate
   as a share of its floor: bandwidth / bytes read per token (every weight tensor of the GGUF,
   minus the token embedding when a separate output matrix exists: decode reads one row of it).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

CACHE = Path.home() / ".cache" / "qwen3core" / "llama.cpp"
TOKENIZER = Path("/work/shared/qwen3-tokenizer")
TOOLS = ("llama-bench", "llama-quantize", "llama-batched-bench")
QUANTIZED = {"q8_0": "Q8_0", "q4_0": "Q4_0", "q4_0-pure": "Q4_0"}
#: llama-quantize options per --types name. Its default mix keeps the (tied) output matrix of
#: a q4_0 file at Q6_K; --pure makes every tensor q4_0, the same format as qwen3core's
#: int4:sym / w4a8:sym with the head quantized. q8_0 quantizes the tied head to q8_0 already.
QUANTIZE_OPTIONS = {"q4_0-pure": ["--pure"]}
# a dense config.json has no MoE fields (qwen3core's config checks refuse their zeros)
MOE_FIELDS = ("num_experts", "num_experts_per_tok", "moe_intermediate_size", "norm_topk_prob",
              "decoder_sparse_step", "mlp_only_layers")  # --types name -> llama-quantize type


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    log("$ " + " ".join(str(c) for c in cmd))
    return subprocess.run(cmd, check=True, **kwargs)


def quiet(cmd: list[str], **kwargs) -> None:
    """Run a chatty tool; show its last lines only if it fails."""
    log("$ " + " ".join(str(c) for c in cmd))
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, **kwargs)
    if done.returncode != 0:
        sys.exit(f"{Path(cmd[1] if cmd[0] == sys.executable else cmd[0]).name} failed "
                 f"({done.returncode}):\n" + "\n".join((done.stdout + done.stderr)
                                                      .splitlines()[-30:]))


# ---- 1. llama.cpp ------------------------------------------------------------------------------

def find_sources(cache: Path) -> Path | None:
    found = sorted(cache.glob("src/llama_cpp_python-*/vendor/llama.cpp/convert_hf_to_gguf.py"))
    return found[-1].parent if found else None


def download_sources(cache: Path) -> Path:
    (cache / "src").mkdir(parents=True, exist_ok=True)
    run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
         "llama-cpp-python", "-d", str(cache / "src")])
    sdist = max((cache / "src").glob("llama_cpp_python-*.tar.gz"))
    with tarfile.open(sdist) as archive:
        archive.extractall(cache / "src", filter="data")
    return find_sources(cache)


def build_dir(cache: Path, sources: Path) -> Path:
    version = sources.parents[1].name.removeprefix("llama_cpp_python-")
    return cache / f"build-{version}"


def build(sources: Path, build: Path, jobs: int) -> None:
    missing = [tool for tool in ("cmake", "c++") if shutil.which(tool) is None]
    if missing:
        sys.exit(f"building llama.cpp needs {', '.join(missing)}: pip install cmake, or apt-get "
                 "install cmake g++ ninja-build")
    generator = ["-G", "Ninja"] if shutil.which("ninja") else []
    run(["cmake", "-S", str(sources), "-B", str(build), *generator, "-DCMAKE_BUILD_TYPE=Release",
         "-DGGML_NATIVE=ON", "-DBUILD_SHARED_LIBS=OFF", "-DLLAMA_CURL=OFF", "-DLLAMA_OPENSSL=OFF",
         "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_BUILD_SERVER=OFF"])
    run(["cmake", "--build", str(build), "-j", str(jobs), "--target", *TOOLS])


def llama_cpp(cache: Path, jobs: int) -> tuple[Path, Path]:
    """(llama.cpp source folder, folder of its built tools), building what is missing."""
    sources = find_sources(cache) or download_sources(cache)
    out = build_dir(cache, sources)
    if not all((out / "bin" / tool).is_file() for tool in TOOLS):
        log(f"building llama.cpp's CPU tools in {out} (many minutes on 2 cores)")
        build(sources, out, jobs)
    return sources, out / "bin"


# ---- 2. the checkpoint -------------------------------------------------------------------------

def write_checkpoint(preset: str, directory: Path, tokenizer: Path, seed: int) -> None:
    import torch
    import transformers
    from safetensors.torch import save_file

    import qwen3core

    loaded = qwen3core.load(f"random:{preset}", dtype=torch.bfloat16, device="cpu", seed=seed,
                            backends={"linear": "eager", "mlp": "eager", "moe": "eager"})
    spec = loaded.spec
    if spec.is_moe:
        sys.exit("MoE presets are not wired here yet (dense presets only)")
    state = {k: v.contiguous() for k, v in loaded.model.state_dict().items()}
    if spec.tie_word_embeddings:
        state.pop("lm_head.weight", None)  # one tensor, stored once (as transformers does)
    directory.mkdir(parents=True, exist_ok=True)
    save_file(state, str(directory / "model.safetensors"), metadata={"format": "pt"})
    fields = {k: v for k, v in spec.to_dict().items() if k not in MOE_FIELDS}  # dense: none
    config = transformers.Qwen3Config(**fields, dtype=torch.bfloat16)
    config.architectures = ["Qwen3ForCausalLM"]  # what the converter dispatches on
    config.save_pretrained(directory)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt"):
        if (tokenizer / name).is_file():
            shutil.copy(tokenizer / name, directory / name)
    if not (directory / "tokenizer.json").is_file():
        sys.exit(f"no tokenizer.json in {tokenizer}: llama.cpp's converter needs the model's "
                 "tokenizer (pass --tokenizer DIR)")


# ---- 3. conversion -----------------------------------------------------------------------------

def convert(sources: Path, tools: Path, checkpoint: Path, out: Path, types: list[str]
            ) -> dict[str, Path]:
    try:
        import sentencepiece  # noqa: F401  (the converter imports it before falling back to BPE)
    except ImportError:
        sys.exit("llama.cpp's convert_hf_to_gguf.py needs sentencepiece: pip install "
                 "-e .[llama-cpp-bench]")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(sources / "gguf-py"), str(sources), os.environ.get("PYTHONPATH", "")])}
    files = {}
    for outtype in ("f32", "bf16"):
        if outtype in types or (outtype == "f32" and set(types) & set(QUANTIZED)):
            files[outtype] = out / f"model-{outtype}.gguf"
            quiet([sys.executable, str(sources / "convert_hf_to_gguf.py"), str(checkpoint),
                   "--outtype", outtype, "--outfile", str(files[outtype])], env=env)
    for name, qtype in QUANTIZED.items():
        if name in types:
            files[name] = out / f"model-{name}.gguf"
            quiet([str(tools / "llama-quantize"), *QUANTIZE_OPTIONS.get(name, []),
                   str(files["f32"]), str(files[name]), qtype])
    return files


def bytes_per_token(sources: Path, path: Path) -> int:
    sys.path.insert(0, str(sources / "gguf-py"))
    from gguf import GGUFReader

    tensors = {t.name: int(t.n_bytes) for t in GGUFReader(str(path)).tensors}
    total = sum(tensors.values())
    if "output.weight" in tensors:  # untied: decode reads one embedding row, not the matrix
        total -= tensors.get("token_embd.weight", 0)
    return total


# ---- 4. llama-bench ----------------------------------------------------------------------------

def bench(tools: Path, model: Path, threads: int, reps: int, prompt: int = 16
          ) -> dict[str, float]:
    result = run([str(tools / "llama-bench"), "-m", str(model), "-p", str(prompt), "-n", "64",
                  "-t", str(threads), "-r", str(reps), "-o", "json"],
                 capture_output=True, text=True)
    rows = json.loads(result.stdout)
    out = {}
    for row in rows:
        key = "decode" if row["n_gen"] > 0 else "prompt"
        out[key] = float(row["avg_ts"])
        out[key + "_sd"] = float(row["stddev_ts"])
    return out


def bench_batched(tools: Path, model: Path, threads: int, batch: int) -> dict[str, float]:
    """``llama-batched-bench``: 16-token prompts, then 64 tokens decoded for 1 and for ``batch``
    sequences at once; decode tokens per second (all sequences together) of each."""
    context = (16 + 64) * batch
    result = run([str(tools / "llama-batched-bench"), "-m", str(model), "-c", str(context),
                  "-b", "512", "-ub", "512", "-npp", "16", "-ntg", "64", "-npl", f"1,{batch}",
                  "-t", str(threads), "--output-format", "jsonl"],
                 capture_output=True, text=True)
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    speed = {int(row["pl"]): float(row["speed_tg"]) for row in rows}
    if set(speed) != {1, batch}:
        sys.exit(f"llama-batched-bench printed no results for 1 and {batch} sequences:\n"
                 + result.stdout[-2000:])
    return {"batch1_batched": speed[1], "batch": speed[batch]}


def bench_cpu_time(tools: Path, model: Path, reps: int) -> dict[str, float]:
    """Decode tokens per second of CPU time on one thread: ``llama-bench -t 1 -p 0`` for 32
    and for 96 new tokens, the difference of the child processes' CPU times (so loading and
    warm-up cancel), best of ``reps``. What one core achieves while others load the machine."""
    import resource

    def cpu_seconds(tokens: int) -> float:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        run([str(tools / "llama-bench"), "-m", str(model), "-p", "0", "-n", str(tokens),
             "-t", "1", "-r", "1", "-o", "json"], capture_output=True, text=True)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        return (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)

    short = min(cpu_seconds(32) for _ in range(reps))
    long = min(cpu_seconds(96) for _ in range(reps))
    return {"decode": 64 / (long - short), "decode_sd": 0.0, "prompt": float("nan")}


# ---- 4b. qwen3core on the same checkpoint -----------------------------------------------------

#: qwen3core variants: name -> (dtype, quantization scheme or None, head quantized too).
#: llama.cpp's q8_0 / q4_0 files quantize the tied head (q8_0 / Q6_K, or q4_0 with --pure):
#: the "+head" and w*a8 variants compare like with like (w8a8 ~ q8_0, w4a8:sym ~ q4_0-pure:
#: the same weight formats, activations quantized to int8 per 32 as llama.cpp does).
def median_run(runs: list[dict]) -> dict:
    """The run whose decode rate is the median of ``runs`` (the lower one of an even count)."""
    ordered = sorted(runs, key=lambda r: r["decode"])
    return ordered[(len(ordered) - 1) // 2]


QWEN3CORE_VARIANTS = {"bfloat16": ("bfloat16", None, False), "float32": ("float32", None, False),
                      "int8": ("bfloat16", "int8", False), "int4": ("bfloat16", "int4", False),
                      "int8+head": ("bfloat16", "int8", True),
                      "int8-channel+head": ("bfloat16", "int8:channel", True),
                      "int4+head": ("bfloat16", "int4", True),
                      "w8a8": ("bfloat16", "w8a8", True), "w4a8": ("bfloat16", "w4a8", True),
                      "w4a8-sym": ("bfloat16", "w4a8:sym", True)}
#: The llama.cpp type each qwen3core variant is compared with: the same weight format where
#: there is one (w4a8:sym with the head is q4_0 --pure), else the same bits (int8:channel, a
#: float16 scale per output channel instead of per 32 inputs, reads 6 % fewer bytes than q8_0).
PEER = {"bfloat16": "bf16", "float32": "f32", "int8": "q8_0", "int8+head": "q8_0",
        "int8-channel+head": "q8_0", "w8a8": "q8_0", "int4": "q4_0", "int4+head": "q4_0",
        "w4a8": "q4_0", "w4a8-sym": "q4_0-pure"}


def bench_qwen3core(checkpoint: Path, variant: str, threads: int, reps: int, batch: int = 0,
                    prompt: int = 16) -> dict[str, float]:
    """``qwen3 bench`` with the default (auto) selection, batch 1 (and ``batch``), prompt 16,
    64 new tokens; quantized variants quantize the bf16 checkpoint's projections on load
    (``--quantize``, ``--quantize-head``)."""
    dtype, scheme, head = QWEN3CORE_VARIANTS[variant]
    sizes = "1" if batch <= 1 else f"1,{batch}"
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        quiet([sys.executable, "-m", "qwen3core.cli", "bench", "--model", str(checkpoint),
               "--combo", "auto", "--dtype", dtype, "--prompt-len", str(prompt), "--new-tokens", "64",
               "--batch-sizes", sizes, "--repeats", str(reps), "--threads", str(threads),
               "--json", out.name, *(["--quantize", scheme] if scheme else []),
               *(["--quantize-head"] if head else [])])
        batches = json.loads(Path(out.name).read_text())["results"][0]["batches"]
    row = batches["1"]
    decode = row["decode_tokens_per_s"]
    measured = {"decode": decode["median"], "decode_sd": (decode["max"] - decode["min"]) / 2,
                "prompt": row["prefill_tokens_per_s"]["median"]}
    if batch > 1:
        measured["batch"] = batches[str(batch)]["decode_tokens_per_s"]["median"]
    return measured


def bench_qwen3core_cpu_time(checkpoint: Path, variant: str, reps: int) -> dict[str, float]:
    """``scripts/quant_bench.py --threads 1 --cpu-time``: batch-1 and batch-8 decode per
    second of one thread's CPU time, and the read rate of one core over the same bytes."""
    dtype, scheme, head = QWEN3CORE_VARIANTS[variant]
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        quiet([sys.executable, str(Path(__file__).with_name("quant_bench.py")), "--model",
               str(checkpoint), "--dtype", dtype, "--schemes", scheme or "none", "--threads",
               "1", "--cpu-time", "--rounds", str(reps), "--json", out.name,
               *(["--head"] if head else [])])
        row = next(iter(json.loads(Path(out.name).read_text()).values()))
    return {"decode": row["batch1_tokens_per_s"], "decode_sd": 0.0, "prompt": float("nan"),
            "batch8": row["batch8_tokens_per_s"], "core_read": row["read_bytes_per_s"]}


def qwen3core_bytes_per_token(checkpoint: Path, variant: str) -> int:
    """Weight bytes one decode step reads, as `qwen3 info` counts them for this variant."""
    import torch

    from qwen3core.checkpoint.config import read_config, spec_from_config
    from qwen3core.quant import resolve_scheme
    from qwen3core.quant.sizes import weight_bytes

    dtype, scheme, head = QWEN3CORE_VARIANTS[variant]
    if scheme is None:
        return checkpoint_bytes_per_token(checkpoint, 2 if dtype == "bfloat16" else 4)
    spec = spec_from_config(read_config(checkpoint), str(checkpoint))
    return weight_bytes(spec, getattr(torch, dtype), resolve_scheme(scheme), head).per_token


def checkpoint_bytes_per_token(checkpoint: Path, element_size: int) -> int:
    """Bytes of weights a decode step reads at ``element_size`` bytes per value: every tensor,
    the embedding only when it doubles as the (tied) head."""
    from safetensors import safe_open

    with safe_open(str(checkpoint / "model.safetensors"), framework="pt") as handle:
        shapes = {k: handle.get_slice(k).get_shape() for k in handle.keys()}  # noqa: SIM118
    if "lm_head.weight" in shapes:
        shapes.pop("model.embed_tokens.weight")
    total = 0
    for shape in shapes.values():
        count = 1
        for n in shape:
            count *= n
        total += count * element_size
    return total


# ---- 5. bandwidth ------------------------------------------------------------------------------

def read_bandwidth(threads: int, rounds: int, cpu_time: bool = False) -> tuple[float, float]:
    """(best, median) GB/s of the cpu backend's ``stream_read`` over 0.6B-shaped bf16 weights
    (1.19 GB: more than any cache) on huge pages, as scripts/step_bandwidth.py measures it; with
    ``cpu_time``, per second of the process's CPU time (one thread: one core's rate)."""
    import torch
    from qwen3core_backends.cpu.build import load_kernels
    from qwen3core_backends.cpu.huge_pages import rehome_huge_pages

    torch.set_num_threads(threads)
    load_kernels()
    layer = [(4096, 1024), (1024, 2048), (6144, 1024), (1024, 3072)]
    weights = [torch.randn(n, k).to(torch.bfloat16) for n, k in layer * 28 + [(151936, 1024)]]
    # On huge pages, as qwen3core's packed weights are (backends/cpu/huge_pages.py): a floor
    # read from 4 KiB pages was slower than our own decode read its weights.
    rehome_huge_pages(weights)
    total = sum(w.nbytes for w in weights)
    ops = torch.ops.qwen3core_cpu
    clock = time.process_time if cpu_time else time.perf_counter
    times = []
    for _ in range(rounds):
        start = clock()
        for w in weights:
            ops.stream_read(w)
        times.append(clock() - start)
    return total / min(times) / 1e9, total / statistics.median(times) / 1e9


# ---- report ------------------------------------------------------------------------------------

def report(args, results: dict[str, dict], bandwidth: tuple[float, float], sources: Path
           ) -> str:
    best, median = bandwidth
    machine = platform.processor() or platform.machine()
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    how = (f"1 thread each, CPU time (llama-bench -t 1 -p 0, 96 minus 32 new tokens; "
           f"qwen3core scripts/quant_bench.py --threads 1 --cpu-time), best of {args.reps}"
           if args.cpu_time else
           f"{args.threads} threads, llama-bench -p {args.prompt_len} -n 64 -r {args.reps}")
    batch_header = ""
    if args.batch > 1:
        how += (f"; batch {args.batch}: llama-batched-bench -npp 16 -ntg 64 -npl 1,{args.batch} "
                f"(its batch-1 rate from the same run for the ratio), qwen3 bench --batch-sizes "
                f"1,{args.batch}; tokens per second of all sequences together")
        batch_header = (f" batch-{args.batch} decode tok/s | batch {args.batch} / batch 1 | "
                        f"batch {args.batch} / llama.cpp |")
    lines = [
        (f"llama.cpp ({sources.parents[1].name}, native CPU build), random {args.preset} "
         f"weights, {how}; "
         f"{machine}, {os.cpu_count()} CPUs; load average at the end {load} (other work "
         "on the machine slows both engines and the bandwidth alike, not equally)."),
        (f"Read bandwidth (stream_read, measured before and after the engines): best "
         f"{best:.1f} GB/s, lower median {median:.1f} GB/s. Floor = best bandwidth / bytes per "
         "token."),
        "",
        (f"Median of {args.rounds} rounds; in each round a llama.cpp type ran right before the "
         "qwen3core variants compared with it, and the last column is the median of those "
         "per-round ratios (its range in brackets)."
         + (f" With a {args.prompt_len}-token prompt the decode columns differ in kind: qwen3 "
            f"bench decodes after the prompt (attending to {args.prompt_len}+ positions), "
            "llama-bench's tg64 from an empty context; compare the prompt column."
            if args.prompt_len > 16 else "")),
        "",
        ("| engine / type | GB per token | decode tok/s (tg64) | floor tok/s | share of floor "
         f"| prompt tok/s (pp{args.prompt_len}) | / llama.cpp |" + batch_header),
        "|---|---|---|---|---|---|---|" + "---|" * batch_header.count("|"),
    ]

    def ratio_text(ratios: list[float], peer: str) -> str:
        ratios = sorted(ratios)
        return f"{statistics.median(ratios):.2f}x {peer} [{ratios[0]:.2f}-{ratios[-1]:.2f}]"

    for name, r in results.items():
        name = name if name.startswith("qwen3core") else f"llama.cpp {name}"
        floor = best * 1e9 / r["bytes"]
        extra = f" (batch 8: {r['batch8']:.1f})" if "batch8" in r else ""
        peer = PEER.get(name.removeprefix("qwen3core "), "")
        ratio = ratio_text(r["ratios"], peer) if r.get("ratios") else ""
        batched = ""
        if "batch" in r:
            single = r.get("batch1_batched", r["decode"])
            versus = ratio_text(r["batch_ratios"], peer) if r.get("batch_ratios") else ""
            batched = f" {r['batch']:.1f} | {r['batch'] / single:.1f}x | {versus} |"
        lines.append(f"| {name} | {r['bytes'] / 1e9:.3f} | {r['decode']:.1f} ± "
                     f"{r['decode_sd']:.1f}{extra} | {floor:.1f} | {r['decode'] / floor:.0%} | "
                     f"{r['prompt']:.1f} | {ratio} |{batched}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="0.6B")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--types", default="f32,bf16,q8_0,q4_0,q4_0-pure")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--qwen3core", default="bfloat16,float32,int8,int4,w8a8,w4a8-sym",
                        help="also run `qwen3 bench` (auto selection) on the same checkpoint in "
                             f"these variants: {', '.join(QWEN3CORE_VARIANTS)} (bf16 quantized "
                             "on load; +head and w*a8: the LM head too); '' to skip")
    parser.add_argument("--rounds", type=int, default=3,
                        help="run every engine this many times, each llama.cpp type next to "
                             "its qwen3core peers; report the median run and the median of "
                             "the per-round ratios")
    parser.add_argument("--bandwidth-rounds", type=int, default=8)
    parser.add_argument("--cpu-time", action="store_true",
                        help="one thread each, timed by CPU time (a shared machine): llama-bench "
                             "-t 1 by the difference of two lengths, qwen3core by "
                             "scripts/quant_bench.py --cpu-time; the floor is one core's read "
                             "rate")
    parser.add_argument("--jobs", type=int, default=2, help="compile jobs for the build")
    parser.add_argument("--cache", type=Path, default=CACHE)
    parser.add_argument("--tokenizer", type=Path, default=TOKENIZER)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--build-only", action="store_true")
    parser.add_argument("--prompt-len", type=int, default=16,
                        help="prompt tokens of the prefill each engine times (llama-bench -p, "
                             "qwen3 bench --prompt-len)")
    parser.add_argument("--batch", type=int, default=0,
                        help="also decode this many sequences at once in both engines "
                             "(llama-batched-bench, qwen3 bench --batch-sizes 1,B)")
    parser.add_argument("--write", type=Path, help="append the results to this markdown file")
    args = parser.parse_args()
    if args.prompt_len < 1:
        sys.exit(f"--prompt-len takes a prompt of 1 or more tokens, not {args.prompt_len}")
    if args.batch and (args.batch < 2 or args.cpu_time):
        sys.exit("--batch takes a batch size of 2 or more, and not with --cpu-time")
    types = args.types.split(",")
    unknown = set(types) - {"f32", "bf16", *QUANTIZED}
    if unknown:
        sys.exit(f"unknown --types {sorted(unknown)}; choose from f32, bf16, "
                 f"{', '.join(QUANTIZED)}")
    if set(filter(None, args.qwen3core.split(","))) - set(QWEN3CORE_VARIANTS):
        sys.exit(f"--qwen3core takes some of {', '.join(QWEN3CORE_VARIANTS)}")
    sources, tools = llama_cpp(args.cache, args.jobs)
    if args.build_only:
        print(tools)
        return
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="qwen3core-llama-cpp-") as tmp:
        checkpoint = Path(tmp) / "checkpoint"
        log(f"writing a random {args.preset} checkpoint")
        write_checkpoint(args.preset, checkpoint, args.tokenizer, args.seed)
        files = convert(sources, tools, checkpoint, Path(tmp), types)
        log("measuring read bandwidth")  # before and after the engines: the load may change
        threads = 1 if args.cpu_time else args.threads
        before = read_bandwidth(threads, args.bandwidth_rounds, args.cpu_time)
        ours = list(filter(None, args.qwen3core.split(",")))
        runs: dict[str, list[dict]] = {}
        for round_ in range(args.rounds):
            # Each llama.cpp type, then the qwen3core variants it is the peer of, back to back:
            # the host's bandwidth drifts over minutes (docs/benchmarks-llama-cpp.md), so a
            # ratio is taken between runs made next to each other, once per round.
            for name in [*types, *(v for v in ours if PEER[v] not in types)]:
                batch = [name] if name in types else []
                batch += [v for v in ours if PEER[v] == name or v == name]
                for label in batch:
                    if label in types:
                        key = label
                        measured = (bench_cpu_time(tools, files[label], args.reps)
                                    if args.cpu_time
                                    else bench(tools, files[label], args.threads, args.reps,
                                               args.prompt_len))
                        if args.batch:
                            measured.update(bench_batched(tools, files[label], args.threads,
                                                          args.batch))
                    else:
                        key = f"qwen3core {label}"
                        measured = (bench_qwen3core_cpu_time(checkpoint, label, args.reps)
                                    if args.cpu_time else
                                    bench_qwen3core(checkpoint, label, args.threads, args.reps,
                                                    args.batch, args.prompt_len))
                    runs.setdefault(key, []).append(measured)
                    log(f"round {round_ + 1}: {key}: {measured['decode']:.1f} tok/s decode")
        for key, measured in runs.items():
            label = key.removeprefix("qwen3core ")
            size = (bytes_per_token(sources, files[label]) if key in types
                    else qwen3core_bytes_per_token(checkpoint, label))
            results[key] = {**median_run(measured), "bytes": size}
            peer = PEER.get(label)
            if key not in types and peer in runs:
                results[key]["ratios"] = [a["decode"] / b["decode"]
                                          for a, b in zip(measured, runs[peer])]
                if args.batch:
                    results[key]["batch_ratios"] = [a["batch"] / b["batch"]
                                                    for a, b in zip(measured, runs[peer])]
        shutil.rmtree(checkpoint)
        log("measuring read bandwidth again")
        after = read_bandwidth(threads, args.bandwidth_rounds, args.cpu_time)
        bandwidth = (max(before[0], after[0]), min(before[1], after[1]))
    text = report(args, results, bandwidth, sources)
    print(text)
    if args.write:
        command = "python scripts/llama_cpp_bench.py " + " ".join(sys.argv[1:])
        with args.write.open("a", encoding="utf-8") as out:
            out.write(f"\n### {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n\n"
                      f"`{command}`\n\n{text}\n")


if __name__ == "__main__":
    main()
