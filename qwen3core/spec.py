"""The model spec: what a Qwen3 checkpoint's ``config.json`` says about the architecture.

Field names equal the ``config.json`` keys so that a config dict maps straight onto the spec.
Runtime choices (dtype, device, maximum sequence length, backends) are deliberately absent: they
belong to a loaded model, not to the architecture.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from qwen3core.errors import SpecError
from qwen3core.rope_scaling import RopeScaling, as_rope_scaling


@dataclass(frozen=True)
class Qwen3Spec:
    vocab_size: int = 151936
    hidden_size: int = 1024
    intermediate_size: int = 3072
    num_hidden_layers: int = 28
    num_attention_heads: int = 16
    num_key_value_heads: int = 8
    head_dim: int = 128
    rms_norm_eps: float = 1e-6
    rope_theta: float = 1_000_000.0
    max_position_embeddings: int = 40960
    tie_word_embeddings: bool = True
    attention_bias: bool = False
    # Mixture-of-Experts; num_experts == 0 means a dense model.
    num_experts: int = 0
    num_experts_per_tok: int = 0
    moe_intermediate_size: int = 0
    norm_topk_prob: bool = False
    decoder_sparse_step: int = 1
    mlp_only_layers: tuple[int, ...] = field(default_factory=tuple)
    bos_token_id: int | None = None
    eos_token_id: int | tuple[int, ...] | None = 151645
    #: RoPE stretched past the trained context (yarn, linear); None is plain RoPE.
    rope_scaling: RopeScaling | None = None

    def __post_init__(self) -> None:
        # A dict (as config.json spells it) becomes the frozen RopeScaling.
        object.__setattr__(self, "rope_scaling", as_rope_scaling(self.rope_scaling))
        problems = []
        for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                     "num_key_value_heads", "head_dim"):
            if getattr(self, name) <= 0:
                problems.append(f"{name} must be positive, got {getattr(self, name)}")
        if self.num_key_value_heads > 0 and self.num_attention_heads % self.num_key_value_heads:
            problems.append(
                f"num_attention_heads ({self.num_attention_heads}) must be a multiple of "
                f"num_key_value_heads ({self.num_key_value_heads})")
        if self.head_dim % 2:
            problems.append(f"head_dim must be even for rotary embeddings, got {self.head_dim}")
        if self.num_experts < 0:
            problems.append(f"num_experts must be >= 0, got {self.num_experts}")
        if self.num_experts > 0:
            if not 0 < self.num_experts_per_tok <= self.num_experts:
                problems.append(
                    f"num_experts_per_tok must be in 1..num_experts ({self.num_experts}), "
                    f"got {self.num_experts_per_tok}")
            if self.moe_intermediate_size <= 0:
                problems.append("moe_intermediate_size must be positive for a MoE model")
            if self.decoder_sparse_step <= 0:
                problems.append("decoder_sparse_step must be positive")
        if self.attention_bias:
            problems.append("attention_bias=True is not a Qwen3 architecture")
        if problems:
            raise SpecError("invalid Qwen3 spec: " + "; ".join(problems))

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, config: Mapping[str, Any]) -> Qwen3Spec:
        """Build from a ``config.json`` dict; keys that are not spec fields are ignored."""
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in config.items() if k in known}
        if "mlp_only_layers" in values:
            values["mlp_only_layers"] = tuple(values["mlp_only_layers"] or ())
        if isinstance(values.get("eos_token_id"), list):
            values["eos_token_id"] = tuple(values["eos_token_id"])
        if values.get("head_dim") is None and "hidden_size" in values:
            values["head_dim"] = values["hidden_size"] // values.get(
                "num_attention_heads", cls.num_attention_heads)
        if values.get("num_experts") is None:
            values["num_experts"] = 0
        values.setdefault("num_key_value_heads", values.get(
            "num_attention_heads", cls.num_attention_heads))
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["mlp_only_layers"] = list(self.mlp_only_layers)
        if isinstance(self.eos_token_id, tuple):
            out["eos_token_id"] = list(self.eos_token_id)
        out["rope_scaling"] = None if self.rope_scaling is None else self.rope_scaling.to_dict()
        return out

    def replace(self, **changes: Any) -> Qwen3Spec:
        return dataclasses.replace(self, **changes)

    # -- derived facts --------------------------------------------------------------------------
    @property
    def is_moe(self) -> bool:
        return self.num_experts > 0

    def is_sparse_layer(self, layer_idx: int) -> bool:
        """Whether layer ``layer_idx`` uses the MoE block (the rule of the reference model)."""
        return (self.num_experts > 0
                and layer_idx not in self.mlp_only_layers
                and (layer_idx + 1) % self.decoder_sparse_step == 0)

    @property
    def eos_token_ids(self) -> tuple[int, ...]:
        if self.eos_token_id is None:
            return ()
        if isinstance(self.eos_token_id, int):
            return (self.eos_token_id,)
        return tuple(self.eos_token_id)

    def parameter_count(self, *, count_tied_twice: bool = True) -> int:
        """Number of parameters; with tied embeddings the head may be counted once or twice."""
        h, d = self.hidden_size, self.head_dim
        q_out, kv_out = self.num_attention_heads * d, self.num_key_value_heads * d
        attention = h * q_out + 2 * h * kv_out + q_out * h + 2 * d
        norms = 2 * h
        total = 0
        for i in range(self.num_hidden_layers):
            if self.is_sparse_layer(i):
                mlp = h * self.num_experts + self.num_experts * 3 * h * self.moe_intermediate_size
            else:
                mlp = 3 * h * self.intermediate_size
            total += attention + norms + mlp
        embed = self.vocab_size * h
        head = embed if (count_tied_twice or not self.tie_word_embeddings) else 0
        return total + embed + head + h

    def active_parameter_count(self) -> int:
        """Parameters touched per token (only the routed experts of MoE layers count)."""
        if not self.is_moe:
            return self.parameter_count(count_tied_twice=not self.tie_word_embeddings)
        dense_like = self.replace(num_experts=self.num_experts_per_tok)
        router_diff = sum(
            self.hidden_size * (self.num_experts - self.num_experts_per_tok)
            for i in range(self.num_hidden_layers) if self.is_sparse_layer(i))
        return dense_like.parameter_count(
            count_tied_twice=not self.tie_word_embeddings) + router_diff


def _dense(hidden: int, layers: int, heads: int, kv_heads: int, inter: int, tied: bool,
           **extra: Any) -> Qwen3Spec:
    return Qwen3Spec(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                     num_key_value_heads=kv_heads, intermediate_size=inter,
                     tie_word_embeddings=tied, **extra)


# The published sizes (REFERENCE.md); a checkpoint's own config.json always wins over these.
PRESETS: dict[str, Qwen3Spec] = {
    "0.6B": _dense(1024, 28, 16, 8, 3072, True),
    "1.7B": _dense(2048, 28, 16, 8, 6144, True),
    "4B": _dense(2560, 36, 32, 8, 9728, True),
    "8B": _dense(4096, 36, 32, 8, 12288, False),
    "14B": _dense(5120, 40, 40, 8, 17408, False),
    "32B": _dense(5120, 64, 64, 8, 25600, False),
    "30B-A3B": _dense(2048, 48, 32, 4, 6144, False, num_experts=128, num_experts_per_tok=8,
                      moe_intermediate_size=768, norm_topk_prob=True),
    "235B-A22B": _dense(4096, 94, 64, 4, 12288, False, num_experts=128, num_experts_per_tok=8,
                        moe_intermediate_size=1536, norm_topk_prob=True),
    # Small shapes for tests and demos: real architecture, tiny sizes.
    "tiny": Qwen3Spec(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                      max_position_embeddings=2048, tie_word_embeddings=True, eos_token_id=None),
    "tiny-moe": Qwen3Spec(vocab_size=512, hidden_size=64, intermediate_size=128,
                          num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                          head_dim=16, max_position_embeddings=2048, tie_word_embeddings=False,
                          num_experts=8, num_experts_per_tok=2, moe_intermediate_size=32,
                          norm_topk_prob=True, eos_token_id=None),
}


def preset(name: str) -> Qwen3Spec:
    """Look up a preset by name (case-insensitive); the error lists the known names."""
    for key, spec in PRESETS.items():
        if key.lower() == name.lower():
            return spec
    raise SpecError(f"unknown preset {name!r}; known presets: {', '.join(PRESETS)}")
