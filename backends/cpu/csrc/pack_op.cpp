// Packing quantized weights into the kernels' layouts (csrc/kernels.h), straight from the int8
// levels into the final tensor: no widened copy of the levels, no intermediate layout.
//
// qwen3core_cpu::pack_levels(q, perm, bits, offset, k_pad, a8) -> Tensor
//   q      int8 [out, in] levels (any strides), as the scheme made them
//   perm   int64 [in] or None: packed column c holds input perm[c] (activation order)
//   offset added to every level (0, or 8 for signed int4 levels -8..7)
//   k_pad  inputs per output in the packed layout (whole groups); levels past `in` and outputs
//          past `out` (up to a whole tile of 16) are 0 after the offset
//   a8     false: the float-activation layout; true: the integer (int8 activation) layout
// The layouts, with L(o, k) the level of output o at packed column k (offset applied):
//   float int8  int8 [tiles, k_pad, 16]:  [t][k][j] = L(16t + j, k)
//   float int4  uint8 [tiles, k_pad/2, 16]: per tile, per block b of 8 inputs, one little-endian
//               32-bit word per output j (64 bytes): nibble n of the low half is L(.., 8b + 2n),
//               nibble n of the high half L(.., 8b + 2n + 1)
//   a8 int8     uint8 [tiles, k_pad, 16]: byte ((t*k_pad/4 + k/4)*16 + j)*4 + k%4 = L + 128
//   a8 int4     uint8 [tiles, k_pad/2, 16]: byte ((t*k_pad/8 + b)*16 + j)*4 + r =
//               L(.., 8b + r) | L(.., 8b + 4 + r) << 4
// backends/cpu/pack_reference.py is the readable definition these must equal bit for bit
// (tests/quant/test_pack_ops.py).
//
// qwen3core_cpu::tile_groups(x, add=0) -> Tensor: [out, groups] (1-, 2- or 4-byte elements) ->
// [tiles, groups, 16], zero rows past `out`: the per-group scales and zero points of a tile
// (int8 zero points plus `add`, the levels' offset; the caller checks the range).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cstdint>
#include <cstring>
#include <optional>

namespace qwen3core_cpu {
namespace {

constexpr int64_t kTile = 16;
constexpr uint64_t kLowNibbles = 0x0F0F0F0F0F0F0F0FULL;
constexpr uint64_t kEights = 0x0808080808080808ULL;

// One output row of levels: its 8 levels at packed columns k0 .. k0+7, one per byte (byte i
// holds column k0 + i), offset applied, as unsigned nibbles for 4 bits.
struct Row {
  const int8_t* base;  // nullptr: an output past `out` (all zeros)
  int64_t col_stride;
  int64_t in;
  const int64_t* perm;
  int offset;

  int level(int64_t k) const {
    if (base == nullptr || k >= in) return 0;
    const int64_t c = perm ? perm[k] : k;
    return base[c * col_stride] + offset;
  }

