"""Writers of the published quantized checkpoint formats, for tests that need such checkpoints.

No released weights can be downloaded in tests, so tests quantize random weights and write them
the way the formats' own tools do. The packers below deliberately follow the *writers'* loops
(AutoAWQ's ``WQLinear_GEMM.from_linear``, AutoGPTQ's ``QuantLinear.pack``: one level at a time,
shifted into its word), a second formula beside the vectorised readers in
``qwen3core.quant.formats``: a test that writes with one and reads with the other checks the
bit layout, not the code against itself.

``rtn_quantize`` is plain round-to-nearest per group (not AWQ's or GPTQ's search): the formats
only store levels, zeros and scales, however they were chosen.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

AWQ_ORDER = (0, 2, 4, 6, 1, 3, 5, 7)  # AutoAWQ's order_map for 4 bits


@dataclass(frozen=True)
class Levels:
    """Unsigned levels as the quantizers produce them, before any format packs them."""

    levels: torch.Tensor  # [out, in] int64, 0..2^bits-1
    zeros: torch.Tensor  # [out, groups] int64, 0..2^bits-1 (the midpoint when symmetric)
    scales: torch.Tensor  # [out, groups] float16
    g_idx: torch.Tensor  # [in] int64, the group of each input column
    bits: int

    def dequantize(self) -> torch.Tensor:
        """[out, in] float32: (level - zero) * scale, the one formula every format shares."""
        zeros = self.zeros.index_select(1, self.g_idx).float()
        scales = self.scales.index_select(1, self.g_idx).float()
        return (self.levels.float() - zeros) * scales


def rtn_quantize(weight: torch.Tensor, *, bits: int, group_size: int, sym: bool,
                 g_idx: torch.Tensor | None = None, min_zero: int = 0) -> Levels:
    """Round-to-nearest quantization of ``weight`` [out, in] per group of input columns
    (``g_idx`` [in] assigns columns to groups; default ``i // group_size``). ``min_zero`` 1
    keeps zero points storable in GPTQ's original format, which stores ``zero - 1``."""
    out, inp = weight.shape
    if g_idx is None:
        g_idx = torch.arange(inp) // group_size
    n_groups = int(g_idx.max()) + 1
    top = (1 << bits) - 1
    w = weight.float()
    scales = torch.empty(out, n_groups)
    zeros = torch.empty(out, n_groups, dtype=torch.int64)
    for g in range(n_groups):
        cols = w[:, g_idx == g]
        if sym:
            scale = cols.abs().amax(1).clamp_min(1e-8) / ((top + 1) // 2 - 1)
            zero = torch.full((out,), (top + 1) // 2, dtype=torch.int64)
        else:
            lo, hi = cols.amin(1).clamp(max=0), cols.amax(1).clamp(min=0)
            scale = ((hi - lo) / top).clamp_min(1e-8)
            zero = torch.round(-lo / scale).to(torch.int64).clamp(min_zero, top)
        scales[:, g], zeros[:, g] = scale, zero
    scales = scales.to(torch.float16)
    levels = torch.round(w / scales.float().index_select(1, g_idx)) + zeros.index_select(1, g_idx)
    levels = levels.clamp(0, top).to(torch.int64)
    return Levels(levels, zeros, scales, g_idx, bits)


def _to_int32(words: torch.Tensor) -> torch.Tensor:
    """uint32 values held in int64 -> the same bits as int32 (how the files store them)."""
    return torch.where(words >= 2**31, words - 2**32, words).to(torch.int32)


def pack_awq(q: Levels) -> dict[str, torch.Tensor]:
    """qweight [in, out/8], qzeros [groups, out/8], scales [groups, out], as AutoAWQ's GEMM
    packing writes them: transposed, and column ``order_map[i]`` of each eight in slot ``i``."""
    intweight = q.levels.t()  # [in, out]
    zeros = q.zeros.t()  # [groups, out]
    pack_num = 32 // q.bits
    qweight = torch.zeros(intweight.shape[0], intweight.shape[1] // pack_num, dtype=torch.int64)
    qzeros = torch.zeros(zeros.shape[0], zeros.shape[1] // pack_num, dtype=torch.int64)
    for col in range(intweight.shape[1] // pack_num):
        for i in range(pack_num):
            qweight[:, col] |= intweight[:, col * pack_num + AWQ_ORDER[i]] << (i * q.bits)
            qzeros[:, col] |= zeros[:, col * pack_num + AWQ_ORDER[i]] << (i * q.bits)
    return {"qweight": _to_int32(qweight), "qzeros": _to_int32(qzeros),
            "scales": q.scales.t().contiguous()}


def pack_gptq(q: Levels, *, v1: bool = True, with_g_idx: bool = True
              ) -> dict[str, torch.Tensor]:
    """qweight [in*bits/32, out], qzeros [groups, out*bits/32], scales, g_idx, as AutoGPTQ's
    pack writes them: levels packed in order along the input axis; zero points along the
    output axis, stored minus one in the original (v1) format."""
    intweight = q.levels.t()  # [in, out]
    zeros = q.zeros.t() - (1 if v1 else 0)  # [groups, out]
    if bool((zeros < 0).any()):
        raise ValueError("GPTQ v1 stores zero - 1, so it cannot store a zero point of 0")
    per_word = 32 // q.bits
    qweight = torch.zeros(intweight.shape[0] // per_word, intweight.shape[1], dtype=torch.int64)
    for row, i in enumerate(range(0, intweight.shape[0], per_word)):
        for j in range(i, i + per_word):
            qweight[row] |= intweight[j] << (q.bits * (j - i))
    qzeros = torch.zeros(zeros.shape[0], zeros.shape[1] // per_word, dtype=torch.int64)
    for col, i in enumerate(range(0, zeros.shape[1], per_word)):
        for j in range(i, i + per_word):
            qzeros[:, col] |= zeros[:, j] << (q.bits * (j - i))
    out = {"qweight": _to_int32(qweight), "qzeros": _to_int32(qzeros),
           "scales": q.scales.t().contiguous()}
    if with_g_idx:
        out["g_idx"] = q.g_idx.to(torch.int32)
    return out


def desc_act_g_idx(in_features: int, group_size: int, seed: int) -> torch.Tensor:
    """A ``g_idx`` as GPTQ with ``desc_act`` writes it: groups of ``group_size`` consecutive
    columns *in a permuted (activation) order*."""
    perm = torch.randperm(in_features, generator=torch.Generator().manual_seed(seed))
    g_idx = torch.empty(in_features, dtype=torch.int64)
    g_idx[perm] = torch.arange(in_features) // group_size
    return g_idx


def quantize_fp8(weight: torch.Tensor, block: tuple[int, int]) -> dict[str, torch.Tensor]:
    """weight float8_e4m3fn [out, in] and weight_scale_inv float32 per ``block``, with each
    block's absolute maximum mapped to the format's largest value (448)."""
    out, inp = weight.shape
    bo, bi = block
    rows, cols = -(-out // bo), -(-inp // bi)
    scale_inv = torch.empty(rows, cols)
    q = torch.empty(out, inp, dtype=torch.float8_e4m3fn)
    fmax = torch.finfo(torch.float8_e4m3fn).max
    for r in range(rows):
        for c in range(cols):
            tile = weight[r * bo:(r + 1) * bo, c * bi:(c + 1) * bi].float()
            scale = tile.abs().max().clamp_min(1e-12) / fmax
            scale_inv[r, c] = scale
            q[r * bo:(r + 1) * bo, c * bi:(c + 1) * bi] = (tile / scale).to(torch.float8_e4m3fn)
    return {"weight": q, "weight_scale_inv": scale_inv}


# ---- whole checkpoints ---------------------------------------------------------------------

# the linears Qwen's quantized releases store quantized: attention and MLP/expert projections
# (the embedding, lm_head and the MoE router stay dense)
QUANTIZED_LINEAR = (r"model\.layers\.\d+\.(self_attn\.[qkvo]_proj|mlp\.(experts\.\d+\.)?"
                    r"(gate|up|down)_proj)\.weight")


def quantize_checkpoint(source, quantized_dir, dense_dir, *, method: str, bits: int = 4,
                        group_size: int = 32, sym: bool = False, desc_act: bool = False,
                        v1: bool = True, block: tuple[int, int] = (32, 32), shards: int = 1,
                        seed: int = 0) -> None:
    """Write ``source`` (a dense Hugging Face checkpoint directory) again as a ``method``
    ("awq", "gptq" or "fp8") checkpoint in ``quantized_dir``, and the weights it stands for,
    dequantized, as a dense float32 checkpoint in ``dense_dir``. With ``shards`` > 1 the
    tensors are dealt round-robin into that many files (so a layer's parts land in different
    shards) with a ``model.safetensors.index.json``."""
    import json
    import re
    import shutil
    from pathlib import Path

    from safetensors.torch import load_file

    source, quantized_dir, dense_dir = Path(source), Path(quantized_dir), Path(dense_dir)
    files = sorted(source.glob("*.safetensors"))
    state = {k: v for f in files for k, v in load_file(str(f)).items()}
    packed: dict[str, torch.Tensor] = {}
    dense: dict[str, torch.Tensor] = {}
    for n, (key, value) in enumerate(state.items()):
        if not re.fullmatch(QUANTIZED_LINEAR, key):
            packed[key] = dense[key] = value
            continue
        prefix = key[: -len(".weight")]
        parts, dense[key] = _quantize_one(value, method=method, bits=bits,
                                          group_size=group_size, sym=sym, desc_act=desc_act,
                                          v1=v1, block=block, seed=seed + n)
        packed.update({f"{prefix}.{part}": t for part, t in parts.items()})
    config = json.loads((source / "config.json").read_text())
    for directory in (quantized_dir, dense_dir):
        directory.mkdir(parents=True, exist_ok=True)
        for extra in source.iterdir():
            if extra.suffix != ".safetensors" and extra.name not in (
                    "config.json", "model.safetensors.index.json"):
                shutil.copy(extra, directory / extra.name)
    (dense_dir / "config.json").write_text(json.dumps(config, indent=2))
    _write_tensors(dense_dir, dense, 1)
    config["quantization_config"] = _quantization_config(method, bits, group_size, sym,
                                                         desc_act, v1, block)
    (quantized_dir / "config.json").write_text(json.dumps(config, indent=2))
    _write_tensors(quantized_dir, packed, shards)


def _quantize_one(weight: torch.Tensor, *, method: str, bits: int, group_size: int, sym: bool,
                  desc_act: bool, v1: bool, block: tuple[int, int], seed: int
                  ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    if method == "fp8":
        parts = quantize_fp8(weight, block)
        scales = parts["weight_scale_inv"].repeat_interleave(block[0], 0)[: weight.shape[0]]
        scales = scales.repeat_interleave(block[1], 1)[:, : weight.shape[1]]
        return parts, parts["weight"].float() * scales
    g_idx = desc_act_g_idx(weight.shape[1], group_size, seed) if desc_act else None
    levels = rtn_quantize(weight, bits=bits, group_size=group_size, sym=sym, g_idx=g_idx,
                          min_zero=1 if (method == "gptq" and v1) else 0)
    parts = pack_awq(levels) if method == "awq" else pack_gptq(levels, v1=v1)
    return parts, levels.dequantize()


def _quantization_config(method: str, bits: int, group_size: int, sym: bool, desc_act: bool,
                         v1: bool, block: tuple[int, int]) -> dict:
    """As the published checkpoints' config.json carry it (Qwen3-*-AWQ, -GPTQ-Int4, -FP8)."""
    if method == "awq":
        return {"quant_method": "awq", "bits": bits, "group_size": group_size,
                "version": "gemm", "zero_point": True, "modules_to_not_convert": None}
    if method == "gptq":
        return {"quant_method": "gptq", "bits": bits, "group_size": group_size,
                "desc_act": desc_act, "sym": sym, "damp_percent": 0.01,
                "true_sequential": True, "static_groups": False,
                "checkpoint_format": "gptq" if v1 else "gptq_v2"}
    return {"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic",
            "weight_block_size": list(block)}


def _write_tensors(directory, tensors: dict[str, torch.Tensor], shards: int) -> None:
    import json

    from safetensors.torch import save_file

    tensors = {k: v.contiguous() for k, v in tensors.items()}
    if shards == 1:
        save_file(tensors, str(directory / "model.safetensors"), metadata={"format": "pt"})
        return
    names = [f"model-{i + 1:05d}-of-{shards:05d}.safetensors" for i in range(shards)]
    weight_map = {key: names[n % shards] for n, key in enumerate(tensors)}
    for name in names:
        save_file({k: v for k, v in tensors.items() if weight_map[k] == name},
                  str(directory / name), metadata={"format": "pt"})
    (directory / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {}, "weight_map": weight_map}, indent=2))
