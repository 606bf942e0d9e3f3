// AVX-512 loops of the decode attention: the AVX2 file's loops (decode_attention.h) on 16
// float32 lanes, chosen at run time where the linear kernels chose AVX-512 (attention_op.cpp).
#include "decode_kernels.h"

#if defined(__x86_64__) || defined(_M_X64)

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx2,fma"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx2,fma")
#endif

#include <immintrin.h>

#include "bf16_simd512.h"
#include "decode_attention.h"

namespace qwen3core_cpu {
namespace decode {
namespace {

struct Avx512V {
  using reg = __m512;
  static constexpr int lanes = 16;
  static reg zero() { return _mm512_setzero_ps(); }
  static reg loadf(const float* p) { return _mm512_loadu_ps(p); }
  template <bool Bf16, typename T>
  static reg load(const T* p) {
    if constexpr (Bf16) {
      return widen_bf16_16(p);
    } else {
      return _mm512_loadu_ps(p);
    }
  }
  static reg fma(reg a, reg b, reg c) { return _mm512_fmadd_ps(a, b, c); }
  static reg add(reg a, reg b) { return _mm512_add_ps(a, b); }
  static reg set1(float x) { return _mm512_set1_ps(x); }
  static void storef(float* p, reg v) { _mm512_storeu_ps(p, v); }
  static reg mul(reg a, reg b) { return _mm512_mul_ps(a, b); }
  static reg max(reg a, reg b) { return _mm512_max_ps(a, b); }
  static float hsum(reg v) { return _mm512_reduce_add_ps(v); }
  static float hmax(reg v) { return _mm512_reduce_max_ps(v); }
  // Four keys' 16-lane sums -> one register, key u's four partial sums in 128-bit lane u.
  static reg fold4(reg a, reg b, reg c, reg d) {
    return halves_of_pairs(pairs_of_halves(a, b), pairs_of_halves(c, d));
  }
  // Four fold4 results -> lane 4u + m is the whole sum of fold4 number m's key u; so block key
  // 4u + m goes to fold4 number m as its u-th key.
  static reg fold_block(const reg p[4]) {
    const reg ab = _mm512_add_ps(_mm512_shuffle_ps(p[0], p[1], 0x44),
                                 _mm512_shuffle_ps(p[0], p[1], 0xEE));
    const reg cd = _mm512_add_ps(_mm512_shuffle_ps(p[2], p[3], 0x44),
                                 _mm512_shuffle_ps(p[2], p[3], 0xEE));
    return _mm512_add_ps(_mm512_shuffle_ps(ab, cd, 0x88), _mm512_shuffle_ps(ab, cd, 0xDD));
  }
  static constexpr int key_in_block(int m, int u) { return 4 * u + m; }

 private:
  // 128-bit lanes [a0 + a2, a1 + a3, b0 + b2, b1 + b3]
  static reg pairs_of_halves(reg a, reg b) {
    return _mm512_add_ps(_mm512_shuffle_f32x4(a, b, 0x44), _mm512_shuffle_f32x4(a, b, 0xEE));
  }
  // 128-bit lanes [ab0 + ab1, ab2 + ab3, cd0 + cd1, cd2 + cd3]
  static reg halves_of_pairs(reg ab, reg cd) {
    return _mm512_add_ps(_mm512_shuffle_f32x4(ab, cd, 0x88), _mm512_shuffle_f32x4(ab, cd, 0xDD));
  }
};

}  // namespace

void attend_bf16_avx512(const float* q, int64_t q_stride, int64_t groups, const uint16_t* k,
                 int64_t k_stride, const uint16_t* v, int64_t v_stride, const uint8_t* allowed,
                 int64_t mask_stride, int64_t keys, int64_t d, float scale, float* scores,
                 float* acc, int32_t* live) {
  attend<Avx512V, true>(q, q_stride, groups, k, k_stride, v, v_stride, allowed, mask_stride, keys, d,
               scale, scores, acc, live);
}
void attend_f32_avx512(const float* q, int64_t q_stride, int64_t groups, const float* k,
                int64_t k_stride, const float* v, int64_t v_stride, const uint8_t* allowed,
                int64_t mask_stride, int64_t keys, int64_t d, float scale, float* scores,
                float* acc, int32_t* live) {
  attend<Avx512V, false>(q, q_stride, groups, k, k_stride, v, v_stride, allowed, mask_stride, keys, d,
                scale, scores, acc, live);
}

}  // namespace decode
}  // namespace qwen3core_cpu

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#endif  // x86-64
