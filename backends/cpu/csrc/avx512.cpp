// AVX-512 kernels: 16 float32 lanes, so a 16-output tile is one register and one cache line.
// bfloat16 uses vdpbf16ps (two bfloat16 products per lane per instruction) where the CPU has
// AVX-512 BF16, else the same shift-and-mask conversion as AVX2.
#include "kernels.h"

#if defined(__x86_64__) || defined(_M_X64)

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512bf16"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bf16")
#endif

#include <immintrin.h>

#include "bf16_simd512.h"
#include "tile_kernels.h"
#include "quant_kernels.h"

namespace qwen3core_cpu {
namespace {

struct Avx512 {
  using reg = __m512;
  static constexpr int lanes = 16;
  static constexpr int num_regs = 32;
  static reg zero() { return _mm512_setzero_ps(); }
  static reg load(const float* p) { return _mm512_loadu_ps(p); }
  static reg bcast(const float* p) { return _mm512_set1_ps(*p); }
  static reg fma(reg a, reg b, reg c) { return _mm512_fmadd_ps(a, b, c); }
  static reg add(reg a, reg b) { return _mm512_add_ps(a, b); }
  static void store(float* p, reg v) { _mm512_storeu_ps(p, v); }
  static void bf16_pairs(const uint16_t* p, reg& even, reg& odd) {
    const __m512i raw = _mm512_loadu_si512(p);
    even = _mm512_castsi512_ps(_mm512_slli_epi32(raw, 16));
    odd = _mm512_castsi512_ps(_mm512_and_si512(raw, _mm512_set1_epi32(int(0xffff0000u))));
  }
  static reg fnma(reg a, reg b, reg c) { return _mm512_fnmadd_ps(a, b, c); }
  static reg load_i8(const int8_t* p) {
    return _mm512_cvtepi32_ps(
        _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
  }
  using ireg = __m512i;
  static ireg load_words(const uint32_t* p) { return _mm512_loadu_si512(p); }
  static reg nibble(ireg words, int shift) {
    return _mm512_cvtepi32_ps(
        _mm512_and_si512(_mm512_srli_epi32(words, shift), _mm512_set1_epi32(15)));
  }
  static reg load_f16(const uint16_t* p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }
};

// 8 rows x 1 register: enough independent chains, a quarter of the register file.
constexpr int kAvx512MaxGroup = 8;

template <int G, int NP>
inline void dpbf16_step(__m512 (&acc)[G][NP], int p, const uint16_t* w, const uint32_t* x,
                        int64_t S, int64_t kp) {
  prefetch(w + kp * 2 * kTile);
  const __m512bh wk = (__m512bh)_mm512_loadu_si512(w + kp * 2 * kTile);
  for (int g = 0; g < G; ++g) {
    const __m512bh xk = (__m512bh)_mm512_set1_epi32(int(x[kp * S + g]));
    acc[g][p] = _mm512_dpbf16_ps(acc[g][p], wk, xk);
  }
}

// One tile for G rows with vdpbf16ps; x holds bfloat16 input pairs, [K_pad / 2][S]. Adds the
// float32 sums to out[G][16].
template <int G>
void dpbf16_rows(const uint16_t* w, const uint32_t* x, int64_t S, int64_t kpairs, float* out) {
  constexpr int NP = G < 8 ? 2 : 1;  // accumulators per row, taking alternate pairs
  __m512 acc[G][NP];
  for (int g = 0; g < G; ++g)
    for (int p = 0; p < NP; ++p) acc[g][p] = _mm512_setzero_ps();
  int64_t kp = 0;
  for (; kp + NP <= kpairs; kp += NP)
    for (int p = 0; p < NP; ++p) dpbf16_step<G, NP>(acc, p, w, x, S, kp + p);
  for (; kp < kpairs; ++kp) dpbf16_step<G, NP>(acc, 0, w, x, S, kp);
  for (int g = 0; g < G; ++g) {
    __m512 sum = acc[g][0];
    if (NP == 2) sum = _mm512_add_ps(sum, acc[g][NP - 1]);
    _mm512_storeu_ps(out + g * kTile, _mm512_add_ps(_mm512_loadu_ps(out + g * kTile), sum));
  }
}

struct DpBf16Kernel {
  static constexpr int x_per_pair = 1;  // one uint32 holds a row's input pair
  template <class V, int G>
  static void rows(const uint16_t* w, const uint32_t* x, int64_t S, int64_t kpairs, float* out) {
    dpbf16_rows<G>(w, x, S, kpairs, out);
  }
};

void dpbf16_tiles(const GemvArgs& a, int64_t t0, int64_t t1) {
  run_tiles<Avx512, DpBf16Kernel, kAvx512MaxGroup, uint16_t, uint32_t>(a, t0, t1);
}
void bf16_tiles(const GemvArgs& a, int64_t t0, int64_t t1) {
  run_tiles<Avx512, Bf16Kernel, kAvx512MaxGroup, uint16_t, float>(a, t0, t1);
}
void f32_tiles(const GemvArgs& a, int64_t t0, int64_t t1) {
  run_tiles<Avx512, F32Kernel, kAvx512MaxGroup, float, float>(a, t0, t1);
}
void q8_tiles(const QGemvArgs& a, int64_t t0, int64_t t1) {
  run_q_tiles<Avx512, 8, kAvx512MaxGroup>(a, t0, t1);
}

// Independent vdpbf16ps chains per row: at least ~12 in flight (its latency times its
// throughput), within the register file (G * chains accumulators).
template <int G>
constexpr int kDpChains = G <= 4 ? 4 : 2;

// int4 levels with vdpbf16ps: a block's 16 words (16 outputs x 8 inputs) give, per input pair
// n, one 16-bit shift by 4n and one ternary-logic mask-and-or: the bfloat16 pairs of
// 128 + level (bits 0x4300 | u: exact), so one instruction per row does 32 multiply-adds;
// the group's sum then drops (128 + z) * sum(x). Twice the multiply-adds per
// instruction of the float32 path, which is what several rows are bound by.
//
// At 8 rows the products fill both vdpbf16ps ports, so what else reaches those ports counts:
// the row totals stay in registers across groups (16 chains + 8 totals + constants fit the 32
// registers) instead of a load, an FMA and a store per group, and when the call's rows are all
// in this group (RowsAreG: then the layout's stride is G too) the activations' row stride is a
// constant, so every broadcast
// address is an immediate offset: 6.3 -> 7.2 G vdpbf16ps a second on one core with the weights
// in L1 (a standalone copy of the loop, g32), ~1 % of a batch-8 step with them streamed.
template <int G, bool RowsAreG>
void q4_dpbf16_rows(const QGemvArgs& a, const uint8_t* w, const uint16_t* scales,
                    const int8_t* zeros, const uint32_t* x, const float* xsum, float* out) {
  constexpr int NC = kDpChains<G>;
  const int64_t S = RowsAreG ? G : a.x_stride, pairs = a.group_size / 2;
  const __m512i nibble_mask = _mm512_set1_epi32(0x000F000F);
  const __m512i magic = _mm512_set1_epi32(0x43004300);
  __m512 total[G];
  for (int g = 0; g < G; ++g) total[g] = _mm512_setzero_ps();
  for (int64_t gi = 0; gi < a.groups; ++gi) {
    __m512 acc[G][NC];
    for (int g = 0; g < G; ++g)
      for (int c = 0; c < NC; ++c) acc[g][c] = _mm512_setzero_ps();
    const uint32_t* wg = reinterpret_cast<const uint32_t*>(w) + gi * (pairs / 4) * kTile;
    const uint32_t* xg = x + gi * pairs * S;
    for (int64_t b = 0; b < pairs / 4; ++b) {
      prefetch(wg + b * kTile);
      const __m512i words = _mm512_loadu_si512(wg + b * kTile);
      for (int n = 0; n < 4; ++n) {
        const __m512i shifted = n == 0 ? words : _mm512_srli_epi16(words, 4 * n);
        const __m512bh wv =
            (__m512bh)_mm512_ternarylogic_epi32(shifted, nibble_mask, magic, 0xEA);
        const int c = n % NC;
        for (int g = 0; g < G; ++g) {
          const __m512bh xk = (__m512bh)_mm512_set1_epi32(int(xg[(4 * b + n) * S + g]));
          acc[g][c] = _mm512_dpbf16_ps(acc[g][c], wv, xk);
        }
      }
    }
    const __m512 s = _mm512_cvtph_ps(
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(scales + gi * kTile)));
    const __m512 z = _mm512_add_ps(
        _mm512_set1_ps(128.0f),
        zeros != nullptr
            ? _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(
                  _mm_loadu_si128(reinterpret_cast<const __m128i*>(zeros + gi * kTile))))
            : _mm512_set1_ps(a.zero_const));
    for (int g = 0; g < G; ++g) {
      __m512 sum = acc[g][0];
      for (int c = 1; c < NC; ++c) sum = _mm512_add_ps(sum, acc[g][c]);
      sum = _mm512_fnmadd_ps(z, _mm512_set1_ps(xsum[gi * S + g]), sum);
      total[g] = _mm512_fmadd_ps(s, sum, total[g]);
    }
  }
  for (int g = 0; g < G; ++g) _mm512_storeu_ps(out + g * kTile, total[g]);
}

// int8 levels with vdpbf16ps: inputs 2p and 2p + 1 of a tile are 32 consecutive bytes; each
// half converted to float32 (exact) holds its level as a bfloat16 in the top 16 bits with zero
// bits below, so one shift and one or make the input pairs vdpbf16ps takes: half the
// instructions per multiply-add of the float32 path, which 8 rows are bound by. Products of
// bfloat16 activations and int8 levels are exact; the sums are float32, as there.
template <int G>
void q8_dpbf16_rows(const QGemvArgs& a, const uint8_t* w, const uint16_t* scales,
                    const int8_t* zeros, const uint32_t* x, const float* xsum, float* out) {
  constexpr int NC = kDpChains<G>;
  const int64_t S = a.x_stride, pairs = a.group_size / 2;
  const bool shifted = zeros != nullptr || a.zero_const != 0.0f;
  for (int g = 0; g < G; ++g) _mm512_storeu_ps(out + g * kTile, _mm512_setzero_ps());
  for (int64_t gi = 0; gi < a.groups; ++gi) {
    __m512 acc[G][NC];
    for (int g = 0; g < G; ++g)
      for (int c = 0; c < NC; ++c) acc[g][c] = _mm512_setzero_ps();
    const int8_t* wg = reinterpret_cast<const int8_t*>(w) + gi * a.group_size * kTile;
    const uint32_t* xg = x + gi * pairs * S;
    auto step = [&](int64_t p, int c) {
      const int8_t* wp = wg + p * 2 * kTile;
      prefetch(wp);
      const __m512i even = _mm512_castps_si512(_mm512_cvtepi32_ps(
          _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(wp)))));
      const __m512i odd = _mm512_castps_si512(_mm512_cvtepi32_ps(
          _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(wp + kTile)))));
      const __m512bh wv = (__m512bh)_mm512_or_si512(_mm512_srli_epi32(even, 16), odd);
      for (int g = 0; g < G; ++g) {
        const __m512bh xk = (__m512bh)_mm512_set1_epi32(int(xg[p * S + g]));
        acc[g][c] = _mm512_dpbf16_ps(acc[g][c], wv, xk);
      }
    };
    int64_t p = 0;
    for (; p + NC <= pairs; p += NC)
      for (int c = 0; c < NC; ++c) step(p + c, c);
    for (; p < pairs; ++p) step(p, 0);
    const __m512 s = _mm512_cvtph_ps(
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(scales + gi * kTile)));
    __m512 z = _mm512_setzero_ps();
    if (shifted)
      z = zeros != nullptr
              ? _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(
                    _mm_loadu_si128(reinterpret_cast<const __m128i*>(zeros + gi * kTile))))
              : _mm512_set1_ps(a.zero_const);
    for (int g = 0; g < G; ++g) {
      __m512 sum = acc[g][0];
      for (int c = 1; c < NC; ++c) sum = _mm512_add_ps(sum, acc[g][c]);
      if (shifted) sum = _mm512_fnmadd_ps(z, _mm512_set1_ps(xsum[gi * S + g]), sum);
      _mm512_storeu_ps(out + g * kTile,
                       _mm512_fmadd_ps(s, sum, _mm512_loadu_ps(out + g * kTile)));
    }
  }
}

