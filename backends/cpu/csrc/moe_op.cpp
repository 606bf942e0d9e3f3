// qwen3core_cpu::moe_experts: the routed experts of one MoE layer in one operator call.
//
// moe_experts(x [N, H], experts [N, k] int64, weights [N, k], first_expert, kind, bits,
//             gate_up stack (weights, scales, zeros, zero_consts, perms),
//             down stack (the same), intermediate I) -> [N, H] in x's dtype
//
// Each stack holds one matrix kind of every expert this process holds, indexed by local expert
// (global id - first_expert), in the layout of the cpu linear's kernels (kernels.h):
//   kind 0, dense:  bfloat16 [E, T, K/2, 16, 2] or float32 [E, T, K_pad, 16] tiles;
//   kind 1, int8/int4 levels with float activations (quant_kernels.h): levels [E, T, ., 16],
//           float16 scales and int8 zeros (or none) [E, T, groups, 16];
//   kind 2, the same for the integer kernels of w8a8 / w4a8 (a8_kernels.h).
// gate_up's T tiles are two parts, gate then up, each padded to whole tiles (I_pad outputs);
// zero_consts float32 [E, parts] and perms int64 [E, parts, K] (input order of the packed
// columns, GPTQ act-order) or empty, per part because gate and up may differ.
//
// What runs, and in what order (the eager block, backends/eager/moe.py, defines the result):
// the (token, slot) pairs are grouped by expert (tokens ascending within one); each chosen
// local expert computes gate_up on its rows, rounds it to the activation dtype, silu(gate) * up
// rounded (decode::silu_mul_*), then down, rounded; each contribution is out * weight rounded,
// and each token's contributions are added in ascending expert id from zero, rounded after each
// addition. Experts another rank holds contribute nothing (expert parallelism). Every product is
// the tile kernel the cpu linear calls, on the same rows in the same order, so the result equals
// the eager block over the cpu linear bit for bit.
//
// Threads: both products split the tiles of all chosen experts into chunks of ~128 KiB of
// weights, in memory order, that torch's threads share as qwen3core_cpu::linear shares one
// matrix's (thread_spans.h), so at batch 1 every thread streams weights of the k experts, not
// one expert per thread.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/util/BFloat16.h>
#include <torch/library.h>

#include <algorithm>
#include <cstring>
#include <type_traits>
#include <utility>
#include <vector>

#include "decode_kernels.h"
#include "kernels.h"
#include "selected_kernels.h"
#include "thread_spans.h"

