// The torch operators of the cpu backend: qwen3core_cpu::linear and qwen3core_cpu::isa.
//
// linear(x [..., K], packed, N) -> [..., N] in x's dtype. Activations are converted once per
// call into the layout the kernel broadcasts from (K-major, float32 or bfloat16 pairs); the
// output tiles are split over torch's intra-op threads, each thread streaming its own
// contiguous run of packed weights.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "kernels.h"
#include "selected_kernels.h"
#include "thread_spans.h"

namespace qwen3core_cpu {
namespace {

const KernelSet* choose_kernels() {
  const char* forced = std::getenv("QWEN3CORE_CPU_ISA");
  if (forced != nullptr && forced[0] != '\0') {
    if (std::strcmp(forced, "avx2") == 0) return avx2_kernels();
    if (std::strcmp(forced, "avx512") == 0) return avx512_kernels();
    TORCH_CHECK(false, "QWEN3CORE_CPU_ISA must be 'avx2' or 'avx512' (or unset), not '",
                forced, "'");
  }
  const KernelSet* best = avx512_kernels();
  return best != nullptr ? best : avx2_kernels();
}

const KernelSet& kernels() {
  static const KernelSet* chosen = choose_kernels();
  TORCH_CHECK(chosen != nullptr,
              "the qwen3core cpu kernels need an x86-64 CPU with AVX2 and FMA (or the "
              "instruction set QWEN3CORE_CPU_ISA names); select another linear backend, "
              "e.g. backends={'linear': 'eager'}");
  return *chosen;
}

// Per-thread scratch memory for what a call lays out for its kernels (activations in the
// kernel's layout, group sums): a decode step makes ~113 calls, each of which would otherwise
// allocate (and zero) its temporaries. The calling thread writes a buffer before the kernels
// run and the kernels (on any of torch's threads) only read it within the call, so one buffer
// per slot and thread suffices. Layouts over kScratchMaxBytes (prefill) get memory of their
// own, so that a long prompt does not stay allocated for the thread's lifetime.
constexpr int64_t kScratchMaxBytes = int64_t{1} << 20;
enum ScratchSlot { kSlotX = 0, kSlotScale, kSlotSum, kSlots };

struct ScratchBuffer {
  void* data = nullptr;
  int64_t bytes = 0;
  ~ScratchBuffer() { std::free(data); }
};

// ``bytes`` of uninitialised memory, 64-byte aligned: the thread's buffer for ``slot``, or
// ``owner`` (a new tensor) for a large request.
void* scratch(ScratchSlot slot, int64_t bytes, at::Tensor& owner) {
  if (bytes > kScratchMaxBytes) {
    owner = at::empty({bytes}, at::TensorOptions().dtype(at::kByte));
    return owner.data_ptr();
  }
  thread_local ScratchBuffer buffers[kSlots];
  ScratchBuffer& b = buffers[slot];
  if (b.bytes < bytes) {
    std::free(b.data);
    b.data = std::aligned_alloc(64, static_cast<size_t>(kScratchMaxBytes));
    TORCH_CHECK(b.data != nullptr, "qwen3core_cpu: out of memory for a 1 MiB scratch buffer");
    b.bytes = kScratchMaxBytes;
  }
  return b.data;
}

// The sum of n values as float32, in 8 independent partial sums (so it vectorises; the order
// differs from a running sum only in float32's last bits).
template <typename T>
float sum_of(const T* src, int64_t n) {
  float part[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) part[j] += static_cast<float>(src[i + j]);
  float total = 0;
  for (; i < n; ++i) total += static_cast<float>(src[i]);
  for (int j = 0; j < 8; ++j) total += part[j];
  return total;
}

// Each row's sum of x over each group of ``group_size`` inputs, into float32 [groups][S],
// S = activation_stride(R).
void group_sums(const at::Tensor& x2, int64_t group_size, int64_t groups, float* dst) {
  const int64_t rows = x2.size(0), k = x2.size(1), row_stride = x2.stride(0);
  const int64_t stride = activation_stride(rows);
  AT_DISPATCH_FLOATING_TYPES_AND(at::kBFloat16, x2.scalar_type(), "qwen3core_cpu_xsum", [&] {
    const scalar_t* src = x2.data_ptr<scalar_t>();
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t g = 0; g < groups; ++g) {
        const int64_t begin = std::min(k, g * group_size);
        const int64_t end = std::min(k, begin + group_size);
        dst[g * stride + r] = sum_of(src + r * row_stride + begin, end - begin);
      }
  });
}

// [R, K] rows of x -> float32 [K_pad][S], S = activation_stride(R) (kernels.h; zero past K).
// Written in order, read from R sequential streams. One float32 row already in that layout is
// used as it is.
const float* float32_k_major(const at::Tensor& x2, int64_t k_padded, at::Tensor& owner) {
  const int64_t rows = x2.size(0), k = x2.size(1), row_stride = x2.stride(0);
  const int64_t stride = activation_stride(rows);
  if (rows == 1 && k == k_padded && x2.scalar_type() == at::kFloat)
    return x2.data_ptr<float>();
  float* dst = static_cast<float*>(scratch(kSlotX, k_padded * stride * 4, owner));
  AT_DISPATCH_FLOATING_TYPES_AND(at::kBFloat16, x2.scalar_type(), "qwen3core_cpu_x", [&] {
    const scalar_t* src = x2.data_ptr<scalar_t>();
    if (rows == 1) {
      for (int64_t i = 0; i < k; ++i) dst[i] = static_cast<float>(src[i]);
    } else {
      for (int64_t i = 0; i < k; ++i)
        for (int64_t r = 0; r < rows; ++r)
          dst[i * stride + r] = static_cast<float>(src[r * row_stride + i]);
    }
  });
  std::fill(dst + k * stride, dst + k_padded * stride, 0.0f);
  return dst;
}

// [R, K] bfloat16 rows of x -> uint32 [K_pad / 2][S], S = activation_stride(R), each holding
// inputs (2kp, 2kp + 1). One row over the whole of K_pad is that layout already (little-endian
// pairs) and is used as is.
// With ``sums`` (and its group_size), also each row's sum over each group, as group_sums.
const uint32_t* bf16_pairs_k_major(const at::Tensor& x2, int64_t k_padded, at::Tensor& owner,
                                   float* sums = nullptr, int64_t group_size = 0) {
  const int64_t rows = x2.size(0), k = x2.size(1), row_stride = x2.stride(0);
  const uint16_t* src = reinterpret_cast<const uint16_t*>(x2.data_ptr<at::BFloat16>());
  if (rows == 1 && k == k_padded) {
    if (sums != nullptr) group_sums(x2, group_size, k_padded / group_size, sums);
    return reinterpret_cast<const uint32_t*>(src);
  }
  const int64_t pairs = k_padded / 2, whole = k / 2;  // pairs [0, whole) lie inside K
  const int64_t stride = activation_stride(rows);
  uint32_t* dst = static_cast<uint32_t*>(scratch(kSlotX, pairs * stride * 4, owner));
  // A batch of 8 (16, ...) rows: 8x8 transposes, the sums on the way (~10 us -> ~1 us for 8
  // rows of the 0.6B's down projection, K = 3072, where the loops below take ~10).
  if (k == k_padded &&
      bf16_pairs_by_eights(src, row_stride, rows, k, group_size, dst, stride, sums))
    return dst;
  if (sums != nullptr) group_sums(x2, group_size, k_padded / group_size, sums);
  // Row by row, each whole pair one 32-bit copy (already the little-endian pair): a batch's
  // rows otherwise cost two bounds checks and a shift per input (1.7 % of an 8-row int4 step).
  for (int64_t r = 0; r < rows; ++r) {
    const uint16_t* row = src + r * row_stride;
    for (int64_t kp = 0; kp < whole; ++kp) std::memcpy(dst + kp * stride + r, row + 2 * kp, 4);
    // An odd K's last input, then zeros past K (qlinear pads K to whole groups).
    for (int64_t kp = whole; kp < pairs; ++kp)
      dst[kp * stride + r] = 2 * kp < k ? row[2 * kp] : 0;
  }
  return dst;
}

// Splits the tiles into chunks of ~128 KiB of weights, shared among torch's threads by
// run_in_spans (thread_spans.h): each thread streams its own contiguous share and a thread the
// OS pauses (a busy machine) delays one chunk, not its whole share. The number of chunks is a
// multiple of the threads, of near-equal sizes, so that on a quiet machine every thread gets
// the same share (5 chunks of 14 tiles over 2 threads would leave one thread 3 chunks: a third
// more time than an even split). Small matrices run on the calling thread: waking another
// costs more than it saves.
// ``run(begin, end)`` computes output tiles [begin, end).
template <typename Run>
void run_in_chunks(const Run& run, int64_t tiles, int64_t tile_bytes) {
  const int64_t threads = at::get_num_threads();
  if (threads <= 1 || tiles < 2 || tiles * tile_bytes < (int64_t{256} << 10)) {
    run(0, tiles);
    return;
  }
  const int64_t by_size = std::max<int64_t>(1, tiles * tile_bytes / (int64_t{128} << 10));
  const int64_t chunks = std::min(tiles, (by_size + threads - 1) / threads * threads);
  // Chunk c covers tiles [c * tiles / chunks, (c + 1) * tiles / chunks): sizes differ by one.
  run_in_spans(chunks, std::min(threads, chunks),
               [&](int64_t c) { run(c * tiles / chunks, (c + 1) * tiles / chunks); });
}

// x [..., K] as rows [R, K] with unit stride along K, an uninitialised [R, N] output, and the
// shape to view that output as ([..., N]); checks that N fits the packed weight's tiles.
struct Rows {
  at::Tensor x;
  at::Tensor out;
  std::vector<int64_t> out_shape;
};

Rows rows_of(const at::Tensor& x, int64_t k, int64_t out_features, int64_t tiles) {
  TORCH_CHECK(out_features > (tiles - 1) * kTile && out_features <= tiles * kTile,
              "out_features ", out_features, " does not match the packed weight's ", tiles,
              " tiles of ", kTile);
  at::Tensor x2 = x.reshape({-1, k});
  if (x2.size(0) > 0 && x2.stride(1) != 1) x2 = x2.contiguous();
  std::vector<int64_t> out_shape(x.sizes().begin(), x.sizes().end());
  out_shape.back() = out_features;
  at::Tensor out = at::empty({x2.size(0), out_features}, x.options());
  return {x2, out, out_shape};
}

at::Tensor linear(const at::Tensor& x, const at::Tensor& packed, int64_t out_features) {
  TORCH_CHECK(x.device().is_cpu() && packed.device().is_cpu(),
              "qwen3core_cpu::linear runs on CPU tensors, got x on ", x.device(),
              " and the packed weight on ", packed.device());
  const bool bf16 = packed.scalar_type() == at::kBFloat16;
  TORCH_CHECK(bf16 || packed.scalar_type() == at::kFloat,
              "qwen3core_cpu::linear supports bfloat16 and float32 weights, not ",
              packed.scalar_type());
  TORCH_CHECK(x.scalar_type() == packed.scalar_type(), "activations are ", x.scalar_type(),
              " but the packed weight is ", packed.scalar_type(), "; use one dtype for both");
  TORCH_CHECK(packed.is_contiguous() && packed.dim() == (bf16 ? 4 : 3) &&
                  packed.size(2) == kTile && (!bf16 || packed.size(3) == 2),
              "packed weight of shape ", packed.sizes(), " is not in the cpu backend's layout "
              "([tiles, K/2, 16, 2] for bfloat16, [tiles, K, 16] for float32); make it with "
              "qwen3core_backends.cpu.linear.pack_weight");
  const int64_t tiles = packed.size(0);
  const int64_t k_padded = bf16 ? packed.size(1) * 2 : packed.size(1);
  const int64_t k = x.dim() > 0 ? x.size(-1) : 0;
  TORCH_CHECK(x.dim() >= 1 && k <= k_padded && k_padded - k < 2 && k_padded % 2 == 0,
              "x has ", k, " input features but the packed weight has ", k_padded,
              " (padded to even)");

  const Rows io = rows_of(x, k, out_features, tiles);
  const at::Tensor& x2 = io.x;
  const at::Tensor& out = io.out;
  const std::vector<int64_t>& out_shape = io.out_shape;
  const int64_t rows = x2.size(0);
  if (rows == 0 || out_features == 0) return out.view(out_shape);
  if (k == 0) return out.zero_().view(out_shape);

  const KernelSet& ks = kernels();
  const bool pairs = bf16 && ks.bf16_x_format == XFormat::Bf16PairsKMajor;
  at::Tensor owner;  // holds a large layout's memory until the kernels are done
  const void* xk = pairs ? static_cast<const void*>(bf16_pairs_k_major(x2, k_padded, owner))
                         : static_cast<const void*>(float32_k_major(x2, k_padded, owner));
  const GemvArgs args{packed.data_ptr(), xk, rows, activation_stride(rows), k_padded,
                      out_features, out.data_ptr(), bf16};
  const TileFn fn = bf16 ? ks.bf16 : ks.f32;
  run_in_chunks([&](int64_t begin, int64_t end) { fn(args, begin, end); }, tiles,
                kTile * k_padded * packed.element_size());
  return out.view(out_shape);
}

// The checks both quantized operators make of their operands, and the sizes they derive.
// ``group_multiple``: what group_size must be a multiple of (2 for qlinear, the activation
// block for qlinear_a8); ``zeros_need_int4``: qlinear_a8's int8 levels have no zero points.
struct QuantOperands {
  int64_t tiles, k_padded, groups, k;
  bool has_zeros;
};

QuantOperands check_quant_operands(const char* op, const at::Tensor& x, const at::Tensor& levels,
                                   const at::Tensor& scales, const at::Tensor& zeros,
                                   int64_t bits, int64_t group_size, int64_t group_multiple,
                                   bool zeros_need_int4) {
  TORCH_CHECK(x.device().is_cpu() && levels.device().is_cpu(), "qwen3core_cpu::", op,
              " runs on CPU tensors");
  TORCH_CHECK(x.scalar_type() == at::kBFloat16 || x.scalar_type() == at::kFloat,
              "qwen3core_cpu::", op, " takes bfloat16 or float32 activations, not ",
              x.scalar_type());
  TORCH_CHECK(bits == 4 || bits == 8, "bits must be 4 or 8, got ", bits);
  TORCH_CHECK(group_size > 0 && group_size % group_multiple == 0, "group_size must be a "
              "positive multiple of ", group_multiple, ", got ", group_size);
  TORCH_CHECK(levels.is_contiguous() && levels.dim() == 3 && levels.size(2) == kTile &&
                  levels.element_size() == 1,
              "levels of shape ", levels.sizes(), " are not [tiles, K or K/2, 16] bytes");
  QuantOperands o{};
  o.tiles = levels.size(0);
  o.k_padded = bits == 8 ? levels.size(1) : levels.size(1) * 2;
  TORCH_CHECK(o.k_padded % group_size == 0, "padded K ", o.k_padded, " is not a multiple of ",
              group_size);
  o.groups = o.k_padded / group_size;
  TORCH_CHECK(scales.scalar_type() == at::kHalf && scales.is_contiguous() &&
                  scales.numel() == o.tiles * o.groups * kTile,
              "scales must be float16 [tiles, groups, 16]");
  o.has_zeros = zeros.numel() > 0;
  TORCH_CHECK(!o.has_zeros || ((!zeros_need_int4 || bits == 4) &&
                               zeros.scalar_type() == at::kChar && zeros.is_contiguous() &&
                               zeros.numel() == o.tiles * o.groups * kTile),
              "zeros must be int8 [tiles, groups, 16]", zeros_need_int4 ? " (int4 only)" : "",
              " or empty");
  o.k = x.dim() > 0 ? x.size(-1) : 0;
  TORCH_CHECK(x.dim() >= 1 && o.k <= o.k_padded && o.k > o.k_padded - group_size,
              "x has ", o.k, " input features but the packed weight has ", o.k_padded,
              " (padded to groups of ", group_size, ")");
  return o;
}

// qlinear(x [..., K], levels, scales, zeros, bits, group_size, zero_const, N) -> [..., N] in
// x's dtype, for int8/int4 levels packed by backends/cpu/quant_linear.py (layout: kernels.h).
// ``zeros`` may be empty: every zero point is then ``zero_const``.
at::Tensor qlinear(const at::Tensor& x, const at::Tensor& levels, const at::Tensor& scales,
                   const at::Tensor& zeros, int64_t bits, int64_t group_size,
                   double zero_const, int64_t out_features) {
  const QuantOperands o = check_quant_operands("qlinear", x, levels, scales, zeros, bits,
                                               group_size, 2, false);
  const int64_t tiles = o.tiles, k_padded = o.k_padded, groups = o.groups, k = o.k;
  const bool has_zeros = o.has_zeros;

  const Rows io = rows_of(x, k, out_features, tiles);
  const at::Tensor& x2 = io.x;
  const at::Tensor& out = io.out;
  const std::vector<int64_t>& out_shape = io.out_shape;
  const int64_t rows = x2.size(0);
  if (rows == 0 || out_features == 0) return out.view(out_shape);

  const KernelSet& ks = kernels();
  const QTileFn pair_fn = bits == 8 ? ks.q8_bf16 : ks.q4_bf16;
  const bool pairs = x.scalar_type() == at::kBFloat16 && pair_fn != nullptr;
  // Each row's sum of x over each group, in the input order: read only for zero points (the
  // int4 bfloat16-pair kernel always has one, 128 + z).
  at::Tensor sum_owner, x_owner;  // hold large layouts' memory until the kernels are done
  float* sp = static_cast<float*>(scratch(kSlotSum, groups * activation_stride(rows) * 4,
                                          sum_owner));
  const bool need_sums = (pairs && bits == 4) || has_zeros || zero_const != 0.0;
  if (need_sums && !pairs) group_sums(x2, group_size, groups, sp);
  const QGemvArgs args{levels.data_ptr(),
                       reinterpret_cast<const uint16_t*>(scales.data_ptr<at::Half>()),
                       has_zeros ? zeros.data_ptr<int8_t>() : nullptr,
                       static_cast<float>(zero_const),
                       pairs ? nullptr : float32_k_major(x2, k_padded, x_owner),
                       pairs ? bf16_pairs_k_major(x2, k_padded, x_owner,
                                                  need_sums ? sp : nullptr, group_size)
                             : nullptr,
                       sp, rows, activation_stride(rows), groups, group_size,
                       out_features, out.data_ptr(), x.scalar_type() == at::kBFloat16};
  const QTileFn fn = pairs ? pair_fn : (bits == 8 ? ks.q8 : ks.q4);
  const int64_t tile_bytes = levels.size(1) * kTile + groups * kTile * (has_zeros ? 3 : 2);
  run_in_chunks([&](int64_t begin, int64_t end) { fn(args, begin, end); }, tiles, tile_bytes);
  return out.view(out_shape);
}

// The integer kernels for int8 activations: VNNI where the CPU has it, else AVX2's
// (QWEN3CORE_CPU_ISA=avx2 forces those; =avx512 on a CPU without VNNI also gets them).
const A8KernelSet* choose_a8_kernels() {
  const char* forced = std::getenv("QWEN3CORE_CPU_ISA");
  const bool avx2_only = forced != nullptr && std::strcmp(forced, "avx2") == 0;
  const A8KernelSet* best = avx2_only ? nullptr : avx512_a8_kernels();
  return best != nullptr ? best : avx2_a8_kernels();
}

const A8KernelSet& a8_kernels() {
  kernels();  // the same checks of QWEN3CORE_CPU_ISA and of the CPU first
  static const A8KernelSet* chosen = choose_a8_kernels();
  TORCH_CHECK(chosen != nullptr, "the qwen3core cpu integer kernels need AVX2");
  return *chosen;
}

// qlinear_a8(x [..., K], levels, scales, zeros, bits, group_size, zero_const, N) -> [..., N] in
// x's dtype: the w8a8 / w4a8 product (layout: kernels.h; packed by
// backends/cpu/quant_linear.py). x is quantized here, once per call, into buffers all threads
// read; ``zeros`` may be empty (int8; int4 with every zero point ``zero_const``).
at::Tensor qlinear_a8(const at::Tensor& x, const at::Tensor& levels, const at::Tensor& scales,
                      const at::Tensor& zeros, int64_t bits, int64_t group_size,
                      int64_t zero_const, int64_t out_features) {
  const QuantOperands o = check_quant_operands("qlinear_a8", x, levels, scales, zeros, bits,
                                               group_size, kActBlock, true);
  TORCH_CHECK(levels.scalar_type() == at::kByte, "qwen3core_cpu::qlinear_a8 takes uint8 levels "
              "(int8 levels + 128, or int4 nibbles), not ", levels.scalar_type());
  const int64_t tiles = o.tiles, k_padded = o.k_padded, groups = o.groups, k = o.k;
  const bool has_zeros = o.has_zeros;

  const Rows io = rows_of(x, k, out_features, tiles);
  const at::Tensor& x2 = io.x;
  const at::Tensor& out = io.out;
  const int64_t rows = x2.size(0);
  if (rows == 0 || out_features == 0) return out.view(io.out_shape);

  const int64_t blocks = k_padded / kActBlock;
  const int64_t sets = (rows + kRowSlots - 1) / kRowSlots;  // layout: kernels.h
  at::Tensor owners[kSlots];  // hold large layouts' memory until the kernels are done
  auto* xq = static_cast<int32_t*>(scratch(kSlotX, sets * k_padded / 4 * kRowSlots * 4,
                                           owners[kSlotX]));
  auto* xs = static_cast<float*>(scratch(kSlotScale, sets * blocks * kRowSlots * 4,
                                         owners[kSlotScale]));
  auto* xsum = static_cast<int32_t*>(scratch(kSlotSum, sets * blocks * kRowSlots * 4,
                                             owners[kSlotSum]));
  const ActRows act{x2.data_ptr(), x2.scalar_type() == at::kBFloat16, x2.stride(0), k, blocks,
                    xq, xs, xsum};
  a8_kernels();  // checks the CPU before any AVX2 code runs
  at::parallel_for(0, rows, std::max<int64_t>(1, (int64_t{1} << 16) / k_padded),
                   [&](int64_t r0, int64_t r1) { quantize_activations(act, r0, r1); });
  const A8Args args{levels.data_ptr(),
                    reinterpret_cast<const uint16_t*>(scales.data_ptr<at::Half>()),
                    has_zeros ? zeros.data_ptr<int8_t>() : nullptr,
                    static_cast<int32_t>(zero_const),
                    xq, xs, xsum, rows, groups, group_size, out_features, out.data_ptr(),
                    x.scalar_type() == at::kBFloat16};
  const A8KernelSet& ks = a8_kernels();
  const A8TileFn fn = bits == 8 ? ks.q8 : ks.q4;
  const int64_t tile_bytes = levels.size(1) * kTile + groups * kTile * (has_zeros ? 3 : 2);
  run_in_chunks([&](int64_t begin, int64_t end) { fn(args, begin, end); }, tiles, tile_bytes);
  return out.view(io.out_shape);
}

std::string isa() { return kernels().name; }
std::string a8_isa() { return a8_kernels().name; }

}  // namespace

const KernelSet& selected_kernels() { return kernels(); }
const A8KernelSet& selected_a8_kernels() { return a8_kernels(); }

}  // namespace qwen3core_cpu

TORCH_LIBRARY(qwen3core_cpu, m) {
  m.def("linear(Tensor x, Tensor packed, int out_features) -> Tensor");
  m.def("isa() -> str", &qwen3core_cpu::isa);
  m.def("qlinear(Tensor x, Tensor levels, Tensor scales, Tensor zeros, int bits, "
        "int group_size, float zero_const, int out_features) -> Tensor");
  m.def("a8_isa() -> str", &qwen3core_cpu::a8_isa);
  m.def("qlinear_a8(Tensor x, Tensor levels, Tensor scales, Tensor zeros, int bits, "
        "int group_size, int zero_const, int out_features) -> Tensor");
}

TORCH_LIBRARY_IMPL(qwen3core_cpu, CPU, m) {
  m.impl("linear", &qwen3core_cpu::linear);
  m.impl("qlinear", &qwen3core_cpu::qlinear);
  m.impl("qlinear_a8", &qwen3core_cpu::qlinear_a8);
}
