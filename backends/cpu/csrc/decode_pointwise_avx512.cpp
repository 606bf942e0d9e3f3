// AVX-512 SiLU-multiply: decode_avx2.cpp's loop on 16 lanes, chosen at run time where the
// linear kernels chose AVX-512 (pointwise_ops.cpp). It must give the AVX2 loop's numbers lane
// for lane: the same exp polynomial and the same separately rounded operations. AVX-512F has
// FMA, and GCC would fuse a plain vector multiply and add into one (one rounding instead of
// two), so every multiply, add and divide here is the explicitly rounded (round-to-nearest-even,
// as the default rounding) form, which the compiler leaves alone.
#include "decode_kernels.h"

#if defined(__x86_64__) || defined(_M_X64)

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f")
#endif

#include <immintrin.h>

#include "bf16_simd512.h"
#include "exp_polynomial.h"

namespace qwen3core_cpu {
namespace decode {
namespace {

constexpr int kNearest = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;

inline __m512 mul(__m512 a, __m512 b) { return _mm512_mul_round_ps(a, b, kNearest); }
inline __m512 add(__m512 a, __m512 b) { return _mm512_add_round_ps(a, b, kNearest); }
inline __m512 sub(__m512 a, __m512 b) { return _mm512_sub_round_ps(a, b, kNearest); }
inline __m512 set(float x) { return _mm512_set1_ps(x); }

// exp256 (decode_simd.h) on 16 lanes, operation for operation, on the same constants.
inline __m512 exp512(__m512 x) {
  namespace c = exp_polynomial;
  const __m512 hi = set(c::kOverflow), lo = set(c::kUnderflow);
  const __mmask16 big = _mm512_cmp_ps_mask(x, hi, _CMP_GT_OQ);
  const __mmask16 tiny = _mm512_cmp_ps_mask(x, lo, _CMP_LT_OQ);
  __m512 r = _mm512_min_ps(_mm512_max_ps(x, lo), set(c::kClampHigh));
  const __m512 n = _mm512_roundscale_ps(add(mul(r, set(c::kLog2e)), set(.5f)),
                                        _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
  r = sub(r, mul(n, set(c::kLn2High)));
  r = sub(r, mul(n, set(c::kLn2Low)));
  __m512 y = set(c::kCoefficients[0]);
  for (int i = 1; i < 6; ++i) y = add(mul(y, r), set(c::kCoefficients[i]));
  y = add(add(mul(mul(y, r), r), r), set(1.f));
  const __m512i pow2 = _mm512_slli_epi32(
      _mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
  y = mul(y, _mm512_castsi512_ps(pow2));
  y = _mm512_mask_mov_ps(y, big, set(__builtin_inff()));
  y = _mm512_maskz_mov_ps(static_cast<__mmask16>(~tiny), y);
  return _mm512_mask_mov_ps(y, _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q), x);
}

template <bool Bf16, typename T>
inline __m512 load16(const T* p) {
  if constexpr (Bf16) return widen_bf16_16(p); else return _mm512_loadu_ps(p);
}

template <bool Bf16, typename T>
void silu_mul16(const T* gate, const T* up, T* out, int64_t n) {
  const __m512 one = set(1.f);
  const __m512 sign = set(-0.f);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512 g = load16<Bf16>(gate + i);
    const __m512 e = exp512(_mm512_castsi512_ps(
        _mm512_xor_si512(_mm512_castps_si512(g), _mm512_castps_si512(sign))));
    __m512 silu = _mm512_div_round_ps(g, add(one, e), kNearest);
    if constexpr (Bf16) {
      silu = _mm512_castsi512_ps(_mm512_slli_epi32(bf16_bits_16(silu), 16));
      store_bf16_16(out + i, mul(silu, load16<Bf16>(up + i)));
    } else {
      _mm512_storeu_ps(out + i, mul(silu, load16<Bf16>(up + i)));
    }
  }
  // The last n % 16 values: the AVX2 loop's own tail (scalar exp of the same polynomial).
  if (i < n) {
    if constexpr (Bf16)
      silu_mul_bf16(gate + i, up + i, out + i, n - i);
    else
      silu_mul_f32(gate + i, up + i, out + i, n - i);
  }
}

}  // namespace

void silu_mul_bf16_avx512(const uint16_t* gate, const uint16_t* up, uint16_t* out, int64_t n) {
  silu_mul16<true>(gate, up, out, n);
}
void silu_mul_f32_avx512(const float* gate, const float* up, float* out, int64_t n) {
  silu_mul16<false>(gate, up, out, n);
}

}  // namespace decode
}  // namespace qwen3core_cpu

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#endif  // x86-64
