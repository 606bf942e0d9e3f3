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
#include "a8_kernels.h"

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

// Integer dots for int8 activations (a8_kernels.h) with vpmaddubsw (unsigned x signed bytes,
// pairs summed to saturating int16) and vpmaddwd by ones (int16 pairs to int32). No pair can
// saturate: int4 nibbles give at most 15 * 127 * 2; int8 weights go through the sign trick
// (|qw| as unsigned, the activation with qw's sign: at most 128 * 127 * 2 = 32512).
struct Avx2Int {
  using ireg = __m256i;
  using freg = __m256;
  static constexpr int lanes = 8;
  static constexpr int32_t kQ8Bias = 0;  // dot_q8 multiplies qw itself
  static ireg izero() { return _mm256_setzero_si256(); }
  static ireg iload(const void* p) {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  }
  static ireg iadd(ireg a, ireg b) { return _mm256_add_epi32(a, b); }
  static ireg isub(ireg a, ireg b) { return _mm256_sub_epi32(a, b); }
  static ireg imul(ireg a, ireg b) { return _mm256_mullo_epi32(a, b); }
  static ireg iset1(int32_t v) { return _mm256_set1_epi32(v); }
  static freg to_float(ireg v) { return _mm256_cvtepi32_ps(v); }
  static ireg load_z8(const int8_t* p) {
    return _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
  }
  static ireg pairs_to_int32(ireg p16) { return _mm256_madd_epi16(p16, _mm256_set1_epi16(1)); }
  // Stored bytes qw + 128 -> qw (signed).
  static ireg q8_weights(ireg stored) {
    return _mm256_xor_si256(stored, _mm256_set1_epi8(static_cast<char>(0x80)));
  }
  static ireg dot_q8(ireg acc, ireg w, int32_t x4) {
    const ireg x = _mm256_set1_epi32(x4);
    return _mm256_add_epi32(
        acc, pairs_to_int32(_mm256_maddubs_epi16(_mm256_abs_epi8(w), _mm256_sign_epi8(x, w))));
  }
  static ireg dot_q4(ireg acc, ireg nibbles, int32_t x4) {
    return _mm256_add_epi32(
        acc, pairs_to_int32(_mm256_maddubs_epi16(nibbles, _mm256_set1_epi32(x4))));
  }
  static ireg lo_nibbles(ireg w) { return _mm256_and_si256(w, _mm256_set1_epi8(0x0F)); }
  static ireg hi_nibbles(ireg w) {
    return _mm256_and_si256(_mm256_srli_epi32(w, 4), _mm256_set1_epi8(0x0F));
  }
  static freg fzero() { return _mm256_setzero_ps(); }
  static freg fset1(float v) { return _mm256_set1_ps(v); }
  static freg fload(const float* p) { return _mm256_loadu_ps(p); }
  static void fstore(float* p, freg v) { _mm256_storeu_ps(p, v); }
  static freg fma(freg a, freg b, freg c) { return _mm256_fmadd_ps(a, b, c); }
  static freg load_f16(const uint16_t* p) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
};

// Round each of a block's 32 float32 values v divided by s to the nearest integer (ties to
// even), clamp to +-127, and store them as int8 bytes in input order, four to an int32 word
// (dst[j * stride] = inputs 4j..4j+3). Returns the sum of the levels.
inline int32_t quantize_block(const float* v, float s, int32_t* dst, int64_t stride) {
  const __m256 sv = _mm256_set1_ps(s), hi = _mm256_set1_ps(127.0f), lo = _mm256_set1_ps(-127.0f);
  __m256i q[4];
  __m256 total = _mm256_setzero_ps();
  for (int i = 0; i < 4; ++i) {
    __m256 level = _mm256_round_ps(_mm256_div_ps(_mm256_loadu_ps(v + 8 * i), sv),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    level = _mm256_min_ps(_mm256_max_ps(level, lo), hi);
    total = _mm256_add_ps(total, level);  // integers below 2^24: exact
    q[i] = _mm256_cvtps_epi32(level);
  }
  // Saturating packs (no-ops on -127..127) interleave 128-bit lanes: words come out as inputs
  // 0-3, 8-11, 16-19, 24-27, 4-7, 12-15, ...; the permutation puts them in input order.
  const __m256i bytes = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]),
                                           _mm256_packs_epi32(q[2], q[3]));
  const __m256i words = _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 5, 2, 6,
                                                                             3, 7));
  alignas(32) int32_t out[8];
  _mm256_store_si256(reinterpret_cast<__m256i*>(out), words);
  for (int j = 0; j < 8; ++j) dst[j * stride] = out[j];
  alignas(32) float sums[8];
  _mm256_store_ps(sums, total);
  float sum = 0.0f;
  for (int j = 0; j < 8; ++j) sum += sums[j];
  return static_cast<int32_t>(sum);
}

