// Quantized (int8 / int4) tile kernels written once over a vector type V, instantiated per
// instruction set by avx2.cpp and avx512.cpp after their target pragma (like tile_kernels.h).
//
// V provides, besides tile_kernels.h's operations: load_i8 (lanes int8 -> float32),
// load_words (lanes uint32 as an integer register ireg), nibble(words, shift) (bits
// shift..shift+3 of each as float32), load_f16 (lanes float16 -> float32) and fnma (c - a * b).
//
// Numerics: a group's weights are (q - z) * s. The kernel sums x * q over the group in float32
// (q converted exactly), subtracts z * sum(x over the group), and multiplies by s once per
// group: the same real number as the reference's sum of x * ((q - z) * s), rounded
// differently only in float32's last bits. Levels are read once per tile; groups of rows reuse
// them from registers (weight stationarity, as in tile_kernels.h).
#pragma once

#include <stdint.h>

#include "kernels.h"

namespace qwen3core_cpu {
namespace {

// Independent accumulator chains per (row, vector): enough to hide the FMA latency when few
// rows share a weight load.
template <class V, int G>
constexpr int q_chains() {
  constexpr int nv = kTile / V::lanes;
  return G * nv * 4 <= 8 ? 4 : (G * nv * 2 <= 8 ? 2 : 1);
}

// One tile (16 outputs) for G rows over all groups. w: the tile's levels; scales/zeros: the
// tile's [groups][16]; x: float32 [K_pad][S] at the group of rows' first row; xsum: float32
// [groups][S] likewise (unused without zero points). Writes out[G][16] (float32 sums).
template <class V, int G, int Bits>
void q_rows(const QGemvArgs& a, const uint8_t* w, const uint16_t* scales, const int8_t* zeros,
            const float* x, const float* xsum, float* out) {
  constexpr int NV = kTile / V::lanes;
  constexpr int NC = q_chains<V, G>();
  const int64_t S = a.x_stride, gs = a.group_size;
  const bool shifted = zeros != nullptr || a.zero_const != 0.0f;
  for (int g = 0; g < G; ++g)
    for (int v = 0; v < NV; ++v) V::store(out + g * kTile + v * V::lanes, V::zero());

  for (int64_t gi = 0; gi < a.groups; ++gi) {
    typename V::reg acc[G][NV][NC];
    for (int g = 0; g < G; ++g)
      for (int v = 0; v < NV; ++v)
        for (int c = 0; c < NC; ++c) acc[g][v][c] = V::zero();
    const float* xg = x + gi * gs * S;
    if constexpr (Bits == 8) {
      const int8_t* wg = reinterpret_cast<const int8_t*>(w) + gi * gs * kTile;
      auto step = [&](int64_t k, int c) {
        prefetch(wg + k * kTile);
        typename V::reg wv[NV];
        for (int v = 0; v < NV; ++v) wv[v] = V::load_i8(wg + k * kTile + v * V::lanes);
        for (int g = 0; g < G; ++g) {
          const typename V::reg xk = V::bcast(xg + k * S + g);
          for (int v = 0; v < NV; ++v) acc[g][v][c] = V::fma(wv[v], xk, acc[g][v][c]);
        }
      };
      int64_t k = 0;
      for (; k + NC <= gs; k += NC)
        for (int c = 0; c < NC; ++c) step(k + c, c);
      for (; k < gs; ++k) step(k, 0);
    } else {
      // Blocks of 8 inputs: one 32-bit word per output (see kernels.h).
      const uint32_t* wg = reinterpret_cast<const uint32_t*>(w) + gi * (gs / 8) * kTile;
      for (int64_t b = 0; b < gs / 8; ++b) {
        prefetch(wg + b * kTile);
        typename V::ireg words[NV];
        for (int v = 0; v < NV; ++v) words[v] = V::load_words(wg + b * kTile + v * V::lanes);
        for (int n = 0; n < 4; ++n) {
          const int ce = (2 * n) % NC, co = (2 * n + 1) % NC;
          typename V::reg lo[NV], hi[NV];
          for (int v = 0; v < NV; ++v) {
            lo[v] = V::nibble(words[v], 4 * n);
            hi[v] = V::nibble(words[v], 16 + 4 * n);
          }
          const float* xe = xg + (8 * b + 2 * n) * S;
          for (int g = 0; g < G; ++g) {
            const typename V::reg ve = V::bcast(xe + g), vo = V::bcast(xe + S + g);
            for (int v = 0; v < NV; ++v) {
              acc[g][v][ce] = V::fma(lo[v], ve, acc[g][v][ce]);
              acc[g][v][co] = V::fma(hi[v], vo, acc[g][v][co]);
            }
          }
        }
      }
    }
    for (int v = 0; v < NV; ++v) {
      const typename V::reg s = V::load_f16(scales + gi * kTile + v * V::lanes);
      typename V::reg z = V::zero();
      if (shifted)
        z = zeros != nullptr ? V::load_i8(zeros + gi * kTile + v * V::lanes)
                             : V::bcast(&a.zero_const);
      for (int g = 0; g < G; ++g) {
        typename V::reg sum = acc[g][v][0];
        for (int c = 1; c < NC; ++c) sum = V::add(sum, acc[g][v][c]);
        if (shifted) sum = V::fnma(z, V::bcast(xsum + gi * S + g), sum);
        float* total = out + g * kTile + v * V::lanes;
        V::store(total, V::fma(s, sum, V::load(total)));
      }
    }
  }
}

template <class V, int Bits, int G>
struct QDispatch {
  static void run(int rows, const QGemvArgs& a, const uint8_t* w, const uint16_t* s,
                  const int8_t* z, const float* x, const float* xsum, float* out) {
    if (rows == G) {
      q_rows<V, G, Bits>(a, w, s, z, x, xsum, out);
    } else {
      QDispatch<V, Bits, G - 1>::run(rows, a, w, s, z, x, xsum, out);
    }
  }
};
template <class V, int Bits>
struct QDispatch<V, Bits, 0> {
  static void run(int, const QGemvArgs&, const uint8_t*, const uint16_t*, const int8_t*,
                  const float*, const float*, float*) {}
};

// All rows for tiles [t0, t1): the QTileFn of a KernelSet.
template <class V, int Bits, int MaxGroup>
void run_q_tiles(const QGemvArgs& a, int64_t t0, int64_t t1) {
  const int64_t k_padded = a.groups * a.group_size;
  const int64_t level_bytes = Bits == 8 ? k_padded * kTile : k_padded / 2 * kTile;
  const uint8_t* levels = static_cast<const uint8_t*>(a.levels);
  alignas(64) float sums[MaxGroup * kTile];
  for (int64_t t = t0; t < t1; ++t) {
    const uint8_t* w = levels + t * level_bytes;
    const uint16_t* s = a.scales + t * a.groups * kTile;
    const int8_t* z = a.zeros == nullptr ? nullptr : a.zeros + t * a.groups * kTile;
    for (int64_t r0 = 0; r0 < a.rows; r0 += MaxGroup) {
      const int rows = static_cast<int>(a.rows - r0 < MaxGroup ? a.rows - r0 : MaxGroup);
      QDispatch<V, Bits, MaxGroup>::run(rows, a, w, s, z, a.x + r0, a.xsum + r0, sums);
      GemvArgs out_args{nullptr, nullptr, a.rows, a.rows, 0, a.out_features, a.out,
                        a.out_bf16};
      write_tile(out_args, t, r0, rows, sums);
    }
  }
}

}  // namespace
}  // namespace qwen3core_cpu
