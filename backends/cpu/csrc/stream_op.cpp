// qwen3core_cpu::stream_read(t) -> int: reads every byte of a tensor on torch's threads, as
// fast as the memory allows, and returns a checksum (so the reads cannot be optimised away).
// The benchmark's ceiling: the bandwidth a weight-streaming kernel could reach at best.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cstdint>
#include <vector>

namespace qwen3core_cpu {
namespace {

int64_t stream_read(const at::Tensor& t) {
  TORCH_CHECK(t.device().is_cpu() && t.is_contiguous(),
              "stream_read takes a contiguous CPU tensor");
  const auto* words = static_cast<const uint64_t*>(t.data_ptr());
  const int64_t n = t.nbytes() / sizeof(uint64_t);
  std::vector<uint64_t> partial(at::get_num_threads(), 0);
  at::parallel_for(0, n, 1 << 16, [&](int64_t begin, int64_t end) {
    uint64_t a = 0, b = 0, c = 0, d = 0;  // independent chains: loads, not adds, are the limit
    int64_t i = begin;
    for (; i + 4 <= end; i += 4) {
      a ^= words[i];
      b ^= words[i + 1];
      c ^= words[i + 2];
      d ^= words[i + 3];
    }
    for (; i < end; ++i) a ^= words[i];
    partial[at::get_thread_num()] ^= a ^ b ^ c ^ d;
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
