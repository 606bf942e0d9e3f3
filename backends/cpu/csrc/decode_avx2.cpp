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
  const __m256 hi = _mm256_set1_ps(88.7228394f), lo = _mm256_set1_ps(-87.3365479f);
  const __m256 big = _mm256_cmp_ps(x, hi, _CMP_GT_OQ), tiny = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
  __m256 r = _mm256_min_ps(_mm256_max_ps(x, lo), _mm256_set1_ps(88.3762626647949f));
  const __m256 n = _mm256_floor_ps(
      _mm256_add_ps(_mm256_mul_ps(r, _mm256_set1_ps(1.44269504088896341f)), _mm256_set1_ps(.5f)));
  r = _mm256_sub_ps(r, _mm256_mul_ps(n, _mm256_set1_ps(0.693359375f)));
  r = _mm256_sub_ps(r, _mm256_mul_ps(n, _mm256_set1_ps(-2.12194440e-4f)));
  __m256 y = _mm256_set1_ps(1.9875691500e-4f);
  y = _mm256_add_ps(_mm256_mul_ps(y, r), _mm256_set1_ps(1.3981999507e-3f));
  y = _mm256_add_ps(_mm256_mul_ps(y, r), _mm256_set1_ps(8.3334519073e-3f));
  y = _mm256_add_ps(_mm256_mul_ps(y, r), _mm256_set1_ps(4.1665795894e-2f));
  y = _mm256_add_ps(_mm256_mul_ps(y, r), _mm256_set1_ps(1.6666665459e-1f));
  y = _mm256_add_ps(_mm256_mul_ps(y, r), _mm256_set1_ps(5.0000001201e-1f));
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

// ---- RMSNorm ----

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

// ---- attention over one key/value head ----
//
// G (1..4) query rows share each read of a key and a value row. Scores are kept only for the
// keys the mask allows, compacted (`live` lists their indices), so the softmax and the value
// pass skip masked slots (which may hold anything, e.g. another row's future).

constexpr int64_t kGroupBlock = 4;

template <int G, bool Bf16, typename T>
void scores_block(const float* q, int64_t q_stride, const T* k, int64_t k_stride,
                  const int32_t* live, int64_t n, int64_t d, float scale, float* scores,
                  int64_t score_stride, float* top) {
  for (int g = 0; g < G; ++g) top[g] = -__builtin_inff();
  for (int64_t j = 0; j < n; ++j) {
    const T* krow = k + live[j] * k_stride;
    __m256 a0[G], a1[G];  // two chains per row: an add waits on the previous one
    for (int g = 0; g < G; ++g) a0[g] = a1[g] = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= d; i += 16) {
      const __m256 k0 = load<Bf16>(krow + i), k1 = load<Bf16>(krow + i + 8);
      for (int g = 0; g < G; ++g) {
        a0[g] = _mm256_add_ps(a0[g], _mm256_mul_ps(_mm256_loadu_ps(q + g * q_stride + i), k0));
        a1[g] = _mm256_add_ps(a1[g],
                              _mm256_mul_ps(_mm256_loadu_ps(q + g * q_stride + i + 8), k1));
      }
    }
    for (; i + 8 <= d; i += 8) {
      const __m256 k0 = load<Bf16>(krow + i);
      for (int g = 0; g < G; ++g)
        a0[g] = _mm256_add_ps(a0[g], _mm256_mul_ps(_mm256_loadu_ps(q + g * q_stride + i), k0));
    }
    for (int g = 0; g < G; ++g) {
      float dot = hsum(_mm256_add_ps(a0[g], a1[g]));
      for (int64_t r = i; r < d; ++r) dot += q[g * q_stride + r] * scalar<Bf16>(krow[r]);
      const float score = dot * scale;
      scores[g * score_stride + j] = score;
      top[g] = score > top[g] ? score : top[g];
    }
  }
}

// acc[g] = sum_j p[g][j] * v[live[j]], four keys per pass over the accumulators.
template <int G, bool Bf16, typename T>
void values_block(const float* p, int64_t p_stride, const T* v, int64_t v_stride,
                  const int32_t* live, int64_t n, int64_t d, float* acc) {
  for (int64_t x = 0; x < G * d; ++x) acc[x] = 0.f;
  int64_t j = 0;
  for (; j + 4 <= n; j += 4) {
    const T* v0 = v + live[j] * v_stride;
    const T* v1 = v + live[j + 1] * v_stride;
    const T* v2 = v + live[j + 2] * v_stride;
    const T* v3 = v + live[j + 3] * v_stride;
    __m256 w[G][4];
    for (int g = 0; g < G; ++g)
      for (int u = 0; u < 4; ++u) w[g][u] = _mm256_set1_ps(p[g * p_stride + j + u]);
    int64_t i = 0;
    for (; i + 8 <= d; i += 8) {
      const __m256 x0 = load<Bf16>(v0 + i), x1 = load<Bf16>(v1 + i);
      const __m256 x2 = load<Bf16>(v2 + i), x3 = load<Bf16>(v3 + i);
      for (int g = 0; g < G; ++g) {
        float* a = acc + g * d + i;
        __m256 sum = _mm256_add_ps(_mm256_mul_ps(w[g][0], x0), _mm256_mul_ps(w[g][1], x1));
        sum = _mm256_add_ps(sum, _mm256_add_ps(_mm256_mul_ps(w[g][2], x2),
                                               _mm256_mul_ps(w[g][3], x3)));
        _mm256_storeu_ps(a, _mm256_add_ps(_mm256_loadu_ps(a), sum));
      }
    }
    for (; i < d; ++i)
      for (int g = 0; g < G; ++g)
        acc[g * d + i] += p[g * p_stride + j] * scalar<Bf16>(v0[i]) +
                          p[g * p_stride + j + 1] * scalar<Bf16>(v1[i]) +
                          p[g * p_stride + j + 2] * scalar<Bf16>(v2[i]) +
                          p[g * p_stride + j + 3] * scalar<Bf16>(v3[i]);
  }
  for (; j < n; ++j) {
    const T* vrow = v + live[j] * v_stride;
    for (int g = 0; g < G; ++g) {
      const __m256 w = _mm256_set1_ps(p[g * p_stride + j]);
      float* a = acc + g * d;
      int64_t i = 0;
      for (; i + 8 <= d; i += 8)
        _mm256_storeu_ps(a + i, _mm256_add_ps(_mm256_loadu_ps(a + i),
                                              _mm256_mul_ps(w, load<Bf16>(vrow + i))));
      for (; i < d; ++i) a[i] += p[g * p_stride + j] * scalar<Bf16>(vrow[i]);
    }
  }
}

