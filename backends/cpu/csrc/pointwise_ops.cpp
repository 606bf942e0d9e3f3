// The cpu backend's row-wise operators: RMSNorm, rotary embedding and SiLU-multiply, each one
// pass over its rows instead of the eager backend's chain of torch operators (casts, powers,
// means, concatenations), whose per-operator dispatch dominates a decode step's small rows.
//
// Numerics follow the eager reference operator by operator: statistics and products in
// float32, then each result rounded to the activation dtype where the eager expression rounds
// it. The only differences left are the order of the float32 sum in RMSNorm and the float32
// cos/sin/exp routines (at most an ulp of float32 apart). This file is compiled without FMA
// flags, so `a * b + c` stays two roundings, as the separate torch operators round it.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/util/BFloat16.h>
#include <torch/library.h>

#include <cmath>
#include <vector>

namespace qwen3core_cpu {
namespace {

// Rows of about this many elements per task, so decode-sized inputs run on the calling thread.
constexpr int64_t kGrainElements = 1 << 15;

// The activation dtype's rounding of a float32 value (identity for float32).
template <typename T>
inline float round_to(float x) {
  return static_cast<float>(static_cast<T>(x));
}

void check_cpu_float(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.device().is_cpu(), name, " must be a CPU tensor, got ", t.device());
  TORCH_CHECK(t.scalar_type() == at::kBFloat16 || t.scalar_type() == at::kFloat, name,
              " must be bfloat16 or float32, got ", t.scalar_type());
}

// ---- RMSNorm: y = weight * dtype(x * rsqrt(mean(x^2) + eps)) over the last dimension. ----

template <typename T>
void rms_norm_rows(const T* x, const T* w, T* y, int64_t rows, int64_t dim, float eps) {
  at::parallel_for(0, rows, std::max<int64_t>(1, kGrainElements / dim), [&](int64_t r0,
                                                                           int64_t r1) {
    std::vector<float> x32(dim);
    for (int64_t r = r0; r < r1; ++r) {
      const T* xr = x + r * dim;
      float sum = 0.f;
      for (int64_t i = 0; i < dim; ++i) {
        x32[i] = static_cast<float>(xr[i]);
        sum += x32[i] * x32[i];
      }
      const float inv = 1.f / std::sqrt(sum / static_cast<float>(dim) + eps);
      T* yr = y + r * dim;
      for (int64_t i = 0; i < dim; ++i)
        yr[i] = static_cast<T>(static_cast<float>(w[i]) * round_to<T>(x32[i] * inv));
    }
  });
}

at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps) {
  check_cpu_float(x, "x");
  TORCH_CHECK(weight.scalar_type() == x.scalar_type() && weight.dim() == 1 &&
                  x.dim() >= 1 && weight.size(0) == x.size(-1),
              "rms_norm: weight must be a [", x.dim() ? x.size(-1) : 0, "] tensor of ",
              x.scalar_type(), ", got ", weight.sizes(), " of ", weight.scalar_type());
  const at::Tensor xc = x.contiguous(), wc = weight.contiguous();
  at::Tensor y = at::empty_like(xc);
  const int64_t dim = x.size(-1), rows = dim ? xc.numel() / dim : 0;
  if (rows == 0) return y;
  if (x.scalar_type() == at::kBFloat16)
    rms_norm_rows(xc.data_ptr<at::BFloat16>(), wc.data_ptr<at::BFloat16>(),
                  y.data_ptr<at::BFloat16>(), rows, dim, static_cast<float>(eps));
  else
    rms_norm_rows(xc.data_ptr<float>(), wc.data_ptr<float>(), y.data_ptr<float>(), rows, dim,
                  static_cast<float>(eps));
  return y;
}

// ---- Rotary embedding ("rotate half") of q and k [B, H, S, D] at positions [B, S]. ----
//   out[i]       = x[i] * cos[i] - x[i + D/2] * sin[i]
//   out[i + D/2] = x[i + D/2] * cos[i] + x[i] * sin[i]
// cos/sin of position * inv_freq in float32, rounded to the dtype; each product and the sum
// rounded to the dtype, as `q * cos + rotate_half(q) * sin` rounds them.

template <typename T>
void rotate_heads(const at::Tensor& in, at::Tensor& out, int64_t b, int64_t s,
                  const float* cos, const float* sin, int64_t half) {
  const T* src = in.data_ptr<T>();
  T* dst = out.data_ptr<T>();
  for (int64_t h = 0; h < in.size(1); ++h) {
    const T* x = src + b * in.stride(0) + h * in.stride(1) + s * in.stride(2);
    T* o = dst + b * out.stride(0) + h * out.stride(1) + s * out.stride(2);
    for (int64_t i = 0; i < half; ++i) {
      const float x1 = static_cast<float>(x[i]), x2 = static_cast<float>(x[i + half]);
      o[i] = static_cast<T>(round_to<T>(x1 * cos[i]) + round_to<T>(-x2 * sin[i]));
      o[i + half] = static_cast<T>(round_to<T>(x2 * cos[i]) + round_to<T>(x1 * sin[i]));
    }
  }
}

