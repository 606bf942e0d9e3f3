// qwen3core_cpu::attention(q, k, v, mask, scale): masked grouped-query attention for the few
// query rows of a decode step.
//
// q [B, H_q, S, D], k and v [B, H_kv, T, D] (any strides, unit stride along D: the KV cache
// hands out views of its buffers), mask [B, 1, S, T] bool. Returns [B, H_q, S, D] laid out as
// [B, S, H_q, D] in memory, so the model's transpose-and-reshape before o_proj is free.
//
// One task per query row (b, h, s): scores in float32 over the keys the mask allows, a float32
// softmax with the running maximum subtracted, and the weighted sum of the values accumulated in
// float32 and rounded once to the activation dtype. torch's SDPA spends ~0.2 ms of setup per
// call on a single query row; this loop spends microseconds.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace qwen3core_cpu {
namespace {

// Partial sums per lane: independent chains the compiler maps onto vector registers (a single
// float accumulator would be one serial chain, since float addition cannot be reordered).
constexpr int kLanes = 8;

template <typename T>
float dot(const float* q, const T* k, int64_t d) {
  float lanes[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= d; i += kLanes)
    for (int j = 0; j < kLanes; ++j) lanes[j] += q[i + j] * static_cast<float>(k[i + j]);
  float sum = 0.f;
  for (int j = 0; j < kLanes; ++j) sum += lanes[j];
  for (; i < d; ++i) sum += q[i] * static_cast<float>(k[i]);
  return sum;
}

template <typename T>
void add_scaled(float* acc, const T* v, float p, int64_t d) {
  for (int64_t i = 0; i < d; ++i) acc[i] += p * static_cast<float>(v[i]);
}

struct View4 {  // strides of a [B, H, S or T, D] tensor (D has unit stride)
  int64_t b, h, s;
  explicit View4(const at::Tensor& t) : b(t.stride(0)), h(t.stride(1)), s(t.stride(2)) {}
};

template <typename T>
void attend(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
            const at::Tensor& mask, float scale, at::Tensor& out) {
  const int64_t batch = q.size(0), heads = q.size(1), seq = q.size(2), d = q.size(3);
  const int64_t keys = k.size(2), groups = heads / k.size(1);
  const View4 qs(q), ks(k), vs(v), os(out);
  const int64_t mb = mask.stride(0), ms = mask.stride(2), mt = mask.stride(3);
  const T *qp = q.data_ptr<T>(), *kp = k.data_ptr<T>(), *vp = v.data_ptr<T>();
  const bool* maskp = mask.data_ptr<bool>();
  T* op = out.data_ptr<T>();
  const int64_t rows = batch * heads * seq;
  const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 15) / std::max<int64_t>(1, keys * d));
  at::parallel_for(0, rows, grain, [&](int64_t r0, int64_t r1) {
    std::vector<float> qf(d), acc(d), scores(keys);
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t b = r / (heads * seq), h = (r / seq) % heads, s = r % seq;
      const T* qrow = qp + b * qs.b + h * qs.h + s * qs.s;
      const T* kbase = kp + b * ks.b + (h / groups) * ks.h;
      const T* vbase = vp + b * vs.b + (h / groups) * vs.h;
      const bool* allowed = maskp + b * mb + s * ms;
      for (int64_t i = 0; i < d; ++i) qf[i] = static_cast<float>(qrow[i]);
      float top = -std::numeric_limits<float>::infinity();
      for (int64_t t = 0; t < keys; ++t) {
        if (!allowed[t * mt]) continue;
        scores[t] = dot(qf.data(), kbase + t * ks.s, d) * scale;
        top = std::max(top, scores[t]);
      }
      std::fill(acc.begin(), acc.end(), 0.f);
      float total = 0.f;
      for (int64_t t = 0; t < keys; ++t) {
        if (!allowed[t * mt]) continue;
        const float p = std::exp(scores[t] - top);
        total += p;
        add_scaled(acc.data(), vbase + t * vs.s, p, d);
      }
      // The mask gives every row at least one key (AttentionBatch); a row with none gets zeros.
      const float norm = total > 0.f ? 1.f / total : 0.f;
      T* orow = op + b * os.b + h * os.h + s * os.s;
      for (int64_t i = 0; i < d; ++i) orow[i] = static_cast<T>(acc[i] * norm);
    }
  });
}

at::Tensor attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                     const at::Tensor& mask, double scale) {
  TORCH_CHECK(q.device().is_cpu() && k.device().is_cpu() && v.device().is_cpu() &&
                  mask.device().is_cpu(),
              "qwen3core_cpu::attention runs on CPU tensors");
  TORCH_CHECK(q.scalar_type() == at::kBFloat16 || q.scalar_type() == at::kFloat,
              "attention: q must be bfloat16 or float32, got ", q.scalar_type());
  TORCH_CHECK(k.scalar_type() == q.scalar_type() && v.scalar_type() == q.scalar_type(),
              "attention: q, k and v must share a dtype");
  TORCH_CHECK(q.dim() == 4 && k.dim() == 4 && v.sizes() == k.sizes() &&
                  k.size(0) == q.size(0) && k.size(3) == q.size(3) && k.size(1) > 0 &&
                  q.size(1) % k.size(1) == 0,
              "attention: q must be [B, H_q, S, D] and k, v [B, H_kv, T, D] with H_kv "
              "dividing H_q, got ", q.sizes(), ", ", k.sizes(), ", ", v.sizes());
  TORCH_CHECK(q.stride(3) == 1 && k.stride(3) == 1 && v.stride(3) == 1,
              "attention: the head dimension of q, k and v must be contiguous");
  TORCH_CHECK(mask.scalar_type() == at::kBool && mask.dim() == 4 && mask.size(0) == q.size(0) &&
                  mask.size(1) == 1 && mask.size(2) == q.size(2) && mask.size(3) == k.size(2),
              "attention: mask must be bool [B, 1, S, T] = [", q.size(0), ", 1, ", q.size(2),
              ", ", k.size(2), "], got ", mask.sizes(), " of ", mask.scalar_type());
  at::Tensor out = at::empty({q.size(0), q.size(2), q.size(1), q.size(3)}, q.options())
                       .transpose(1, 2);  // [B, H_q, S, D] view of [B, S, H_q, D]
  if (q.numel() == 0) return out;
  if (q.scalar_type() == at::kBFloat16)
    attend<at::BFloat16>(q, k, v, mask, static_cast<float>(scale), out);
  else
    attend<float>(q, k, v, mask, static_cast<float>(scale), out);
  return out;
}

}  // namespace
}  // namespace qwen3core_cpu

TORCH_LIBRARY_FRAGMENT(qwen3core_cpu, m) {
  m.def("attention(Tensor q, Tensor k, Tensor v, Tensor mask, float scale) -> Tensor");
}

TORCH_LIBRARY_IMPL(qwen3core_cpu, CPU, m) {
  m.impl("attention", &qwen3core_cpu::attention);
}
