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

#include <algorithm>
#include <cmath>
#include <type_traits>
#include <vector>

#include "decode_kernels.h"

namespace qwen3core_cpu {
namespace {

// Rows of about this many elements per task, so decode-sized inputs run on the calling thread
// (a second thread costs a wakeup that is longer than a decode row's arithmetic).
constexpr int64_t kGrainElements = 1 << 15;
// SiLU-multiply's exp and division cost ~1.3 ns an element (AVX2; AVX-512 ~0.7, 8 rows of the
// 0.6B 16.6 -> 9.1 us on 2 threads), several times a norm's: from
// two rows of the 0.6B's MLP on, the second thread pays for its wakeup (batch 8, int4: a decode
// step 19.2 -> 18.9 ms with the rows split over both threads).
constexpr int64_t kSiluGrainElements = 1 << 13;
// The q/k norm and rotation cost ~0.8 ns an element (AVX2, the angles cached): from two tokens
// of the 0.6B's 24 heads on, both threads (batch 8, int4: 2 % of a decode step, alternating
// rounds in one process).
constexpr int64_t kRotaryGrainElements = 1 << 13;
// The residual add and norm between a layer's products: from four rows of the 0.6B on, both
// threads (batch 8, int4: 0.5-0.9 % of a decode step, alternating rounds in one process).
constexpr int64_t kAddNormGrainElements = 1 << 12;

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

inline const uint16_t* bits(const at::Tensor& t) {
  return reinterpret_cast<const uint16_t*>(t.data_ptr<at::BFloat16>());
}
inline uint16_t* bits(at::Tensor& t) {
  return reinterpret_cast<uint16_t*>(t.data_ptr<at::BFloat16>());
}

// ---- RMSNorm: y = weight * dtype(x * rsqrt(mean(x^2) + eps)) over the last dimension. ----

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
  const float e = static_cast<float>(eps);
  const bool bf16 = x.scalar_type() == at::kBFloat16;
  at::parallel_for(0, rows, std::max<int64_t>(1, kGrainElements / dim), [&](int64_t r0,
                                                                           int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      if (bf16)
        decode::rms_norm_bf16(bits(xc) + r * dim, bits(wc), bits(y) + r * dim, dim, e);
      else
        decode::rms_norm_f32(xc.data_ptr<float>() + r * dim, wc.data_ptr<float>(),
                             y.data_ptr<float>() + r * dim, dim, e);
    }
  });
  return y;
}

// ---- add_rms_norm(x, residual): (rms_norm(s), s) with s = dtype(x + residual), one pass. ----

std::tuple<at::Tensor, at::Tensor> add_rms_norm(const at::Tensor& x, const at::Tensor& residual,
                                                const at::Tensor& weight, double eps) {
  check_cpu_float(x, "x");
  TORCH_CHECK(residual.scalar_type() == x.scalar_type() && residual.device().is_cpu() &&
                  residual.sizes() == x.sizes(),
              "add_rms_norm: residual must be a CPU tensor of x's dtype and shape ", x.sizes(),
              ", got ", residual.sizes(), " of ", residual.scalar_type());
  TORCH_CHECK(weight.scalar_type() == x.scalar_type() && weight.dim() == 1 &&
                  x.dim() >= 1 && weight.size(0) == x.size(-1),
              "add_rms_norm: weight must be a [", x.dim() ? x.size(-1) : 0, "] tensor of ",
              x.scalar_type(), ", got ", weight.sizes(), " of ", weight.scalar_type());
  const at::Tensor xc = x.contiguous(), rc = residual.contiguous(), wc = weight.contiguous();
  at::Tensor y = at::empty_like(xc), sum = at::empty_like(xc);
  const int64_t dim = x.size(-1), rows = dim ? xc.numel() / dim : 0;
  if (rows == 0) return {y, sum};
  const float e = static_cast<float>(eps);
  const bool bf16 = x.scalar_type() == at::kBFloat16;
  at::parallel_for(0, rows, std::max<int64_t>(1, kAddNormGrainElements / dim), [&](int64_t r0,
                                                                           int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t o = r * dim;
      if (bf16)
        decode::add_rms_norm_bf16(bits(xc) + o, bits(rc) + o, bits(wc), bits(y) + o,
                                  bits(sum) + o, dim, e);
      else
        decode::add_rms_norm_f32(xc.data_ptr<float>() + o, rc.data_ptr<float>() + o,
                                 wc.data_ptr<float>(), y.data_ptr<float>() + o,
                                 sum.data_ptr<float>() + o, dim, e);
    }
  });
  return {y, sum};
}

