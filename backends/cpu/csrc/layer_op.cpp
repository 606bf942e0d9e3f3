// A decoder layer's decode-sized work in two operator calls (backends/cpu/layer_step.py).
//
// Unfused, one decode step of the 0.6B makes ~60 calls per layer from Python: norms, three
// products, the q/k norm and rotation, attention, views and splits, each paying Python, the
// dispatcher and an allocation: ~2.7 ms a step outside the products (measured with the 0.6B's
// 28 layers at a tiny hidden size, where the products cost nothing). Here the same operators
// run back to back from C++:
//
//   layer_attention_in:  [add_]rms_norm -> q/k/v product -> split -> qk_norm_rotary
//   (the KV cache's update stays in Python: it is the kv_cache component's contract)
//   layer_attention_out: attention -> o product -> add_rms_norm [-> gate/up product ->
//                        silu_mul -> down product]
//
// and decode_stack runs every layer of a model that way in one call (a MoE block too), writing
// the KV cache buffers the storage hands out (its optional ``layer_buffers``) as its
// ``update`` writes them.
//
// Every step calls the very operator the unfused path calls (through the dispatcher, with the
// same arguments and views), so the fused layer is the unfused one bit for bit; nothing here
// computes anything itself. Each product is passed as its packed tensors and which operator
// multiplies by them, so these calls take any of the cpu backend's weight formats (dense
// tiles, int8/int4 with bfloat16 or float32 activations, w8a8/w4a8).
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/custom_class.h>
#include <torch/library.h>

#include <cstring>
#include <optional>
#include <tuple>
#include <vector>

namespace qwen3core_cpu {
namespace {

template <class Signature>
c10::TypedOperatorHandle<Signature> find_op(const char* name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, "").typed<Signature>();
}

using T = at::Tensor;
using TensorPair = std::tuple<T, T>;

// Looked up once, on first use (every operator is registered by then: one library).
struct Ops {
  c10::TypedOperatorHandle<T(const T&, const T&, int64_t)> linear =
      find_op<T(const T&, const T&, int64_t)>("qwen3core_cpu::linear");
  c10::TypedOperatorHandle<T(const T&, const T&, const T&, const T&, int64_t, int64_t, double,
                             int64_t)>
      qlinear = find_op<T(const T&, const T&, const T&, const T&, int64_t, int64_t, double,
                          int64_t)>("qwen3core_cpu::qlinear");
  c10::TypedOperatorHandle<T(const T&, const T&, const T&, const T&, int64_t, int64_t, int64_t,
                             int64_t)>
      qlinear_a8 = find_op<T(const T&, const T&, const T&, const T&, int64_t, int64_t, int64_t,
                             int64_t)>("qwen3core_cpu::qlinear_a8");
  c10::TypedOperatorHandle<T(const T&, const T&, double)> rms_norm =
      find_op<T(const T&, const T&, double)>("qwen3core_cpu::rms_norm");
  c10::TypedOperatorHandle<TensorPair(const T&, const T&, const T&, double)> add_rms_norm =
      find_op<TensorPair(const T&, const T&, const T&, double)>("qwen3core_cpu::add_rms_norm");
  c10::TypedOperatorHandle<TensorPair(const T&, const T&, const T&, const T&, double, const T&,
                                      const T&, double)>
      qk_norm_rotary = find_op<TensorPair(const T&, const T&, const T&, const T&, double,
                                          const T&, const T&, double)>(
          "qwen3core_cpu::qk_norm_rotary");
  c10::TypedOperatorHandle<T(const T&, const T&, const T&, const T&, double)> attention =
      find_op<T(const T&, const T&, const T&, const T&, double)>("qwen3core_cpu::attention");
  c10::TypedOperatorHandle<T(const T&)> silu_mul =
      find_op<T(const T&)>("qwen3core_cpu::silu_mul");
  using MoeSignature = T(const T&, const T&, const T&, int64_t, int64_t, int64_t, const T&,
                         const T&, const T&, const T&, const T&, const T&, const T&, const T&,
                         const T&, const T&, int64_t);
  c10::TypedOperatorHandle<MoeSignature> moe_experts =
      find_op<MoeSignature>("qwen3core_cpu::moe_experts");
};

const Ops& ops() {
  static const Ops found;
  return found;
}

// One packed weight and the operator that multiplies by it, read from the lists the Python side
// passes (layer_step.py): per product five ints (kind, tensor count, out_features, bits,
// group_size) in ``meta``, its tensors in ``weights``, its zero point in ``reals``. Lists, not a
// custom class, per layer: torch.ops converts a script object argument in ~7 us, a list of a
// layer's tensors in ~2 (for a whole model's, in decode_stack, it is the other way round).
enum ProductKind : int64_t { kDense = 0, kQuant = 1, kQuantA8 = 2 };
constexpr int64_t kProductInts = 5;

struct ProductView {
  int64_t kind, out_features, bits, group_size;
  double zero_const;
  const T* tensors;  // kDense: tiles; kQuant: levels, scales, zeros[, input order];
  int64_t count;     // kQuantA8: levels, scales, zeros