template <int Bits, int G>
struct DpQ {
  static void run(int rows, const QGemvArgs& a, const uint8_t* w, const uint16_t* s,
                  const int8_t* z, const uint32_t* x, const float* xsum, float* out) {
    if (rows == G) {
      if constexpr (Bits == 4) {
        if (a.rows == G && a.x_stride == G)
          q4_dpbf16_rows<G, true>(a, w, s, z, x, xsum, out);
        else
          q4_dpbf16_rows<G, false>(a, w, s, z, x, xsum, out);
      } else {
        q8_dpbf16_rows<G>(a, w, s, z, x, xsum, out);
      }
    } else {
      DpQ<Bits, G - 1>::run(rows, a, w, s, z, x, xsum, out);
    }
  }
};
template <int Bits>
struct DpQ<Bits, 0> {
  static void run(int, const QGemvArgs&, const uint8_t*, const uint16_t*, const int8_t*,
                  const uint32_t*, const float*, float*) {}
};

// write_tile for a whole tile into bfloat16 outputs, 16 at a time (bf16_simd512.h's rounding,
// write_tile's). At batch 8 the generic loop cost ~1.5-1.9 % of an int4 decode step
// (alternating rounds in one process); batch 1 did not move.
inline void write_full_tile_bf16(const GemvArgs& a, int64_t tile, int64_t row0, int rows,
                                 const float* sums) {
  uint16_t* out = static_cast<uint16_t*>(a.out) + row0 * a.out_features + tile * kTile;
  for (int g = 0; g < rows; ++g)
    store_bf16_16(out + g * a.out_features, _mm512_loadu_ps(sums + g * kTile));
}

