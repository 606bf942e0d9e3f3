// The SwiGLU activation: out = cast(silu(gate)) * up.
//
// silu is computed as torch computes F.silu: in float32, x / (1 + exp(-x)), rounded to the
// activation type; the product with `up` is a second rounded step, as in `F.silu(g) * u`.
// Grid: x over rows (up to 2^31 - 1 tokens), y over column chunks; each thread handles one
// 16-byte pack when rows are aligned, one element otherwise.
#include "common.cuh"

namespace qwen3_cuda {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxGridY = 65535;

template <typename T>
__device__ __forceinline__ float silu_then_mul(T gate, T up) {
  const float g = to_float(gate);
  const float activated = round_to<T>(__fdiv_rn(g, __fadd_rn(1.0f, expf(-g))));
  return __fmul_rn(activated, to_float(up));
}

template <typename T, int VEC>
__global__ void silu_mul_kernel(const T* __restrict__ gate, int64_t gate_row_stride,
                                const T* __restrict__ up, int64_t up_row_stride,
                                T* __restrict__ out, int64_t out_row_stride, int64_t cols) {
  const int64_t row = blockIdx.x;
  const int64_t col = (static_cast<int64_t>(blockIdx.y) * blockDim.x + threadIdx.x) * VEC;
  if (col >= cols) return;
  using P = Pack<T, VEC>;
  const P g = *reinterpret_cast<const P*>(gate + row * gate_row_stride + col);
  const P u = *reinterpret_cast<const P*>(up + row * up_row_stride + col);
  P y;
#pragma unroll
  for (int j = 0; j < VEC; ++j) y.v[j] = from_float<T>(silu_then_mul<T>(g.v[j], u.v[j]));
  *reinterpret_cast<P*>(out + row * out_row_stride + col) = y;
}

template <typename T, int VEC>
cudaError_t launch(const T* gate, int64_t gate_row_stride, const T* up, int64_t up_row_stride,
                   T* out, int64_t out_row_stride, int64_t rows, int64_t cols,
                   cudaStream_t stream) {
  const int64_t per_block = static_cast<int64_t>(kThreads) * VEC;
  const int64_t chunks = (cols + per_block - 1) / per_block;
  if (chunks > kMaxGridY) return cudaErrorInvalidValue;
  const dim3 grid(static_cast<unsigned>(rows), static_cast<unsigned>(chunks));
  silu_mul_kernel<T, VEC><<<grid, kThreads, 0, stream>>>(gate, gate_row_stride, up,
                                                         up_row_stride, out, out_row_stride,
                                                         cols);
  return launch_status();
}

}  // namespace
}  // namespace qwen3_cuda

extern "C" cudaError_t qwen3_cuda_silu_mul(Qwen3CudaDType dtype, const void* gate,
                                           int64_t gate_row_stride, const void* up,
                                           int64_t up_row_stride, void* out,
                                           int64_t out_row_stride, int64_t rows, int64_t cols,
                                           cudaStream_t stream) {
  using namespace qwen3_cuda;
  if (rows < 0 || cols <= 0 || rows > INT32_MAX) return cudaErrorInvalidValue;
  if (rows == 0) return cudaSuccess;
  if (gate == nullptr || up == nullptr || out == nullptr) return cudaErrorInvalidValue;
  // Rows must not overlap (a single row's stride is never used).
  if (rows > 1 && (gate_row_stride < cols || up_row_stride < cols || out_row_stride < cols)) {
    return cudaErrorInvalidValue;
  }
  return dispatch_dtype(dtype, [&](auto tag) -> cudaError_t {
    using T = decltype(tag);
    constexpr int kPack = pack_width<T>();
    const bool packed = cols % kPack == 0 && gate_row_stride % kPack == 0 &&
                        up_row_stride % kPack == 0 && out_row_stride % kPack == 0 &&
                        aligned_to(gate, 16) && aligned_to(up, 16) && aligned_to(out, 16);
    const T* gate_t = static_cast<const T*>(gate);
    const T* up_t = static_cast<const T*>(up);
    T* out_t = static_cast<T*>(out);
    if (packed) {
      return launch<T, kPack>(gate_t, gate_row_stride, up_t, up_row_stride, out_t,
                              out_row_stride, rows, cols, stream);
    }
    return launch<T, 1>(gate_t, gate_row_stride, up_t, up_row_stride, out_t, out_row_stride,
                        rows, cols, stream);
  });
}
