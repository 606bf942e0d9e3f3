"""How many vdpbf16ps one core issues per second, alone and inside int4's inner loop (AVX512_BF16).

    python scripts/dpbf16_probe.py [--millions 400]

Compiles small loops (one thread, registers and a few KiB of L1 only, no memory stream) and
prints G instructions per second for:

* ``registers``: 16 independent accumulators, both other operands in registers: the peak;
* ``broadcast``: the same, one operand a ``vpbroadcastd`` from memory each time, as the cpu
  kernels feed an activation pair to every row;
* ``int4 rows=G``: the int4 kernel's inner block (``q4_dpbf16_rows`` in
  ``backends/cpu/csrc/avx512.cpp``): per 64-byte block of levels, four nibble positions, each
  one 16-bit shift and one ternary-logic op making bfloat16 weights, then G vdpbf16ps (one
  per row) into 2 x G accumulators. No group epilogue, no prefetch, no memory stream: the
  ceiling of that loop on this core.

It asks what bounds int4 at 8 rows (docs/quantization.md, "Batch 8 of int4"); it is a probe,
not a kernel: no numbers of it are promised anywhere.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch.utils.cpp_extension import load_inline

SOURCE = r"""
#include <torch/extension.h>
#include <immintrin.h>
#include <chrono>
#include <cstdint>

namespace {
alignas(64) uint32_t activations[8192];
alignas(64) uint32_t levels[16 * 64];

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// 16 accumulators; the other operand in a register, or a broadcast from memory each time.
template <bool FromMemory>
double peak(int64_t iters) {
  __m512 c[16];
  for (auto& v : c) v = _mm512_setzero_ps();
  __m512bh w = (__m512bh)_mm512_set1_epi32(0x3f803f80);
  const __m512bh r = w;
  auto t0 = std::chrono::steady_clock::now();
  for (int64_t n = 0; n < iters; ++n) {
    // Fixed addresses (the load and broadcast are what is measured, not address arithmetic,
    // which the compiler otherwise spreads over 16 pointers it cannot keep in registers).
    const uint32_t* p = activations;
#pragma GCC unroll 16
    for (int g = 0; g < 16; ++g) {
      const __m512bh x = FromMemory ? (__m512bh)_mm512_set1_epi32(int(p[g])) : r;
      c[g] = _mm512_dpbf16_ps(c[g], w, x);
    }
    __asm__ volatile("" : "+v"(w));  // keeps the loop from being folded
  }
  const double s = seconds_since(t0);
  float sum = 0;
  for (auto& v : c) sum += _mm512_reduce_add_ps(v);
  __asm__ volatile("" : : "x"(sum));
  return iters * 16.0 / s / 1e9;
}

template <int G>
double int4_block(int64_t iters) {
  __m512 c[G][2];
  for (int g = 0; g < G; ++g) c[g][0] = c[g][1] = _mm512_setzero_ps();
  const __m512i nibble_mask = _mm512_set1_epi32(0x000F000F);
  const __m512i magic = _mm512_set1_epi32(0x43004300);
  auto t0 = std::chrono::steady_clock::now();
  for (int64_t n = 0; n < iters; ++n) {
    const __m512i words = _mm512_load_si512(levels + (n & 63) * 16);
    const uint32_t* x = activations;
#pragma GCC unroll 4
    for (int k = 0; k < 4; ++k) {
      const __m512i shifted = k == 0 ? words : _mm512_srli_epi16(words, 4 * k);
      const __m512bh w =
          (__m512bh)_mm512_ternarylogic_epi32(shifted, nibble_mask, magic, 0xEA);
#pragma GCC unroll 16
      for (int g = 0; g < G; ++g)
        c[g][k & 1] = _mm512_dpbf16_ps(c[g][k & 1], w,
                                       (__m512bh)_mm512_set1_epi32(int(x[k * G + g])));
    }
  }
  const double s = seconds_since(t0);
  float sum = 0;
  for (int g = 0; g < G; ++g) sum += _mm512_reduce_add_ps(_mm512_add_ps(c[g][0], c[g][1]));
  __asm__ volatile("" : : "x"(sum));
  return iters * 4.0 * G / s / 1e9;
}
}  // namespace

std::vector<double> probe(int64_t instructions) {
  for (auto& a : activations) a = 0x3f803f80u;
  for (int i = 0; i < 16 * 64; ++i) levels[i] = 0x9e3779b9u * i;
  return {peak<false>(instructions / 16), peak<true>(instructions / 16),
          int4_block<4>(instructions / 16), int4_block<8>(instructions / 32),
          int4_block<12>(instructions / 48)};
}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--millions", type=int, default=400,
                        help="vdpbf16ps per measurement, in millions")
    args = parser.parse_args()
    cpuinfo = Path("/proc/cpuinfo")
    flags = cpuinfo.read_text() if cpuinfo.exists() else ""
    if "avx512_bf16" not in flags:
        raise SystemExit("dpbf16_probe: this probe needs AVX512_BF16 (not in /proc/cpuinfo)")
    module = load_inline("qwen3core_dpbf16_probe", cpp_sources=SOURCE, functions=["probe"],
                         extra_cflags=["-O3", "-march=native"])
    torch.set_num_threads(1)
    rates = module.probe(args.millions * 1_000_000)
    names = ["registers", "broadcast", "int4 rows=4", "int4 rows=8", "int4 rows=12"]
    print(f"one core, {args.millions} M vdpbf16ps each:")
    for name, rate in zip(names, rates, strict=True):
        print(f"  {name:13s} {rate:5.2f} G vdpbf16ps/s ({100 * rate / rates[0]:3.0f} % of peak)")


if __name__ == "__main__":
    main()
