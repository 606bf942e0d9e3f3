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
  static float hsum(reg v) { return decode::hsum(v); }
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