// ---- Rotary embedding ("rotate half") of q and k [B, H, S, D] at positions [B, S]. ----
//   out[i]       = x[i] * cos[i] - x[i + D/2] * sin[i]
//   out[i + D/2] = x[i + D/2] * cos[i] + x[i] * sin[i]
// cos/sin of position * inv_freq in float32, rounded to the dtype; each product and the sum
// rounded to the dtype, as `q * cos + rotate_half(q) * sin` rounds them. With norm weights
// (qk_norm_rotary) each head is first RMS-normalised, as the q_norm/k_norm modules would do
// before the rotation: the normed head (dtype values) never leaves the task's float buffer.

struct HeadNorm {  // the per-head RMSNorm applied before the rotation, if any
  const at::Tensor* weight = nullptr;
  float eps = 0.f;
};

template <typename T>
void rotate_heads(const at::Tensor& in, at::Tensor& out, int64_t b, int64_t s,
                  const float* cos, const float* sin, int64_t half, const HeadNorm& norm,
                  float* head) {
  const T* src = in.data_ptr<T>();
  T* dst = out.data_ptr<T>();
  constexpr bool bf16 = std::is_same_v<T, at::BFloat16>;
  const int64_t d = 2 * half;
  for (int64_t h = 0; h < in.size(1); ++h) {
    const T* x = src + b * in.stride(0) + h * in.stride(1) + s * in.stride(2);
    T* o = dst + b * out.stride(0) + h * out.stride(1) + s * out.stride(2);
    if constexpr (bf16) {
      const uint16_t* xb = reinterpret_cast<const uint16_t*>(x);
      if (norm.weight)
        decode::rms_norm_head_bf16(xb, bits(*norm.weight), head, d, norm.eps);
      else
        decode::widen_bf16(xb, head, d);
      decode::rotate_bf16(head, cos, sin, reinterpret_cast<uint16_t*>(o), half);
    } else {
      const float* xf = x;
      if (norm.weight) {
        decode::rms_norm_head_f32(xf, norm.weight->data_ptr<float>(), head, d, norm.eps);
        xf = head;
      }
      decode::rotate_f32(xf, cos, sin, o, half);
    }
  }
}

// The rounded cos and sin of one position's angles (position * inv_freq[i], times the rope
// scaling factor), kept for the last positions this thread rotated: a decode step rotates the
// same positions in every layer (28 in the 0.6B), and a table costs `half` std::cos and
// std::sin calls (8 tokens of the 0.6B: ~3 us of the operator's 27 at batch 8). A table is
// reused only for the same position, factor, dtype and inv_freq values (compared, not their
// address: a freed tensor's memory may come back holding other frequencies).
struct AngleTable {
  int64_t position = -1;
  float scale = 0.f;
  bool bf16 = false;
  std::vector<float> inv_freq, cos, sin;
};

