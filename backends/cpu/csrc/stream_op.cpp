// qwen3core_cpu::stream_read(t) -> int: reads every 64-bit word of a tensor on torch's threads,
// as fast as the memory allows, and returns their XOR (so the reads cannot be optimised away).
// The benchmarks' ceiling: the bandwidth a weight-streaming kernel could reach at best, so it
// reads the fastest way measured here (see kAheadBytes), not the simplest.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>
#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#endif

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace qwen3core_cpu {
namespace {

// Requested this far ahead with prefetchnta: of the read loops tried on an AMD EPYC with
// AVX-512 (0.6B int4 + head's 0.35 GB of packed tensors, 2 threads, one process, 8 rounds):
// 64-bit loads and no prefetch (this function until 2026-11-30) best 43.2 / median 38.6 GB/s,
// the int4 kernel itself at batch 1 44.4 / 42.4 (a "floor" it beat), 512-bit loads 47.0 /
// 41.8, with prefetcht0 4 / 8 / 16 KiB ahead 45.3 / 48.1 / 44.0 (medians 44.4 / 43.7 /
// 43.4), with prefetchnta 2 KiB ahead 49.7 / 44.9. A ceiling must be the fastest read there is.
constexpr int64_t kAheadBytes = 2048;

// XOR of the 64-bit words [begin, end) of `words`, 256 bytes a step in four independent
// chains (loads, not XORs, are the limit), the rest one word at a time.
template <class Loads>
uint64_t xor_words(const uint64_t* words, int64_t begin, int64_t end, Loads loads) {
  int64_t i = begin;
  uint64_t sum = loads(words, i, end);
  for (; i < end; ++i) sum ^= words[i];
  return sum;
}

uint64_t loads_plain(const uint64_t*, int64_t&, int64_t) { return 0; }  // the word loop does all

#if defined(__x86_64__) || defined(_M_X64)
__attribute__((target("avx512f"))) uint64_t loads_avx512(const uint64_t* w, int64_t& i,
                                                          int64_t end) {
  __m512i a = _mm512_setzero_si512(), b = a, c = a, d = a;
  for (; i + 32 <= end; i += 32) {
    const char* p = reinterpret_cast<const char*>(w + i);
    for (int line = 0; line < 4; ++line) _mm_prefetch(p + kAheadBytes + 64 * line, _MM_HINT_NTA);
    a = _mm512_xor_si512(a, _mm512_loadu_si512(p));
    b = _mm512_xor_si512(b, _mm512_loadu_si512(p + 64));
    c = _mm512_xor_si512(c, _mm512_loadu_si512(p + 128));
    d = _mm512_xor_si512(d, _mm512_loadu_si512(p + 192));
  }
  alignas(64) uint64_t lanes[8];
  _mm512_store_si512(lanes, _mm512_xor_si512(_mm512_xor_si512(a, b), _mm512_xor_si512(c, d)));
  uint64_t sum = 0;
  for (uint64_t lane : lanes) sum ^= lane;
  return sum;
}

__attribute__((target("avx2"))) uint64_t loads_avx2(const uint64_t* w, int64_t& i, int64_t end) {
  __m256i a = _mm256_setzero_si256(), b = a, c = a, d = a;
  for (; i + 16 <= end; i += 16) {
    const char* p = reinterpret_cast<const char*>(w + i);
    _mm_prefetch(p + kAheadBytes, _MM_HINT_NTA);
    _mm_prefetch(p + kAheadBytes + 64, _MM_HINT_NTA);
    a = _mm256_xor_si256(a, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
    b = _mm256_xor_si256(b, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 32)));
    c = _mm256_xor_si256(c, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 64)));
    d = _mm256_xor_si256(d, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 96)));
  }
  alignas(32) uint64_t lanes[4];
  _mm256_store_si256(reinterpret_cast<__m256i*>(lanes),
                     _mm256_xor_si256(_mm256_xor_si256(a, b), _mm256_xor_si256(c, d)));
  return lanes[0] ^ lanes[1] ^ lanes[2] ^ lanes[3];
}
#endif

int64_t stream_read(const at::Tensor& t) {
  TORCH_CHECK(t.device().is_cpu() && t.is_contiguous(),
              "stream_read takes a contiguous CPU tensor");
  const auto* words = static_cast<const uint64_t*>(t.data_ptr());
  const int64_t n = t.nbytes() / sizeof(uint64_t);
#if defined(__x86_64__) || defined(_M_X64)
  // QWEN3CORE_CPU_ISA=avx2 forces the AVX2 loop, as it forces the kernels' (linear_op.cpp).
  static const char* forced = std::getenv("QWEN3CORE_CPU_ISA");
  static const bool avx2_only = forced != nullptr && std::strcmp(forced, "avx2") == 0;
  static const auto loads = __builtin_cpu_supports("avx512f") && !avx2_only ? loads_avx512
                            : __builtin_cpu_supports("avx2")  ? loads_avx2
                                                               : loads_plain;
#else
  static const auto loads = loads_plain;
#endif
  std::vector<uint64_t> partial(at::get_num_threads(), 0);
  at::parallel_for(0, n, 1 << 16, [&](int64_t begin, int64_t end) {
    partial[at::get_thread_num()] ^= xor_words(words, begin, end, loads);
  });
  uint64_t sum = 0;
  for (uint64_t p : partial) sum ^= p;
  return static_cast<int64_t>(sum);
}

}  // namespace
}  // namespace qwen3core_cpu

TORCH_LIBRARY_FRAGMENT(qwen3core_cpu, m) {
  m.def("stream_read(Tensor t) -> int");
}

TORCH_LIBRARY_IMPL(qwen3core_cpu, CPU, m) { m.impl("stream_read", &qwen3core_cpu::stream_read); }
