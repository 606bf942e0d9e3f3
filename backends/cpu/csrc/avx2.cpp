// AVX2 + FMA kernels: 8 float32 lanes, a 16-output tile is two registers.
#include "kernels.h"

#if defined(__x86_64__) || defined(_M_X64)

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
#endif

#include <immintrin.h>

#include "tile_kernels.h"
#include "quant_kernels.h"

namespace qwen3core_cpu {
namespace {

struct Avx2 {
  using reg = __m256;
  static constexpr int lanes = 8;
  static constexpr int num_regs = 16;
  static reg zero() { return _mm256_setzero_ps(); }
  static reg load(const float* p) { return _mm256_loadu_ps(p); }
  static reg bcast(const float* p) { return _mm256_broadcast_ss(p); }
  static reg fma(reg a, reg b, reg c) { return _mm256_fmadd_ps(a, b, c); }
  static reg add(reg a, reg b) { return _mm256_add_ps(a, b); }
  static void store(float* p, reg v) { _mm256_storeu_ps(p, v); }
  // 8 lanes of (even, odd) bfloat16 pairs -> float32: bfloat16 is the top half of a float32.
  static void bf16_pairs(const uint16_t* p, reg& even, reg& odd) {
    const __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    even = _mm256_castsi256_ps(_mm256_slli_epi32(raw, 16));
    odd = _mm256_castsi256_ps(_mm256_and_si256(raw, _mm256_set1_epi32(int(0xffff0000u))));
  }
  static reg fnma(reg a, reg b, reg c) { return _mm256_fnmadd_ps(a, b, c); }
  static reg load_i8(const int8_t* p) {
    return _mm256_cvtepi32_ps(
        _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
  }
  using ireg = __m256i;
  static ireg load_words(const uint32_t* p) {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  }
  static reg nibble(ireg words, int shift) {
    return _mm256_cvtepi32_ps(
        _mm256_and_si256(_mm256_srli_epi32(words, shift), _mm256_set1_epi32(15)));
  }
  static reg load_f16(const uint16_t* p) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
};

// 4 rows x 2 registers = 8 accumulators: the FMA latency (4) times its throughput (2/cycle),
// leaving registers for the weights and the broadcast activations.
constexpr int kAvx2MaxGroup = 4;

void bf16_tiles(const GemvArgs& a, int64_t t0, int64_t t1) {
  run_tiles<Avx2, Bf16Kernel, kAvx2MaxGroup, uint16_t, float>(a, t0, t1);
}
void f32_tiles(const GemvArgs& a, int64_t t0, int64_t t1) {
  run_tiles<Avx2, F32Kernel, kAvx2MaxGroup, float, float>(a, t0, t1);
}
void q8_tiles(const QGemvArgs& a, int64_t t0, int64_t t1) {
  run_q_tiles<Avx2, 8, kAvx2MaxGroup>(a, t0, t1);
}
void q4_tiles(const QGemvArgs& a, int64_t t0, int64_t t1) {
  run_q_tiles<Avx2, 4, kAvx2MaxGroup>(a, t0, t1);
}

}  // namespace
}  // namespace qwen3core_cpu

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

namespace qwen3core_cpu {

// Compiled for the baseline target: it must run on any x86-64 to say no.
const KernelSet* avx2_kernels() {
  static const KernelSet set{"avx2", XFormat::Float32KMajor, bf16_tiles, f32_tiles, q8_tiles,
                             q4_tiles, nullptr};
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
      __builtin_cpu_supports("f16c"))
    return &set;
  return nullptr;
}

}  // namespace qwen3core_cpu

#else  // not x86-64

namespace qwen3core_cpu {
const KernelSet* avx2_kernels() { return nullptr; }
}  // namespace qwen3core_cpu

#endif
