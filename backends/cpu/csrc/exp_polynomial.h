// The constants of the decode loops' vectorised e^x (Cephes' expf: x = n ln2 + r, a degree-6
// polynomial in r), shared by the AVX2 version (decode_simd.h, exp256) and the AVX-512 one
// (decode_pointwise_avx512.cpp, exp512), which must agree lane for lane. Plain constants: no
// intrinsics, so any target may include it.
#pragma once

namespace qwen3core_cpu {
namespace decode {
namespace exp_polynomial {

constexpr float kOverflow = 88.7228394f;    // above: +inf
constexpr float kUnderflow = -87.3365479f;  // below: 0 (results under 2^-126 flushed)
constexpr float kClampHigh = 88.3762626647949f;
constexpr float kLog2e = 1.44269504088896341f;
constexpr float kLn2High = 0.693359375f;  // ln 2 = kLn2High + kLn2Low, the first exact
constexpr float kLn2Low = -2.12194440e-4f;
// Horner's order: ((((c0 r + c1) r + c2) r + c3) r + c4) r + c5, then y r^2 + r + 1.
constexpr float kCoefficients[6] = {1.9875691500e-4f, 1.3981999507e-3f, 8.3334519073e-3f,
                                    4.1665795894e-2f, 1.6666665459e-1f, 5.0000001201e-1f};

}  // namespace exp_polynomial
}  // namespace decode
}  // namespace qwen3core_cpu
