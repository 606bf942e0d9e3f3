// bfloat16 <-> float32 on 16 AVX-512 lanes, included *after* a file's target pragma (like
// decode_simd.h for AVX2): in an anonymous namespace, so each file compiles its own copy for
// its own target. The rounding is c10::BFloat16's (to nearest even, NaN to 0x7fc0), as
// decode_simd.h's float_to_bf16 and tile_kernels.h's round_to_bf16 round one value; not
// vcvtneps2bf16, which flushes subnormals.
#pragma once

#include <immintrin.h>
#include <stdint.h>

namespace qwen3core_cpu {
namespace {

// 16 bfloat16 values -> float32 (a bfloat16 is the top half of a float32).
inline __m512 widen_bf16_16(const uint16_t* p) {
  const __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(raw), 16));
}

// 32-bit lanes holding each value's bfloat16 bits (in the low half).
inline __m512i bf16_bits_16(__m512 f) {
  const __m512i u = _mm512_castps_si512(f);
  const __m512i odd = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
  const __m512i rounded = _mm512_srli_epi32(
      _mm512_add_epi32(u, _mm512_add_epi32(odd, _mm512_set1_epi32(0x7fff))), 16);
  return _mm512_mask_mov_epi32(rounded, _mm512_cmp_ps_mask(f, f, _CMP_UNORD_Q),
                               _mm512_set1_epi32(0x7fc0));
}

// 16 float32 values rounded and stored as bfloat16.
inline void store_bf16_16(uint16_t* p, __m512 f) {
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), _mm512_cvtepi32_epi16(bf16_bits_16(f)));
}

}  // namespace
}  // namespace qwen3core_cpu
