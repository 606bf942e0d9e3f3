// The C interface of the qwen3core CUDA kernels: raw pointers, sizes, strides and a stream.
//
// Nothing here (or in the .cu files) includes torch, so `nvcc` compiles the kernels on a
// machine without a CUDA build of torch; bindings.cpp is the only file that sees torch.
// Strides are in elements. Every launcher checks its own preconditions and returns
// cudaErrorInvalidValue when they do not hold, so a bad call never reaches a kernel.
#pragma once

#include <cstdint>

#include <cuda_runtime.h>

extern "C" {

// Element types the kernels are instantiated for.
enum Qwen3CudaDType : int {
  QWEN3_CUDA_FLOAT32 = 0,
  QWEN3_CUDA_FLOAT16 = 1,
  QWEN3_CUDA_BFLOAT16 = 2,
};

// RMSNorm over rows of length `dim`: out = weight * cast(x * rsqrt(mean(x^2) + eps)), the
// statistics in float32, the cast to the input type *before* the weight multiply (the
// reference numerics). x [rows, dim] with row stride `x_row_stride` and unit column stride;
// weight [dim] contiguous; out [rows, dim] with row stride `out_row_stride`.
cudaError_t qwen3_cuda_rms_norm(Qwen3CudaDType dtype, const void* x, int64_t x_row_stride,
                                const void* weight, void* out, int64_t out_row_stride,
                                int64_t rows, int64_t dim, float eps, cudaStream_t stream);

// Strides of a [B, H, S, D] tensor whose last dimension is contiguous.
struct Qwen3CudaStrides {
  int64_t batch;
  int64_t head;
  int64_t seq;
};

// Rotary embedding, "rotate half" layout, applied to q [B, heads_q, S, D] and
// k [B, heads_k, S, D]. positions [B, S] int64; inv_freq [D/2] float32 (computed by the
// caller exactly as the reference does). cos/sin are computed in float32 and rounded to the
// activation type before use; each product and the sum are rounded separately, as the eager
// `q * cos + rotate_half(q) * sin` does. `*_out` may equal `*_in` (in place).
cudaError_t qwen3_cuda_rotary(Qwen3CudaDType dtype,
                              const void* q_in, Qwen3CudaStrides q_in_strides,
                              void* q_out, Qwen3CudaStrides q_out_strides, int64_t heads_q,
                              const void* k_in, Qwen3CudaStrides k_in_strides,
                              void* k_out, Qwen3CudaStrides k_out_strides, int64_t heads_k,
                              const int64_t* positions, int64_t positions_batch_stride,
                              int64_t positions_seq_stride, const float* inv_freq,
                              int64_t batch, int64_t seq, int64_t head_dim,
                              cudaStream_t stream);

// The SwiGLU activation: out = cast(silu(gate)) * up, silu computed in float32 as
// x / (1 + exp(-x)) and rounded, the product rounded again (what torch's F.silu(gate) * up
// does). gate, up, out [rows, cols] with their own row strides and unit column stride.
cudaError_t qwen3_cuda_silu_mul(Qwen3CudaDType dtype, const void* gate, int64_t gate_row_stride,
                                const void* up, int64_t up_row_stride, void* out,
                                int64_t out_row_stride, int64_t rows, int64_t cols,
                                cudaStream_t stream);

}  // extern "C"
