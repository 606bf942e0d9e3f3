// Shared device helpers: element conversions, vectorised access, warp reductions.
//
// Arithmetic uses the explicitly rounded intrinsics (__fmul_rn, __fadd_rn, __fdiv_rn) where
// the reference computes an operation as its own rounded step: nvcc would otherwise contract
// a multiply and an add into one fused multiply-add, which rounds once instead of twice and
// drifts from the PyTorch eager result.
#pragma once

#include <cstdint>

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "launchers.h"

namespace qwen3_cuda {

__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ float to_float(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }

template <typename T>
__device__ __forceinline__ T from_float(float x);
template <>
__device__ __forceinline__ float from_float<float>(float x) { return x; }
template <>
__device__ __forceinline__ __half from_float<__half>(float x) { return __float2half_rn(x); }
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float x) {
  return __float2bfloat16_rn(x);
}

// Round a float32 value to T and back: the value a T-typed tensor would hold.
template <typename T>
__device__ __forceinline__ float round_to(float x) { return to_float(from_float<T>(x)); }

// `n` elements moved as one 16-byte (or smaller) transaction.
template <typename T, int N>
struct alignas(sizeof(T) * N) Pack {
  T v[N];
};

// Elements per 16-byte pack.
template <typename T>
constexpr int pack_width() { return 16 / static_cast<int>(sizeof(T)); }

__device__ __forceinline__ float warp_sum(float value) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) {
    value += __shfl_xor_sync(0xffffffffu, value, offset);
  }
  return value;
}

inline bool aligned_to(const void* ptr, int64_t bytes) {
  return reinterpret_cast<std::uintptr_t>(ptr) % static_cast<std::uintptr_t>(bytes) == 0;
}

// Calls fn(T{}) with T the C++ type of `dtype`; returns cudaErrorInvalidValue for anything else.
template <typename Fn>
cudaError_t dispatch_dtype(Qwen3CudaDType dtype, Fn&& fn) {
  switch (dtype) {
    case QWEN3_CUDA_FLOAT32:
      return fn(float{});
    case QWEN3_CUDA_FLOAT16:
      return fn(__half{});
    case QWEN3_CUDA_BFLOAT16:
      return fn(__nv_bfloat16{});
  }
  return cudaErrorInvalidValue;
}

// The error of the launch just made (bad configuration, no kernel image for this GPU), cleared
// so that it is reported once; errors of the kernel's execution surface at the next
// synchronising call, as with PyTorch's own kernels.
inline cudaError_t launch_status() { return cudaGetLastError(); }

}  // namespace qwen3_cuda
