"""Peak memory of loading a preset and generating a few tokens, each case in a fresh process.

    python scripts/memory_peak.py [--preset 0.6B] [--cases bf16,fp32,int8,int4,int4+head,hf]
                                  [--prefill 512] [--threads 1]

A case is a dtype (``bf16``, ``fp32``), a quantization scheme (``int8``, ``int4``, with
``+head`` for ``quantize_head``, loaded in bfloat16) or ``hf`` (transformers' Qwen3ForCausalLM
of the same shape, random weights made directly in bfloat16). Each runs in a new interpreter:
``qwen3core.load("random:<preset>", ...)``, ``generate([1, 2, 3, 4], max_new_tokens=4)``, then
(with ``--prefill N``) the forward pass of an N-token prompt, timed (best of 3 after one warm
run, in CPU time of the process: with one thread its time on a core, less disturbed by other
processes than wall time). Printed per case: the peak RSS (ru_maxrss: interpreter, torch and
everything the process ever held at once), the RSS after the load, the bytes of the weights
held, and the prefill time.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

CHILD = r"""
import json, resource, sys, time
import torch
case, preset, prefill, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
torch.set_num_threads(threads)
GIB = 2 ** 30

def rss_now():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024

def held_bytes(model):
    # Every distinct storage reachable from the modules' parameters, buffers and attributes
    # (packed tiles, fused groups' stacks, quantized levels), however deeply held.
    seen, visited = {}, set()
    def walk(obj):
        if isinstance(obj, torch.Tensor):
            s = obj.untyped_storage()
            seen[s.data_ptr()] = s.nbytes()
        elif isinstance(obj, (list, tuple)):
            for item in obj:
                walk(item)
        elif isinstance(obj, dict):
            for item in obj.values():
                walk(item)
        elif hasattr(obj, "__dict__") and not isinstance(obj, (torch.nn.Module, type)) \
                and id(obj) not in visited:
            visited.add(id(obj))
            walk(vars(obj))
    for m in model.modules():
        walk([v for k, v in vars(m).items() if k != "_modules"])
    return sum(seen.values())

base = rss_now()
if case == "hf":
    import transformers
    from qwen3core.spec import preset as get_preset
    config = transformers.Qwen3Config(**get_preset(preset).to_dict(), dtype=torch.bfloat16)
    model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16).eval()
    after_load = rss_now()
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.inference_mode():
        model.generate(ids, max_new_tokens=4, do_sample=False)
    held = sum(p.nbytes for p in model.parameters())
    forward = lambda ids: model(ids).logits[:, -1:]
else:
    import qwen3core
    dtype = {"fp32": "float32"}.get(case, "bfloat16")
    quantize = None if case in ("bf16", "fp32") else case.removesuffix("+head")
    loaded = qwen3core.load(f"random:{preset}", dtype=dtype, device="cpu", quantize=quantize,
                            quantize_head=case.endswith("+head"))
    after_load = rss_now()
    loaded.generate([1, 2, 3, 4], max_new_tokens=4)
    model = loaded.model
    held = held_bytes(model)
    forward = lambda ids: model(ids, last_only=True)
seconds = None
if prefill:
    ids = torch.randint(0, 1000, (1, prefill), generator=torch.Generator().manual_seed(0))
    times = []
    with torch.inference_mode():
        for _ in range(4):
            t = time.process_time()  # CPU time: less disturbed by other processes
            forward(ids)
            times.append(time.process_time() - t)
    seconds = min(times[1:])
print(json.dumps({"case": case, "peak_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                  * 1024 / GIB, "after_load_gib": after_load / GIB, "start_gib": base / GIB,
                  "weights_gib": held / GIB, "prefill_s": seconds}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="0.6B")
    parser.add_argument("--cases", default="bf16,fp32,int8,int4,int4+head,hf")
    parser.add_argument("--prefill", type=int, default=0, help="also time an N-token prefill")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    print(f"random:{args.preset}, {args.threads} thread(s); GiB")
    print("| case | peak RSS | RSS after load | weights held | RSS at start | prefill (CPU s) |")
    print("|---|---|---|---|---|---|")
    for case in args.cases.split(","):
        done = subprocess.run([sys.executable, "-c", CHILD, case, args.preset,
                               str(args.prefill), str(args.threads)],
                              check=False, capture_output=True, text=True)
        if done.returncode != 0:
            print(f"| {case} | failed: {done.stderr.strip().splitlines()[-1]} |||||")
            continue
        r = json.loads(done.stdout.strip().splitlines()[-1])
        prefill = "" if r["prefill_s"] is None else f"{r['prefill_s']:.2f}"
        print(f"| {case} | {r['peak_gib']:.2f} | {r['after_load_gib']:.2f} | "
              f"{r['weights_gib']:.2f} | {r['start_gib']:.2f} | {prefill} |")


if __name__ == "__main__":
    main()