  T operator()(const T& x) const {
    const Ops& o = ops();
    switch (kind) {
      case kDense:
        return o.linear.call(x, tensors[0], out_features);
      case kQuant: {
        const T in = count == 4 ? x.index_select(-1, tensors[3]) : x;
        return o.qlinear.call(in, tensors[0], tensors[1], tensors[2], bits, group_size,
                              zero_const, out_features);
      }
      default:
        return o.qlinear_a8.call(x, tensors[0], tensors[1], tensors[2], bits, group_size,
                                 static_cast<int64_t>(zero_const), out_features);
    }
  }
};

// Reads products one after another from (weights, meta, reals), from the given offsets.
struct ProductReader {
  at::TensorList weights;
  at::IntArrayRef meta;
  at::ArrayRef<double> reals;
  size_t w, m, r;

  ProductView next() {
    TORCH_CHECK(m + kProductInts <= meta.size() && r < reals.size(),
                "layer op: the product lists are too short");
    const int64_t* p = meta.data() + m;
    const ProductView view{p[0], p[2], p[3], p[4], reals[r], weights.data() + w, p[1]};
    const int64_t want = view.kind == kDense ? 1 : 3;
    TORCH_CHECK(view.kind >= kDense && view.kind <= kQuantA8, "layer op: unknown product kind ",
                view.kind);
    TORCH_CHECK(view.count == want || (view.kind == kQuant && view.count == 4),
                "layer op: product kind ", view.kind, " takes ", want, " tensors, not ",
                view.count);
    TORCH_CHECK(w + view.count <= weights.size(), "layer op: the weight list is too short");
    m += kProductInts;
    r += 1;
    w += view.count;
    return view;
  }
};

// x [B, S, E] (and the residual stream before it, or none in the first layer) -> q [B, H_q, S,
// D], k [B, H_kv, S, D] normed per head and rotated, v [B, H_kv, S, D] (a view), and the
// residual stream: Attention.project and the norms of qwen3core/model.py, as the cpu modules
// run them. weights: input norm, q norm, k norm, inv_freq, then the q/k/v product's; meta:
// q_size, kv_size, head_dim, then the product's; reals: eps, q/k norm eps, rope scale, then the
// product's.
std::tuple<T, T, T, T> layer_attention_in(const T& x, const std::optional<T>& residual,
                                          at::TensorList weights, at::IntArrayRef meta,
                                          at::ArrayRef<double> reals, const T& positions) {
  TORCH_CHECK(x.dim() == 3, "layer_attention_in: x must be [B, S, E], got ", x.sizes());
  TORCH_CHECK(weights.size() >= 4 && meta.size() >= 3 && reals.size() >= 3,
              "layer_attention_in: the lists are too short");
  const Ops& o = ops();
  T h, stream;
  if (residual.has_value()) {
    std::tie(h, stream) = o.add_rms_norm.call(x, *residual, weights[0], reals[0]);
  } else {
    h = o.rms_norm.call(x, weights[0], reals[0]);
    stream = x;
  }
  ProductReader read{weights, meta, reals, 4, 3, 3};
  const T projected = read.next()(h);
  const int64_t q_size = meta[0], kv_size = meta[1], head_dim = meta[2];
  const std::vector<T> parts = projected.split_with_sizes({q_size, kv_size, kv_size}, -1);
  const T v = parts[2].view({x.size(0), x.size(1), -1, head_dim}).transpose(1, 2);
  auto [q, k] = o.qk_norm_rotary.call(parts[0], parts[1], weights[1], weights[2], reals[1],
                                      positions, weights[3], reals[2]);
  return {q, k, v, stream};
}

// q [B, H_q, S, D] and the cache's k, v [B, H_kv, T, D] -> (the MLP's output, the residual
// stream), or with only the o product (the MLP runs as its module: a MoE block) the
// post-attention norm's output and the stream. weights: the post-attention norm, then the o
// product's, then gate/up's and down's; meta: the product count (1 or 3), then theirs; reals:
// the attention scale, the norm's eps, then theirs.
TensorPair layer_attention_out(const T& q, const T& k, const T& v, const T& mask,
                               const T& residual, at::TensorList weights, at::IntArrayRef meta,
                               at::ArrayRef<double> reals) {
  TORCH_CHECK(weights.size() >= 1 && meta.size() >= 1 && reals.size() >= 2,
              "layer_attention_out: the lists are too short");
  TORCH_CHECK(meta[0] == 1 || meta[0] == 3, "layer_attention_out: 1 or 3 products, not ",
              meta[0]);
  const Ops& o = ops();
  const int64_t b = q.size(0), s = q.size(2);
  ProductReader read{weights, meta, reals, 1, 1, 2};
  const T attended = o.attention.call(q, k, v, mask, reals[0]);  // [B, H_q, S, D]
  const T projected = read.next()(attended.transpose(1, 2).reshape({b, s, -1}));
  auto [h, stream] = o.add_rms_norm.call(projected, residual, weights[0], reals[1]);
  if (meta[0] == 1) return {h, stream};
  const ProductView gate_up = read.next();
  const ProductView down = read.next();
  return {down(o.silu_mul.call(gate_up(h))), stream};
}

// Row b's new keys (or values) new [B, H, S, D] into buffer [B, H, room, D] at slots start[b]
// .. start[b] + S: what the eager storages' update writes (an indexed copy), as plain copies.
// Refuses a slot past the buffer, as their index_copy_ does.
void write_new_slots(const T& buffer, const T& start, const T& fresh) {
  TORCH_CHECK(buffer.dim() == 4 && fresh.dim() == 4 && buffer.size(0) == fresh.size(0) &&
                  buffer.size(1) == fresh.size(1) && buffer.size(3) == fresh.size(3),
              "decode_stack: a cache buffer ", buffer.sizes(), " does not fit new slots ",
              fresh.sizes());
  TORCH_CHECK(buffer.scalar_type() == fresh.scalar_type() && buffer.stride(3) == 1 &&
                  fresh.stride(3) == 1,
              "decode_stack: cache buffers must hold the activation dtype, rows contiguous");
  TORCH_CHECK(start.scalar_type() == at::kLong && start.dim() == 1 &&
                  start.size(0) == fresh.size(0),
              "decode_stack: start must be int64 [B]");
  const int64_t batch = fresh.size(0), heads = fresh.size(1), count = fresh.size(2);
  const int64_t room = buffer.size(2), row_bytes = fresh.size(3) * fresh.element_size();
  const int64_t* first = start.data_ptr<int64_t>();
  const auto* src = static_cast<const char*>(fresh.data_ptr());
  auto* dst = static_cast<char*>(buffer.data_ptr());
  const int64_t e = fresh.element_size();
  for (int64_t b = 0; b < batch; ++b) {
    TORCH_CHECK(first[b] >= 0 && first[b] + count <= room, "decode_stack: slots ", first[b],
                "..", first[b] + count, " are past the cache buffer's ", room);
    for (int64_t h = 0; h < heads; ++h)
      for (int64_t s = 0; s < count; ++s)
        std::memcpy(dst + (b * buffer.stride(0) + h * buffer.stride(1) +
                           (first[b] + s) * buffer.stride(2)) * e,
                    src + (b * fresh.stride(0) + h * fresh.stride(1) + s * fresh.stride(2)) * e,
                    row_bytes);
  }
}

// Every layer's two operator calls' lists (as layer_step.py makes them), held once: passing a
// whole model's ~500 tensors as a list costs ~50 us a call, this object ~8 us.
struct LayerStack : torch::CustomClassHolder {
  struct Layer {
    std::vector<T> in_weights, out_weights, moe_weights;
    std::vector<int64_t> in_meta, out_meta, moe_meta;
    std::vector<double> in_reals, out_reals, moe_reals;
  };
  std::vector<Layer> layers;