inline float block_amax(const float* v) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  __m256 m = _mm256_andnot_ps(sign, _mm256_loadu_ps(v));
  for (int i = 1; i < 4; ++i) m = _mm256_max_ps(m, _mm256_andnot_ps(sign, _mm256_loadu_ps(v + 8 * i)));
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, m);
  float amax = lanes[0];
  for (int j = 1; j < 8; ++j) amax = lanes[j] > amax ? lanes[j] : amax;
  return amax;
}

}  // namespace

void quantize_activations(const ActRows& a, int64_t r0, int64_t r1) {
  alignas(32) float v[kActBlock];
  for (int64_t r = r0; r < r1; ++r) {
    for (int64_t b = 0; b < a.blocks; ++b) {
      const int64_t start = b * kActBlock;
      const int64_t n = a.k - start < kActBlock ? a.k - start : kActBlock;
      if (a.bf16) {
        const uint16_t* row = static_cast<const uint16_t*>(a.x) + r * a.row_stride + start;
        if (n == kActBlock) {
          for (int i = 0; i < 4; ++i) {
            const __m256i h = _mm256_cvtepu16_epi32(
                _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 8 * i)));
            _mm256_store_ps(v + 8 * i, _mm256_castsi256_ps(_mm256_slli_epi32(h, 16)));
          }
        } else {
          for (int64_t i = 0; i < kActBlock; ++i) {
            const uint32_t bits = i < n ? static_cast<uint32_t>(row[i]) << 16 : 0u;
            __builtin_memcpy(v + i, &bits, 4);
          }
        }
      } else {
        const float* row = static_cast<const float*>(a.x) + r * a.row_stride + start;
        for (int64_t i = 0; i < kActBlock; ++i) v[i] = i < n ? row[i] : 0.0f;
      }
      float s = block_amax(v) / 127.0f;
      if (s == 0.0f) s = 1.0f;
      const int64_t set = r / kRowSlots, slot = r % kRowSlots;
      int32_t* xq = a.xq + (set * a.blocks * (kActBlock / 4) + b * (kActBlock / 4)) * kRowSlots;
      const int64_t at = (set * a.blocks + b) * kRowSlots + slot;
      a.xsum[at] = quantize_block(v, s, xq + slot, kRowSlots);
      a.xscale[at] = s;
    }
  }
}

namespace {

// v[i] = 8 uint32 of row i -> v[j] = element j of the 8 rows.
inline void transpose8x8(__m256i (&v)[8]) {
  __m256i t[8], u[8];
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_epi32(v[i], v[i + 1]);
    t[i + 1] = _mm256_unpackhi_epi32(v[i], v[i + 1]);
  }
  for (int i = 0; i < 8; i += 4) {
    u[i] = _mm256_unpacklo_epi64(t[i], t[i + 2]);
    u[i + 1] = _mm256_unpackhi_epi64(t[i], t[i + 2]);
    u[i + 2] = _mm256_unpacklo_epi64(t[i + 1], t[i + 3]);
    u[i + 3] = _mm256_unpackhi_epi64(t[i + 1], t[i + 3]);
  }
  for (int j = 0; j < 4; ++j) {
    v[j] = _mm256_permute2x128_si256(u[j], u[j + 4], 0x20);
    v[j + 4] = _mm256_permute2x128_si256(u[j], u[j + 4], 0x31);
  }
}