namespace qwen3core_cpu {
namespace {

enum Kind : int64_t { kDense = 0, kQuant = 1, kA8 = 2 };

// One matrix kind (gate_up or down) of every local expert.
struct Stack {
  int64_t kind = 0, bits = 0;
  const uint8_t* weights = nullptr;
  int64_t expert_bytes = 0;  // one expert's weights
  const uint16_t* scales = nullptr;
  const int8_t* zeros = nullptr;  // nullptr: every zero point is the part's zero_const
  int64_t expert_groups = 0;      // scale (and zero) elements of one expert
  const float* zero_consts = nullptr;  // [E][parts]
  const int64_t* perms = nullptr;      // [E][parts][k], or nullptr
  int64_t experts = 0, tiles = 0, parts = 1, k = 0, k_padded = 0, groups = 0, group_size = 0;
  int64_t tile_bytes = 0;
  bool dense_bf16 = false;
};

Stack stack_of(const char* name, int64_t kind, int64_t bits, const at::Tensor& w,
               const at::Tensor& scales, const at::Tensor& zeros, const at::Tensor& zero_consts,
               const at::Tensor& perms, int64_t parts, int64_t k) {
  Stack s;
  s.kind = kind;
  s.bits = bits;
  s.parts = parts;
  s.k = k;
  TORCH_CHECK(w.device().is_cpu() && w.is_contiguous() && w.dim() >= 4 && w.size(3) == kTile,
              "moe_experts: ", name, " weights of shape ", w.sizes(), " are not a contiguous "
              "[experts, tiles, ., 16, ...] stack");
  s.experts = w.size(0);
  s.tiles = w.size(1);
  TORCH_CHECK(s.tiles % parts == 0, "moe_experts: ", name, " has ", s.tiles,
              " tiles, not a multiple of its ", parts, " parts");
  s.weights = static_cast<const uint8_t*>(w.data_ptr());
  s.expert_bytes = w.numel() / std::max<int64_t>(1, s.experts) * w.element_size();
  if (kind == kDense) {
    s.dense_bf16 = w.scalar_type() == at::kBFloat16;
    TORCH_CHECK((s.dense_bf16 && w.dim() == 5 && w.size(4) == 2) ||
                    (w.scalar_type() == at::kFloat && w.dim() == 4),
                "moe_experts: dense ", name, " must be bfloat16 [E, T, K/2, 16, 2] or float32 "
                "[E, T, K, 16] tiles, got ", w.scalar_type(), " ", w.sizes());
    s.k_padded = s.dense_bf16 ? w.size(2) * 2 : w.size(2);
    TORCH_CHECK(k <= s.k_padded && s.k_padded - k < 2, "moe_experts: ", name, " takes ",
                s.k_padded, " inputs (padded to even), the activations have ", k);
    s.tile_bytes = s.expert_bytes / s.tiles;
    return s;
  }
  TORCH_CHECK(kind == kQuant || kind == kA8, "moe_experts: kind must be 0 (dense), 1 "
              "(quantized levels) or 2 (integer kernels), got ", kind);
  TORCH_CHECK(bits == 4 || bits == 8, "moe_experts: bits must be 4 or 8, got ", bits);
  TORCH_CHECK(w.dim() == 4 && w.element_size() == 1, "moe_experts: ", name,
              " levels must be bytes [E, T, K or K/2, 16], got ", w.sizes());
  TORCH_CHECK(kind == kQuant || w.scalar_type() == at::kByte,
              "moe_experts: the integer kernels take uint8 levels");
  s.k_padded = bits == 8 ? w.size(2) : w.size(2) * 2;
  TORCH_CHECK(scales.scalar_type() == at::kHalf && scales.is_contiguous() && scales.dim() == 4 &&
                  scales.size(0) == s.experts && scales.size(1) == s.tiles &&
                  scales.size(3) == kTile,
              "moe_experts: ", name, " scales must be float16 [E, T, groups, 16]");
  s.groups = scales.size(2);
  TORCH_CHECK(s.groups > 0 && s.k_padded % s.groups == 0, "moe_experts: ", name, " K ",
              s.k_padded, " is not whole groups of ", s.groups);
  s.group_size = s.k_padded / s.groups;
  TORCH_CHECK(s.group_size % (kind == kA8 ? kActBlock : 2) == 0, "moe_experts: group size ",
              s.group_size, " does not suit the kernels");
  TORCH_CHECK(k <= s.k_padded && k > s.k_padded - s.group_size, "moe_experts: ", name,
              " takes ", s.k_padded, " inputs (padded to groups of ", s.group_size,
              "), the activations have ", k);
  s.scales = reinterpret_cast<const uint16_t*>(scales.data_ptr<at::Half>());
  s.expert_groups = s.tiles * s.groups * kTile;
  if (zeros.numel() > 0) {
    TORCH_CHECK(zeros.scalar_type() == at::kChar && zeros.is_contiguous() &&
                    zeros.numel() == s.experts * s.expert_groups && (kind == kQuant || bits == 4),
                "moe_experts: ", name, " zeros must be int8 [E, T, groups, 16] (int4 only for "
                "the integer kernels) or empty");
    s.zeros = zeros.data_ptr<int8_t>();
  }
  TORCH_CHECK(zero_consts.scalar_type() == at::kFloat && zero_consts.is_contiguous() &&
                  zero_consts.numel() == s.experts * parts,
              "moe_experts: ", name, " zero_consts must be float32 [E, ", parts, "]");
  s.zero_consts = zero_consts.data_ptr<float>();
  if (perms.numel() > 0) {
    TORCH_CHECK(kind == kQuant && perms.scalar_type() == at::kLong && perms.is_contiguous() &&
                    perms.numel() == s.experts * parts * k,
                "moe_experts: ", name, " perms must be int64 [E, ", parts, ", ", k,
                "] (float-activation levels only) or empty");
    s.perms = perms.data_ptr<int64_t>();
    for (int64_t i = 0; i < perms.numel(); ++i)
      TORCH_CHECK(s.perms[i] >= 0 && s.perms[i] < k, "moe_experts: ", name,
                  " perms hold an input index outside 0..", k - 1);
  }
  s.tile_bytes = s.expert_bytes / s.tiles + s.groups * kTile * (s.zeros != nullptr ? 3 : 2);
  return s;
}

// The quantized kernel for bfloat16 input pairs (AVX-512 BF16), or nullptr: what
// qwen3core_cpu::qlinear picks for bfloat16 activations.
QTileFn pair_kernel(const KernelSet& ks, int64_t bits) {
  return bits == 8 ? ks.q8_bf16 : ks.q4_bf16;
}

// One chosen expert's activations for one part, in the layout its kernel reads.
struct Act {
  std::vector<float> xf;       // float32 [K_pad][S], S = activation_stride(R) (kernels.h)
  std::vector<uint32_t> xp;    // bfloat16 pairs [K_pad / 2][S]
  std::vector<float> xsum;     // float32 [groups][S] (quantized levels)
  std::vector<int32_t> xq;     // integer kernels: see kernels.h
  std::vector<float> xs;
  std::vector<int32_t> qsum;
};

// Rows `rows[0..R)` of src [*, K] (row stride `stride`, bfloat16 or float32), columns in the
// order `perm` (nullptr: as they are), into what the stack's kernel takes.
template <typename T>
void prepare(const Stack& s, const KernelSet& ks, const T* src, int64_t stride,
             const int64_t* rows, int64_t R, const int64_t* perm, bool bf16, Act& act) {
  const int64_t k = s.k, kp = s.k_padded;
  auto value = [&](int64_t r, int64_t i) -> T {
    return src[rows[r] * stride + (perm != nullptr ? perm[i] : i)];
  };
  if (s.kind == kA8) {
    std::vector<T> gathered(static_cast<size_t>(R * k));
    for (int64_t r = 0; r < R; ++r)
      for (int64_t i = 0; i < k; ++i) gathered[r * k + i] = value(r, i);
    const int64_t blocks = kp / kActBlock, sets = (R + kRowSlots - 1) / kRowSlots;
    act.xq.assign(static_cast<size_t>(sets * kp / 4 * kRowSlots), 0);
    act.xs.assign(static_cast<size_t>(sets * blocks * kRowSlots), 0.0f);
    act.qsum.assign(static_cast<size_t>(sets * blocks * kRowSlots), 0);
    const ActRows a{gathered.data(), bf16, k, k, blocks, act.xq.data(), act.xs.data(),
                    act.qsum.data()};
    quantize_activations(a, 0, R);
    return;
  }
  const bool pairs = bf16 && ((s.kind == kDense && ks.bf16_x_format == XFormat::Bf16PairsKMajor)
                              || (s.kind == kQuant && pair_kernel(ks, s.bits) != nullptr));
  const int64_t S = activation_stride(R);
  if (pairs) {
    act.xp.assign(static_cast<size_t>(kp / 2 * S), 0u);
    for (int64_t r = 0; r < R; ++r)
      for (int64_t i = 0; i < k; ++i) {
        uint16_t b;
        const T v = value(r, i);
        std::memcpy(&b, &v, 2);
        act.xp[(i / 2) * S + r] |= static_cast<uint32_t>(b) << (16 * (i % 2));
      }
  } else {
    act.xf.assign(static_cast<size_t>(kp * S), 0.0f);
    for (int64_t i = 0; i < k; ++i)
      for (int64_t r = 0; r < R; ++r) act.xf[i * S + r] = static_cast<float>(value(r, i));
  }
  if (s.kind == kQuant) {
    // Each row's sum over each group, in the packed input order, added up exactly as
    // linear_op.cpp's group_sums does (8 partial sums, then the rest, then the partials), so
    // the products equal qwen3core_cpu::qlinear's bit for bit.
    act.xsum.assign(static_cast<size_t>(s.groups * S), 0.0f);
    for (int64_t r = 0; r < R; ++r)
      for (int64_t g = 0; g < s.groups; ++g) {
        const int64_t begin = std::min(k, g * s.group_size);
        const int64_t n = std::min(k, begin + s.group_size) - begin;
        float part[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        int64_t i = 0;
        for (; i + 8 <= n; i += 8)
          for (int j = 0; j < 8; ++j) part[j] += static_cast<float>(value(r, begin + i + j));
        float total = 0;
        for (; i < n; ++i) total += static_cast<float>(value(r, begin + i));
        for (int j = 0; j < 8; ++j) total += part[j];
        act.xsum[g * S + r] = total;
      }
  }
}

// Tiles [t0, t1) of local expert e (for R rows prepared in `act`) into out [R, n_out].
void run_tiles(const Stack& s, const KernelSet& ks, const A8KernelSet* a8, int64_t e, int64_t part,
               const Act& act, int64_t R, void* out, int64_t n_out, bool out_bf16, int64_t t0,
               int64_t t1) {
  const uint8_t* w = s.weights + e * s.expert_bytes;
  if (s.kind == kDense) {
    const bool pairs = !act.xp.empty();
    const GemvArgs args{w, pairs ? static_cast<const void*>(act.xp.data()) : act.xf.data(), R,
                        activation_stride(R), s.k_padded, n_out, out, out_bf16};
    (s.dense_bf16 ? ks.bf16 : ks.f32)(args, t0, t1);
    return;
  }
  const uint16_t* scales = s.scales + e * s.expert_groups;
  const int8_t* zeros = s.zeros != nullptr ? s.zeros + e * s.expert_groups : nullptr;
  const float zc = s.zero_consts[e * s.parts + part];
  if (s.kind == kA8) {
    const A8Args args{w, scales, zeros, static_cast<int32_t>(zc), act.xq.data(), act.xs.data(),
                      act.qsum.data(), R, s.groups, s.group_size, n_out, out, out_bf16};
    (s.bits == 8 ? a8->q8 : a8->q4)(args, t0, t1);
    return;
  }
  const bool pairs = !act.xp.empty();
  const QGemvArgs args{w, scales, zeros, zc, pairs ? nullptr : act.xf.data(),
                       pairs ? act.xp.data() : nullptr, act.xsum.data(), R,
                       activation_stride(R), s.groups,
                       s.group_size, n_out, out, out_bf16};
  (pairs ? pair_kernel(ks, s.bits) : (s.bits == 8 ? ks.q8 : ks.q4))(args, t0, t1);
}

// A chosen local expert: its (token, slot) rows, and where they sit in the row buffers.
struct Chosen {
  int64_t expert;  // local index
  int64_t first_row;
  std::vector<int64_t> tokens;
};

// Every chosen expert's tiles of `s`, split into chunks that torch's threads take in turn.
// `out_of(c)` is where chosen expert c writes its [rows, n_out] outputs.
template <typename OutOf>
void run_stack(const Stack& s, const KernelSet& ks, const A8KernelSet* a8,
               const std::vector<Chosen>& chosen, const std::vector<std::vector<Act>>& acts,
               const OutOf& out_of, int64_t n_out, bool out_bf16) {
  struct Item {
    int64_t c, part, t0, t1;
  };
  const int64_t per_part = s.tiles / s.parts;
  const int64_t chunk = std::max<int64_t>(1, (int64_t{128} << 10) / s.tile_bytes);
  std::vector<Item> items;
  for (int64_t c = 0; c < static_cast<int64_t>(chosen.size()); ++c)
    for (int64_t p = 0; p < s.parts; ++p)
      for (int64_t t = p * per_part; t < (p + 1) * per_part; t += chunk)
        items.push_back({c, p, t, std::min((p + 1) * per_part, t + chunk)});
  auto run = [&](const Item& it) {
    const Chosen& ch = chosen[it.c];
    const Act& act = acts[it.c][acts[it.c].size() == 1 ? 0 : it.part];
    run_tiles(s, ks, a8, ch.expert, it.part, act, static_cast<int64_t>(ch.tokens.size()),
              out_of(it.c), n_out, out_bf16, it.t0, it.t1);
  };
  const int64_t n = static_cast<int64_t>(items.size());
  const int64_t total_bytes = static_cast<int64_t>(chosen.size()) * s.tiles * s.tile_bytes;
  const int64_t workers = std::min<int64_t>(at::get_num_threads(), n);
  if (workers <= 1 || total_bytes < (int64_t{256} << 10)) {
    for (const Item& it : items) run(it);
    return;
  }
  run_in_spans(n, workers, [&](int64_t i) { run(items[i]); });
}

template <typename T>
inline float round_to(float v) {
  return static_cast<float>(static_cast<T>(v));
}

template <typename T>
void moe_typed(const at::Tensor& x2, const at::Tensor& experts, const at::Tensor& weights,
               int64_t first_expert, const Stack& gu, const Stack& dn, int64_t inter,
               at::Tensor& out) {
  const int64_t n = x2.size(0), h = x2.size(1), top_k = experts.size(1);
  const bool bf16 = x2.scalar_type() == at::kBFloat16;
  const KernelSet& ks = selected_kernels();
  const A8KernelSet* a8 = gu.kind == kA8 ? &selected_a8_kernels() : nullptr;
  const int64_t* ids = experts.data_ptr<int64_t>();
  const T* wts = weights.data_ptr<T>();

  // Group the (token, slot) pairs by local expert, tokens ascending within each.
  std::vector<int64_t> slot_of(static_cast<size_t>(gu.experts), -1);
  std::vector<Chosen> chosen;
  std::vector<int64_t> row_of(static_cast<size_t>(n * top_k), -1);  // (token, slot) -> row
  for (int64_t t = 0; t < n; ++t)
    for (int64_t j = 0; j < top_k; ++j) {
      const int64_t id = ids[t * top_k + j];
      TORCH_CHECK(id >= 0, "moe_experts: expert id ", id, " is negative");
      const int64_t e = id - first_expert;
      if (e < 0 || e >= gu.experts) continue;  // another rank's expert
      if (slot_of[e] < 0) {
        slot_of[e] = static_cast<int64_t>(chosen.size());
        chosen.push_back({e, 0, {}});
      }
      chosen[slot_of[e]].tokens.push_back(t);
    }
  std::sort(chosen.begin(), chosen.end(),
            [](const Chosen& a, const Chosen& b) { return a.expert < b.expert; });
  int64_t rows = 0;
  for (Chosen& c : chosen) {
    c.first_row = rows;
    rows += static_cast<int64_t>(c.tokens.size());
  }
  // Row of each (token, slot): the tokens of one expert appear once each, in order.
  {
    std::vector<int64_t> cursor(chosen.size(), 0);
    std::vector<int64_t> index_of(static_cast<size_t>(gu.experts), -1);
    for (size_t c = 0; c < chosen.size(); ++c) index_of[chosen[c].expert] = c;
    for (int64_t t = 0; t < n; ++t)
      for (int64_t j = 0; j < top_k; ++j) {
        const int64_t e = ids[t * top_k + j] - first_expert;
        if (e < 0 || e >= gu.experts) continue;
        const int64_t c = index_of[e];
        row_of[t * top_k + j] = chosen[c].first_row + cursor[c]++;
      }
  }
  out.zero_();
  if (rows == 0) return;

  const int64_t gu_out = gu.tiles * kTile, i_pad = gu_out / 2;
  // gate_up, rounded to the dtype as the cpu linear's output is.
  std::vector<std::vector<Act>> acts(chosen.size());
  auto prepare_all = [&](const Stack& s, auto&& source) {
    const int64_t count = static_cast<int64_t>(chosen.size());
    auto one = [&](int64_t c) {
      const bool own = s.perms != nullptr;
      acts[c].assign(own ? s.parts : 1, Act{});
      for (size_t p = 0; p < acts[c].size(); ++p) {
        const int64_t* perm = own ? s.perms + (chosen[c].expert * s.parts + p) * s.k : nullptr;
        source(c, perm, acts[c][p]);
      }
    };
    // Prefill-sized inputs on all threads; a decode step's few rows on this one.
    if (rows * s.k < (int64_t{1} << 16)) {
      for (int64_t c = 0; c < count; ++c) one(c);
    } else {
      at::parallel_for(0, count, 1, [&](int64_t c0, int64_t c1) {
        for (int64_t c = c0; c < c1; ++c) one(c);
      });
    }
  };
  const T* xs = x2.data_ptr<T>();
  prepare_all(gu, [&](int64_t c, const int64_t* perm, Act& act) {
    const Chosen& ch = chosen[c];
    prepare<T>(gu, ks, xs, x2.stride(0), ch.tokens.data(),
               static_cast<int64_t>(ch.tokens.size()), perm, bf16, act);
  });
  std::vector<T> hidden(static_cast<size_t>(rows * gu_out));
  run_stack(gu, ks, a8, chosen, acts,
            [&](int64_t c) { return static_cast<void*>(hidden.data() + chosen[c].first_row * gu_out); },
            gu_out, bf16);

  // silu(gate) * up, rounded as silu_mul rounds it.
  std::vector<T> act_rows(static_cast<size_t>(rows * inter));
  for (int64_t r = 0; r < rows; ++r) {
    const T* g = hidden.data() + r * gu_out;
    T* a = act_rows.data() + r * inter;
    if constexpr (std::is_same_v<T, float>) {
      decode::silu_mul_f32(g, g + i_pad, a, inter);
    } else {
      decode::silu_mul_bf16(reinterpret_cast<const uint16_t*>(g),
                            reinterpret_cast<const uint16_t*>(g + i_pad),
                            reinterpret_cast<uint16_t*>(a), inter);
    }
  }
  std::vector<int64_t> own_rows(static_cast<size_t>(rows));
  for (int64_t r = 0; r < rows; ++r) own_rows[r] = r;
  prepare_all(dn, [&](int64_t c, const int64_t* perm, Act& act) {
    const Chosen& ch = chosen[c];
    prepare<T>(dn, ks, act_rows.data(), inter, own_rows.data() + ch.first_row,
               static_cast<int64_t>(ch.tokens.size()), perm, bf16, act);
  });
  std::vector<T> down(static_cast<size_t>(rows * h));
  run_stack(dn, ks, a8, chosen, acts,
            [&](int64_t c) { return static_cast<void*>(down.data() + chosen[c].first_row * h); },
            h, bf16);

  // Each token's contributions, out * weight rounded, added in ascending expert order.
  T* o = out.data_ptr<T>();
  std::vector<float> total(static_cast<size_t>(h));
  std::vector<std::pair<int64_t, int64_t>> order(static_cast<size_t>(top_k));
  for (int64_t t = 0; t < n; ++t) {
    for (int64_t j = 0; j < top_k; ++j) order[j] = {ids[t * top_k + j], j};
    std::sort(order.begin(), order.end());
    std::fill(total.begin(), total.end(), 0.0f);
    for (const auto& [id, j] : order) {
      const int64_t r = row_of[t * top_k + j];
      if (r < 0) continue;  // another rank's expert: adds zero
      const float w = static_cast<float>(wts[t * weights.stride(0) + j * weights.stride(1)]);
      const T* d = down.data() + r * h;
      for (int64_t i = 0; i < h; ++i)
        total[i] = round_to<T>(total[i] + round_to<T>(static_cast<float>(d[i]) * w));
    }
    for (int64_t i = 0; i < h; ++i) o[t * h + i] = static_cast<T>(total[i]);
  }
}

at::Tensor moe_experts(const at::Tensor& x, const at::Tensor& experts, const at::Tensor& weights,
                       int64_t first_expert, int64_t kind, int64_t bits, const at::Tensor& gu_w,
                       const at::Tensor& gu_scales, const at::Tensor& gu_zeros,
                       const at::Tensor& gu_zero_consts, const at::Tensor& gu_perms,
                       const at::Tensor& dn_w, const at::Tensor& dn_scales,
                       const at::Tensor& dn_zeros, const at::Tensor& dn_zero_consts,
                       const at::Tensor& dn_perms, int64_t intermediate) {
  TORCH_CHECK(x.device().is_cpu() && experts.device().is_cpu() && weights.device().is_cpu(),
              "qwen3core_cpu::moe_experts runs on CPU tensors");
  TORCH_CHECK(x.scalar_type() == at::kBFloat16 || x.scalar_type() == at::kFloat,
              "qwen3core_cpu::moe_experts takes bfloat16 or float32 activations, not ",
              x.scalar_type());
  TORCH_CHECK(x.dim() >= 1, "moe_experts: x must have a feature dimension");
  const int64_t h = x.size(-1);
  at::Tensor x2 = x.reshape({-1, h});
  if (x2.size(0) > 0 && x2.stride(1) != 1) x2 = x2.contiguous();
  const int64_t n = x2.size(0);
  TORCH_CHECK(experts.scalar_type() == at::kLong && experts.dim() == 2 && experts.size(0) == n &&
                  experts.is_contiguous(),
              "moe_experts: experts must be contiguous int64 [N, k] for the ", n, " tokens, got ",
              experts.scalar_type(), " ", experts.sizes());
  TORCH_CHECK(weights.scalar_type() == x.scalar_type() && weights.dim() == 2 &&
                  weights.size(0) == n && weights.size(1) == experts.size(1),
              "moe_experts: weights must be [N, k] in the activations' dtype");
  const Stack gu = stack_of("gate_up", kind, bits, gu_w, gu_scales, gu_zeros, gu_zero_consts,
                            gu_perms, 2, h);
  const Stack dn = stack_of("down", kind, bits, dn_w, dn_scales, dn_zeros, dn_zero_consts,
                            dn_perms, 1, intermediate);
  TORCH_CHECK(dn.experts == gu.experts, "moe_experts: gate_up holds ", gu.experts,
              " experts, down ", dn.experts);
  TORCH_CHECK(intermediate > 0 && intermediate <= gu.tiles / 2 * kTile &&
                  intermediate > (gu.tiles / 2 - 1) * kTile,
              "moe_experts: gate_up's ", gu.tiles, " tiles do not hold gate and up of ",
              intermediate, " outputs each");
  TORCH_CHECK(h <= dn.tiles * kTile && h > (dn.tiles - 1) * kTile, "moe_experts: down's ",
              dn.tiles, " tiles do not hold ", h, " outputs");
  if (kind == kDense)
    TORCH_CHECK(gu.dense_bf16 == (x.scalar_type() == at::kBFloat16) &&
                    dn.dense_bf16 == gu.dense_bf16,
                "moe_experts: dense weights and activations must share one dtype");
  at::Tensor out = at::empty({n, h}, x.options());
  if (x.scalar_type() == at::kBFloat16) {
    moe_typed<c10::BFloat16>(x2, experts, weights, first_expert, gu, dn, intermediate, out);
  } else {
    moe_typed<float>(x2, experts, weights, first_expert, gu, dn, intermediate, out);
  }
  return out.view(x.sizes());
}

}  // namespace
}  // namespace qwen3core_cpu

TORCH_LIBRARY_FRAGMENT(qwen3core_cpu, m) {
  m.def("moe_experts(Tensor x, Tensor experts, Tensor weights, int first_expert, int kind, "
        "int bits, Tensor gu_w, Tensor gu_scales, Tensor gu_zeros, Tensor gu_zero_consts, "
        "Tensor gu_perms, Tensor dn_w, Tensor dn_scales, Tensor dn_zeros, "
        "Tensor dn_zero_consts, Tensor dn_perms, int intermediate) -> Tensor");
}

TORCH_LIBRARY_IMPL(qwen3core_cpu, CPU, m) {
  m.impl("moe_experts", &qwen3core_cpu::moe_experts);
}