  // ``counts``: per layer, the lengths of its nine lists in that order (in, out and MoE
  // weights, meta, reals; the MoE ones empty for a dense layer); the lists themselves
  // concatenated over the layers.
  LayerStack(std::vector<T> weights, std::vector<int64_t> meta, std::vector<double> reals,
             std::vector<int64_t> counts) {
    TORCH_CHECK(counts.size() % 9 == 0, "LayerStack: nine counts per layer");
    size_t w = 0, m = 0, r = 0;
    auto take = [](auto& from, size_t& at, int64_t n) {
      TORCH_CHECK(n >= 0 && at + n <= from.size(), "LayerStack: the lists are too short");
      std::vector<typename std::decay_t<decltype(from)>::value_type> part(
          from.begin() + at, from.begin() + at + n);
      at += n;
      return part;
    };
    for (size_t i = 0; i < counts.size(); i += 9) {
      Layer layer;
      layer.in_weights = take(weights, w, counts[i]);
      layer.in_meta = take(meta, m, counts[i + 1]);
      layer.in_reals = take(reals, r, counts[i + 2]);
      layer.out_weights = take(weights, w, counts[i + 3]);
      layer.out_meta = take(meta, m, counts[i + 4]);
      layer.out_reals = take(reals, r, counts[i + 5]);
      layer.moe_weights = take(weights, w, counts[i + 6]);
      layer.moe_meta = take(meta, m, counts[i + 7]);
      layer.moe_reals = take(reals, r, counts[i + 8]);
      const bool moe = !layer.moe_meta.empty();
      TORCH_CHECK(!layer.out_meta.empty() && layer.out_meta[0] == (moe ? 1 : 3),
                  "LayerStack: a layer runs its MLP in the second call, or its MoE block after");
      TORCH_CHECK(!moe || (layer.moe_meta.size() == kProductInts + 6 &&
                           layer.moe_weights.size() >= 10),
                  "LayerStack: a MoE layer's lists are its router product, six ints and the "
                  "experts' ten tensors");
      layers.push_back(std::move(layer));
    }
    TORCH_CHECK(w == weights.size() && m == meta.size() && r == reals.size(),
                "LayerStack: the counts do not cover the lists");
  }
};

// A MoE block as the cpu backend's CpuMoE.forward runs it (backends/cpu/moe.py and the eager
// route()): the router product, softmax in float32 (or wider), top-k, renormalised if asked,
// the weights in the activations' dtype, then moe_experts. The same ATen operators, so the same
// numbers. Lists: the router product's tensors then the experts' ten (gate/up and down: levels,
// scales, zeros, constant zero points, column orders); meta: the router product's five ints,
// then top_k, renormalise, first expert, kind, bits, the intermediate size; reals: the router
// product's zero point.
T moe_block(const T& x, const LayerStack::Layer& layer) {
  const std::vector<T>& w = layer.moe_weights;
  const std::vector<int64_t>& m = layer.moe_meta;
  ProductReader read{w, m, layer.moe_reals, 0, 0, 0};
  const ProductView router = read.next();
  const int64_t* ints = m.data() + kProductInts;
  const int64_t top_k = ints[0], first = ints[2], kind = ints[3], bits = ints[4];
  const int64_t intermediate = ints[5];
  const bool renormalise = ints[1] != 0;
  const size_t e = read.w;  // the experts' ten tensors
  TORCH_CHECK(w.size() == e + 10, "decode_stack: a MoE layer's experts take ten tensors");
  const T tokens = x.reshape({-1, x.size(-1)});
  const T logits = router(tokens);
  const T probs = at::softmax(logits, -1, at::promote_types(logits.scalar_type(), at::kFloat));
  auto [weights, experts] = at::topk(probs, top_k, -1);
  if (renormalise) weights = weights / weights.sum({-1}, /*keepdim=*/true);
  const T out = ops().moe_experts.call(
      tokens, experts.contiguous(), weights.to(x.scalar_type()), first, kind, bits, w[e],
      w[e + 1], w[e + 2], w[e + 3], w[e + 4], w[e + 5], w[e + 6], w[e + 7], w[e + 8], w[e + 9],
      intermediate);
  return out.reshape(x.sizes());
}

// All layers of a decode step: for each, layer_attention_in, the new keys and values written
// into the storage's buffers at ``start`` (as its update writes them), attention over their
// first ``length`` slots (all of them for length < 0: a full-capacity storage), and
// layer_attention_out. Returns the last layer's (MLP output, residual stream).
TensorPair decode_stack(const c10::intrusive_ptr<LayerStack>& stack, const T& x,
                        const std::optional<T>& residual, const T& positions, const T& mask,
                        const T& start, int64_t length, at::TensorList keys,
                        at::TensorList values) {
  TORCH_CHECK(keys.size() == stack->layers.size() && values.size() == keys.size(),
              "decode_stack: one key and one value buffer per layer (", stack->layers.size(),
              "), got ", keys.size(), " and ", values.size());
  T h = x;
  std::optional<T> stream = residual;
  for (size_t i = 0; i < stack->layers.size(); ++i) {
    const LayerStack::Layer& layer = stack->layers[i];
    auto [q, k, v, carried] = layer_attention_in(h, stream, layer.in_weights, layer.in_meta,
                                                 layer.in_reals, positions);
    write_new_slots(keys[i], start, k);
    write_new_slots(values[i], start, v);
    const T k_all = length < 0 ? keys[i] : keys[i].narrow(2, 0, length);
    const T v_all = length < 0 ? values[i] : values[i].narrow(2, 0, length);
    auto [out, next] = layer_attention_out(q, k_all, v_all, mask, carried, layer.out_weights,
                                           layer.out_meta, layer.out_reals);
    h = layer.moe_meta.empty() ? out : moe_block(out, layer);
    stream = next;
  }
  return {h, *stream};
}

}  // namespace
}  // namespace qwen3core_cpu

