// The decode attention's loops over one key/value head, written once over a vector type `V`
// (decode_attention_avx2.cpp: 8 lanes; decode_attention_avx512.cpp: 16), included after each
// file's target pragma into an anonymous namespace. See decode_kernels.h for the contract.
//
// V provides: reg, lanes, zero(), loadf(const float*), load<Bf16>(const T*) (bfloat16 bits or
// float32 to float32 lanes), fma(a, b, c) = a * b + c, add, max, set1, storef, hsum, hmax, and
// the key-block sums (see scores_block): fold4, fold_block, key_in_block. The softmax's
// exp runs on AVX2 lanes (decode_simd.h) in both: it is one call per key, not per element.
#pragma once

#include "decode_simd.h"

namespace qwen3core_cpu {
namespace decode {
namespace {

// ---- attention over one key/value head ----
//
// G (1..kAttendGroupBlock) query rows share each read of a key and a value row. Scores are
// kept only for the keys the mask allows, compacted (`live` lists their indices), so the
// softmax and the value pass skip masked slots (which may hold anything, e.g. another row's
// future).

// Keys and values are read from memory (the step's weights evicted them), a row at a time in
// `live` order; requesting rows this far ahead keeps several misses in flight. Batch 8 of the
// 0.6B, 40 keys, caches flushed: 127 -> 84 us a call (2 threads); in a decode step (int4)
// 84 -> 54 us.
constexpr int64_t kAheadKeys = 8;
inline void prefetch_row(const void* p, int64_t bytes) {
  for (int64_t b = 0; b < bytes; b += 64)
    _mm_prefetch(static_cast<const char*>(p) + b, _MM_HINT_T0);
}

// Scores of keys [j0, n) one key at a time: each dot product summed across its lanes alone.
template <typename V, int G, bool Bf16, typename T>
void scores_by_keys(const float* q, int64_t q_stride, const T* k, int64_t k_stride,
                    const int32_t* live, int64_t j0, int64_t n, int64_t d, float scale,
                    float* scores, int64_t score_stride, float* top) {
  for (int64_t j = j0; j < n; ++j) {
    const T* krow = k + live[j] * k_stride;
    if (j + kAheadKeys < n) prefetch_row(k + live[j + kAheadKeys] * k_stride, d * sizeof(T));
    typename V::reg a0[G], a1[G];  // two chains per row: an add waits on the previous one
    for (int g = 0; g < G; ++g) a0[g] = a1[g] = V::zero();
    constexpr int L = V::lanes;
    int64_t i = 0;
    for (; i + 2 * L <= d; i += 2 * L) {
      const typename V::reg k0 = V::template load<Bf16>(krow + i);
      const typename V::reg k1 = V::template load<Bf16>(krow + i + L);
      for (int g = 0; g < G; ++g) {
        a0[g] = V::fma(V::loadf(q + g * q_stride + i), k0, a0[g]);
        a1[g] = V::fma(V::loadf(q + g * q_stride + i + L), k1, a1[g]);
      }
    }
    for (; i + L <= d; i += L) {
      const typename V::reg k0 = V::template load<Bf16>(krow + i);
      for (int g = 0; g < G; ++g) a0[g] = V::fma(V::loadf(q + g * q_stride + i), k0, a0[g]);
    }
    for (int g = 0; g < G; ++g) {
      float dot = V::hsum(V::add(a0[g], a1[g]));
      for (int64_t r = i; r < d; ++r) dot += q[g * q_stride + r] * scalar<Bf16>(krow[r]);
      const float score = dot * scale;
      scores[g * score_stride + j] = score;
      top[g] = score > top[g] ? score : top[g];
    }
  }
}

// Four keys' dot products with H (1 or 2) query rows, each a single chain of d / lanes FMAs,
// folded into one register per row by V::fold4 (what is left is summed by fold_block).
template <typename V, int H, bool Bf16, typename T>
void four_key_partials(const float* q, int64_t q_stride, const T* const rows[4], int64_t d,
                       typename V::reg out[H]) {
  typename V::reg a[H][4];
  for (int h = 0; h < H; ++h)
    for (int u = 0; u < 4; ++u) a[h][u] = V::zero();
  for (int64_t i = 0; i < d; i += V::lanes)
    for (int u = 0; u < 4; ++u) {
      const typename V::reg key = V::template load<Bf16>(rows[u] + i);
      for (int h = 0; h < H; ++h) a[h][u] = V::fma(V::loadf(q + h * q_stride + i), key, a[h][u]);
    }
  for (int h = 0; h < H; ++h) out[h] = V::fold4(a[h][0], a[h][1], a[h][2], a[h][3]);
}

// One block's `lanes` scores for H query rows: stored, and folded into their running maxima.
template <typename V, int H, bool Bf16, typename T>
void rows_of_block(const float* q, int64_t q_stride, const T* k, int64_t k_stride,
                   const int32_t* live, int64_t d, typename V::reg scale, float* scores,
                   int64_t score_stride, typename V::reg* best) {
  constexpr int P = V::lanes / 4;
  typename V::reg partial[P][H];
  for (int m = 0; m < P; ++m) {
    const T* rows[4];
    for (int u = 0; u < 4; ++u) rows[u] = k + live[V::key_in_block(m, u)] * k_stride;
    four_key_partials<V, H, Bf16>(q, q_stride, rows, d, partial[m]);
  }
  for (int h = 0; h < H; ++h) {
    typename V::reg by_row[P];
    for (int m = 0; m < P; ++m) by_row[m] = partial[m][h];
    const typename V::reg s = V::mul(scale, V::fold_block(by_row));
    V::storef(scores + h * score_stride, s);
    best[h] = V::max(best[h], s);
  }
}

// rows_of_block for G rows, two at a time.
template <typename V, int G, bool Bf16, typename T>
void pairs_of_rows(const float* q, int64_t q_stride, const T* k, int64_t k_stride,
                   const int32_t* live, int64_t d, typename V::reg scale, float* scores,
                   int64_t score_stride, typename V::reg* best) {
  for (int g0 = 0; g0 < G; g0 += 2) {
    if (g0 + 1 < G)
      rows_of_block<V, 2, Bf16>(q + g0 * q_stride, q_stride, k, k_stride, live, d, scale,
                                scores + g0 * score_stride, score_stride, best + g0);
    else
      rows_of_block<V, 1, Bf16>(q + g0 * q_stride, q_stride, k, k_stride, live, d, scale,
                                scores + g0 * score_stride, score_stride, best + g0);
  }
}

// Scores of `lanes` keys at a time, in pairs of query rows. Summing each key's dot product
// across its lanes on its own (scores_by_keys) is a chain of shuffles and adds per key and row
// that cost more than the key's multiply-adds: here the sums of a block's keys share their
// shuffles (V::fold4, then V::fold_block: lanes / 4 partial registers into one register whose
// lane i is key i's score). One key/value head, 1024 keys in cache, one core: 6.1 -> 3.3 ns a
// key for 2 query rows, 10.8 -> 6.3 for 4. Needs d to be a multiple of the lanes; the keys
// after the last whole block go one at a time. Flattened: left to itself the compiler kept
// rows_of_block a separate call for some G, and in that build 4 rows ran level with the loop
// before (2 threads, 1024 keys from memory: 147-157 us a call either way; flattened 139-151).
template <typename V, int G, bool Bf16, typename T>
[[gnu::flatten]] void scores_block(const float* q, int64_t q_stride, const T* k,
                                   int64_t k_stride, const int32_t* live, int64_t n, int64_t d,
                                   float scale, float* scores, int64_t score_stride,
                                   float* top) {
  constexpr int L = V::lanes;
  for (int g = 0; g < G; ++g) top[g] = -__builtin_inff();
  int64_t j = 0;
  if (d % L == 0) {
    typename V::reg best[G];
    for (int g = 0; g < G; ++g) best[g] = V::set1(-__builtin_inff());
    const typename V::reg vscale = V::set1(scale);
    for (; j + L <= n; j += L) {
      for (int64_t u = j + L; u < j + 2 * L && u < n; ++u)  // the next block's rows
        prefetch_row(k + live[u] * k_stride, d * sizeof(T));
      pairs_of_rows<V, G, Bf16>(q, q_stride, k, k_stride, live + j, d, vscale, scores + j,
                                score_stride, best);
    }
    for (int g = 0; g < G; ++g) top[g] = V::hmax(best[g]);
  }
  scores_by_keys<V, G, Bf16>(q, q_stride, k, k_stride, live, j, n, d, scale, scores,
                             score_stride, top);
}

// acc[g] = sum_j p[g][j] * v[live[j]], four keys per pass over the accumulators.
template <typename V, int G, bool Bf16, typename T>
void values_block(const float* p, int64_t p_stride, const T* v, int64_t v_stride,
                  const int32_t* live, int64_t n, int64_t d, float* acc) {
  for (int64_t x = 0; x < G * d; ++x) acc[x] = 0.f;
  int64_t j = 0;
  for (; j + 4 <= n; j += 4) {
    const T* v0 = v + live[j] * v_stride;
    const T* v1 = v + live[j + 1] * v_stride;
    const T* v2 = v + live[j + 2] * v_stride;
    const T* v3 = v + live[j + 3] * v_stride;
    for (int u = 0; u < 4; ++u)
      if (j + kAheadKeys + u < n)
        prefetch_row(v + live[j + kAheadKeys + u] * v_stride, d * sizeof(T));
    typename V::reg w[G][4];
    for (int g = 0; g < G; ++g)
      for (int u = 0; u < 4; ++u) w[g][u] = V::set1(p[g * p_stride + j + u]);
    constexpr int L = V::lanes;
    int64_t i = 0;
    for (; i + L <= d; i += L) {
      const typename V::reg x0 = V::template load<Bf16>(v0 + i);
      const typename V::reg x1 = V::template load<Bf16>(v1 + i);
      const typename V::reg x2 = V::template load<Bf16>(v2 + i);
      const typename V::reg x3 = V::template load<Bf16>(v3 + i);
      for (int g = 0; g < G; ++g) {
        float* a = acc + g * d + i;
        typename V::reg sum = V::fma(w[g][0], x0, V::loadf(a));
        sum = V::fma(w[g][1], x1, sum);
        sum = V::fma(w[g][2], x2, sum);
        V::storef(a, V::fma(w[g][3], x3, sum));
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
      const typename V::reg w = V::set1(p[g * p_stride + j]);
      float* a = acc + g * d;
      int64_t i = 0;
      for (; i + V::lanes <= d; i += V::lanes)
        V::storef(a + i, V::fma(w, V::template load<Bf16>(vrow + i), V::loadf(a + i)));
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

template <typename V, int G, bool Bf16, typename T>
void attend_block(const float* q, int64_t q_stride, const T* k, int64_t k_stride, const T* v,
                  int64_t v_stride, const int32_t* live, int64_t n, int64_t d, float scale,
                  float* scores, float* acc) {
  float top[G];
  scores_block<V, G, Bf16>(q, q_stride, k, k_stride, live, n, d, scale, scores, n, top);
  float inverse[G];
  for (int g = 0; g < G; ++g) {
    const float total = n ? exp_shifted(scores + g * n, n, top[g]) : 0.f;
    inverse[g] = total > 0.f ? 1.f / total : 0.f;  // a row that may see no key gets zeros
  }
  values_block<V, G, Bf16>(scores, n, v, v_stride, live, n, d, acc);
  for (int g = 0; g < G; ++g)
    for (int64_t i = 0; i < d; ++i) acc[g * d + i] *= inverse[g];
}

// attend_block for gn (1..G) rows.
template <typename V, int G, bool Bf16, typename T>
void attend_rows(int64_t gn, const float* q, int64_t q_stride, const T* k, int64_t k_stride,
                 const T* v, int64_t v_stride, const int32_t* live, int64_t n, int64_t d,
                 float scale, float* scores, float* acc) {
  if constexpr (G > 1)
    if (gn < G)
      return attend_rows<V, G - 1, Bf16>(gn, q, q_stride, k, k_stride, v, v_stride, live, n, d,
                                         scale, scores, acc);
  attend_block<V, G, Bf16>(q, q_stride, k, k_stride, v, v_stride, live, n, d, scale, scores,
                           acc);
}

template <typename V, bool Bf16, typename T>
void attend(const float* q, int64_t q_stride, int64_t groups, const T* k, int64_t k_stride,
            const T* v, int64_t v_stride, const uint8_t* allowed, int64_t mask_stride,
            int64_t keys, int64_t d, float scale, float* scores, float* acc, int32_t* live) {
  int64_t n = 0;
  for (int64_t t = 0; t < keys; ++t)
    if (allowed[t * mask_stride]) live[n++] = static_cast<int32_t>(t);
  for (int64_t g0 = 0; g0 < groups; g0 += kAttendGroupBlock) {
    const int64_t gn = groups - g0 < kAttendGroupBlock ? groups - g0 : kAttendGroupBlock;
    const float* qg = q + g0 * q_stride;
    float* ag = acc + g0 * d;
    attend_rows<V, kAttendGroupBlock, Bf16>(gn, qg, q_stride, k, k_stride, v, v_stride, live,
                                            n, d, scale, scores, ag);
  }
}

}  // namespace
}  // namespace decode
}  // namespace qwen3core_cpu