template <typename T>
const AngleTable& angles(int64_t position, const float* inv_freq, int64_t half, float scale) {
  constexpr bool bf16 = std::is_same_v<T, at::BFloat16>;
  thread_local std::vector<AngleTable> tables(64);
  AngleTable& t = tables[static_cast<size_t>(position) % tables.size()];
  if (t.position == position && t.scale == scale && t.bf16 == bf16 &&
      static_cast<int64_t>(t.inv_freq.size()) == half &&
      std::equal(t.inv_freq.begin(), t.inv_freq.end(), inv_freq))
    return t;
  t.position = position;
  t.scale = scale;
  t.bf16 = bf16;
  t.inv_freq.assign(inv_freq, inv_freq + half);
  t.cos.resize(half);
  t.sin.resize(half);
  const float p = static_cast<float>(position);
  for (int64_t i = 0; i < half; ++i) {
    const float angle = p * inv_freq[i];
    // Rope scaling's cos/sin factor (1 for plain RoPE), in float32 before the rounding.
    t.cos[i] = round_to<T>(std::cos(angle) * scale);
    t.sin[i] = round_to<T>(std::sin(angle) * scale);
  }
  return t;
}

template <typename T>
void rotary_tokens(const at::Tensor& q, at::Tensor& q_out, const at::Tensor& k,
                   at::Tensor& k_out, const at::Tensor& positions, const float* inv_freq,
                   float scale, const HeadNorm& q_norm, const HeadNorm& k_norm) {
  const int64_t batch = q.size(0), seq = q.size(2), half = q.size(3) / 2;
  const int64_t per_token = (q.size(1) + k.size(1)) * q.size(3);
  const int64_t* pos = positions.data_ptr<int64_t>();
  at::parallel_for(0, batch * seq, std::max<int64_t>(1, kRotaryGrainElements / per_token),
                   [&](int64_t t0, int64_t t1) {
    std::vector<float> head(2 * half);
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t b = t / seq, s = t % seq;
      const AngleTable& a = angles<T>(pos[b * positions.stride(0) + s * positions.stride(1)],
                                      inv_freq, half, scale);
      rotate_heads<T>(q, q_out, b, s, a.cos.data(), a.sin.data(), half, q_norm, head.data());
      rotate_heads<T>(k, k_out, b, s, a.cos.data(), a.sin.data(), half, k_norm, head.data());
    }
  });
}

void check_rotary_inputs(const at::Tensor& q, const at::Tensor& k, const at::Tensor& positions,
                         const at::Tensor& inv_freq) {
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
}

std::tuple<at::Tensor, at::Tensor> rotate(const at::Tensor& q, const at::Tensor& k,
                                          const at::Tensor& positions,
                                          const at::Tensor& inv_freq, double scale,
                                          const HeadNorm& q_norm, const HeadNorm& k_norm) {
  at::Tensor q_out = at::empty_like(q), k_out = at::empty_like(k);  // same strides as inputs
  if (q.numel() == 0 && k.numel() == 0) return {q_out, k_out};
  if (q.scalar_type() == at::kBFloat16)
    rotary_tokens<at::BFloat16>(q, q_out, k, k_out, positions, inv_freq.data_ptr<float>(),
                                static_cast<float>(scale), q_norm, k_norm);
  else
    rotary_tokens<float>(q, q_out, k, k_out, positions, inv_freq.data_ptr<float>(),
                         static_cast<float>(scale), q_norm, k_norm);
  return {q_out, k_out};
}

std::tuple<at::Tensor, at::Tensor> rotary(const at::Tensor& q, const at::Tensor& k,
                                          const at::Tensor& positions,
                                          const at::Tensor& inv_freq, double scale) {
  check_rotary_inputs(q, k, positions, inv_freq);
  return rotate(q, k, positions, inv_freq, scale, HeadNorm{}, HeadNorm{});
}

