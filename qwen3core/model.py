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
from qwen3core.fusion import (
    LayerStep,
    NormRotary,
    fuse_decoder_layer,
    fuse_decoder_stack,
    fuse_linears,
    fuse_norms_and_rotary,
)
from qwen3core.parallel.embedding import token_embedding
from qwen3core.parallel.experts import require_local_experts
from qwen3core.tied_embedding import HeadRowsEmbedding, serve_embedding_from_head


class Attention(nn.Module):
    """``ctx.spec`` gives this rank's heads (all of them in one process); o_proj's partial
    outputs are summed across ranks (row-parallel)."""

    def __init__(self, ctx: BuildContext, layer_idx: int):
        super().__init__()
        spec = ctx.spec
        self.reduce = ctx.parallel.all_reduce
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
        # q_norm, k_norm and the rotation as one call where the rope implementation offers it
        # (also set by prepare_weights).
        self.norm_rotary: NormRotary | None = None
        kv_size = spec.num_key_value_heads * spec.head_dim
        self.qkv_sizes = [spec.num_attention_heads * spec.head_dim, kv_size, kv_size]

    def prepare_weights(self) -> None:
        self.qkv = fuse_linears(self.q_proj, self.k_proj, self.v_proj)
        self.norm_rotary = fuse_norms_and_rotary(self.q_norm, self.k_norm, self.rotary)

    def project(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self.qkv is not None:
            return self.qkv(x).split(self.qkv_sizes, dim=-1)
        return self.q_proj(x), self.k_proj(x), self.v_proj(x)

    def forward(self, x: torch.Tensor, batch: AttentionBatch, storage: KVCache) -> torch.Tensor:
        b, s, _ = x.shape
        q, k, v = self.project(x)
        v = v.view(b, s, -1, self.head_dim).transpose(1, 2)  # [B, H_kv, S, D]
        if self.norm_rotary is not None:  # takes the projections as they are: [B, S, H * D]
            q, k = self.norm_rotary(q, k, batch.positions)
        else:
            q = self.q_norm(q.view(b, s, -1, self.head_dim)).transpose(1, 2)  # [B, H_q, S, D]
            k = self.k_norm(k.view(b, s, -1, self.head_dim)).transpose(1, 2)
            q, k = self.rotary(q, k, batch.positions)
        k, v = storage.update(self.layer_idx, batch.start, k, v, batch.length)  # [B, H_kv, T, D]
        out = self.attend(q, k, v, batch, self.scale)  # [B, H_q, S, D]
        return self.reduce(self.o_proj(out.transpose(1, 2).reshape(b, s, -1)))


class DecoderLayer(nn.Module):
    def __init__(self, ctx: BuildContext, layer_idx: int):
        super().__init__()
        spec = ctx.spec
        self.input_layernorm = ctx.norm(spec.hidden_size)
        self.self_attn = Attention(ctx, layer_idx)
        self.post_attention_layernorm = ctx.norm(spec.hidden_size)
        self.is_sparse = spec.is_sparse_layer(layer_idx)
        # Row-parallel down_proj (dense) or this rank's experts (MoE): a partial sum.
        self.reduce = ctx.parallel.all_reduce
        self.is_parallel = ctx.parallel.is_parallel
        # The whole step as one callable where the implementations offer it (set by fuse(),
        # once every part is prepared); not a module, so no checkpoint keys.
        self.step: LayerStep | None = None
        if self.is_sparse:
            self.mlp = ctx.build("moe")
            require_local_experts(self.mlp, ctx)
        else:
            self.mlp = ctx.mlp(spec.hidden_size, spec.intermediate_size)

    def fuse(self) -> None:
        self.step = fuse_decoder_layer(self)

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None, batch: AttentionBatch,
                storage: KVCache) -> tuple[torch.Tensor, torch.Tensor]:
        """x [B, S, E]: the previous layer's MLP output, still to be added to ``residual`` (the
        stream before it), or the embeddings when ``residual`` is None (the first layer).
        Returns this layer's (MLP output, residual) in the same sense: each residual add is
        left to the norm that follows it, which does both in one call."""
        if self.step is not None:
            fused = self.step(x, residual, batch, storage)
            if fused is not None:
                return fused
        if residual is None:
            h, residual = self.input_layernorm(x), x
        else:
            h, residual = self.input_layernorm(x, residual)
        h, residual = self.post_attention_layernorm(self.self_attn(h, batch, storage), residual)
        return self.reduce(self.mlp(h)), residual


