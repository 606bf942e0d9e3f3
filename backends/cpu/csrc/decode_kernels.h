// The plain-C++ boundary between the torch-facing decode operators (pointwise_ops.cpp,
// attention_op.cpp) and their AVX2 loops (decode_avx2.cpp).
//
// decode_avx2.cpp is compiled with a target pragma, so, like the linear kernels (kernels.h), it
// includes no torch or standard-library headers: an inline function compiled there with AVX2
// could otherwise be merged by the linker into code that runs elsewhere. The cpu backend needs
// AVX2 to be available at all (build.cpu_lacks), so these run unconditionally.
//
// AVX2 without FMA on purpose: the pointwise loops must round `a * b` before adding `c`, as the
// separate torch operators of the eager reference do, and with FMA enabled the compiler could
// fuse the two. bfloat16 values travel as their uint16_t bits.
#pragma once

#include <stdint.h>

namespace qwen3core_cpu {
namespace decode {

// One row of RMSNorm: y = w * dtype(x * rsqrt(mean(x^2) + eps)), float32 statistics.
void rms_norm_bf16(const uint16_t* x, const uint16_t* w, uint16_t* y, int64_t dim, float eps);
void rms_norm_f32(const float* x, const float* w, float* y, int64_t dim, float eps);

// The residual add and RMSNorm of one row: sum = dtype(x + residual), y = rms_norm(sum).
void add_rms_norm_bf16(const uint16_t* x, const uint16_t* residual, const uint16_t* w,
                       uint16_t* y, uint16_t* sum, int64_t dim, float eps);
void add_rms_norm_f32(const float* x, const float* residual, const float* w, float* y,
                      float* sum, int64_t dim, float eps);

// One head of "rotate half" rotary embedding with float32 cos/sin already rounded to the
// dtype: out[i] = dtype(dtype(x1 cos) + dtype(-x2 sin)), out[i + half] = dtype(dtype(x2 cos) +
// dtype(x1 sin)). `x` is float32 holding dtype values (a bfloat16 head widened, or a norm's
// output), so the norm-and-rotate operator can hand over its normed head without a round trip.
void rotate_bf16(const float* x, const float* cos, const float* sin, uint16_t* out,
                 int64_t half);
void rotate_f32(const float* x, const float* cos, const float* sin, float* out, int64_t half);

// RMSNorm of one head into float32 (each value rounded to the dtype, as the norm's output is).
void rms_norm_head_bf16(const uint16_t* x, const uint16_t* w, float* y, int64_t dim, float eps);
void rms_norm_head_f32(const float* x, const float* w, float* y, int64_t dim, float eps);
void widen_bf16(const uint16_t* x, float* y, int64_t n);

// out[i] = dtype(dtype(silu(gate[i])) * up[i]) over n values.
void silu_mul_bf16(const uint16_t* gate, const uint16_t* up, uint16_t* out, int64_t n);
void silu_mul_f32(const float* gate, const float* up, float* out, int64_t n);
// The same on AVX-512 (decode_pointwise_avx512.cpp), equal lane for lane; only where
// wide_decode_loops() says so.
void silu_mul_bf16_avx512(const uint16_t* gate, const uint16_t* up, uint16_t* out, int64_t n);
void silu_mul_f32_avx512(const float* gate, const float* up, float* out, int64_t n);

// Whether to run the AVX-512 decode loops: where the linear kernels chose AVX-512 (their
// choice honours QWEN3CORE_CPU_ISA, so forcing "avx2" runs the AVX2 loops everywhere). Asked
// once (attention_op.cpp).
bool wide_decode_loops();

// Attention of `groups` query rows (float32, each `d` long, `q_stride` apart) sharing one key
// and value head: keys `k + t * k_stride`, values `v + t * v_stride`, t < keys, skipped where
// allowed[t * mask_stride] is 0. Scores in float32 times `scale`, a float32 softmax, the
// weighted sum accumulated in float32. Up to kAttendGroupBlock rows share each pass over the
// keys and values (8: the query heads per key/value head of Qwen3-32B and 30B-A3B; more go in
// further passes). Scratch: `scores` holds min(groups, kAttendGroupBlock) * keys floats,
// `live` keys ints. Writes acc[g * d + i] already divided by the softmax total (zeros for a
// row that may see no key).
constexpr int64_t kAttendGroupBlock = 8;
void attend_bf16(const float* q, int64_t q_stride, int64_t groups, const uint16_t* k,
                 int64_t k_stride, const uint16_t* v, int64_t v_stride, const uint8_t* allowed,
                 int64_t mask_stride, int64_t keys, int64_t d, float scale, float* scores,
                 float* acc, int32_t* live);
void attend_f32(const float* q, int64_t q_stride, int64_t groups, const float* k,
                int64_t k_stride, const float* v, int64_t v_stride, const uint8_t* allowed,
                int64_t mask_stride, int64_t keys, int64_t d, float scale, float* scores,
                float* acc, int32_t* live);

// The same on AVX-512 (16 lanes); only where the CPU has it (see attention_op.cpp).
void attend_bf16_avx512(const float* q, int64_t q_stride, int64_t groups, const uint16_t* k,
                        int64_t k_stride, const uint16_t* v, int64_t v_stride,
                        const uint8_t* allowed, int64_t mask_stride, int64_t keys, int64_t d,
                        float scale, float* scores, float* acc, int32_t* live);
void attend_f32_avx512(const float* q, int64_t q_stride, int64_t groups, const float* k,
                       int64_t k_stride, const float* v, int64_t v_stride,
                       const uint8_t* allowed, int64_t mask_stride, int64_t keys, int64_t d,
                       float scale, float* scores, float* acc, int32_t* live);

// float32 -> bfloat16 bits, round to nearest even (NaN -> quiet NaN), as c10::BFloat16 rounds.
void narrow_bf16(const float* x, uint16_t* y, int64_t n);

}  // namespace decode
}  // namespace qwen3core_cpu
