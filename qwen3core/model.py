"""The Qwen3 decoder, assembled from whichever implementation of each component was selected.

Attribute names equal the Hugging Face checkpoint keys (``model.layers.3.self_attn.q_proj``,
``model.embed_tokens``, ``lm_head``...), so a checkpoint's state dict loads without renaming.
Nothing here calls the plugin system: the factories ran in ``__init__``; ``forward`` only
calls the modules and functions they returned.
"""

from __future__ import annotations

import torch
from torch import nn

from qwen3core.cache import Cache, PassThroughStorage
from qwen3core.contracts import AttentionBatch, BuildContext, FusedLinear, KVCache
from qwen3core.fusion import fuse_linears


class Attention(nn.Module):
    def __init__(self, ctx: BuildContext, layer_idx: int):
        super().__init__()
        spec = ctx.spec
        self.layer_idx = layer_idx
        self.head_dim = spec.head_dim
        self.scale = spec.head_dim ** -0.5
        self.q_proj = ctx.linear(spec.hidden_size, spec.num_attention_heads * spec.head_dim)
        self.k_proj = ctx.linear(spec.hidden_size, spec.num_key_value_heads * spec.head_dim)
        self.v_proj = ctx.linear(spec.hidden_size, spec.num_key_value_heads * spec.head_dim)
        self.o_proj = ctx.linear(spec.num_attention_heads * spec.head_dim, spec.hidden_size)
        self.q_norm = ctx.norm(spec.head_dim)  # per-head RMSNorm, before RoPE
        self.k_norm = ctx.norm(spec.head_dim)
        self.rotary = ctx.build("rope")
        self.attend = ctx.build("attention")
        # q, k and v as one product when the linear implementation can fuse them (set by
        # prepare_weights, once the weights are real); not a module, so no checkpoint keys.
        self.qkv: FusedLinear | None = None
        kv_size = spec.num_key_value_heads * spec.head_dim
        self.qkv_sizes = [spec.num_attention_heads * spec.head_dim, kv_size, kv_size]

    def prepare_weights(self) -> None:
        self.qkv = fuse_linears(self.q_proj, self.k_proj, self.v_proj)

    def project(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self.qkv is not None:
            return self.qkv(x).split(self.qkv_sizes, dim=-1)
        return self.q_proj(x), self.k_proj(x), self.v_proj(x)

    def forward(self, x: torch.Tensor, batch: AttentionBatch, storage: KVCache) -> torch.Tensor:
        b, s, _ = x.shape
        q, k, v = self.project(x)
        q = self.q_norm(q.view(b, s, -1, self.head_dim)).transpose(1, 2)
        k = self.k_norm(k.view(b, s, -1, self.head_dim)).transpose(1, 2)
        v = v.view(b, s, -1, self.head_dim).transpose(1, 2)  # [B, H_kv, S, D]
        q, k = self.rotary(q, k, batch.positions)
        k, v = storage.update(self.layer_idx, batch.start, k, v)  # [B, H_kv, T, D]
        out = self.attend(q, k, v, batch, self.scale)  # [B, H_q, S, D]
        return self.o_proj(out.transpose(1, 2).reshape(b, s, -1))


class DecoderLayer(nn.Module):
    def __init__(self, ctx: BuildContext, layer_idx: int):
        super().__init__()
        spec = ctx.spec
        self.input_layernorm = ctx.norm(spec.hidden_size)
        self.self_attn = Attention(ctx, layer_idx)
        self.post_attention_layernorm = ctx.norm(spec.hidden_size)
        self.is_sparse = spec.is_sparse_layer(layer_idx)
        if self.is_sparse:
            self.mlp = ctx.build("moe")
        else:
            self.mlp = ctx.mlp(spec.hidden_size, spec.intermediate_size)

    def forward(self, x: torch.Tensor, batch: AttentionBatch, storage: KVCache) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), batch, storage)
        return x + self.mlp(self.post_attention_layernorm(x))


class Decoder(nn.Module):
    def __init__(self, ctx: BuildContext):
        super().__init__()
        spec = ctx.spec
        # Given its tensor, nn.Embedding skips its random init: weights are always loaded or
        # initialised later, and on meta that init would import torch._dynamo (seconds).
        self.embed_tokens = nn.Embedding(spec.vocab_size, spec.hidden_size, _weight=torch.empty(
            spec.vocab_size, spec.hidden_size, dtype=ctx.dtype, device=ctx.device))
        self.layers = nn.ModuleList(DecoderLayer(ctx, i) for i in range(spec.num_hidden_layers))
        self.norm = ctx.norm(spec.hidden_size)


class Qwen3Model(nn.Module):
    """A causal LM: ``forward(input_ids)`` returns logits [B, S, vocab]."""

    def __init__(self, ctx: BuildContext):
        super().__init__()
        self.spec = ctx.spec
        self.selection = ctx.selection
        self.model = Decoder(ctx)
        self.lm_head = ctx.linear(ctx.spec.hidden_size, ctx.spec.vocab_size)
        self.runner = ctx.build("runner")  # wraps the generation steps (eager or compiled)
        self.tie_weights()

    def tie_weights(self) -> None:
        # A head that took a quantized weight (load_quantized) has no ``weight`` to tie.
        if self.spec.tie_word_embeddings and "weight" in self.lm_head._parameters:
            self.lm_head.weight = self.model.embed_tokens.weight

    @property
    def dtype(self) -> torch.dtype:
        return self.model.embed_tokens.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.model.embed_tokens.weight.device

    def new_cache(self, batch_size: int, capacity: int | None = None) -> Cache:
        """A KV cache for ``batch_size`` sequences of at most ``capacity`` slots, stored by the
        selected ``kv_cache`` implementation."""
        if capacity is None:
            capacity = self.spec.max_position_embeddings
        ctx = BuildContext(self.spec, self.dtype, self.device, self.selection)
        storage = ctx.build("kv_cache", batch_size, capacity)
        return Cache(storage, batch_size, capacity, self.device)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                cache: Cache | None = None, last_only: bool = False) -> torch.Tensor:
        """input_ids [B, S] -> logits [B, S, vocab] ([B, 1, vocab] with ``last_only``).

        ``attention_mask`` [B, S] is 1 for real tokens, 0 for left padding. With ``cache`` the
        tokens continue the cached sequences; without one they form whole sequences.
        """
        b, s = input_ids.shape
        if cache is None:
            cache = Cache(PassThroughStorage(), b, None, input_ids.device)
        batch = cache.begin(attention_mask, s)
        x = self.model.embed_tokens(input_ids)  # [B, S, E]
        for layer in self.model.layers:
            x = layer(x, batch, cache.storage)
        if last_only:
            x = x[:, -1:]
        return self.lm_head(self.model.norm(x))

    def prepare_weights(self) -> None:
        """Let each module convert freshly loaded weights into its own layout (once)."""
        self.tie_weights()
        for module in self.modules():
            if module is not self and hasattr(module, "prepare_weights"):
                module.prepare_weights()