// Softmax numerators of one row in place; returns their sum.
inline float exp_shifted(float* row, int64_t n, float top) {
  const __m256 vtop = _mm256_set1_ps(top);
  __m256 sum = _mm256_setzero_ps();
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) {
    const __m256 p = exp256(_mm256_sub_ps(_mm256_loadu_ps(row + j), vtop));
    _mm256_storeu_ps(row + j, p);
    sum = _mm256_add_ps(sum, p);
  }
  float s = hsum(sum);
  for (; j < n; ++j) {
    row[j] = exp1(row[j] - top);
    s += row[j];
  }
  return s;
}

template <int G, bool Bf16, typename T>
void attend_block(const float* q, int64_t q_stride, const T* k, int64_t k_stride, const T* v,
                  int64_t v_stride, const int32_t* live, int64_t n, int64_t d, float scale,
                  float* scores, float* acc) {
  float top[G];
  scores_block<G, Bf16>(q, q_stride, k, k_stride, live, n, d, scale, scores, n, top);
  float inverse[G];
  for (int g = 0; g < G; ++g) {
    const float total = n ? exp_shifted(scores + g * n, n, top[g]) : 0.f;
    inverse[g] = total > 0.f ? 1.f / total : 0.f;  // a row that may see no key gets zeros
  }
  values_block<G, Bf16>(scores, n, v, v_stride, live, n, d, acc);
  for (int g = 0; g < G; ++g)
    for (int64_t i = 0; i < d; ++i) acc[g * d + i] *= inverse[g];
}

template <bool Bf16, typename T>
void attend(const float* q, int64_t q_stride, int64_t groups, const T* k, int64_t k_stride,
            const T* v, int64_t v_stride, const uint8_t* allowed, int64_t mask_stride,
            int64_t keys, int64_t d, float scale, float* scores, float* acc, int32_t* live) {
  int64_t n = 0;
  for (int64_t t = 0; t < keys; ++t)
    if (allowed[t * mask_stride]) live[n++] = static_cast<int32_t>(t);
  for (int64_t g0 = 0; g0 < groups; g0 += kGroupBlock) {
    const int64_t gn = groups - g0 < kGroupBlock ? groups - g0 : kGroupBlock;
    const float* qg = q + g0 * q_stride;
    float* ag = acc + g0 * d;
    switch (gn) {
      case 1: attend_block<1, Bf16>(qg, q_stride, k, k_stride, v, v_stride, live, n, d, scale,
                                    scores, ag); break;
      case 2: attend_block<2, Bf16>(qg, q_stride, k, k_stride, v, v_stride, live, n, d, scale,
                                    scores, ag); break;
      case 3: attend_block<3, Bf16>(qg, q_stride, k, k_stride, v, v_stride, live, n, d, scale,
                                    scores, ag); break;
      default: attend_block<4, Bf16>(qg, q_stride, k, k_stride, v, v_stride, live, n, d, scale,
                                     scores, ag); break;
    }
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
void attend_bf16(const float* q, int64_t q_stride, int64_t groups, const uint16_t* k,
                 int64_t k_stride, const uint16_t* v, int64_t v_stride, const uint8_t* allowed,
                 int64_t mask_stride, int64_t keys, int64_t d, float scale, float* scores,
                 float* acc, int32_t* live) {
  attend<true>(q, q_stride, groups, k, k_stride, v, v_stride, allowed, mask_stride, keys, d,
               scale, scores, acc, live);
}
void attend_f32(const float* q, int64_t q_stride, int64_t groups, const float* k,
                int64_t k_stride, const float* v, int64_t v_stride, const uint8_t* allowed,
                int64_t mask_stride, int64_t keys, int64_t d, float scale, float* scores,
                float* acc, int32_t* live) {
  attend<false>(q, q_stride, groups, k, k_stride, v, v_stride, allowed, mask_stride, keys, d,
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
