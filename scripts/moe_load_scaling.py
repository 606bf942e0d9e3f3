"""The 30B-A3B shape's quantize-on-load alone, for a few layer counts: time, faults, memory.

    python scripts/moe_load_scaling.py [--layers 2,4,8] [--threads 1] [--scheme int4]

Each count in a fresh interpreter: ``build_random_quantized`` of ``random:30B-A3B``'s spec with
that many decoder layers (each a 128-expert MoE layer), then ``return_freed_memory()`` as
``qwen3core.load`` does. Prints user and system time, minor page faults, the peak RSS, the RSS
after the build and the resident weights (``qwen3core.quant.sizes``), so the per-layer growth
of each can be read off and extrapolated to the 48 layers of the model (docs/quantization.md).
"""

from __future__ import annotations

import argparse
import subprocess
import sys

CHILD = r"""
import resource, sys, time, torch
from qwen3core.build import select_backends
from qwen3core.memory import return_freed_memory
from qwen3core.quant import resolve_scheme
from qwen3core.quant.apply import build_random_quantized
from qwen3core.quant.sizes import weight_bytes
from qwen3core.spec import preset
layers, threads, scheme = int(sys.argv[1]), int(sys.argv[2]), resolve_scheme(sys.argv[3])
torch.set_num_threads(threads)
spec = preset("30B-A3B").replace(num_hidden_layers=layers)
selection = select_backends({"moe": "eager"}, device=torch.device("cpu"), dtype=torch.bfloat16)
def rss():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**30
r0, w0, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter(), rss()
model = build_random_quantized(spec, selection, dtype=torch.bfloat16, device=torch.device("cpu"),
                               seed=0, scheme=scheme)
return_freed_memory()
r1, wall = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter() - w0
weights = weight_bytes(spec, torch.bfloat16, scheme).resident / 2**30
print(f"| {layers} | {wall:.1f} s | {r1.ru_utime - r0.ru_utime:.1f} s | "
      f"{r1.ru_stime - r0.ru_stime:.1f} s | {(r1.ru_minflt - r0.ru_minflt) / 1e6:.2f} M | "
      f"{r1.ru_maxrss / 2**20:.2f} | {rss():.2f} | {weights:.2f} | {start:.2f} |")
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", default="2,4,8")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--scheme", default="int4")
    args = parser.parse_args()
    print(f"30B-A3B shape, {args.scheme}, {args.threads} thread(s); RSS in GiB")
    print("| layers | wall | user | system | minor faults | peak RSS | RSS after | "
          "resident weights | RSS at start |")
    print("|---|---|---|---|---|---|---|---|---|")
    for layers in args.layers.split(","):
        done = subprocess.run([sys.executable, "-c", CHILD, layers, str(args.threads),
                               args.scheme], check=False, capture_output=True, text=True)
        if done.returncode != 0:
            print(f"| {layers} | failed: {done.stderr.strip().splitlines()[-1]} ||||||||")
            continue
        print(done.stdout.strip().splitlines()[-1], flush=True)


if __name__ == "__main__":
    main()
