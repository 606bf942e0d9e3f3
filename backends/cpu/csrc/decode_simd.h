// Inline AVX2 helpers of the decode loops (bfloat16 conversions, a vectorised exp, horizontal
// sums), included by decode_avx2.cpp and decode_attention_avx2.cpp *after* their target pragma:
// everything here is in an anonymous namespace, so each file keeps its own copy, compiled for
// its own target (no inline function compiled with one target can be merged into the other).
#pragma once

#include <immintrin.h>
#include <stdint.h>

#include "exp_polynomial.h"

namespace qwen3core_cpu {
namespace decode {
namespace {

// ---- bfloat16 <-> float32 (bfloat16 is the top half of a float32) ----

inline float bf16_to_float(uint16_t b) {
  const uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  __builtin_memcpy(&f, &u, sizeof f);
  return f;
}

// Round to nearest even, NaN to a quiet NaN: c10::BFloat16's rounding.
inline uint16_t float_to_bf16(float f) {
  if (f != f) return 0x7fc0;
  uint32_t u;
  __builtin_memcpy(&u, &f, sizeof u);
  return static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

inline float round_bf16(float f) { return bf16_to_float(float_to_bf16(f)); }

inline __m256 load_bf16(const uint16_t* p) {
  const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(raw), 16));
}

// 32-bit lanes holding each value's bfloat16 bits (in the low half).
inline __m256i bf16_bits(__m256 f) {
  const __m256i u = _mm256_castps_si256(f);
  const __m256i odd = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
  const __m256i bias = _mm256_add_epi32(odd, _mm256_set1_epi32(0x7fff));
  const __m256i rounded = _mm256_srli_epi32(_mm256_add_epi32(u, bias), 16);
  const __m256 nan = _mm256_cmp_ps(f, f, _CMP_UNORD_Q);
  return _mm256_blendv_epi8(rounded, _mm256_set1_epi32(0x7fc0), _mm256_castps_si256(nan));
}

inline __m256 round_bf16(__m256 f) {
  return _mm256_castsi256_ps(_mm256_slli_epi32(bf16_bits(f), 16));
}

inline void store_bf16(uint16_t* p, __m256 f) {
  const __m256i bits = bf16_bits(f);
  // packus works per 128-bit half: [b0..b3 b0..b3 | b4..b7 b4..b7]; keep quadwords 0 and 2.
  const __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(bits, bits), 0x08);
  _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm256_castsi256_si128(packed));
}

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
  return _mm_cvtss_f32(s);
}

inline __m256 neg(__m256 v) { return _mm256_xor_ps(v, _mm256_set1_ps(-0.f)); }

inline float rsqrt_of_mean(float sum, int64_t dim, float eps) {
  // 1 / sqrt(mean + eps) with a correctly rounded square root, as std::sqrt gives.
  const float root = _mm_cvtss_f32(_mm_sqrt_ss(_mm_set_ss(sum / static_cast<float>(dim) + eps)));
  return 1.f / root;
}

// e^x to about 2 float32 ulps (Cephes' expf: x = n ln2 + r, a degree-6 polynomial in r).
// Results below 2^-126 are flushed to zero; above the float range they are +inf.
inline __m256 exp256(__m256 x) {
  namespace c = exp_polynomial;
  const __m256 hi = _mm256_set1_ps(c::kOverflow), lo = _mm256_set1_ps(c::kUnderflow);
  const __m256 big = _mm256_cmp_ps(x, hi, _CMP_GT_OQ), tiny = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
  __m256 r = _mm256_min_ps(_mm256_max_ps(x, lo), _mm256_set1_ps(c::kClampHigh));
  const __m256 n = _mm256_floor_ps(
      _mm256_add_ps(_mm256_mul_ps(r, _mm256_set1_ps(c::kLog2e)), _mm256_set1_ps(.5f)));
  r = _mm256_sub_ps(r, _mm256_mul_ps(n, _mm256_set1_ps(c::kLn2High)));
  r = _mm256_sub_ps(r, _mm256_mul_ps(n, _mm256_set1_ps(c::kLn2Low)));
  __m256 y = _mm256_set1_ps(c::kCoefficients[0]);
  for (int i = 1; i < 6; ++i)
    y = _mm256_add_ps(_mm256_mul_ps(y, r), _mm256_set1_ps(c::kCoefficients[i]));
  y = _mm256_add_ps(_mm256_add_ps(_mm256_mul_ps(_mm256_mul_ps(y, r), r), r), _mm256_set1_ps(1.f));
  const __m256i pow2 = _mm256_slli_epi32(
      _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  y = _mm256_mul_ps(y, _mm256_castsi256_ps(pow2));
  y = _mm256_blendv_ps(y, _mm256_set1_ps(__builtin_inff()), big);
  y = _mm256_andnot_ps(tiny, y);
  // NaN stays NaN (the comparisons above are false for it, min/max would have replaced it).
  return _mm256_blendv_ps(y, x, _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
}

inline float exp1(float x) {
  float lanes[8];
  _mm256_storeu_ps(lanes, exp256(_mm256_set1_ps(x)));
  return lanes[0];
}

template <bool Bf16, typename T>
inline __m256 load(const T* p) {
  if constexpr (Bf16) return load_bf16(p); else return _mm256_loadu_ps(p);
}
template <bool Bf16, typename T>
inline float scalar(T v) {
  if constexpr (Bf16) return bf16_to_float(v); else return v;
}
template <bool Bf16>
inline __m256 round_v(__m256 v) {
  if constexpr (Bf16) return round_bf16(v); else return v;
}
template <bool Bf16>
inline float round_s(float v) {
  if constexpr (Bf16) return round_bf16(v); else return v;
}

}  // namespace
}  // namespace decode
}  // namespace qwen3core_cpu
