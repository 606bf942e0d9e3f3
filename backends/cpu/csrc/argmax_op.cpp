// qwen3core_cpu::argmax(logits [..., V]) -> int64 [...]: the greedy token of each row, the
// same index torch.argmax(dim=-1) returns (the lowest index among equal maxima; the first NaN
// when a row has one), in two vectorised passes over the row instead of torch's scalar
// index-tracking reduction (~0.5 ms over a bfloat16 row of 151936 logits, ~10 us here).
//
// Pass 1 finds the largest value as an integer key whose order is the floats' order (the sign
// bit flips the other bits of a negative number) and notes any NaN. Pass 2 finds the first
// element equal to it as a float (so -0.0 and +0.0 tie, as torch's comparison has them), a
// block at a time: the block's test vectorises, only the block holding the answer is scanned.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cstdint>
#include <limits>

namespace qwen3core_cpu {
namespace {

// The vectorisable loops run with AVX2 (the cpu backend's minimum; build.cpu_lacks).
#define QWEN3CORE_AVX2 __attribute__((target("avx2")))

constexpr int64_t kBlock = 256;

// Bits (U) -> the order key (S): negative floats map below positive ones, in order.
template <typename U, typename S>
inline S order_key(U bits) {
  constexpr int kShift = sizeof(U) * 8 - 1;
  const S s = static_cast<S>(bits);
  return static_cast<S>(s ^ ((s >> kShift) & std::numeric_limits<S>::max()));
}

template <typename U, typename S>
QWEN3CORE_AVX2 int64_t argmax_row(const U* x, int64_t n) {
  constexpr U kMagnitude = static_cast<U>(std::numeric_limits<S>::max());
  constexpr U kInfBits = sizeof(U) == 2 ? U(0x7F80) : U(0x7F800000u);
  S best = std::numeric_limits<S>::min();
  U nan = 0;
  for (int64_t i = 0; i < n; ++i) {
    const S key = order_key<U, S>(x[i]);
    best = key > best ? key : best;
    nan |= static_cast<U>((x[i] & kMagnitude) > kInfBits);
  }
  if (nan) {  // torch.argmax: a NaN is larger than everything, the first one wins
    for (int64_t i = 0; i < n; ++i)
      if ((x[i] & kMagnitude) > kInfBits) return i;
  }
  // The bits of the largest value; a zero matches either sign.
  const U target = static_cast<U>(order_key<U, S>(static_cast<U>(best)));
  const bool zero = (target & kMagnitude) == 0;
  const U mask = zero ? kMagnitude : static_cast<U>(~U(0));
  const U want = static_cast<U>(target & mask);
  for (int64_t b = 0; b < n; b += kBlock) {
    const int64_t e = b + kBlock < n ? b + kBlock : n;
    U hit = 0;
    for (int64_t i = b; i < e; ++i) hit |= static_cast<U>((x[i] & mask) == want);
    if (hit)
      for (int64_t i = b; i < e; ++i)
        if ((x[i] & mask) == want) return i;
  }
  TORCH_CHECK(false, "qwen3core_cpu::argmax found no maximum (a bug)");
}

at::Tensor argmax(const at::Tensor& logits) {
  TORCH_CHECK(logits.device().is_cpu(), "qwen3core_cpu::argmax runs on CPU tensors, got ",
              logits.device());
  const bool bf16 = logits.scalar_type() == at::kBFloat16;
  TORCH_CHECK(bf16 || logits.scalar_type() == at::kFloat,
              "qwen3core_cpu::argmax takes bfloat16 or float32 logits, not ",
              logits.scalar_type());
  TORCH_CHECK(logits.dim() >= 1 && logits.size(-1) > 0,
              "qwen3core_cpu::argmax needs a non-empty last dimension, got shape ",
              logits.sizes());
  const int64_t n = logits.size(-1);
  const at::Tensor x = logits.reshape({-1, n}).contiguous();
  const int64_t rows = x.size(0);
  at::Tensor out = at::empty({rows}, logits.options().dtype(at::kLong));
  int64_t* idx = out.data_ptr<int64_t>();
  const auto* base = static_cast<const uint8_t*>(x.data_ptr());
  const int64_t row_bytes = n * x.element_size();
  // One row runs on the calling thread (a wakeup costs more than the ~10 us it would save).
  at::parallel_for(0, rows, rows > 1 ? 1 : rows, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const uint8_t* row = base + r * row_bytes;
      idx[r] = bf16 ? argmax_row<uint16_t, int16_t>(reinterpret_cast<const uint16_t*>(row), n)
                    : argmax_row<uint32_t, int32_t>(reinterpret_cast<const uint32_t*>(row), n);
    }
  });
  return out.view(logits.sizes().slice(0, logits.dim() - 1));
}

}  // namespace
}  // namespace qwen3core_cpu

TORCH_LIBRARY_FRAGMENT(qwen3core_cpu, m) { m.def("argmax(Tensor logits) -> Tensor"); }

TORCH_LIBRARY_IMPL(qwen3core_cpu, CPU, m) { m.impl("argmax", &qwen3core_cpu::argmax); }
