// qwen3core_cpu::quantize_groups(w, group_size, lo, hi, zero_point) -> (q, scales, zeros)
//
// The first-party schemes' quantization (qwen3core/quant/schemes.py, QuantScheme.quantize) in
// one pass over the weight, with no float32 copy of it: per output row and group of
// `group_size` inputs (the last one may be short: its missing inputs count as zeros),
//   zero point: w_min = min(min(w), 0), w_max = max(max(w), 0)
//               scale = half((w_max - w_min) / (hi - lo)); s = scale or 1 where it is 0
//               zero = clamp(round(-w_min / s), lo, hi); q = clamp(round(w / s) + zero, lo, hi)
//   symmetric:  scale = half(max(|w|) / hi); s as above; q = clamp(round(w / s), lo, hi)
// in float32 arithmetic, round half to even, float16 rounded to nearest even: the same
// operations in the same order as the reference, so the same bits (tests/quant/
// test_quantize_op.py). w is float32, bfloat16 or float16 [out, in] (any strides); q int8
// [out, in], scales float16 [out, groups], zeros int8 [out, groups] (empty when symmetric).
// A weight with a NaN or an infinity is refused: it has no levels.
// Float compares may then be vectorized as selects (GCC otherwise keeps them as branches, in
// case a compare raised an exception someone observes); it changes no result: the rounding mode
// is untouched and nothing is reassociated.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#endif
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <tuple>
#include <vector>

namespace qwen3core_cpu {
namespace {

// round(v) half to even, as torch.round, for the level range: v is first clamped to +-256 (any
// level past it clamps to the same end of lo..hi, as the zero point added is within -128..127),
// then 1.5 * 2^23 added and taken away again, which rounds to an integer in the default
// (nearest-even) mode: no libm call, so the loops vectorize. Exact for |v| < 2^22.
inline float round_level(float v) {
  constexpr float kMagic = 12582912.0f;  // 1.5 * 2^23
  v = std::min(std::max(v, -256.0f), 256.0f);
  return (v + kMagic) - kMagic;
}

// One group of n values (already float32, contiguous): its scale (and zero point), and its
// levels into q. Returns false if a value is not finite.
bool quantize_group(const float* v, int64_t n, float lo, float hi, bool zero_point, int8_t* q,
                    c10::Half* scale_out, int8_t* zero_out) {
  bool ok = true;
  float mn = 0.0f, mx = 0.0f;  // the group's extremes with 0 (a symmetric scale's max |w| is
  for (int64_t k = 0; k < n; ++k) {  // max(0 - mn, mx), exactly)
    ok &= std::isfinite(v[k]);
    mn = v[k] < mn ? v[k] : mn;
    mx = v[k] > mx ? v[k] : mx;
  }
  float s, zero = 0.0f;
  if (zero_point) {
    const c10::Half scale((mx - mn) / (hi - lo));
    *scale_out = scale;
    s = static_cast<float>(scale);
    if (s == 0.0f) s = 1.0f;
    zero = std::min(std::max(round_level(-mn / s), lo), hi);
    *zero_out = static_cast<int8_t>(static_cast<int>(zero));
  } else {
    const c10::Half scale(std::max(0.0f - mn, mx) / hi);  // 0 - mn: never -0
    *scale_out = scale;
    s = static_cast<float>(scale);
    if (s == 0.0f) s = 1.0f;
  }
  for (int64_t k = 0; k < n; ++k) {  // contiguous, no calls: vectorized
    const float level = std::min(std::max(round_level(v[k] / s) + zero, lo), hi);
    q[k] = static_cast<int8_t>(static_cast<int>(level));
  }
  return ok;
}

template <typename T>
void quantize_rows(const at::Tensor& w, int64_t gs, float lo, float hi, bool zero_point,
                   at::Tensor& q, at::Tensor& scales, at::Tensor& zeros, bool& finite) {
  const int64_t out = w.size(0), in = w.size(1), groups = (in + gs - 1) / gs;
  const T* src = static_cast<const T*>(w.data_ptr());
  const int64_t rs = w.stride(0), cs = w.stride(1);
  int8_t* qd = q.data_ptr<int8_t>();
  auto* sd = reinterpret_cast<c10::Half*>(scales.data_ptr());
  int8_t* zd = zero_point ? zeros.data_ptr<int8_t>() : nullptr;
  std::atomic<bool> all_finite{true};
  at::parallel_for(0, out, 16, [&](int64_t begin, int64_t end) {
    std::vector<float> row(in);  // one row in float32, contiguous, per thread
    bool ok = true;
    for (int64_t o = begin; o < end; ++o) {
      const T* from = src + o * rs;
      if (cs == 1) {
        for (int64_t k = 0; k < in; ++k) row[k] = static_cast<float>(from[k]);
      } else {
        for (int64_t k = 0; k < in; ++k) row[k] = static_cast<float>(from[k * cs]);
      }
      for (int64_t g = 0; g < groups; ++g) {
        const int64_t k0 = g * gs, n = std::min(in, k0 + gs) - k0;
        ok &= quantize_group(row.data() + k0, n, lo, hi, zero_point, qd + o * in + k0,
                             sd + o * groups + g, zero_point ? zd + o * groups + g : nullptr);
      }
    }
    if (!ok) all_finite = false;
  });
  finite = all_finite;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> quantize_groups(const at::Tensor& w,
                                                               int64_t group_size, int64_t lo,
                                                               int64_t hi, bool zero_point) {
  TORCH_CHECK(w.device().is_cpu() && w.dim() == 2, "quantize_groups takes [out, in] on the CPU");
  TORCH_CHECK(group_size >= 1 && -128 <= lo && lo < hi && hi <= 127,
              "quantize_groups: bad group size or level range");
  const int64_t out = w.size(0), in = w.size(1), groups = (in + group_size - 1) / group_size;
  auto options = w.options();
  at::Tensor q = at::empty({out, in}, options.dtype(at::kChar));
  at::Tensor scales = at::empty({out, groups}, options.dtype(at::kHalf));
  at::Tensor zeros = at::empty({zero_point ? out : 0, zero_point ? groups : 0},
                               options.dtype(at::kChar));
  bool finite = true;
  const float flo = static_cast<float>(lo), fhi = static_cast<float>(hi);
  switch (w.scalar_type()) {
    case at::kFloat:
      quantize_rows<float>(w, group_size, flo, fhi, zero_point, q, scales, zeros, finite);
      break;
    case at::kBFloat16:
      quantize_rows<c10::BFloat16>(w, group_size, flo, fhi, zero_point, q, scales, zeros,
                                   finite);
      break;
    case at::kHalf:
      quantize_rows<c10::Half>(w, group_size, flo, fhi, zero_point, q, scales, zeros, finite);
      break;
    default:
      TORCH_CHECK(false, "quantize_groups takes float32, bfloat16 or float16 weights");
  }
  TORCH_CHECK(finite, "quantize_groups: the weight holds a NaN or an infinity");
  return {q, scales, zeros};
}

}  // namespace
}  // namespace qwen3core_cpu

TORCH_LIBRARY_FRAGMENT(qwen3core_cpu, m) {
  m.def("quantize_groups(Tensor w, int group_size, int lo, int hi, bool zero_point) -> "
        "(Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(qwen3core_cpu, CPU, m) {
  m.impl("quantize_groups", &qwen3core_cpu::quantize_groups);
}