  // Eight 4-bit levels k0..k0+7 as bytes 0..15. (l + 8) mod 16 is l mod 16 with bit 3 flipped,
  // so a whole word of signed levels is offset with one mask and one xor.
  uint64_t nibbles8(int64_t k0) const {
    if (base != nullptr && perm == nullptr && col_stride == 1 && k0 + 8 <= in) {
      uint64_t x;
      std::memcpy(&x, base + k0, 8);
      x &= kLowNibbles;
      return offset ? x ^ kEights : x;
    }
    uint64_t x = 0;
    for (int i = 0; i < 8; ++i) {
      x |= static_cast<uint64_t>(level(k0 + i) & 0xF) << (8 * i);
    }
    return x;
  }
};

// Bytes 0, 2, 4, 6 of x (each < 16) as the nibbles 0..3 of a 16-bit value.
inline uint32_t even_nibbles(uint64_t x) {
  uint64_t e = x & 0x000F000F000F000FULL;  // byte 2i at bit 16i
  e = (e | (e >> 12)) & 0x000000FF000000FFULL;  // pairs: bits 0..7 and 32..39
  return static_cast<uint32_t>((e | (e >> 24)) & 0xFFFF);
}

void pack_float_int4(const Row* rows, uint8_t* tile, int64_t k_pad) {
  auto* words = reinterpret_cast<uint8_t*>(tile);
  for (int64_t j = 0; j < kTile; ++j) {
    const Row& row = rows[j];
    for (int64_t b = 0; b < k_pad / 8; ++b) {
      const uint64_t x = row.base ? row.nibbles8(8 * b) : 0;
      const uint32_t word = even_nibbles(x) | (even_nibbles(x >> 8) << 16);
      std::memcpy(words + (b * kTile + j) * 4, &word, 4);  // little-endian, as the kernel reads
    }
  }
}

void pack_a8_int4(const Row* rows, uint8_t* tile, int64_t k_pad) {
  for (int64_t j = 0; j < kTile; ++j) {
    const Row& row = rows[j];
    for (int64_t b = 0; b < k_pad / 8; ++b) {
      const uint64_t x = row.base ? row.nibbles8(8 * b) : 0;
      const uint32_t bytes = static_cast<uint32_t>(x) | (static_cast<uint32_t>(x >> 32) << 4);
      std::memcpy(tile + (b * kTile + j) * 4, &bytes, 4);
    }
  }
}

void pack_float_int8(const Row* rows, uint8_t* tile, int64_t k_pad) {
  for (int64_t j = 0; j < kTile; ++j) {
    const Row& row = rows[j];
    for (int64_t k = 0; k < k_pad; ++k) {
      tile[k * kTile + j] = static_cast<uint8_t>(static_cast<int8_t>(row.level(k)));
    }
  }
}

void pack_a8_int8(const Row* rows, uint8_t* tile, int64_t k_pad) {
  for (int64_t j = 0; j < kTile; ++j) {
    const Row& row = rows[j];
    for (int64_t k = 0; k < k_pad; ++k) {
      tile[((k / 4) * kTile + j) * 4 + k % 4] = static_cast<uint8_t>(row.level(k) + 128);
    }
  }
}

at::Tensor pack_levels(const at::Tensor& q, const std::optional<at::Tensor>& perm, int64_t bits,
                       int64_t offset, int64_t k_pad, bool a8) {
  TORCH_CHECK(q.device().is_cpu() && q.dim() == 2 && q.scalar_type() == at::kChar,
              "pack_levels takes int8 [out, in] levels on the CPU");
  TORCH_CHECK(bits == 4 || bits == 8, "pack_levels: bits must be 4 or 8");
  TORCH_CHECK(offset == 0 || (bits == 4 && offset == 8), "pack_levels: offset 0, or 8 for int4");
  const int64_t out = q.size(0), in = q.size(1);
  TORCH_CHECK(k_pad >= in && k_pad % (a8 ? 32 : (bits == 4 ? 8 : 2)) == 0,
              "pack_levels: k_pad must cover the inputs in whole blocks");
  at::Tensor order;
  const int64_t* perm_ptr = nullptr;
  if (perm.has_value()) {
    TORCH_CHECK(!a8, "pack_levels: the integer layout keeps the column order");
    order = perm->to(at::kLong).contiguous();
    TORCH_CHECK(order.dim() == 1 && order.size(0) == in, "pack_levels: perm must be [in]");
    perm_ptr = order.data_ptr<int64_t>();
    for (int64_t k = 0; k < in; ++k) {
      TORCH_CHECK(perm_ptr[k] >= 0 && perm_ptr[k] < in, "pack_levels: perm out of range");
    }
  }
  const int64_t tiles = (out + kTile - 1) / kTile;
  const int64_t tile_bytes = bits == 4 ? k_pad / 2 * kTile : k_pad * kTile;
  const auto dtype = (bits == 8 && !a8) ? at::kChar : at::kByte;
  at::Tensor packed = at::empty({tiles, bits == 4 ? k_pad / 2 : k_pad, kTile},
                                q.options().dtype(dtype));
  auto* dst = static_cast<uint8_t*>(packed.data_ptr());
  const auto* src = q.data_ptr<int8_t>();
  const int64_t row_stride = q.stride(0), col_stride = q.stride(1);
  at::parallel_for(0, tiles, 1, [&](int64_t begin, int64_t end) {
    Row rows[kTile];
    for (int64_t t = begin; t < end; ++t) {
      for (int64_t j = 0; j < kTile; ++j) {
        const int64_t o = t * kTile + j;
        rows[j] = Row{o < out ? src + o * row_stride : nullptr, col_stride, in, perm_ptr,
                      static_cast<int>(offset)};
      }
      uint8_t* tile = dst + t * tile_bytes;
      if (bits == 4) {
        (a8 ? pack_a8_int4 : pack_float_int4)(rows, tile, k_pad);
      } else {
        (a8 ? pack_a8_int8 : pack_float_int8)(rows, tile, k_pad);
      }
    }
  });
  return packed;
}

template <typename T>
void tile_rows(const at::Tensor& x, at::Tensor& tiled, T add = T(0)) {
  const int64_t out = x.size(0), groups = x.size(1), tiles = tiled.size(0);
  const auto* src = static_cast<const T*>(x.data_ptr());
  auto* dst = static_cast<T*>(tiled.data_ptr());
  const int64_t rs = x.stride(0), cs = x.stride(1);
  at::parallel_for(0, tiles, 16, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      for (int64_t g = 0; g < groups; ++g) {
        T* line = dst + (t * groups + g) * kTile;
        for (int64_t j = 0; j < kTile; ++j) {
          const int64_t o = t * kTile + j;
          line[j] = o < out ? static_cast<T>(src[o * rs + g * cs] + add) : T(0);
        }
      }
    }
  });
}

at::Tensor tile_groups(const at::Tensor& x, int64_t add) {
  TORCH_CHECK(x.device().is_cpu() && x.dim() == 2, "tile_groups takes [out, groups] on the CPU");
  const int64_t tiles = (x.size(0) + kTile - 1) / kTile;
  at::Tensor tiled = at::empty({tiles, x.size(1), kTile}, x.options());
  if (add != 0) {  // int8 zero points moved with their levels (the caller checked the range)
    TORCH_CHECK(x.scalar_type() == at::kChar, "tile_groups: only int8 values take an offset");
    tile_rows<int8_t>(x, tiled, static_cast<int8_t>(add));
    return tiled;
  }
  switch (x.element_size()) {
    case 1: tile_rows<uint8_t>(x, tiled); break;
    case 2: tile_rows<uint16_t>(x, tiled); break;
    case 4: tile_rows<uint32_t>(x, tiled); break;
    default: TORCH_CHECK(false, "tile_groups: 1-, 2- or 4-byte elements");
  }
  return tiled;
}

}  // namespace
}  // namespace qwen3core_cpu

TORCH_LIBRARY_FRAGMENT(qwen3core_cpu, m) {
  m.def("pack_levels(Tensor q, Tensor? perm, int bits, int offset, int k_pad, bool a8) -> Tensor");
  m.def("tile_groups(Tensor x, int add=0) -> Tensor");
}

TORCH_LIBRARY_IMPL(qwen3core_cpu, CPU, m) {
  m.impl("pack_levels", &qwen3core_cpu::pack_levels);
  m.impl("tile_groups", &qwen3core_cpu::tile_groups);
}
