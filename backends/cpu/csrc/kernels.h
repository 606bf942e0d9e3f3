// The plain-C++ boundary between the torch-facing operator (linear_op.cpp) and the
// instruction-set-specific kernels (avx2.cpp, avx512.cpp).
//
// The kernel files are compiled with per-file target pragmas (AVX2, AVX-512), so they include
// no torch or standard-library headers: an inline function compiled there with AVX-512 could
// otherwise be merged by the linker into code that runs on a CPU without it.
#pragma once

#include <stdint.h>

namespace qwen3core_cpu {

// Output features per packed tile: one 64-byte cache line holds a tile's weights for one pair
// of inputs (bfloat16) or one input (float32).
constexpr int64_t kTile = 16;

// Packed weight layouts, both [tiles, K_pad/2 or K_pad, 16(, 2)], made once by the Python side:
//   bfloat16: w[t][kp][j][e] = W[16t + j][2kp + e]  -- input pairs interleaved, the layout of
//             AVX-512 BF16 dot products; AVX2 splits a pair into two float32 lanes by a shift
//             and a mask.
//   float32:  w[t][k][j] = W[16t + j][k]
// Rows past N and the input past K are zero padding.

// How the operator lays out the activations for a kernel. S is the layout's row stride,
// activation_stride(R) (below), also that of the group sums (QGemvArgs::xsum): rows R..S-1 of
// each step are never read.
enum class XFormat {
  Float32KMajor,    // float x[K_pad][S]: x[k * S + r]
  Bf16PairsKMajor,  // uint32 x[K_pad / 2][S]: bf16 x[r][2kp] | x[r][2kp+1] << 16
};

// The row stride S of the K-major layouts for R rows: R, or R + 8 when R is a multiple of 64.
// Why: a kernel reads one input step's rows, then the next step's S * 4 bytes further on, and
// steps a multiple of 1 KiB apart (256 rows; a 512-token prefill chunk: 2 KiB) made it wait on
// memory. int4, 1024 x 2048 and 1024 x 3072, one core, 2026-11-30, AMD Zen 5, G multiply-adds a
// second with 504 rows laid out at stride S = 504: 190, 190; 512: 141, 112; 520: 188, 187;
// 1024: 97, 75; 1032: 179, 176; 768: 139, 116; and 256 rows at S = 256: 150, 121; 264: 173,
// 173. Strides of 1.5 and 2.5 KiB lost less (174 / 158, 176 / 163); 64 rows (256 bytes) lost
// nothing, but every multiple of 64 rows is padded, a superset that costs 8 rows' bytes. Decode
// batches (R <= 16) keep S = R.
constexpr int64_t activation_stride(int64_t rows) { return rows % 64 == 0 ? rows + 8 : rows; }

struct GemvArgs {
  const void* weight;    // packed tiles, see above
  const void* x;         // activations in the kernel's XFormat
  int64_t rows;          // R
  int64_t x_stride;      // S = activation_stride(R)
  int64_t k_padded;      // K rounded up to even
  int64_t out_features;  // N: outputs actually written
  void* out;             // [R, N] row-major, bfloat16 or float32
  bool out_bf16;
};

// Computes tiles [tile_begin, tile_end) for all rows.
using TileFn = void (*)(const GemvArgs&, int64_t tile_begin, int64_t tile_end);

// Quantized weights (see quant_kernels.h and backends/cpu/quant_linear.py), per tile t:
//   int8 levels: int8 w[t][k][j] = q[16t + j][k]                      (K_pad bytes x 16)
//   int4 levels: uint32 w[t][b][j]: nibble n (bits 4n..4n+3) = u[16t + j][8b + 2n] and nibble
//                n of the high half (bits 16+4n..) = u[16t + j][8b + 2n + 1], n = 0..3
//   scales: float16 [t][group][j]; zeros: int8 [t][group][j], or none (then zero_const).
// K_pad = groups * group_size (group_size even); rows past N and inputs past K are zeros.
struct QGemvArgs {
  const void* levels;
  const uint16_t* scales;
  const int8_t* zeros;   // nullptr: every zero point is zero_const
  float zero_const;
  const float* x;        // float32 [K_pad][S] (nullptr for the bfloat16-pair kernels)
  const uint32_t* xpairs;  // bfloat16 input pairs [K_pad / 2][S] (q4_bf16, q8_bf16), else nullptr
  const float* xsum;     // float32 [groups][S]: each row's sum of x over each group
  int64_t rows;          // R
  int64_t x_stride;      // S = activation_stride(R)
  int64_t groups;
  int64_t group_size;
  int64_t out_features;  // N
  void* out;             // [R, N] row-major, bfloat16 or float32
  bool out_bf16;
};
using QTileFn = void (*)(const QGemvArgs&, int64_t tile_begin, int64_t tile_end);

// Weights times int8-quantized activations (the w8a8 / w4a8 schemes; a8_kernels.h), per tile t:
//   int8 levels: uint8 w[t][k/4][j][e] = q[16t + j][4(k/4) + e] + 128     (K_pad bytes x 16)
//   int4 levels: uint32 w[t][b][j]: byte e holds u[16t + j][8b + e] in its low nibble and
//                u[16t + j][8b + 4 + e] in its high one, e = 0..3        (K_pad/2 bytes x 16)
//   scales / zeros as above (int8: no zeros; int4 without zeros: every zero point zero_const).
// Activations, in blocks of kActBlock inputs (qwen3core/quant/activations.py), rows in slots
// of kRowSlots (row r: slot set r / kRowSlots, slot r % kRowSlots), so that a kernel's group of
// rows finds each step's values at fixed offsets from one pointer:
//   xq int32 [sets][K_pad/4][kRowSlots]: four int8 levels of inputs 4i..4i+3, the first in the
//      low byte;
//   xscale float32 [sets][blocks][kRowSlots]; xsum int32 [sets][blocks][kRowSlots]: the sum of
//      the block's levels.
// K_pad = groups * group_size, group_size a multiple of kActBlock.
constexpr int64_t kActBlock = 32;
constexpr int64_t kRowSlots = 8;  // a multiple of every kernel's rows per weight load

struct A8Args {
  const void* levels;
  const uint16_t* scales;
  const int8_t* zeros;  // nullptr: every zero point is zero_const (int4 only)
  int32_t zero_const;
  const int32_t* xq;
  const float* xscale;
  const int32_t* xsum;
  int64_t rows;
  int64_t groups;
  int64_t group_size;
  int64_t out_features;
  void* out;
  bool out_bf16;
};
using A8TileFn = void (*)(const A8Args&, int64_t tile_begin, int64_t tile_end);

// Rows [r0, r1) of x [R, K] (bfloat16 or float32, unit stride along K) quantized per block of
// kActBlock inputs into xq / xscale / xsum (layout above), exactly as
// qwen3core/quant/activations.py defines it. AVX2 (avx2.cpp): one implementation for every
// integer kernel, so their levels agree bit for bit.
struct ActRows {
  const void* x;
  bool bf16;
  int64_t row_stride;
  int64_t k;
  int64_t blocks;  // K_pad / kActBlock
  int32_t* xq;
  float* xscale;
  int32_t* xsum;
};
void quantize_activations(const ActRows& a, int64_t r0, int64_t r1);

// Rows of bfloat16 x [R, K] (row stride ``row_stride``) -> the Bf16PairsKMajor layout
// pairs[K / 2][stride] and, if ``sums`` is not null, each row's float32 sum over each group of
// ``group_size`` inputs, sums[groups][stride] (the QGemvArgs::xsum layout, added up as
// linear_op.cpp's group_sums does, bit for bit), in one pass of 8x8 transposes (avx2.cpp).
// Returns false, touching nothing, unless R is a multiple of 8 and K of 16, (with sums)
// group_size of 16 and K of group_size, and the CPU has AVX2: the caller's loops handle the
// rest. Without sums group_size is not read.
bool bf16_pairs_by_eights(const uint16_t* x, int64_t row_stride, int64_t rows, int64_t k,
                          int64_t group_size, uint32_t* pairs, int64_t stride, float* sums);

// The integer kernels of one instruction set (nullptr members: not available).
struct A8KernelSet {
  const char* name;
  A8TileFn q8;
  A8TileFn q4;
};

struct KernelSet {
  const char* name;
  XFormat bf16_x_format;
  TileFn bf16;  // bfloat16 weights and activations
  TileFn f32;   // float32 weights and activations
  QTileFn q8;   // int8 levels, float32 activations
  QTileFn q4;   // int4 levels, float32 activations
  QTileFn q4_bf16;  // int4 levels, bfloat16 input pairs (AVX-512 BF16), or nullptr
  QTileFn q8_bf16;  // int8 levels, bfloat16 input pairs (AVX-512 BF16), or nullptr
};

// Each returns nullptr when the running CPU (and OS) cannot execute it.
const KernelSet* avx2_kernels();
const KernelSet* avx512_kernels();
// AVX2's integer kernels (vpmaddubsw), AVX-512 VNNI's (vpdpbusd).
const A8KernelSet* avx2_a8_kernels();
const A8KernelSet* avx512_a8_kernels();

}  // namespace qwen3core_cpu
