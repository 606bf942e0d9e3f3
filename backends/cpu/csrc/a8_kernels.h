// Integer kernels for weights whose activations are quantized to int8 (the w8a8 / w4a8
// schemes), written once over an instruction-set type D and instantiated after a target pragma
// (avx512.cpp with VNNI, avx2.cpp), like quant_kernels.h.
//
// Numbers (qwen3core/quant/activations.py is the definition): row r's activations are int8
// levels qx with one float32 scale sx[block][r] per block of kActBlock = 32 inputs; a weight
// group's levels are (qw - z) * sw. Per block the kernel forms the exact int32 dot
//     d = sum_i u[i] * qx[i] - zb * sum_i qx[i]
// where u is the level as stored (int8: qw + 128 for vpdpbusd's unsigned bytes, so zb = 128
// plus nothing; int4: the nibble 0..15 and zb = z), then adds float(d) * sx over the blocks of
// the weight group and multiplies by sw once per group: in real numbers the reference's
// (qx * sx) @ ((qw - z) * sw), rounded differently only in float32's last bits. No dot can
// overflow: |d| <= 32 * 255 * 127.
//
// D provides: lanes (int32/float32 lanes), ireg/freg, izero, iload (64 / lanes*4 bytes), iadd,
// isub, imul (32-bit lanes), iset1, to_float, load_z8 (int8 -> int32 lanes), kQ8Bias (what the
// int8 dot leaves in: 128 when it multiplies u = qw + 128, 0 when it multiplies qw itself),
// q8_weights (stored bytes -> what dot_q8 takes), dot_q8 / dot_q4 (acc + per-lane sum of four
// byte products with the int32 broadcast of four activation levels), lo_nibbles / hi_nibbles,
// fzero, fset1, fload, fstore, fma, load_f16.
#pragma once

#include <stdint.h>

#include "kernels.h"

