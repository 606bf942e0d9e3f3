// AVX2 + FMA loops of the decode attention (see decode_kernels.h and decode_attention.h).
// Unlike the pointwise loops (decode_avx2.cpp) nothing here has to round like a chain of torch
// operators: the operator is held to float32 accuracy, so products and sums may fuse.
#include "decode_kernels.h"

#if defined(__x86_64__) || defined(_M_X64)

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#endif

#include <immintrin.h>

#include "decode_attention.h"

namespace qwen3core_cpu {
namespace decode {
namespace {

struct Avx2V {
  using reg = __m256;
  static constexpr int lanes = 8;
  static reg zero() { return _mm256_setzero_ps(); }
  static reg loadf(const float* p) { return _mm256_loadu_ps(p); }
  template <bool Bf16, typename T>
  static reg load(const T* p) { return decode::load<Bf16>(p); }
  static reg fma(reg a, reg b, reg c) { return _mm256_fmadd_ps(a, b, c); }
  static reg add(reg a, reg b) { return _mm256_add_ps(a, b); }
  static reg set1(float x) { return _mm256_set1_ps(x); }
  static void storef(float* p, reg v) { _mm256_storeu_ps(p, v); }
  static reg mul(reg a, reg b) { return _mm256_mul_ps(a, b); }
  static reg max(reg a, reg b) { return _mm256_max_ps(a, b); }
  static float hsum(reg v) { return decode::hsum(v); }
  static float hmax(reg v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    return _mm_cvtss_f32(_mm_max_ss(m, _mm_movehdup_ps(m)));
  }
  // Four keys' 8-lane sums -> one register: [a a c c | b b d d] (two partial sums each).
  static reg fold4(reg a, reg b, reg c, reg d) {
    const reg ab = _mm256_add_ps(_mm256_permute2f128_ps(a, b, 0x20),
                                 _mm256_permute2f128_ps(a, b, 0x31));
    const reg cd = _mm256_add_ps(_mm256_permute2f128_ps(c, d, 0x20),
                                 _mm256_permute2f128_ps(c, d, 0x31));
    return _mm256_hadd_ps(ab, cd);
  }
  // Two fold4 results -> [p0.a, p0.c, p1.a, p1.c | p0.b, p0.d, p1.b, p1.d], whole sums: block
  // key key_in_block(m, u) goes to fold4 number m as its u-th key.
  static reg fold_block(const reg p[2]) { return _mm256_hadd_ps(p[0], p[1]); }
  static constexpr int key_in_block(int m, int u) { return 2 * m + (u & 1) * 4 + (u >> 1); }
};

}  // namespace

void attend_bf16(const float* q, int64_t q_stride, int64_t groups, const uint16_t* k,
                 int64_t k_stride, const uint16_t* v, int64_t v_stride, const uint8_t* allowed,
                 int64_t mask_stride, int64_t keys, int64_t d, float scale, float* scores,
                 float* acc, int32_t* live) {
  attend<Avx2V, true>(q, q_stride, groups, k, k_stride, v, v_stride, allowed, mask_stride, keys, d,
               scale, scores, acc, live);
}
void attend_f32(const float* q, int64_t q_stride, int64_t groups, const float* k,
                int64_t k_stride, const float* v, int64_t v_stride, const uint8_t* allowed,
                int64_t mask_stride, int64_t keys, int64_t d, float scale, float* scores,
                float* acc, int32_t* live) {
  attend<Avx2V, false>(q, q_stride, groups, k, k_stride, v, v_stride, allowed, mask_stride, keys, d,
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