template <typename T>
void rotary_tokens(const at::Tensor& q, at::Tensor& q_out, const at::Tensor& k,
                   at::Tensor& k_out, const at::Tensor& positions, const float* inv_freq,
                   float scale) {
  const int64_t batch = q.size(0), seq = q.size(2), half = q.size(3) / 2;
  const int64_t per_token = (q.size(1) + k.size(1)) * q.size(3);
  const int64_t* pos = positions.data_ptr<int64_t>();
  at::parallel_for(0, batch * seq, std::max<int64_t>(1, kGrainElements / per_token),
                   [&](int64_t t0, int64_t t1) {
    std::vector<float> cos(half), sin(half);
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t b = t / seq, s = t % seq;
      const float position = static_cast<float>(pos[b * positions.stride(0) +
                                                    s * positions.stride(1)]);
      for (int64_t i = 0; i < half; ++i) {
        const float angle = position * inv_freq[i];
        // Rope scaling's cos/sin factor (1 for plain RoPE), in float32 before the rounding.
        cos[i] = round_to<T>(std::cos(angle) * scale);
        sin[i] = round_to<T>(std::sin(angle) * scale);
      }
      rotate_heads<T>(q, q_out, b, s, cos.data(), sin.data(), half);
      rotate_heads<T>(k, k_out, b, s, cos.data(), sin.data(), half);
    }
  });
}

std::tuple<at::Tensor, at::Tensor> rotary(const at::Tensor& q, const at::Tensor& k,
                                          const at::Tensor& positions,
                                          const at::Tensor& inv_freq, double scale) {
  check_cpu_float(q, "q");
  TORCH_CHECK(k.scalar_type() == q.scalar_type() && k.device().is_cpu(),
              "rotary: k must be a CPU tensor of q's dtype ", q.scalar_type());
  TORCH_CHECK(q.dim() == 4 && k.dim() == 4 && q.size(0) == k.size(0) &&
                  q.size(2) == k.size(2) && q.size(3) == k.size(3) && q.size(3) % 2 == 0,
              "rotary: q and k must be [B, H, S, D] with the same B, S and even D, got ",
              q.sizes(), " and ", k.sizes());
  TORCH_CHECK(q.stride(3) == 1 && k.stride(3) == 1,
              "rotary: the head dimension of q and k must be contiguous");
  TORCH_CHECK(positions.scalar_type() == at::kLong && positions.dim() == 2 &&
                  positions.size(0) == q.size(0) && positions.size(1) == q.size(2),
              "rotary: positions must be int64 [B, S] = [", q.size(0), ", ", q.size(2),
              "], got ", positions.sizes(), " of ", positions.scalar_type());
  TORCH_CHECK(inv_freq.scalar_type() == at::kFloat && inv_freq.is_contiguous() &&
                  inv_freq.numel() == q.size(3) / 2,
              "rotary: inv_freq must be float32 [D/2]");
  at::Tensor q_out = at::empty_like(q), k_out = at::empty_like(k);  // same strides as inputs
  if (q.numel() == 0 && k.numel() == 0) return {q_out, k_out};
  if (q.scalar_type() == at::kBFloat16)
    rotary_tokens<at::BFloat16>(q, q_out, k, k_out, positions, inv_freq.data_ptr<float>(),
                                static_cast<float>(scale));
  else
    rotary_tokens<float>(q, q_out, k, k_out, positions, inv_freq.data_ptr<float>(),
                         static_cast<float>(scale));
  return {q_out, k_out};
}

// ---- silu_mul(gate_up [..., 2I]) -> [..., I]: dtype(silu(gate)) * up, rounded. ----

template <typename T>
void silu_mul_rows(const T* gu, T* out, int64_t rows, int64_t inter) {
  at::parallel_for(0, rows, std::max<int64_t>(1, kGrainElements / inter), [&](int64_t r0,
                                                                             int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const T* gate = gu + r * 2 * inter;
      const T* up = gate + inter;
      T* o = out + r * inter;
      for (int64_t i = 0; i < inter; ++i) {
        const float g = static_cast<float>(gate[i]);
        o[i] = static_cast<T>(round_to<T>(g / (1.f + std::exp(-g))) *
                              static_cast<float>(up[i]));
      }
    }
  });
}

at::Tensor silu_mul(const at::Tensor& gate_up) {
  check_cpu_float(gate_up, "gate_up");
  TORCH_CHECK(gate_up.dim() >= 1 && gate_up.size(-1) % 2 == 0,
              "silu_mul: the last dimension holds gate then up and must be even, got ",
              gate_up.sizes());
  const at::Tensor gu = gate_up.contiguous();
  std::vector<int64_t> shape(gu.sizes().begin(), gu.sizes().end());
  const int64_t inter = shape.back() / 2;
  shape.back() = inter;
  at::Tensor out = at::empty(shape, gu.options());
  const int64_t rows = inter ? out.numel() / inter : 0;
  if (rows == 0) return out;
  if (gu.scalar_type() == at::kBFloat16)
    silu_mul_rows(gu.data_ptr<at::BFloat16>(), out.data_ptr<at::BFloat16>(), rows, inter);
  else
    silu_mul_rows(gu.data_ptr<float>(), out.data_ptr<float>(), rows, inter);
  return out;
}

}  // namespace
}  // namespace qwen3core_cpu

TORCH_LIBRARY_FRAGMENT(qwen3core_cpu, m) {
  m.def("rms_norm(Tensor x, Tensor weight, float eps) -> Tensor");
  m.def("rotary(Tensor q, Tensor k, Tensor positions, Tensor inv_freq, float scale=1.0) -> "
        "(Tensor, Tensor)");
  m.def("silu_mul(Tensor gate_up) -> Tensor");
}

TORCH_LIBRARY_IMPL(qwen3core_cpu, CPU, m) {
  m.impl("rms_norm", &qwen3core_cpu::rms_norm);
  m.impl("rotary", &qwen3core_cpu::rotary);
  m.impl("silu_mul", &qwen3core_cpu::silu_mul);
}
