// AVX-512 VNNI integer kernels for int8-quantized activations (a8_kernels.h): vpdpbusd
// multiplies 4 unsigned weight bytes by 4 signed activation bytes and adds the four products
// to a 32-bit lane, 64 multiply-adds per instruction. A file of its own so that only these
// functions are compiled for VNNI.
#include "kernels.h"

#if defined(__x86_64__) || defined(_M_X64)

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512vnni,f16c"))), \
                             apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vnni,f16c")
#endif

#include <immintrin.h>

#include "tile_kernels.h"
#include "a8_kernels.h"

namespace qwen3core_cpu {
namespace {

struct Vnni512 {
  using ireg = __m512i;
  using freg = __m512;
  static constexpr int lanes = 16;
  static constexpr int32_t kQ8Bias = 128;  // dot_q8 multiplies qw + 128
  static ireg izero() { return _mm512_setzero_si512(); }
  static ireg iload(const void* p) { return _mm512_loadu_si512(p); }
  static ireg iadd(ireg a, ireg b) { return _mm512_add_epi32(a, b); }
  static ireg isub(ireg a, ireg b) { return _mm512_sub_epi32(a, b); }
  static ireg imul(ireg a, ireg b) { return _mm512_mullo_epi32(a, b); }
  static ireg iset1(int32_t v) { return _mm512_set1_epi32(v); }
  static freg to_float(ireg v) { return _mm512_cvtepi32_ps(v); }
  static ireg load_z8(const int8_t* p) {
    return _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
  static ireg q8_weights(ireg stored) { return stored; }
  static ireg dot_q8(ireg acc, ireg w, int32_t x4) {
    return _mm512_dpbusd_epi32(acc, w, _mm512_set1_epi32(x4));
  }
  static ireg dot_q4(ireg acc, ireg nibbles, int32_t x4) {
    return _mm512_dpbusd_epi32(acc, nibbles, _mm512_set1_epi32(x4));
  }
  static ireg lo_nibbles(ireg w) { return _mm512_and_si512(w, _mm512_set1_epi8(0x0F)); }
  static ireg hi_nibbles(ireg w) {
    return _mm512_and_si512(_mm512_srli_epi32(w, 4), _mm512_set1_epi8(0x0F));
  }
  static freg fzero() { return _mm512_setzero_ps(); }
  static freg fset1(float v) { return _mm512_set1_ps(v); }
  static freg fload(const float* p) { return _mm512_loadu_ps(p); }
  static void fstore(float* p, freg v) { _mm512_storeu_ps(p, v); }
  static freg fma(freg a, freg b, freg c) { return _mm512_fmadd_ps(a, b, c); }
  static freg load_f16(const uint16_t* p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }
};

// 8 rows: 8 int32 and 8 float32 accumulators, a third of the register file.
constexpr int kVnniMaxGroup = 8;

void q8_tiles(const A8Args& a, int64_t t0, int64_t t1) {
  run_a8_tiles<Vnni512, 8, kVnniMaxGroup>(a, t0, t1);
}
void q4_tiles(const A8Args& a, int64_t t0, int64_t t1) {
  run_a8_tiles<Vnni512, 4, kVnniMaxGroup>(a, t0, t1);
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
const A8KernelSet* avx512_a8_kernels() {
  static const A8KernelSet set{"avx512vnni", q8_tiles, q4_tiles};
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vnni"))
    return &set;
  return nullptr;
}

}  // namespace qwen3core_cpu

#else  // not x86-64

namespace qwen3core_cpu {
const A8KernelSet* avx512_a8_kernels() { return nullptr; }
}  // namespace qwen3core_cpu

#endif
