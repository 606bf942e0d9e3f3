// The torch side of the CUDA kernels: operator schemas, tensor checks, and calls into the
// launchers of launchers.h. This is the only source that includes torch, and it is compiled
// only where a CUDA build of torch is installed.
//
// The operators are registered with the dispatcher (torch.ops.qwen3core_cuda.*) rather than as
// a pybind module, so that torch.compile and CUDA graphs can capture them (their fake
// implementations are registered from Python, in ops.py).
#include <tuple>

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "launchers.h"

namespace {

Qwen3CudaDType kernel_dtype(const at::Tensor& t) {
  switch (t.scalar_type()) {
    case at::kFloat:
      return QWEN3_CUDA_FLOAT32;
    case at::kHalf:
      return QWEN3_CUDA_FLOAT16;
    case at::kBFloat16:
      return QWEN3_CUDA_BFLOAT16;
    default:
      TORCH_CHECK(false, "qwen3core cuda kernels support float32, float16 and bfloat16, got ",
                  t.scalar_type());
  }
}

void check_launch(cudaError_t status, const char* op) {
  TORCH_CHECK(status == cudaSuccess, "qwen3core_cuda::", op, " failed to launch: ",
              cudaGetErrorString(status));
}

void check_like(const at::Tensor& t, const at::Tensor& reference, const char* name) {
  TORCH_CHECK(t.device() == reference.device(), name, " is on ", t.device(), ", expected ",
              reference.device());
  TORCH_CHECK(t.scalar_type() == reference.scalar_type(), name, " has dtype ", t.scalar_type(),
              ", expected ", reference.scalar_type());
}

// [rows, cols] with unit column stride (any row stride).
void check_rows(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.is_cuda(), name, " must be a CUDA tensor, got one on ", t.device());
  TORCH_CHECK(t.dim() == 2, name, " must be 2-D [rows, cols], got shape ", t.sizes());
  TORCH_CHECK(t.stride(1) == 1 || t.size(1) == 1, name,
              " must have unit column stride, got strides ", t.strides());
}

// [B, H, S, D] with unit stride along D.
void check_heads(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.is_cuda(), name, " must be a CUDA tensor, got one on ", t.device());
  TORCH_CHECK(t.dim() == 4, name, " must be 4-D [B, H, S, D], got shape ", t.sizes());
  TORCH_CHECK(t.stride(3) == 1, name, " must have unit stride along head_dim, got strides ",
              t.strides());
}

Qwen3CudaStrides head_strides(const at::Tensor& t) {
  return Qwen3CudaStrides{t.stride(0), t.stride(1), t.stride(2)};
}

at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps) {
  check_rows(x, "x");
  check_like(weight, x, "weight");
  TORCH_CHECK(weight.dim() == 1 && weight.size(0) == x.size(1) && weight.is_contiguous(),
              "weight must be a contiguous [", x.size(1), "] tensor, got shape ", weight.sizes());
  const c10::cuda::CUDAGuard guard(x.device());
  at::Tensor out = at::empty({x.size(0), x.size(1)}, x.options());
  check_launch(qwen3_cuda_rms_norm(kernel_dtype(x), x.data_ptr(), x.stride(0), weight.data_ptr(),
                                   out.data_ptr(), out.stride(0), x.size(0), x.size(1),
                                   static_cast<float>(eps), c10::cuda::getCurrentCUDAStream()),
               "rms_norm");
  return out;
}

std::tuple<at::Tensor, at::Tensor> rotary(const at::Tensor& q, const at::Tensor& k,
                                          const at::Tensor& positions,
                                          const at::Tensor& inv_freq) {
  check_heads(q, "q");
  check_heads(k, "k");
  check_like(k, q, "k");
  TORCH_CHECK(k.size(0) == q.size(0) && k.size(2) == q.size(2) && k.size(3) == q.size(3),
              "q ", q.sizes(), " and k ", k.sizes(), " must agree on batch, sequence and head_dim");
  TORCH_CHECK(positions.device() == q.device() && positions.scalar_type() == at::kLong &&
                  positions.dim() == 2 && positions.size(0) == q.size(0) &&
                  positions.size(1) == q.size(2),
              "positions must be int64 [", q.size(0), ", ", q.size(2), "] on ", q.device(),
              ", got ", positions.scalar_type(), " ", positions.sizes());
  TORCH_CHECK(inv_freq.device() == q.device() && inv_freq.scalar_type() == at::kFloat &&
                  inv_freq.dim() == 1 && inv_freq.size(0) * 2 == q.size(3) &&
                  inv_freq.is_contiguous(),
              "inv_freq must be a contiguous float32 [", q.size(3) / 2, "] tensor on ",
              q.device());
  const c10::cuda::CUDAGuard guard(q.device());
  // empty_like keeps a dense input's layout (q and k arrive as [B, S, H, D] memory viewed as
  // [B, H, S, D]), so the output is written with the same access pattern as the input is read.
  at::Tensor q_out = at::empty_like(q);
  at::Tensor k_out = at::empty_like(k);
  TORCH_CHECK(q_out.stride(3) == 1 && k_out.stride(3) == 1, "rotary outputs lost unit stride");
  check_launch(qwen3_cuda_rotary(kernel_dtype(q), q.data_ptr(), head_strides(q), q_out.data_ptr(),
                                 head_strides(q_out), q.size(1), k.data_ptr(), head_strides(k),
                                 k_out.data_ptr(), head_strides(k_out), k.size(1),
                                 positions.data_ptr<int64_t>(), positions.stride(0),
                                 positions.stride(1), inv_freq.data_ptr<float>(), q.size(0),
                                 q.size(2), q.size(3), c10::cuda::getCurrentCUDAStream()),
               "rotary");
  return {q_out, k_out};
}

at::Tensor silu_mul(const at::Tensor& gate, const at::Tensor& up) {
  check_rows(gate, "gate");
  check_rows(up, "up");
  check_like(up, gate, "up");
  TORCH_CHECK(up.sizes() == gate.sizes(), "gate ", gate.sizes(), " and up ", up.sizes(),
              " must have the same shape");
  const c10::cuda::CUDAGuard guard(gate.device());
  at::Tensor out = at::empty({gate.size(0), gate.size(1)}, gate.options());
  check_launch(qwen3_cuda_silu_mul(kernel_dtype(gate), gate.data_ptr(), gate.stride(0),
                                   up.data_ptr(), up.stride(0), out.data_ptr(), out.stride(0),
                                   gate.size(0), gate.size(1), c10::cuda::getCurrentCUDAStream()),
               "silu_mul");
  return out;
}

}  // namespace

TORCH_LIBRARY(qwen3core_cuda, m) {
  m.def("rms_norm(Tensor x, Tensor weight, float eps) -> Tensor");
  m.def("rotary(Tensor q, Tensor k, Tensor positions, Tensor inv_freq) -> (Tensor, Tensor)");
  m.def("silu_mul(Tensor gate, Tensor up) -> Tensor");
}

TORCH_LIBRARY_IMPL(qwen3core_cuda, CUDA, m) {
  m.impl("rms_norm", &rms_norm);
  m.impl("rotary", &rotary);
  m.impl("silu_mul", &silu_mul);
}