TORCH_LIBRARY_FRAGMENT(qwen3core_cpu, m) {
  m.class_<qwen3core_cpu::LayerStack>("LayerStack")
      .def(torch::init<std::vector<at::Tensor>, std::vector<int64_t>, std::vector<double>,
                       std::vector<int64_t>>());
  m.def("decode_stack(__torch__.torch.classes.qwen3core_cpu.LayerStack stack, Tensor x, "
        "Tensor? residual, Tensor positions, Tensor mask, Tensor start, int length, "
        "Tensor[] keys, Tensor[] values) -> (Tensor, Tensor)");
  m.def("layer_attention_in(Tensor x, Tensor? residual, Tensor[] weights, int[] meta, "
        "float[] reals, Tensor positions) -> (Tensor, Tensor, Tensor, Tensor)");
  m.def("layer_attention_out(Tensor q, Tensor k, Tensor v, Tensor mask, Tensor residual, "
        "Tensor[] weights, int[] meta, float[] reals) -> (Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(qwen3core_cpu, CPU, m) {
  m.impl("layer_attention_in", &qwen3core_cpu::layer_attention_in);
  m.impl("layer_attention_out", &qwen3core_cpu::layer_attention_out);
  m.impl("decode_stack", &qwen3core_cpu::decode_stack);
}