// All rows for tiles [t0, t1) with bfloat16 input pairs: a QTileFn.
template <int Bits>
void dp_q_tiles(const QGemvArgs& a, int64_t t0, int64_t t1) {
  const int64_t k_padded = a.groups * a.group_size;
  const int64_t level_bytes = Bits == 8 ? k_padded * kTile : k_padded / 2 * kTile;
  const uint8_t* levels = static_cast<const uint8_t*>(a.levels);
  alignas(64) float sums[kAvx512MaxGroup * kTile];
  for (int64_t t = t0; t < t1; ++t) {
    const uint8_t* w = levels + t * level_bytes;
    const uint16_t* s = a.scales + t * a.groups * kTile;
    const int8_t* z = a.zeros == nullptr ? nullptr : a.zeros + t * a.groups * kTile;
    for (int64_t r0 = 0; r0 < a.rows; r0 += kAvx512MaxGroup) {
      const int rows = static_cast<int>(
          a.rows - r0 < kAvx512MaxGroup ? a.rows - r0 : kAvx512MaxGroup);
      DpQ<Bits, kAvx512MaxGroup>::run(rows, a, w, s, z, a.xpairs + r0, a.xsum + r0, sums);
      GemvArgs out_args{nullptr, nullptr, a.rows, a.rows, 0, a.out_features, a.out,
                        a.out_bf16};
      if (a.out_bf16 && (t + 1) * kTile <= a.out_features)
        write_full_tile_bf16(out_args, t, r0, rows, sums);
      else
        write_tile(out_args, t, r0, rows, sums);
    }
  }
}
void q4_bf16_tiles(const QGemvArgs& a, int64_t t0, int64_t t1) { dp_q_tiles<4>(a, t0, t1); }
void q8_bf16_tiles(const QGemvArgs& a, int64_t t0, int64_t t1) { dp_q_tiles<8>(a, t0, t1); }
void q4_tiles(const QGemvArgs& a, int64_t t0, int64_t t1) {
  run_q_tiles<Avx512, 4, kAvx512MaxGroup>(a, t0, t1);
}

}  // namespace
}  // namespace qwen3core_cpu

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

namespace qwen3core_cpu {

// Compiled for the baseline target: it must run on any x86-64 to say no.
const KernelSet* avx512_kernels() {
  static const KernelSet with_bf16{"avx512bf16", XFormat::Bf16PairsKMajor, dpbf16_tiles,
                                   f32_tiles, q8_tiles, q4_tiles, q4_bf16_tiles,
                                   q8_bf16_tiles};
  static const KernelSet plain{"avx512f", XFormat::Float32KMajor, bf16_tiles, f32_tiles,
                               q8_tiles, q4_tiles, nullptr, nullptr};
  if (!__builtin_cpu_supports("avx512f")) return nullptr;
  return __builtin_cpu_supports("avx512bf16") ? &with_bf16 : &plain;
}

}  // namespace qwen3core_cpu

#else  // not x86-64

namespace qwen3core_cpu {
const KernelSet* avx512_kernels() { return nullptr; }
}  // namespace qwen3core_cpu

#endif
