// Tile kernels written once over a vector type V, instantiated per instruction set by avx2.cpp
// (8 float lanes) and avx512.cpp (16 lanes). Include it after the file's target pragma and
// <immintrin.h>: the anonymous namespace keeps every instantiation private to that file.
//
// V provides: reg, lanes, num_regs, zero, load, bcast, fma, add, store and bf16_pairs (split
// 2 * lanes bfloat16 input pairs into the even and the odd inputs as float32).
//
// Weight stationarity: each block of a tile's weights is loaded from memory once and applied
// to a group of rows from registers; further groups of rows find the block in L1, so memory
// traffic stays one pass over the weights whatever the batch.
#pragma once

#include <stdint.h>

#include "kernels.h"

namespace qwen3core_cpu {
namespace {

// How far ahead of the FMAs weights are requested from memory. The hardware prefetcher alone
// falls behind once the FMAs keep the core busy (8 rows on Zen 3: a quarter fewer
// multiply-adds per second); 8 KiB ahead it keeps up, and one row does not mind.
constexpr int64_t kPrefetchBytes = 8192;

inline void prefetch(const void* p) {
  _mm_prefetch(static_cast<const char*>(p) + kPrefetchBytes, _MM_HINT_T0);
}

// Accumulators per (row, vector): two (even and odd inputs) when there are too few
// independent FMA chains to hide the FMA latency and the registers allow it.
template <class V, int G>
constexpr int parity_chains() {
  constexpr int nv = kTile / V::lanes;
  return (G * nv < 8 && G * nv * 2 + 2 * nv + 2 <= V::num_regs) ? 2 : 1;
}

// One tile (16 outputs) for G rows of bfloat16 weights over kpairs input pairs; x is float32
// [K_pad][S] offset to the group's first row and input. Adds the float32 sums to out[G][16].
template <class V, int G>
void bf16_rows(const uint16_t* w, const float* x, int64_t S, int64_t kpairs, float* out) {
  constexpr int NV = kTile / V::lanes;
  constexpr int NP = parity_chains<V, G>();
  typename V::reg acc[G][NV][NP];
  for (int g = 0; g < G; ++g)
    for (int v = 0; v < NV; ++v)
      for (int p = 0; p < NP; ++p) acc[g][v][p] = V::zero();

  for (int64_t kp = 0; kp < kpairs; ++kp) {
    const uint16_t* wk = w + kp * 2 * kTile;
    prefetch(wk);
    const float* x_even = x + 2 * kp * S;
    const float* x_odd = x_even + S;
    typename V::reg even[NV], odd[NV];
    for (int v = 0; v < NV; ++v) V::bf16_pairs(wk + v * 2 * V::lanes, even[v], odd[v]);
    for (int g = 0; g < G; ++g) {
      const typename V::reg xe = V::bcast(x_even + g), xo = V::bcast(x_odd + g);
      for (int v = 0; v < NV; ++v) {
        acc[g][v][0] = V::fma(even[v], xe, acc[g][v][0]);
        acc[g][v][NP - 1] = V::fma(odd[v], xo, acc[g][v][NP - 1]);
      }
    }
  }
  for (int g = 0; g < G; ++g)
    for (int v = 0; v < NV; ++v) {
      typename V::reg sum = acc[g][v][0];
      if (NP == 2) sum = V::add(sum, acc[g][v][NP - 1]);
      float* total = out + g * kTile + v * V::lanes;
      V::store(total, V::add(V::load(total), sum));
    }
}

// The same for float32 weights [K_pad][16] per tile.
template <class V, int G>
void f32_rows(const float* w, const float* x, int64_t S, int64_t kpairs, float* out) {
  constexpr int NV = kTile / V::lanes;
  constexpr int NP = parity_chains<V, G>();
  typename V::reg acc[G][NV][NP];
  for (int g = 0; g < G; ++g)
    for (int v = 0; v < NV; ++v)
      for (int p = 0; p < NP; ++p) acc[g][v][p] = V::zero();

  for (int64_t kp = 0; kp < kpairs; ++kp) {
    for (int parity = 0; parity < 2; ++parity) {
      const int64_t k = 2 * kp + parity;
      prefetch(w + k * kTile);
      typename V::reg wv[NV];
      for (int v = 0; v < NV; ++v) wv[v] = V::load(w + k * kTile + v * V::lanes);
      for (int g = 0; g < G; ++g) {
        const typename V::reg xk = V::bcast(x + k * S + g);
        for (int v = 0; v < NV; ++v)
          acc[g][v][parity % NP] = V::fma(wv[v], xk, acc[g][v][parity % NP]);
      }
    }
  }
  for (int g = 0; g < G; ++g)
    for (int v = 0; v < NV; ++v) {
      typename V::reg sum = acc[g][v][0];
      if (NP == 2) sum = V::add(sum, acc[g][v][NP - 1]);
      float* total = out + g * kTile + v * V::lanes;
      V::store(total, V::add(V::load(total), sum));
    }
}

// Round-to-nearest-even, NaN kept a (quiet) NaN: what torch does when it casts to bfloat16.
inline uint16_t round_to_bf16(float f) {
  uint32_t u;
  __builtin_memcpy(&u, &f, sizeof(u));
  if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fc0;
  return static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

// Rounds a tile's float32 sums once, into the output's dtype.
inline void write_tile(const GemvArgs& a, int64_t tile, int64_t row0, int rows,
                       const float* sums) {
  const int64_t n0 = tile * kTile;
  const int64_t valid = a.out_features - n0 < kTile ? a.out_features - n0 : kTile;
  for (int g = 0; g < rows; ++g) {
    const int64_t offset = (row0 + g) * a.out_features + n0;
    if (a.out_bf16) {
      uint16_t* o = static_cast<uint16_t*>(a.out) + offset;
      for (int64_t j = 0; j < valid; ++j) o[j] = round_to_bf16(sums[g * kTile + j]);
    } else {
      float* o = static_cast<float*>(a.out) + offset;
      for (int64_t j = 0; j < valid; ++j) o[j] = sums[g * kTile + j];
    }
  }
}

// Compile-time row count from a run-time one: Dispatch<V, max>::run(g, ...) calls
// Kernel::template rows<V, g>(...).
template <class V, class Kernel, int G>
struct Dispatch {
  template <class W, class X>
  static void run(int groups, const W* w, const X* x, int64_t S, int64_t kpairs, float* out) {
    if (groups == G) {
      Kernel::template rows<V, G>(w, x, S, kpairs, out);
    } else {
      Dispatch<V, Kernel, G - 1>::run(groups, w, x, S, kpairs, out);
    }
  }
};
template <class V, class Kernel>
struct Dispatch<V, Kernel, 0> {
  template <class W, class X>
  static void run(int, const W*, const X*, int64_t, int64_t, float*) {}
};

struct Bf16Kernel {
  static constexpr int x_per_pair = 2;  // activation elements per input pair and row
  template <class V, int G>
  static void rows(const uint16_t* w, const float* x, int64_t S, int64_t kpairs, float* out) {
    bf16_rows<V, G>(w, x, S, kpairs, out);
  }
};
struct F32Kernel {
  static constexpr int x_per_pair = 2;
  template <class V, int G>
  static void rows(const float* w, const float* x, int64_t S, int64_t kpairs, float* out) {
    f32_rows<V, G>(w, x, S, kpairs, out);
  }
};

// Inputs per block: a block's partial sums are added to the tile's totals (float32 rounding
// error grows with the block length, not with K), and a block's weights (8 KiB of a bfloat16
// tile) are still in L1 when the next group of rows reads them.
constexpr int64_t kBlockPairs = 128;
// Rows per pass over the weights. Decode sends fewer, so it reads the weights once; prefill
// re-reads them (from memory, at 16 multiply-adds per bfloat16 weight byte: compute-bound
// anyway) while each pass's activations (32 x K floats) stay in L2.
constexpr int64_t kRowsPerPass = 32;

// All rows for tiles [t0, t1): the TileFn of a KernelSet. MaxGroup bounds the rows a block is
// applied to at once (their accumulators must fit in registers).
template <class V, class Kernel, int MaxGroup, class W, class X>
void run_tiles(const GemvArgs& a, int64_t t0, int64_t t1) {
  const W* weight = static_cast<const W*>(a.weight);
  const X* x = static_cast<const X*>(a.x);
  const int64_t kpairs = a.k_padded / 2;
  const int64_t R = a.rows, S = a.x_stride;
  alignas(64) float totals[kRowsPerPass * kTile];
  for (int64_t pass0 = 0; pass0 < R; pass0 += kRowsPerPass) {
    const int64_t pass_rows = R - pass0 < kRowsPerPass ? R - pass0 : kRowsPerPass;
    for (int64_t t = t0; t < t1; ++t) {
      const W* tile = weight + t * kTile * a.k_padded;
      for (int64_t i = 0; i < pass_rows * kTile; ++i) totals[i] = 0.0f;
      for (int64_t kp0 = 0; kp0 < kpairs; kp0 += kBlockPairs) {
        const int64_t block = kpairs - kp0 < kBlockPairs ? kpairs - kp0 : kBlockPairs;
        const W* w = tile + kp0 * 2 * kTile;  // both layouts: 32 weights per input pair
        const X* xb = x + kp0 * Kernel::x_per_pair * S;
        for (int64_t r0 = pass0; r0 < pass0 + pass_rows; r0 += MaxGroup) {
          const int64_t left = pass0 + pass_rows - r0;
          const int groups = static_cast<int>(left < MaxGroup ? left : MaxGroup);
          Dispatch<V, Kernel, MaxGroup>::run(groups, w, xb + r0, S, block,
                                             totals + (r0 - pass0) * kTile);
        }
      }
      write_tile(a, t, pass0, static_cast<int>(pass_rows), totals);
    }
  }
}

}  // namespace
}  // namespace qwen3core_cpu
