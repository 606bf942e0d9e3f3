"""How fast this machine streams memory with and without software prefetch (AVX-512 only).

    python scripts/read_probe.py [--threads 2] [--gib 1] [--rounds 3]

Compiles a small read loop (512-bit loads xor-ed into four accumulators, split over torch's
threads as the cpu kernels split a matrix) and reads one buffer with no software prefetch and
with ``prefetcht0`` / ``prefetchnta`` 512 B to 16 KiB ahead, best of 5 reads per setting,
the settings alternated ``--rounds`` times. It asks where the read path leaves bandwidth
unused (docs/benchmarks-llama-cpp.md: llama.cpp streamed faster than ``stream_read``); it is
a probe, not a kernel: no numbers of it are promised anywhere.
"""

from __future__ import annotations

import argparse
import os
import time

import torch
from torch.utils.cpp_extension import load_inline

SOURCE = r"""
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <immintrin.h>
#include <vector>

int64_t read_lines(torch::Tensor t, int64_t ahead_lines, bool nta) {
  const char* p = static_cast<const char*>(t.data_ptr());
  const int64_t lines = t.nbytes() / 64;
  std::vector<int64_t> part(at::get_num_threads(), 0);
  at::parallel_for(0, lines, 1 << 12, [&](int64_t begin, int64_t end) {
    __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = begin;
    for (; i + 4 <= end; i += 4) {
      if (ahead_lines) {  // two requests per four lines: the adjacent-line prefetcher pairs them
        const char* f = p + (i + ahead_lines) * 64;
        if (nta) {
          _mm_prefetch(f, _MM_HINT_NTA);
          _mm_prefetch(f + 128, _MM_HINT_NTA);
        } else {
          _mm_prefetch(f, _MM_HINT_T0);
          _mm_prefetch(f + 128, _MM_HINT_T0);
        }
      }
      a0 = _mm512_xor_si512(a0, _mm512_loadu_si512(p + i * 64));
      a1 = _mm512_xor_si512(a1, _mm512_loadu_si512(p + (i + 1) * 64));
      a2 = _mm512_xor_si512(a2, _mm512_loadu_si512(p + (i + 2) * 64));
      a3 = _mm512_xor_si512(a3, _mm512_loadu_si512(p + (i + 3) * 64));
    }
    a0 = _mm512_xor_si512(_mm512_xor_si512(a0, a1), _mm512_xor_si512(a2, a3));
    part[at::get_thread_num()] ^= _mm512_reduce_add_epi64(a0);
  });
  int64_t sum = 0;
  for (int64_t v : part) sum ^= v;
  return sum;  // returned so that the loads cannot be dropped
}
"""


def _cpu_flags() -> str:
    if not os.path.exists("/proc/cpuinfo"):
        return ""
    with open("/proc/cpuinfo") as info:
        return info.read()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--gib", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if "avx512f" not in _cpu_flags():
        raise SystemExit("read_probe: this probe needs AVX-512 (avx512f not in /proc/cpuinfo)")
    probe = load_inline("qwen3core_read_probe", cpp_sources=SOURCE, functions=["read_lines"],
                        extra_cflags=["-O3", "-mavx512f", "-fopenmp"], extra_ldflags=["-fopenmp"])
    torch.set_num_threads(args.threads)
    buffer = torch.ones(int(args.gib * 2**30) // 256 * 256, dtype=torch.uint8)
    settings = [("none", 0, False)] + [
        (f"{hint} {lines * 64} B ahead", lines, hint == "nta")
        for lines in (8, 16, 32, 64, 256) for hint in ("t0", "nta")]
    best = {name: float("inf") for name, _, _ in settings}
    for _ in range(args.rounds):
        for name, lines, nta in settings:
            probe.read_lines(buffer, lines, nta)  # warm
            for _ in range(5):
                start = time.perf_counter()
                probe.read_lines(buffer, lines, nta)
                best[name] = min(best[name], time.perf_counter() - start)
    print(f"{buffer.nbytes / 2**30:.2f} GiB, {args.threads} threads, best of 5 x {args.rounds}:")
    for name, _, _ in settings:
        print(f"  {name:22s} {buffer.nbytes / best[name] / 1e9:6.1f} GB/s")


if __name__ == "__main__":
    main()
