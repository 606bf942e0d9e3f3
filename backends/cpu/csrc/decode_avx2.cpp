// AVX2 loops of the decode operators (see decode_kernels.h): 8 float32 lanes, no FMA, so every
// `a * b + c` is rounded twice, as the eager reference's separate operators round it.
#include "decode_kernels.h"

#if defined(__x86_64__) || defined(_M_X64)

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2")
#endif

#include <immintrin.h>

#include "decode_simd.h"

namespace qwen3core_cpu {
namespace decode {
namespace {

// ---- RMSNorm ----

template <bool Bf16, typename T>
float inverse_rms(const T* x, int64_t dim, float eps) {
  __m256 acc = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= dim; i += 8) {
    const __m256 v = load<Bf16>(x + i);
    acc = _mm256_add_ps(acc, _mm256_mul_ps(v, v));
  }
  float sum = hsum(acc);
  for (; i < dim; ++i) {
    const float v = scalar<Bf16>(x[i]);
    sum += v * v;
  }
  return rsqrt_of_mean(sum, dim, eps);
}

// sum[i] = dtype(x[i] + r[i]) (stored); returns the inverse RMS of sum.
template <bool Bf16, typename T, typename Store>
float add_inverse_rms(const T* x, const T* r, int64_t dim, float eps, Store sum_out) {
  __m256 acc = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= dim; i += 8) {
    const __m256 v = round_v<Bf16>(_mm256_add_ps(load<Bf16>(x + i), load<Bf16>(r + i)));
    sum_out.vec(i, v);
    acc = _mm256_add_ps(acc, _mm256_mul_ps(v, v));
  }
  float sum = hsum(acc);
  for (; i < dim; ++i) {
    const float v = round_s<Bf16>(scalar<Bf16>(x[i]) + scalar<Bf16>(r[i]));
    sum_out.one(i, v);
    sum += v * v;
  }
  return rsqrt_of_mean(sum, dim, eps);
}

// y[i] = dtype(w[i] * dtype(x[i] * inv)) as float32.
template <bool Bf16, typename T, typename Store>
void normalise(const T* x, const T* w, int64_t dim, float inv, Store store) {
  const __m256 vinv = _mm256_set1_ps(inv);
  int64_t i = 0;
  for (; i + 8 <= dim; i += 8) {
    const __m256 n = round_v<Bf16>(_mm256_mul_ps(load<Bf16>(x + i), vinv));
    store.vec(i, _mm256_mul_ps(load<Bf16>(w + i), n));
  }
  for (; i < dim; ++i)
    store.one(i, scalar<Bf16>(w[i]) * round_s<Bf16>(scalar<Bf16>(x[i]) * inv));
}

struct StoreBf16 {
  uint16_t* y;
  void vec(int64_t i, __m256 v) const { store_bf16(y + i, v); }
  void one(int64_t i, float v) const { y[i] = float_to_bf16(v); }
};
struct StoreF32 {
  float* y;
  void vec(int64_t i, __m256 v) const { _mm256_storeu_ps(y + i, v); }
  void one(int64_t i, float v) const { y[i] = v; }
};
struct StoreRoundedF32 {  // bfloat16 values kept as float32
  float* y;
  void vec(int64_t i, __m256 v) const { _mm256_storeu_ps(y + i, round_bf16(v)); }
  void one(int64_t i, float v) const { y[i] = round_bf16(v); }
};

// ---- rotary ----

template <bool Bf16, typename Store>
void rotate(const float* x, const float* cos, const float* sin, int64_t half, Store store) {
  int64_t i = 0;
  for (; i + 8 <= half; i += 8) {
    const __m256 x1 = _mm256_loadu_ps(x + i), x2 = _mm256_loadu_ps(x + half + i);
    const __m256 c = _mm256_loadu_ps(cos + i), s = _mm256_loadu_ps(sin + i);
    store.vec(i, _mm256_add_ps(round_v<Bf16>(_mm256_mul_ps(x1, c)),
                               round_v<Bf16>(_mm256_mul_ps(neg(x2), s))));
    store.vec(half + i, _mm256_add_ps(round_v<Bf16>(_mm256_mul_ps(x2, c)),
                                      round_v<Bf16>(_mm256_mul_ps(x1, s))));
  }
  for (; i < half; ++i) {
    const float x1 = x[i], x2 = x[i + half];
    store.one(i, round_s<Bf16>(x1 * cos[i]) + round_s<Bf16>(-x2 * sin[i]));
    store.one(half + i, round_s<Bf16>(x2 * cos[i]) + round_s<Bf16>(x1 * sin[i]));
  }
}

// ---- SiLU-multiply ----

template <bool Bf16, typename T, typename Store>
void silu_mul(const T* gate, const T* up, int64_t n, Store store) {
  const __m256 one = _mm256_set1_ps(1.f);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 g = load<Bf16>(gate + i);
    const __m256 silu = _mm256_div_ps(g, _mm256_add_ps(one, exp256(neg(g))));
    store.vec(i, _mm256_mul_ps(round_v<Bf16>(silu), load<Bf16>(up + i)));
  }
  for (; i < n; ++i) {
    const float g = scalar<Bf16>(gate[i]);
    store.one(i, round_s<Bf16>(g / (1.f + exp1(-g))) * scalar<Bf16>(up[i]));
  }
}

}  // namespace

