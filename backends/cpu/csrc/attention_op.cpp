// qwen3core_cpu::attention(q, k, v, mask, scale): masked grouped-query attention for the few
// query rows of a decode step.
//
// q [B, H_q, S, D], k and v [B, H_kv, T, D] (any strides, unit stride along D: the KV cache
// hands out views of its buffers), mask [B, 1, S, T] bool. Returns [B, H_q, S, D] laid out as
// [B, S, H_q, D] in memory, so the model's transpose-and-reshape before o_proj is free.
//
// One task per key/value head and query position (b, h_kv, s), for the query heads that share
// that head: scores in float32 over the keys the mask allows, a float32 softmax with the maximum
// subtracted, and the weighted sum of the values accumulated in float32 and rounded once to the
// activation dtype (AVX2 loops in decode_avx2.cpp). torch's SDPA spends ~0.2 ms of setup per
// call on a single query row; this loop spends microseconds.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "decode_kernels.h"

namespace qwen3core_cpu {
namespace {

// Chunks of tasks get at least this many multiply-adds (keys x D x query rows, for K and V
// each): only a very short decode attention stays on the calling thread. In a decode step the
// keys and values come from memory (the step's weights evicted them) and torch's other threads
// are still spinning from the last product, so splitting pays from about a microsecond of work:
// with 1 << 20 the 0.6B's attention ran on one thread up to ~250 keys, and a step (int4, 16 to
// 116 keys, 2 threads) took 13.7 ms where it takes 13.3 with this value.
constexpr int64_t kGrainWork = int64_t{1} << 14;

// Rows of keys and of values requested for a thread's next task at the start of each task: the
// loops request rows ahead only within a task (decode_attention.h), so each task began with
// its first rows missing. Batch 8 of the 0.6B, int4: a decode step 2.6 % shorter, batch 1
// 0.9 % (alternating rounds in one process).
constexpr int64_t kNextTaskRows = 8;

inline void prefetch_bytes(const void* p, int64_t bytes) {
  for (int64_t o = 0; o < bytes; o += 64)
    __builtin_prefetch(static_cast<const char*>(p) + o, 0, 3);  // read, into L1
}

struct View4 {  // strides of a [B, H, S or T, D] tensor (D has unit stride)
  int64_t b, h, s;
  explicit View4(const at::Tensor& t) : b(t.stride(0)), h(t.stride(1)), s(t.stride(2)) {}
};

template <typename T>
void attend(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
            const at::Tensor& mask, float scale, at::Tensor& out) {
  const int64_t batch = q.size(0), seq = q.size(2), d = q.size(3);
  const int64_t kv_heads = k.size(1), keys = k.size(2), groups = q.size(1) / kv_heads;
  const View4 qs(q), ks(k), vs(v), os(out);
  const int64_t mb = mask.stride(0), ms = mask.stride(2), mt = mask.stride(3);
  const T *qp = q.data_ptr<T>(), *kp = k.data_ptr<T>(), *vp = v.data_ptr<T>();
  const uint8_t* maskp = reinterpret_cast<const uint8_t*>(mask.data_ptr<bool>());
  T* op = out.data_ptr<T>();
  // One task per (row, key/value head, query position): the query heads of a group share each
  // read of a key and a value row.
  const int64_t tasks = batch * kv_heads * seq;
  const int64_t grain = std::max<int64_t>(
      1, kGrainWork / std::max<int64_t>(1, 2 * keys * d * groups));
  const bool wide = decode::wide_decode_loops();
  at::parallel_for(0, tasks, grain, [&](int64_t r0, int64_t r1) {
    std::vector<float> qf(groups * d), acc(groups * d),
        scores(std::min(groups, decode::kAttendGroupBlock) * keys);
    std::vector<int32_t> live(keys);
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t b = r / (kv_heads * seq), hk = (r / seq) % kv_heads, s = r % seq;
      constexpr bool bf16 = std::is_same_v<T, at::BFloat16>;
      for (int64_t g = 0; g < groups; ++g) {
        const T* qrow = qp + b * qs.b + (hk * groups + g) * qs.h + s * qs.s;
        if constexpr (bf16)
          decode::widen_bf16(reinterpret_cast<const uint16_t*>(qrow), qf.data() + g * d, d);
        else
          std::copy(qrow, qrow + d, qf.data() + g * d);
      }
      const T* kbase = kp + b * ks.b + hk * ks.h;
      const T* vbase = vp + b * vs.b + hk * vs.h;
      if (r + 1 < r1) {  // the next task's first keys and values, while this one runs
        const int64_t nb = (r + 1) / (kv_heads * seq), nh = ((r + 1) / seq) % kv_heads;
        const T* nk = kp + nb * ks.b + nh * ks.h;
        const T* nv = vp + nb * vs.b + nh * vs.h;
        for (int64_t j = 0; j < std::min(keys, kNextTaskRows); ++j) {
          prefetch_bytes(nk + j * ks.s, d * static_cast<int64_t>(sizeof(T)));
          prefetch_bytes(nv + j * vs.s, d * static_cast<int64_t>(sizeof(T)));
        }
      }
      const uint8_t* allowed = maskp + b * mb + s * ms;
      // The mask gives every row at least one key (AttentionBatch); a row with none gets zeros.
      if constexpr (bf16)
        (wide ? decode::attend_bf16_avx512 : decode::attend_bf16)(
            qf.data(), d, groups, reinterpret_cast<const uint16_t*>(kbase), ks.s,
            reinterpret_cast<const uint16_t*>(vbase), vs.s, allowed, mt, keys, d, scale,
            scores.data(), acc.data(), live.data());
      else
        (wide ? decode::attend_f32_avx512 : decode::attend_f32)(
            qf.data(), d, groups, kbase, ks.s, vbase, vs.s, allowed, mt, keys, d, scale,
            scores.data(), acc.data(), live.data());
      for (int64_t g = 0; g < groups; ++g) {  // rounded once, as c10::BFloat16 rounds
        T* orow = op + b * os.b + (hk * groups + g) * os.h + s * os.s;
        if constexpr (bf16)
          decode::narrow_bf16(acc.data() + g * d, reinterpret_cast<uint16_t*>(orow), d);
        else
          std::copy(acc.data() + g * d, acc.data() + (g + 1) * d, orow);
      }
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

bool decode::wide_decode_loops() {
  static const bool wide = [] {
    const auto isa = c10::Dispatcher::singleton()
                         .findSchemaOrThrow("qwen3core_cpu::isa", "")
                         .typed<std::string()>();
    return isa.call().rfind("avx512", 0) == 0;
  }();
  return wide;
}

}  // namespace qwen3core_cpu

TORCH_LIBRARY_FRAGMENT(qwen3core_cpu, m) {
  m.def("attention(Tensor q, Tensor k, Tensor v, Tensor mask, float scale) -> Tensor");
}

TORCH_LIBRARY_IMPL(qwen3core_cpu, CPU, m) {
  m.impl("attention", &qwen3core_cpu::attention);
}
