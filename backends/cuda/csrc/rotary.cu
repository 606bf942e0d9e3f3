// Rotary position embedding ("rotate half") for q and k in one launch.
//
// One block per token (b, s): it computes the token's cos/sin table once into shared memory,
// rounded to the activation type as the reference does, then rotates every (head, i) pair of
// q and k. Element i pairs with element i + D/2 of the same head:
//   out[i]       = x[i] * cos[i] - x[i + D/2] * sin[i]
//   out[i + D/2] = x[i + D/2] * cos[i] + x[i] * sin[i]
// with each product and each sum rounded to the activation type, as the eager expression
// `q * cos + rotate_half(q) * sin` rounds them.
#include "common.cuh"

namespace qwen3_cuda {
namespace {

constexpr int kThreads = 128;
constexpr int64_t kMaxHeadDim = 8192;  // the cos/sin table must fit in shared memory

template <typename T>
__device__ __forceinline__ void rotate_pair(const T* in, T* out, int64_t i, int64_t half,
                                            float cos_i, float sin_i) {
  const float x1 = to_float(in[i]);
  const float x2 = to_float(in[i + half]);
  const float first = __fadd_rn(round_to<T>(__fmul_rn(x1, cos_i)),
                                round_to<T>(__fmul_rn(-x2, sin_i)));
  const float second = __fadd_rn(round_to<T>(__fmul_rn(x2, cos_i)),
                                 round_to<T>(__fmul_rn(x1, sin_i)));
  out[i] = from_float<T>(first);
  out[i + half] = from_float<T>(second);
}

template <typename T>
__global__ void rotary_kernel(const T* q_in, Qwen3CudaStrides q_in_strides, T* q_out,
                              Qwen3CudaStrides q_out_strides, int64_t heads_q, const T* k_in,
                              Qwen3CudaStrides k_in_strides, T* k_out,
                              Qwen3CudaStrides k_out_strides, int64_t heads_k,
                              const int64_t* __restrict__ positions, int64_t positions_batch_stride,
                              int64_t positions_seq_stride, const float* __restrict__ inv_freq,
                              int64_t seq, int64_t half) {
  extern __shared__ float table[];  // cos [half] then sin [half]
  const int64_t token = blockIdx.x;
  const int64_t b = token / seq;
  const int64_t s = token % seq;
  const float position = static_cast<float>(
      positions[b * positions_batch_stride + s * positions_seq_stride]);
  for (int64_t i = threadIdx.x; i < half; i += blockDim.x) {
    const float angle = __fmul_rn(position, inv_freq[i]);
    table[i] = round_to<T>(cosf(angle));
    table[half + i] = round_to<T>(sinf(angle));
  }
  __syncthreads();

  const int64_t pairs = (heads_q + heads_k) * half;
  for (int64_t j = threadIdx.x; j < pairs; j += blockDim.x) {
    const int64_t head = j / half;
    const int64_t i = j % half;
    if (head < heads_q) {
      rotate_pair<T>(q_in + b * q_in_strides.batch + head * q_in_strides.head +
                         s * q_in_strides.seq,
                     q_out + b * q_out_strides.batch + head * q_out_strides.head +
                         s * q_out_strides.seq,
                     i, half, table[i], table[half + i]);
    } else {
      const int64_t h = head - heads_q;
      rotate_pair<T>(k_in + b * k_in_strides.batch + h * k_in_strides.head +
                         s * k_in_strides.seq,
                     k_out + b * k_out_strides.batch + h * k_out_strides.head +
                         s * k_out_strides.seq,
                     i, half, table[i], table[half + i]);
    }
  }
}

bool same_strides(Qwen3CudaStrides a, Qwen3CudaStrides b) {
  return a.batch == b.batch && a.head == b.head && a.seq == b.seq;
}

}  // namespace
}  // namespace qwen3_cuda

extern "C" cudaError_t qwen3_cuda_rotary(Qwen3CudaDType dtype,
                                         const void* q_in, Qwen3CudaStrides q_in_strides,
                                         void* q_out, Qwen3CudaStrides q_out_strides,
                                         int64_t heads_q,
                                         const void* k_in, Qwen3CudaStrides k_in_strides,
                                         void* k_out, Qwen3CudaStrides k_out_strides,
                                         int64_t heads_k,
                                         const int64_t* positions,
                                         int64_t positions_batch_stride,
                                         int64_t positions_seq_stride, const float* inv_freq,
                                         int64_t batch, int64_t seq, int64_t head_dim,
                                         cudaStream_t stream) {
  using namespace qwen3_cuda;
  if (batch < 0 || seq < 0 || heads_q < 0 || heads_k < 0) return cudaErrorInvalidValue;
  if (head_dim <= 0 || head_dim % 2 != 0 || head_dim > kMaxHeadDim) return cudaErrorInvalidValue;
  if (batch * seq > INT32_MAX) return cudaErrorInvalidValue;
  if (batch == 0 || seq == 0 || heads_q + heads_k == 0) return cudaSuccess;
  if (q_in == nullptr || q_out == nullptr || k_in == nullptr || k_out == nullptr ||
      positions == nullptr || inv_freq == nullptr) {
    return cudaErrorInvalidValue;
  }
  // In place only with identical layouts: otherwise one thread's write could land on an
  // element another thread has yet to read.
  if ((q_in == q_out && !same_strides(q_in_strides, q_out_strides)) ||
      (k_in == k_out && !same_strides(k_in_strides, k_out_strides))) {
    return cudaErrorInvalidValue;
  }
  const int64_t half = head_dim / 2;
  const size_t table_bytes = static_cast<size_t>(2 * half) * sizeof(float);
  return dispatch_dtype(dtype, [&](auto tag) -> cudaError_t {
    using T = decltype(tag);
    rotary_kernel<T><<<static_cast<unsigned>(batch * seq), kThreads, table_bytes, stream>>>(
        static_cast<const T*>(q_in), q_in_strides, static_cast<T*>(q_out), q_out_strides,
        heads_q, static_cast<const T*>(k_in), k_in_strides, static_cast<T*>(k_out),
        k_out_strides, heads_k, positions, positions_batch_stride, positions_seq_stride,
        inv_freq, seq, half);
    return launch_status();
  });
}