// rotary(rms_norm(q, q_weight, eps), rms_norm(k, k_weight, eps), ...) in one pass per head:
// the q_norm/k_norm modules and the rotation of a layer as one operator call.
// q and k may also come as the projections make them, [B, S, H * D] (D = the weights' size):
// they are then viewed as [B, H, S, D] here, which saves the caller four view operators.
std::tuple<at::Tensor, at::Tensor> qk_norm_rotary(const at::Tensor& q_in, const at::Tensor& k_in,
                                                  const at::Tensor& q_weight,
                                                  const at::Tensor& k_weight, double eps,
                                                  const at::Tensor& positions,
                                                  const at::Tensor& inv_freq, double scale) {
  TORCH_CHECK(q_in.dim() == k_in.dim() && (q_in.dim() == 3 || q_in.dim() == 4),
              "qk_norm_rotary: q and k must both be [B, H, S, D] or both [B, S, H * D], got ",
              q_in.sizes(), " and ", k_in.sizes());
  const int64_t d = q_weight.dim() == 1 ? q_weight.size(0) : 0;
  auto heads = [d](const at::Tensor& t) {
    if (t.dim() == 4) return t;
    TORCH_CHECK(d > 0 && t.size(-1) % d == 0, "qk_norm_rotary: the last dimension ",
                t.size(-1), " is not a whole number of heads of the norm weight's size ", d);
    return t.view({t.size(0), t.size(1), t.size(2) / d, d}).transpose(1, 2);
  };
  const at::Tensor q = heads(q_in), k = heads(k_in);
  check_rotary_inputs(q, k, positions, inv_freq);
  for (const at::Tensor* w : {&q_weight, &k_weight})
    TORCH_CHECK(w->scalar_type() == q.scalar_type() && w->dim() == 1 && w->is_contiguous() &&
                    w->size(0) == q.size(3),
                "qk_norm_rotary: the norm weights must be contiguous [", q.size(3),
                "] tensors of ", q.scalar_type(), ", got ", w->sizes(), " of ",
                w->scalar_type());
  const float e = static_cast<float>(eps);
  return rotate(q, k, positions, inv_freq, scale, HeadNorm{&q_weight, e},
                HeadNorm{&k_weight, e});
}

// ---- silu_mul(gate_up [..., 2I]) -> [..., I]: dtype(silu(gate)) * up, rounded. ----

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
  const bool bf16 = gu.scalar_type() == at::kBFloat16;
  const bool wide = decode::wide_decode_loops();
  at::parallel_for(0, rows, std::max<int64_t>(1, kSiluGrainElements / inter), [&](int64_t r0,
                                                                                 int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      if (bf16) {
        const uint16_t* gate = bits(gu) + r * 2 * inter;
        (wide ? decode::silu_mul_bf16_avx512 : decode::silu_mul_bf16)(
            gate, gate + inter, bits(out) + r * inter, inter);
      } else {
        const float* gate = gu.data_ptr<float>() + r * 2 * inter;
        (wide ? decode::silu_mul_f32_avx512 : decode::silu_mul_f32)(
            gate, gate + inter, out.data_ptr<float>() + r * inter, inter);
      }
    }
  });
  return out;
}

}  // namespace
}  // namespace qwen3core_cpu

TORCH_LIBRARY_FRAGMENT(qwen3core_cpu, m) {
  m.def("rms_norm(Tensor x, Tensor weight, float eps) -> Tensor");
  m.def("add_rms_norm(Tensor x, Tensor residual, Tensor weight, float eps) -> (Tensor, Tensor)");
  m.def("rotary(Tensor q, Tensor k, Tensor positions, Tensor inv_freq, float scale=1.0) -> "
        "(Tensor, Tensor)");
  m.def("qk_norm_rotary(Tensor q, Tensor k, Tensor q_weight, Tensor k_weight, float eps, "
        "Tensor positions, Tensor inv_freq, float scale=1.0) -> (Tensor, Tensor)");
  m.def("silu_mul(Tensor gate_up) -> Tensor");
}

TORCH_LIBRARY_IMPL(qwen3core_cpu, CPU, m) {
  m.impl("rms_norm", &qwen3core_cpu::rms_norm);
  m.impl("add_rms_norm", &qwen3core_cpu::add_rms_norm);
  m.impl("rotary", &qwen3core_cpu::rotary);
  m.impl("qk_norm_rotary", &qwen3core_cpu::qk_norm_rotary);
  m.impl("silu_mul", &qwen3core_cpu::silu_mul);
}