class Decoder(nn.Module):
    def __init__(self, ctx: BuildContext):
        super().__init__()
        spec = ctx.spec
        self.embed_tokens = token_embedding(spec, ctx.parallel, dtype=ctx.dtype,
                                            device=ctx.device)
        self.layers = nn.ModuleList(DecoderLayer(ctx, i) for i in range(spec.num_hidden_layers))
        self.norm = ctx.norm(spec.hidden_size)


class Qwen3Model(nn.Module):
    """A causal LM: ``forward(input_ids)`` returns logits [B, S, vocab].

    With ``ctx.parallel`` spanning several ranks it holds this rank's shard, and every rank
    runs the same calls; the logits are whole on every rank.
    """

    def __init__(self, ctx: BuildContext):
        super().__init__()
        self.spec = ctx.spec  # the whole model's
        self.selection = ctx.selection
        self.parallel = ctx.parallel
        ctx = ctx.shard()
        self.model = Decoder(ctx)
        self.lm_head = ctx.linear(ctx.spec.hidden_size, ctx.parallel.vocab(ctx.spec).size)
        self.runner = ctx.build("runner")  # wraps the generation steps (eager or compiled)
        # Every layer as one callable where the layers' fused steps offer it (set by
        # prepare_weights); not a module.
        self.layer_stack: LayerStep | None = None
        self.tie_weights()

    def tie_weights(self) -> None:
        # A head that took a quantized weight (load_quantized) has no ``weight`` to tie, and an
        # embedding that reads the head's rows (HeadRowsEmbedding) is tied already.
        if (self.spec.tie_word_embeddings and "weight" in self.lm_head._parameters
                and not isinstance(self.model.embed_tokens, HeadRowsEmbedding)):
            self.lm_head.weight = self.model.embed_tokens.weight

    @property
    def dtype(self) -> torch.dtype:
        embedding = self.model.embed_tokens
        if isinstance(embedding, HeadRowsEmbedding):  # its ``weight`` may be an unpacked copy
            return embedding.dtype
        return embedding.weight.dtype

    @property
    def device(self) -> torch.device:
        embedding = self.model.embed_tokens
        if isinstance(embedding, HeadRowsEmbedding):
            return embedding.device
        return embedding.weight.device

    def new_cache(self, batch_size: int, capacity: int | None = None) -> Cache:
        """A KV cache for ``batch_size`` sequences of at most ``capacity`` slots, stored by the
        selected ``kv_cache`` implementation."""
        if capacity is None:
            capacity = self.spec.max_position_embeddings
        ctx = BuildContext(self.spec, self.dtype, self.device, self.selection,
                           self.parallel).shard()
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
        residual = None  # the stream x is still to be added to (see DecoderLayer.forward)
        stacked = None
        if self.layer_stack is not None:
            stacked = self.layer_stack(x, residual, batch, cache.storage)
        if stacked is not None:
            x, residual = stacked
        else:
            for layer in self.model.layers:
                x, residual = layer(x, residual, batch, cache.storage)
        if last_only:
            x = x[:, -1:]
            residual = None if residual is None else residual[:, -1:]
        x = self.model.norm(x) if residual is None else self.model.norm(x, residual)[0]
        return self.parallel.gather_vocab(self.lm_head(x), self.spec)

    def prepare_weights(self) -> None:
        """Let each module convert freshly loaded weights into its own layout (once)."""
        self.tie_weights()
        serve_embedding_from_head(self)  # before the head packs: then it holds the only copy
        for module in self.modules():
            if module is not self and hasattr(module, "prepare_weights"):
                module.prepare_weights()
        for layer in self.model.layers:  # once its parts are prepared (and fused)
            layer.fuse()
        self.layer_stack = fuse_decoder_stack(self.model.layers)