namespace qwen3core_cpu {
namespace {

// How far ahead of the integer dots weights are requested: the dots get through a cache line
// in a fraction of the time a float kernel takes, so the request must be issued earlier.
constexpr int64_t kA8PrefetchBytes = 16384;
inline void a8_prefetch(const void* p) {
  _mm_prefetch(static_cast<const char*>(p) + kA8PrefetchBytes, _MM_HINT_T0);
}

// Independent int32 accumulator chains per (row, vector) when few rows share a weight load:
// enough to hide the dot product's latency.
template <class D, int G>
constexpr int a8_chains() {
  constexpr int nv = kTile / D::lanes;
  return G * nv <= 1 ? 4 : (G * nv <= 2 ? 2 : 1);
}

// One tile (16 outputs) for G rows over all groups, into out[G][16] (float32 sums). w: the
// tile's levels (layout: kernels.h); scales/zeros: the tile's [groups][16]; xq, xs, xsum: the
// activations at the first of the G rows (row stride 1, step / block stride kRowSlots: the
// offsets of every broadcast are constants).
template <class D, int G, int Bits>
void a8_rows(const A8Args& a, const uint8_t* w, const uint16_t* scales, const int8_t* zeros,
             const int32_t* xq, const float* xs, const int32_t* xsum, float* out) {
  constexpr int NV = kTile / D::lanes;
  constexpr int NC = a8_chains<D, G>();
  constexpr int64_t R = kRowSlots;
  const int64_t per_group = a.group_size / kActBlock;
  for (int g = 0; g < G; ++g)
    for (int v = 0; v < NV; ++v) D::fstore(out + g * kTile + v * D::lanes, D::fzero());

  for (int64_t gi = 0; gi < a.groups; ++gi) {
    typename D::freg facc[G][NV];
    for (int g = 0; g < G; ++g)
      for (int v = 0; v < NV; ++v) facc[g][v] = D::fzero();
    // The zero point of each lane, when it differs per output; else the constant one.
    const bool lane_zeros = Bits == 4 && zeros != nullptr;
    const int32_t zconst = Bits == 8 ? D::kQ8Bias : a.zero_const;
    typename D::ireg z[NV];
    for (int v = 0; v < NV; ++v)
      z[v] = lane_zeros ? D::load_z8(zeros + gi * kTile + v * D::lanes) : D::izero();

    for (int64_t bb = 0; bb < per_group; ++bb) {
      const int64_t b = gi * per_group + bb;  // the activation block
      typename D::ireg acc[G][NV][NC];
      for (int g = 0; g < G; ++g)
        for (int v = 0; v < NV; ++v)
          for (int c = 0; c < NC; ++c) acc[g][v][c] = D::izero();
      const int32_t* xb = xq + b * (kActBlock / 4) * R;
      if constexpr (Bits == 8) {
        // [K/4][16][4] bytes: 64 per four inputs of the tile.
        const uint8_t* wb = w + b * kActBlock * kTile;
        for (int s = 0; s < kActBlock / 4; ++s) {
          a8_prefetch(wb + s * 64);
          typename D::ireg wv[NV];
          for (int v = 0; v < NV; ++v) wv[v] = D::q8_weights(D::iload(wb + s * 64 + v * 64 / NV));
          for (int g = 0; g < G; ++g) {
            const int32_t x4 = xb[s * R + g];
            for (int v = 0; v < NV; ++v)
              acc[g][v][s % NC] = D::dot_q8(acc[g][v][s % NC], wv[v], x4);
          }
        }
      } else {
        // [K/8][16] words: byte j of a word holds input 8s + j (low nibble) and 8s + 4 + j.
        const uint8_t* wb = w + b * (kActBlock / 2) * kTile;
        for (int s = 0; s < kActBlock / 8; ++s) {
          a8_prefetch(wb + s * 64);
          typename D::ireg lo[NV], hi[NV];
          for (int v = 0; v < NV; ++v) {
            const typename D::ireg words = D::iload(wb + s * 64 + v * 64 / NV);
            lo[v] = D::lo_nibbles(words);
            hi[v] = D::hi_nibbles(words);
          }
          for (int g = 0; g < G; ++g) {
            const int32_t xlo = xb[2 * s * R + g], xhi = xb[(2 * s + 1) * R + g];
            for (int v = 0; v < NV; ++v) {
              acc[g][v][s % NC] = D::dot_q4(acc[g][v][s % NC], lo[v], xlo);
              acc[g][v][s % NC] = D::dot_q4(acc[g][v][s % NC], hi[v], xhi);
            }
          }
        }
      }
      for (int g = 0; g < G; ++g) {
        const int32_t qsum = xsum[b * R + g];
        const typename D::freg sx = D::fset1(xs[b * R + g]);
        for (int v = 0; v < NV; ++v) {
          typename D::ireg d = acc[g][v][0];
          for (int c = 1; c < NC; ++c) d = D::iadd(d, acc[g][v][c]);
          d = D::isub(d, lane_zeros ? D::imul(z[v], D::iset1(qsum)) : D::iset1(zconst * qsum));
          facc[g][v] = D::fma(D::to_float(d), sx, facc[g][v]);
        }
      }
    }
    for (int v = 0; v < NV; ++v) {
      const typename D::freg sw = D::load_f16(scales + gi * kTile + v * D::lanes);
      for (int g = 0; g < G; ++g) {
        float* total = out + g * kTile + v * D::lanes;
        D::fstore(total, D::fma(sw, facc[g][v], D::fload(total)));
      }
    }
  }
}

template <class D, int Bits, int G>
struct A8Dispatch {
  static void run(int rows, const A8Args& a, const uint8_t* w, const uint16_t* s,
                  const int8_t* z, const int32_t* xq, const float* xs, const int32_t* xsum,
                  float* out) {
    if (rows == G) {
      a8_rows<D, G, Bits>(a, w, s, z, xq, xs, xsum, out);
    } else {
      A8Dispatch<D, Bits, G - 1>::run(rows, a, w, s, z, xq, xs, xsum, out);
    }
  }
};
template <class D, int Bits>
struct A8Dispatch<D, Bits, 0> {
  static void run(int, const A8Args&, const uint8_t*, const uint16_t*, const int8_t*,
                  const int32_t*, const float*, const int32_t*, float*) {}
};

// All rows for tiles [t0, t1): an A8TileFn.
template <class D, int Bits, int MaxGroup>
void run_a8_tiles(const A8Args& a, int64_t t0, int64_t t1) {
  static_assert(kRowSlots % MaxGroup == 0, "a group of rows must not straddle two slot sets");
  const int64_t k_padded = a.groups * a.group_size, blocks = k_padded / kActBlock;
  const int64_t level_bytes = Bits == 8 ? k_padded * kTile : k_padded / 2 * kTile;
  const uint8_t* levels = static_cast<const uint8_t*>(a.levels);
  alignas(64) float sums[MaxGroup * kTile];
  for (int64_t t = t0; t < t1; ++t) {
    const uint8_t* w = levels + t * level_bytes;
    const uint16_t* s = a.scales + t * a.groups * kTile;
    const int8_t* z = a.zeros == nullptr ? nullptr : a.zeros + t * a.groups * kTile;
    for (int64_t r0 = 0; r0 < a.rows; r0 += MaxGroup) {
      const int rows = static_cast<int>(a.rows - r0 < MaxGroup ? a.rows - r0 : MaxGroup);
      const int64_t set = r0 / kRowSlots, slot = r0 % kRowSlots;
      const int64_t at = set * blocks * kRowSlots + slot;
      A8Dispatch<D, Bits, MaxGroup>::run(rows, a, w, s, z,
                                         a.xq + set * k_padded / 4 * kRowSlots + slot,
                                         a.xscale + at, a.xsum + at, sums);
      GemvArgs out_args{nullptr, nullptr, a.rows, a.rows, 0, a.out_features, a.out,
                        a.out_bf16};
      write_tile(out_args, t, r0, rows, sums);
    }
  }
}

}  // namespace
}  // namespace qwen3core_cpu
