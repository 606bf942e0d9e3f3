// RMSNorm: out = weight * cast(x * rsqrt(mean(x^2) + eps)), statistics in float32.
//
// Rows up to 1024 wide (the per-head q/k norms, head_dim 128, and small hidden sizes) get one
// warp each; wider rows (hidden 2048..5120) get a whole block. Both read the row twice (sum of
// squares, then normalise); the second read is served from cache.
#include "common.cuh"

namespace qwen3_cuda {
namespace {

constexpr int kWarpSize = 32;
constexpr int kWarpRowsPerBlock = 4;  // rows per 128-thread block in the warp-per-row kernel
constexpr int64_t kMaxWarpRowDim = 1024;

template <typename T, int VEC>
__device__ __forceinline__ float partial_sum_squares(const T* row, int64_t dim, int64_t first,
                                                     int64_t step) {
  float acc = 0.f;
  for (int64_t i = first * VEC; i < dim; i += step * VEC) {
    const Pack<T, VEC> pack = *reinterpret_cast<const Pack<T, VEC>*>(row + i);
#pragma unroll
    for (int j = 0; j < VEC; ++j) {
      const float v = to_float(pack.v[j]);
      acc = __fadd_rn(acc, __fmul_rn(v, v));
    }
  }
  return acc;
}

template <typename T, int VEC>
__device__ __forceinline__ void write_normalized(const T* row, const T* weight, T* out,
                                                 int64_t dim, float inv_rms, int64_t first,
                                                 int64_t step) {
  for (int64_t i = first * VEC; i < dim; i += step * VEC) {
    const Pack<T, VEC> x = *reinterpret_cast<const Pack<T, VEC>*>(row + i);
    const Pack<T, VEC> w = *reinterpret_cast<const Pack<T, VEC>*>(weight + i);
    Pack<T, VEC> y;
#pragma unroll
    for (int j = 0; j < VEC; ++j) {
      // Cast to the input type first, then multiply by the weight (rounded again).
      const float normed = round_to<T>(__fmul_rn(to_float(x.v[j]), inv_rms));
      y.v[j] = from_float<T>(__fmul_rn(to_float(w.v[j]), normed));
    }
    *reinterpret_cast<Pack<T, VEC>*>(out + i) = y;
  }
}

// mean = sum * (1/dim), then + eps, then rsqrt: three separately rounded steps, as in eager.
__device__ __forceinline__ float inverse_rms(float sum_squares, float inv_dim, float eps) {
  return rsqrtf(__fadd_rn(__fmul_rn(sum_squares, inv_dim), eps));
}

template <typename T, int VEC>
__global__ void rms_norm_warp_per_row(const T* __restrict__ x, int64_t x_row_stride,
                                      const T* __restrict__ weight, T* __restrict__ out,
                                      int64_t out_row_stride, int64_t rows, int64_t dim,
                                      float inv_dim, float eps) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kWarpRowsPerBlock +
                      threadIdx.x / kWarpSize;
  if (row >= rows) return;  // the whole warp leaves together, so the shuffles stay full
  const int64_t lane = threadIdx.x % kWarpSize;
  const T* x_row = x + row * x_row_stride;
  const float sum = warp_sum(partial_sum_squares<T, VEC>(x_row, dim, lane, kWarpSize));
  write_normalized<T, VEC>(x_row, weight, out + row * out_row_stride, dim,
                           inverse_rms(sum, inv_dim, eps), lane, kWarpSize);
}

template <typename T, int VEC>
__global__ void rms_norm_block_per_row(const T* __restrict__ x, int64_t x_row_stride,
                                       const T* __restrict__ weight, T* __restrict__ out,
                                       int64_t out_row_stride, int64_t dim, float inv_dim,
                                       float eps) {
  __shared__ float warp_sums[kWarpSize];
  __shared__ float block_inv_rms;
  const int64_t row = blockIdx.x;
  const T* x_row = x + row * x_row_stride;
  const int warp = threadIdx.x / kWarpSize;
  const int lane = threadIdx.x % kWarpSize;

  const float partial = warp_sum(
      partial_sum_squares<T, VEC>(x_row, dim, threadIdx.x, blockDim.x));
  if (lane == 0) warp_sums[warp] = partial;
  __syncthreads();
  if (warp == 0) {
    const int warps = blockDim.x / kWarpSize;
    const float total = warp_sum(lane < warps ? warp_sums[lane] : 0.f);
    if (lane == 0) block_inv_rms = inverse_rms(total, inv_dim, eps);
  }
  __syncthreads();
  write_normalized<T, VEC>(x_row, weight, out + row * out_row_stride, dim, block_inv_rms,
                           threadIdx.x, blockDim.x);
}

template <typename T, int VEC>
cudaError_t launch(const T* x, int64_t x_row_stride, const T* weight, T* out,
                   int64_t out_row_stride, int64_t rows, int64_t dim, float eps,
                   cudaStream_t stream) {
  const float inv_dim = 1.0f / static_cast<float>(dim);
  if (dim <= kMaxWarpRowDim) {
    const int64_t blocks = (rows + kWarpRowsPerBlock - 1) / kWarpRowsPerBlock;
    rms_norm_warp_per_row<T, VEC><<<static_cast<unsigned>(blocks),
                                    kWarpRowsPerBlock * kWarpSize, 0, stream>>>(
        x, x_row_stride, weight, out, out_row_stride, rows, dim, inv_dim, eps);
  } else {
    // One thread per pack, rounded up to whole warps, at most 1024 threads.
    const int64_t packs = dim / VEC;
    const int64_t threads =
        packs >= 1024 ? 1024 : ((packs + kWarpSize - 1) / kWarpSize) * kWarpSize;
    rms_norm_block_per_row<T, VEC><<<static_cast<unsigned>(rows), static_cast<unsigned>(threads),
                                     0, stream>>>(
        x, x_row_stride, weight, out, out_row_stride, dim, inv_dim, eps);
  }
  return launch_status();
}

}  // namespace
}  // namespace qwen3_cuda

extern "C" cudaError_t qwen3_cuda_rms_norm(Qwen3CudaDType dtype, const void* x,
                                           int64_t x_row_stride, const void* weight, void* out,
                                           int64_t out_row_stride, int64_t rows, int64_t dim,
                                           float eps, cudaStream_t stream) {
  using namespace qwen3_cuda;
  if (rows < 0 || dim <= 0 || rows > INT32_MAX) return cudaErrorInvalidValue;
  if (rows == 0) return cudaSuccess;
  if (x == nullptr || weight == nullptr || out == nullptr) return cudaErrorInvalidValue;
  // Rows must not overlap (a single row's stride is never used).
  if (rows > 1 && (x_row_stride < dim || out_row_stride < dim)) return cudaErrorInvalidValue;
  return dispatch_dtype(dtype, [&](auto tag) -> cudaError_t {
    using T = decltype(tag);
    constexpr int kPack = pack_width<T>();
    const bool packed = dim % kPack == 0 && x_row_stride % kPack == 0 &&
                        out_row_stride % kPack == 0 && aligned_to(x, 16) &&
                        aligned_to(weight, 16) && aligned_to(out, 16);
    const T* x_t = static_cast<const T*>(x);
    const T* w_t = static_cast<const T*>(weight);
    T* out_t = static_cast<T*>(out);
    if (packed) {
      return launch<T, kPack>(x_t, x_row_stride, w_t, out_t, out_row_stride, rows, dim, eps,
                              stream);
    }
    return launch<T, 1>(x_t, x_row_stride, w_t, out_t, out_row_stride, rows, dim, eps, stream);
  });
}