void rms_norm_bf16(const uint16_t* x, const uint16_t* w, uint16_t* y, int64_t dim, float eps) {
  normalise<true>(x, w, dim, inverse_rms<true>(x, dim, eps), StoreBf16{y});
}
void rms_norm_f32(const float* x, const float* w, float* y, int64_t dim, float eps) {
  normalise<false>(x, w, dim, inverse_rms<false>(x, dim, eps), StoreF32{y});
}
void add_rms_norm_bf16(const uint16_t* x, const uint16_t* residual, const uint16_t* w,
                       uint16_t* y, uint16_t* sum, int64_t dim, float eps) {
  const float inv = add_inverse_rms<true>(x, residual, dim, eps, StoreBf16{sum});
  normalise<true>(sum, w, dim, inv, StoreBf16{y});
}
void add_rms_norm_f32(const float* x, const float* residual, const float* w, float* y,
                      float* sum, int64_t dim, float eps) {
  const float inv = add_inverse_rms<false>(x, residual, dim, eps, StoreF32{sum});
  normalise<false>(sum, w, dim, inv, StoreF32{y});
}
void rms_norm_head_bf16(const uint16_t* x, const uint16_t* w, float* y, int64_t dim,
                        float eps) {
  normalise<true>(x, w, dim, inverse_rms<true>(x, dim, eps), StoreRoundedF32{y});
}
void rms_norm_head_f32(const float* x, const float* w, float* y, int64_t dim, float eps) {
  normalise<false>(x, w, dim, inverse_rms<false>(x, dim, eps), StoreF32{y});
}
void widen_bf16(const uint16_t* x, float* y, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, load_bf16(x + i));
  for (; i < n; ++i) y[i] = bf16_to_float(x[i]);
}
void narrow_bf16(const float* x, uint16_t* y, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) store_bf16(y + i, _mm256_loadu_ps(x + i));
  for (; i < n; ++i) y[i] = float_to_bf16(x[i]);
}
void rotate_bf16(const float* x, const float* cos, const float* sin, uint16_t* out,
                 int64_t half) {
  rotate<true>(x, cos, sin, half, StoreBf16{out});
}
void rotate_f32(const float* x, const float* cos, const float* sin, float* out, int64_t half) {
  rotate<false>(x, cos, sin, half, StoreF32{out});
}
void silu_mul_bf16(const uint16_t* gate, const uint16_t* up, uint16_t* out, int64_t n) {
  silu_mul<true>(gate, up, n, StoreBf16{out});
}
void silu_mul_f32(const float* gate, const float* up, float* out, int64_t n) {
  silu_mul<false>(gate, up, n, StoreF32{out});
}
}  // namespace decode
}  // namespace qwen3core_cpu

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#endif  // x86-64
