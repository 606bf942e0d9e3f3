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
  static float hsum(reg v) { return _mm512_reduce_add_ps(v); }
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