// Sums as linear_op.cpp's sum_of adds them, bit for bit: input i of a group goes to partial
// sum i % 8 (pair kp's two inputs to partials 2 (kp % 4) and 2 (kp % 4) + 1), and the group's
// total is 0 + partial 0 + ... + partial 7, in that order.
void pairs_by_eights(const uint16_t* x, int64_t row_stride, int64_t rows, int64_t k,
                     int64_t group_size, uint32_t* pairs, int64_t stride, float* sums) {
  const int64_t pairs_per_group = group_size / 2;
  const __m256i high = _mm256_set1_epi32(int(0xffff0000u));
  for (int64_t r0 = 0; r0 < rows; r0 += 8) {
    __m256 part[8];
    for (auto& p : part) p = _mm256_setzero_ps();
    for (int64_t kp = 0; kp < k / 2; kp += 8) {
      __m256i v[8];
      for (int i = 0; i < 8; ++i)
        v[i] = _mm256_loadu_si256(
            reinterpret_cast<const __m256i*>(x + (r0 + i) * row_stride + 2 * kp));
      transpose8x8(v);
      for (int j = 0; j < 8; ++j) {
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(pairs + (kp + j) * stride + r0), v[j]);
        if (sums == nullptr) continue;
        const int m = j % 4;  // kp is a multiple of 8
        part[2 * m] = _mm256_add_ps(part[2 * m], _mm256_castsi256_ps(_mm256_slli_epi32(v[j], 16)));
        part[2 * m + 1] =
            _mm256_add_ps(part[2 * m + 1], _mm256_castsi256_ps(_mm256_and_si256(v[j], high)));
      }
      if (sums != nullptr && (kp + 8) % pairs_per_group == 0) {
        __m256 total = _mm256_setzero_ps();
        for (auto& p : part) {
          total = _mm256_add_ps(total, p);
          p = _mm256_setzero_ps();
        }
        _mm256_storeu_ps(sums + ((kp + 8) / pairs_per_group - 1) * stride + r0, total);
      }
    }
  }
}

void a8_q8_tiles(const A8Args& a, int64_t t0, int64_t t1) {
  run_a8_tiles<Avx2Int, 8, kAvx2MaxGroup>(a, t0, t1);
}
void a8_q4_tiles(const A8Args& a, int64_t t0, int64_t t1) {
  run_a8_tiles<Avx2Int, 4, kAvx2MaxGroup>(a, t0, t1);
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
                             q4_tiles, nullptr, nullptr};
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
      __builtin_cpu_supports("f16c"))
    return &set;
  return nullptr;
}

const A8KernelSet* avx2_a8_kernels() {
  static const A8KernelSet set{"avx2", a8_q8_tiles, a8_q4_tiles};
  return avx2_kernels() != nullptr ? &set : nullptr;
}

bool bf16_pairs_by_eights(const uint16_t* x, int64_t row_stride, int64_t rows, int64_t k,
                          int64_t group_size, uint32_t* pairs, int64_t stride, float* sums) {
  static const bool avx2 = __builtin_cpu_supports("avx2");
  if (!avx2 || rows % 8 != 0 || k % 16 != 0 ||
      (sums != nullptr && (group_size <= 0 || group_size % 16 != 0 || k % group_size != 0)))
    return false;
  pairs_by_eights(x, row_stride, rows, k, group_size, pairs, stride, sums);
  return true;
}

}  // namespace qwen3core_cpu

#else  // not x86-64

namespace qwen3core_cpu {
const KernelSet* avx2_kernels() { return nullptr; }
const A8KernelSet* avx2_a8_kernels() { return nullptr; }
void quantize_activations(const ActRows&, int64_t, int64_t) {}  // unreachable: no kernels
bool bf16_pairs_by_eights(const uint16_t*, int64_t, int64_t, int64_t, int64_t, uint32_t*,
                          float*) {
  return false;
}
}  // namespace qwen3core_cpu

#endif
