"""The cuda backend.

Without a GPU: the kernel sources compile with nvcc for sm_90, the torch binding compiles
against torch's headers, every implementation is listed as unavailable with the right reason
(cheaply, without compiling), the Python wrappers reject bad arguments before any launch, the
attention dispatch agrees with eager on torch's CPU kernels, and the kernel cache is found.

With a GPU (skipped with the reason otherwise): each kernel against the eager op per dtype and
at odd sizes and strides, the operators under torch.compile, flash attention against eager,
and greedy decoding of tiny and tiny-moe against eager. ``scripts/gpu_verify.sh`` runs these.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from qwen3core_backends.cuda import attention as cuda_attention
from qwen3core_backends.cuda import library as cuda_library
from qwen3core_backends.cuda import ops
from qwen3core_backends.cuda.mlp import CudaSwiGLU
from qwen3core_backends.cuda.norm import CudaRMSNorm
from qwen3core_backends.cuda.rope import CudaRotary, rotary_inv_freq
from qwen3core_backends.eager.attention import eager_attention
from qwen3core_backends.eager.norm import RMSNorm
from qwen3core_backends.eager.rope import EagerRotary, rotary_cos_sin
from torch.nn import functional as F

from qwen3core import PRESETS, BackendSelectionError
from qwen3core.build import build_skeleton
from qwen3core.contracts import COMPONENTS, AttentionBatch, Selection
from qwen3core.registry import get_registry
from qwen3core.rope_scaling import RopeScaling
from qwen3core.testing import (
    assert_greedy_equivalent,
    candidate_model,
    greedy,
    reference_model,
    reference_names,
    tolerance_for,
)

CUDA_IMPLEMENTATIONS = {"norm": "cuda", "rope": "cuda", "mlp": "cuda", "attention": "flash"}
EAGER = {c: ("dynamic" if c == "kv_cache" else "eager") for c in COMPONENTS}
KERNEL_DTYPES = [torch.float32, torch.float16, torch.bfloat16]
FLASH_DTYPES = [torch.float16, torch.bfloat16]

needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(),
                               reason="needs a CUDA GPU (torch.cuda.is_available() is False); "
                                      "run scripts/gpu_verify.sh on a GPU machine")
needs_nvcc = pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not on PATH")


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# == compile checks (nvcc, no GPU needed) ========================================================
@needs_nvcc
@pytest.mark.parametrize("source", cuda_library.KERNEL_SOURCES)
def test_kernel_source_compiles_for_sm90(source, tmp_path):
    command = ["nvcc", "-c", *cuda_library.nvcc_flags([(9, 0)]), "--Werror", "all-warnings",
               f"-I{cuda_library.CSRC}", str(cuda_library.CSRC / source), "-o",
               str(tmp_path / "kernel.o")]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"{' '.join(command)}\n{done.stderr}"
    assert (tmp_path / "kernel.o").stat().st_size > 0


def _cuda_include_dir() -> Path | None:
    candidates = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"]
    nvcc = shutil.which("nvcc")
    if nvcc:
        candidates.append(str(Path(nvcc).resolve().parent.parent))
    for root in filter(None, candidates):
        if (Path(root) / "include" / "cuda_runtime.h").exists():
            return Path(root) / "include"
    return None


@pytest.mark.skipif(shutil.which("c++") is None, reason="no C++ compiler on PATH")
@pytest.mark.skipif(_cuda_include_dir() is None, reason="no CUDA toolkit headers found")
def test_binding_compiles_against_torch_headers(tmp_path):
    from torch.utils.cpp_extension import include_paths

    torch_includes = include_paths()
    # torch's CPU wheels ship the c10/cuda headers but not this one generated config header;
    # an empty stand-in is enough for a syntax check (CUDA wheels have the real one).
    generated = Path("c10", "cuda", "impl", "cuda_cmake_macros.h")
    if not any((Path(p) / generated).exists() for p in torch_includes):
        (tmp_path / generated).parent.mkdir(parents=True)
        (tmp_path / generated).write_text("#pragma once\n")
    command = ["c++", "-fsyntax-only", "-std=c++20", *(f"-I{p}" for p in torch_includes),
               f"-I{tmp_path}", f"-I{_cuda_include_dir()}", f"-I{cuda_library.CSRC}",
               str(cuda_library.CSRC / cuda_library.BINDING_SOURCE)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-4000:]


def test_kernel_sources_include_no_torch_headers():
    for name in (*cuda_library.KERNEL_SOURCES, *cuda_library.HEADERS):
        lines = (cuda_library.CSRC / name).read_text().splitlines()
        included = [line.split()[1].strip('<>"') for line in lines
                    if line.startswith("#include")]
        assert included, name
        for header in included:
            assert not header.startswith(("torch/", "ATen/", "c10/", "pybind11/")), (name, header)


@pytest.mark.skipif(torch.version.cuda is not None, reason="this torch can build the kernels")
def test_ahead_of_time_build_explains_why_it_cannot_run_here():
    done = subprocess.run([sys.executable, "-m", "qwen3core_backends.cuda.build", "--arch", "9.0"],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 2
    assert "has no CUDA; install a CUDA build of torch" in done.stderr
    assert "Warning" not in done.stderr


def test_gencode_targets_the_gpu_with_ptx_fallback():
    assert cuda_library.gencode_flags([(9, 0)]) == [
        "-gencode=arch=compute_90,code=sm_90", "-gencode=arch=compute_90,code=compute_90"]
    assert cuda_library.gencode_flags([(9, 0), (8, 0)]) == [
        "-gencode=arch=compute_80,code=sm_80", "-gencode=arch=compute_90,code=sm_90",
        "-gencode=arch=compute_90,code=compute_90"]
    assert cuda_library.parse_capability("9.0") == (9, 0)
    assert cuda_library.parse_capability("sm_120") == (12, 0)
    with pytest.raises(cuda_library.KernelBuildError, match="write it like 9.0"):
        cuda_library.parse_capability("hopper")


# == registration and availability ===============================================================
def test_each_cuda_implementation_is_registered_above_the_others():
    registry = get_registry()
    for component, name in CUDA_IMPLEMENTATIONS.items():
        impl = registry.get(component, name)
        assert impl.plugin == "cuda"
        others = [i.priority for i in registry.implementations(component) if i.plugin != "cuda"]
        assert impl.priority > max(others), component


@pytest.mark.parametrize("component", sorted(CUDA_IMPLEMENTATIONS))
def test_unavailable_on_cpu_with_the_reason(component):
    name = CUDA_IMPLEMENTATIONS[component]
    dtype = torch.bfloat16
    reasons = {a.implementation.name: a.reason
               for a in get_registry().availability(component, "cpu", dtype)}
    assert "needs a CUDA device, not cpu" in reasons[name]
    selection = get_registry().select(device="cpu", dtype=dtype)
    assert selection[component].plugin != "cuda"
    with pytest.raises(BackendSelectionError, match="needs a CUDA device"):
        get_registry().select({component: name}, device="cpu", dtype=dtype)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is visible here")
@pytest.mark.parametrize("component", sorted(CUDA_IMPLEMENTATIONS))
def test_unavailable_on_cuda_without_a_gpu_with_the_reason(component):
    name = CUDA_IMPLEMENTATIONS[component]
    reasons = {a.implementation.name: a.reason
               for a in get_registry().availability(component, "cuda", torch.bfloat16)}
    if torch.version.cuda is None:
        assert "this torch build" in reasons[name] and "has no CUDA" in reasons[name]
    else:
        assert "none is visible" in reasons[name]


def test_unsupported_dtypes_are_named():
    registry = get_registry()
    for component in ("norm", "rope", "mlp"):
        reason = registry.get(component, "cuda").unavailable_reason(torch.device("cuda"),
                                                                    torch.float64)
        assert reason == "the cuda kernels support float32, float16 and bfloat16, not float64"
    reason = registry.get("attention", "flash").unavailable_reason(torch.device("cuda"),
                                                                  torch.float32)
    assert reason.startswith("flash attention supports float16 and bfloat16, not float32")


def test_availability_checks_never_compile(monkeypatch):
    from torch.utils import cpp_extension

    def refuse(*args, **kwargs):
        raise AssertionError("an availability check started a build")

    monkeypatch.setattr(cpp_extension, "load", refuse)
    monkeypatch.setattr(cuda_library, "build", refuse)
    registry = get_registry()
    for component, name in CUDA_IMPLEMENTATIONS.items():
        for dtype in KERNEL_DTYPES:
            reason = registry.get(component, name).unavailable_reason(torch.device("cuda"), dtype)
            assert reason is None or "availability check raised" not in reason


def test_toolchain_reasons(monkeypatch, tmp_path):
    from torch.utils import cpp_extension

    monkeypatch.setattr(cpp_extension, "CUDA_HOME", None)
    assert cuda_library.toolchain_reason().startswith("nvcc was not found")
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "nvcc").write_text("")
    (tmp_path / "version.json").write_text(json.dumps({"cuda": {"version": "11.8.89"}}))
    monkeypatch.setattr(cpp_extension, "CUDA_HOME", str(tmp_path))
    monkeypatch.setattr(torch.version, "cuda", "12.4")
    reason = cuda_library.toolchain_reason()
    assert "is version 11.8.89 but torch was built with CUDA 12.4" in reason


def test_a_finished_build_is_used_without_a_toolchain(monkeypatch, tmp_path):
    from torch.utils import cpp_extension

    monkeypatch.setenv(cuda_library.CACHE_ENV, str(tmp_path))
    monkeypatch.setattr(cpp_extension, "CUDA_HOME", None)
    monkeypatch.setattr(cuda_library, "_loaded", False)  # as in a fresh process
    monkeypatch.setattr(cuda_library, "_failure", None)
    assert cuda_library.unavailable_reason((9, 0)).startswith("nvcc was not found")
    directory = cuda_library.build_directory([(8, 0), (9, 0)])
    assert directory.name == "sm_80+sm_90"
    directory.mkdir(parents=True)
    (directory / f"{cuda_library.NAME}.so").write_bytes(b"")
    assert cuda_library.unavailable_reason((9, 0)) is not None  # not marked complete yet
    (directory / "complete").write_text("{}")
    assert cuda_library.finished_build_for((9, 0)) == directory / f"{cuda_library.NAME}.so"
    assert cuda_library.unavailable_reason((9, 0)) is None
    assert cuda_library.unavailable_reason((8, 6)) is not None  # sm_86 is not in that build


# == Python-side checks, layouts and dispatch (CPU) ==============================================
def test_wrappers_reject_bad_arguments_before_launching():
    x = torch.randn(2, 8)
    with pytest.raises(ValueError, match="float64; the cuda kernels support"):
        ops.rms_norm(x.double(), torch.ones(8, dtype=torch.float64), 1e-6)
    with pytest.raises(ValueError, match=r"weight has shape \(4,\), expected \(8,\)"):
        ops.rms_norm(x, torch.ones(4), 1e-6)
    with pytest.raises(ValueError, match="weight has dtype bfloat16 but x has float32"):
        ops.rms_norm(x, torch.ones(8, dtype=torch.bfloat16), 1e-6)
    with pytest.raises(ValueError, match="need CUDA tensors, got one on cpu"):
        ops.rms_norm(x, torch.ones(8), 1e-6)
    with pytest.raises(ValueError, match="must have the same shape"):
        ops.silu_mul(x, x[:, :4])
    q, k = torch.randn(1, 4, 3, 16), torch.randn(1, 2, 3, 16)
    inv_freq = rotary_inv_freq(16, 1e6, torch.device("cpu"))
    with pytest.raises(ValueError, match=r"positions must be int64 \[1, 3\], got int32"):
        ops.rotary(q, k, torch.zeros(1, 3, dtype=torch.int32), inv_freq)
    with pytest.raises(ValueError, match="must agree on batch, sequence and head_dim"):
        ops.rotary(q, k[:, :, :2], torch.zeros(1, 3, dtype=torch.long), inv_freq)
    with pytest.raises(ValueError, match=r"inv_freq must be float32 \[8\]"):
        ops.rotary(q, k, torch.zeros(1, 3, dtype=torch.long), inv_freq[:4])


def test_rows_are_views_when_one_row_stride_describes_them():
    wide = torch.randn(4, 10)
    rows = ops._as_rows(wide[:, 2:8])  # a column slice: same memory, row stride 10
    assert rows.data_ptr() == wide[:, 2:8].data_ptr() and rows.stride() == (10, 1)
    heads = torch.randn(2, 3, 4 * 16).view(2, 3, 4, 16)  # q_proj output viewed per head
    assert ops._as_rows(heads).data_ptr() == heads.data_ptr()
    transposed = torch.randn(8, 6).t()  # unit stride along the wrong axis: copied
    rows = ops._as_rows(transposed)
    assert rows.stride() == (8, 1) and torch.equal(rows, transposed)


def test_rotary_frequencies_are_the_eager_ones_bit_for_bit():
    positions = torch.tensor([[0, 1, 7, 40959]])
    for head_dim, theta in ((128, 1e6), (64, 1e7), (16, 1e6)):
        rotary = CudaRotary(head_dim, theta, device=torch.device("cpu"))
        rotary.prepare_weights()  # fills the table; on the CPU it loads no kernels
        inv_freq = rotary.inv_freq
        assert "inv_freq" not in rotary.state_dict()  # derived, never in a checkpoint
        angles = positions.to(torch.float32)[..., None] * inv_freq
        cos, sin = rotary_cos_sin(positions, head_dim, theta, torch.float32)
        assert torch.equal(torch.cat((angles, angles), -1).cos(), cos)
        assert torch.equal(torch.cat((angles, angles), -1).sin(), sin)


def test_rotary_honours_rope_scaling():
    """linear: the kernel gets the reference's scaled table; yarn (whose cos/sin factor the
    kernel lacks) runs the reference's expression, so no GPU is needed to check either."""
    positions = torch.tensor([[0, 33, 500]])
    linear = CudaRotary(16, 1e6, device=torch.device("cpu"), scaling=RopeScaling("linear", 2.0))
    linear.prepare_weights()
    assert linear.fallback is None
    assert torch.equal(linear.inv_freq, rotary_inv_freq(16, 1e6, torch.device("cpu")) / 2.0)
    yarn_scaling = RopeScaling("yarn", 4.0, 32)
    yarn = CudaRotary(16, 1e6, device=torch.device("cpu"), scaling=yarn_scaling)
    yarn.prepare_weights()
    assert torch.equal(yarn.inv_freq, rotary_inv_freq(16, 1e6, torch.device("cpu"),
                                                      yarn_scaling))
    q, k = torch.randn(1, 4, 3, 16, generator=gen(3)), torch.randn(1, 2, 3, 16, generator=gen(4))
    for got, want in zip(yarn(q, k, positions), EagerRotary(16, 1e6, yarn_scaling)(q, k,
                                                                                  positions)):
        assert torch.equal(got, want)


def test_model_built_with_cuda_implementations_keeps_checkpoint_names():
    registry = get_registry()
    spec = PRESETS["tiny-moe"]

    def skeleton(names):
        selection = Selection({c: registry.get(c, n) for c, n in names.items()})
        return build_skeleton(spec, selection, torch.bfloat16)  # meta device: no GPU needed

    model = skeleton({**EAGER, **CUDA_IMPLEMENTATIONS})
    layer = model.model.layers[0]
    assert isinstance(layer.input_layernorm, CudaRMSNorm)
    assert isinstance(layer.self_attn.q_norm, CudaRMSNorm)
    assert isinstance(layer.self_attn.rotary, CudaRotary)
    assert isinstance(model.model.layers[0].mlp.experts[0], CudaSwiGLU)
    reference = skeleton(EAGER)
    assert {k: v.shape for k, v in model.state_dict().items()} == \
        {k: v.shape for k, v in reference.state_dict().items()}


def _attention_inputs(b, h_q, h_kv, s, t, d, dtype, device, seed=0):
    g = gen(seed)
    q = torch.randn(b, h_q, s, d, generator=g).to(device, dtype)
    k = torch.randn(b, h_kv, t, d, generator=g).to(device, dtype)
    v = torch.randn(b, h_kv, t, d, generator=g).to(device, dtype)
    return q, k, v


def _batch(b, s, t, device, pad=(), plain=False):
    """Causal mask for s new tokens ending at slot t, rows left-padded by ``pad[row]`` slots."""
    start = t - s
    keys = torch.arange(t, device=device)
    causal = keys[None, :] <= torch.arange(start, t, device=device)[:, None]  # [S, T]
    valid = torch.ones(b, t, dtype=torch.bool, device=device)
    for row, n in enumerate(pad):
        valid[row, :n] = False
    mask = valid[:, None, None, :] & causal[None, None]  # [B, 1, S, T]
    positions = (valid.cumsum(1) - 1).clamp(min=0)[:, start:]
    return AttentionBatch(positions=positions, mask=mask, start=start, plain_causal=plain)


def _attending(out, batch):
    """[B, H, S, D] -> [N, H, D]: the query rows that may attend somewhere. A row with nothing
    to see (a pad query in these hand-made masks) has no defined output, and none is read."""
    return out.transpose(1, 2)[batch.mask.any(-1)[:, 0]]


ATTENTION_CASES = {  # name: (s, t, pad, plain_causal)
    "prompt": (7, 7, (), True),
    "decode": (1, 9, (), True),
    "chunk after cache": (3, 9, (), True),  # S < T: torch's is_causal would be wrong here
    "left padding": (7, 7, (0, 3), False),
    "decode after padding": (1, 9, (2, 0), False),
}


@pytest.mark.parametrize("case", sorted(ATTENTION_CASES))
def test_flash_attention_dispatch_matches_eager_on_cpu_kernels(case, monkeypatch):
    # torch has CPU flash kernels but no CPU memory-efficient one: the masked path runs on the
    # math kernel here, which still checks the query folding and the additive mask.
    monkeypatch.setattr(cuda_attention, "_MASKED", [torch.nn.attention.SDPBackend.MATH])
    s, t, pad, plain = ATTENTION_CASES[case]
    q, k, v = _attention_inputs(2, 4, 2, s, t, 16, torch.float32, "cpu")
    batch = _batch(2, s, t, "cpu", pad, plain)
    got = cuda_attention.flash_attention(q, k, v, batch, 0.25)
    want = eager_attention(q, k, v, batch, 0.25)
    torch.testing.assert_close(_attending(got, batch), _attending(want, batch), atol=1e-5,
                               rtol=1e-5)


# == on a GPU ====================================================================================
def _kernel_tolerances(dtype):
    return {torch.float32: (1e-5, 1.3e-6), torch.float16: (1e-5, 1e-3),
            torch.bfloat16: (1e-5, 1.6e-2)}[dtype]


@needs_gpu
@pytest.mark.parametrize("dtype", KERNEL_DTYPES, ids=str)
@pytest.mark.parametrize("shape, row_pitch", [
    ((1, 1, 1024), None),   # decode, hidden 0.6B: warp per row, packed
    ((3, 5, 64), None),     # tiny hidden
    ((2, 7, 4, 128), None),  # per-head q norm rows
    ((4, 4096), None),      # block per row, packed
    ((5, 1032), None),      # block per row
    ((3, 100), None),       # warp per row, unpacked (100 % 8 != 0)
    ((6, 128), 136),        # rows that are a slice of wider rows
    ((7, 2050), 2053),      # wide, odd pitch: unpacked
    ((0, 64), None),        # no rows at all
])
def test_cuda_rms_norm_matches_eager(shape, row_pitch, dtype):
    dim = shape[-1]
    g = gen(1)
    if row_pitch is None:
        x = (torch.randn(shape, generator=g) * 3).to("cuda", dtype)
    else:
        x = (torch.randn(*shape[:-1], row_pitch, generator=g) * 3).to("cuda", dtype)[..., :dim]
    weight = torch.empty(dim).uniform_(0.8, 1.2, generator=g).to("cuda", dtype)
    eager = RMSNorm(dim, 1e-6, dtype=dtype, device=torch.device("cuda"))
    with torch.no_grad():
        eager.weight.copy_(weight)
        want = eager(x)
    got = ops.rms_norm(x, weight, 1e-6)
    atol, rtol = _kernel_tolerances(dtype)
    torch.testing.assert_close(got, want, atol=atol, rtol=rtol)
    if dtype != torch.float32 and got.numel():
        # Only the summation order differs from eager, so almost every element is identical.
        assert (got == want).float().mean() > 0.99


@needs_gpu
@pytest.mark.parametrize("dtype", KERNEL_DTYPES, ids=str)
@pytest.mark.parametrize("b, s, h_q, h_kv, d, theta", [
    (1, 1, 16, 8, 128, 1e6), (3, 5, 4, 2, 16, 1e6), (2, 33, 32, 4, 128, 1e7),
    (1, 300, 6, 6, 64, 1e4)])
def test_cuda_rotary_equals_eager_bit_for_bit(b, s, h_q, h_kv, d, theta, dtype):
    g = gen(2)
    # The model's layout: a projection [B, S, H*D] viewed per head and transposed.
    q = torch.randn(b, s, h_q * d, generator=g).to("cuda", dtype).view(b, s, h_q, d).transpose(1, 2)
    k = torch.randn(b, s, h_kv * d, generator=g).to("cuda", dtype).view(b, s, h_kv, d)
    k = k.transpose(1, 2)
    start = torch.randint(0, 40000, (b, 1), generator=g)
    positions = (start + torch.arange(s)).to("cuda")  # [B, S], rows at different offsets
    q_before, k_before = q.clone(), k.clone()
    rotary = CudaRotary(d, theta, device=torch.device("cuda"))
    rotary.prepare_weights()
    want_q, want_k = EagerRotary(d, theta)(q, k, positions)
    got_q, got_k = rotary(q, k, positions)
    assert torch.equal(got_q, want_q) and torch.equal(got_k, want_k)
    assert torch.equal(q, q_before) and torch.equal(k, k_before)  # inputs untouched
    assert got_q.transpose(1, 2).is_contiguous()  # the input's [B, S, H, D] layout is kept


@needs_gpu
@pytest.mark.parametrize("dtype", KERNEL_DTYPES, ids=str)
@pytest.mark.parametrize("rows, cols, fused", [
    (1, 3072, False), (7, 129, False), (6, 1000, False), (4, 3072, True), (3, 129, True),
    (0, 64, False)])
def test_cuda_silu_mul_equals_torch_bit_for_bit(rows, cols, fused, dtype):
    g = gen(3)
    if fused:  # gate and up as the two halves of one [N, 2I] projection output
        both = (torch.randn(rows, 2 * cols, generator=g) * 4).to("cuda", dtype)
        gate, up = both[:, :cols], both[:, cols:]
    else:
        gate = (torch.randn(rows, cols, generator=g) * 4).to("cuda", dtype)
        up = torch.randn(rows, cols, generator=g).to("cuda", dtype)
    if rows:
        gate[0, :4] = torch.tensor([-100.0, 100.0, 0.0, -0.0], dtype=dtype)  # exp over/underflow
    assert torch.equal(ops.silu_mul(gate, up), F.silu(gate) * up)


@needs_gpu
def test_cuda_kernels_run_in_a_batch_of_leading_dims_and_under_torch_compile():
    g = gen(4)
    x = torch.randn(2, 3, 64, generator=g).to("cuda", torch.bfloat16)
    w = torch.rand(64, generator=g).to("cuda", torch.bfloat16)
    gate, up = torch.randn(2, 2, 3, 96, generator=g).to("cuda", torch.bfloat16).unbind(0)
    q = torch.randn(2, 4, 3, 16, generator=g).to("cuda", torch.bfloat16)
    k = torch.randn(2, 2, 3, 16, generator=g).to("cuda", torch.bfloat16)
    positions = torch.arange(3, device="cuda").expand(2, 3)
    inv_freq = rotary_inv_freq(16, 1e6, torch.device("cuda"))

    def step(x, w, gate, up, q, k):
        return (ops.rms_norm(x, w, 1e-6), ops.silu_mul(gate, up),
                *ops.rotary(q, k, positions, inv_freq))

    eager_out = step(x, w, gate, up, q, k)
    compiled_out = torch.compile(step, fullgraph=True)(x, w, gate, up, q, k)
    for a, b in zip(eager_out, compiled_out):
        assert torch.equal(a, b)


def _max_error(a, b, batch):
    return _attending(a.float() - b.float(), batch).abs().max().item()


@needs_gpu
@pytest.mark.parametrize("dtype", FLASH_DTYPES, ids=str)
@pytest.mark.parametrize("case", sorted(ATTENTION_CASES))
def test_cuda_flash_attention_is_as_close_to_float32_as_eager(case, dtype):
    s, t, pad, plain = ATTENTION_CASES[case]
    q, k, v = _attention_inputs(2, 16, 8, s, t, 128, torch.float32, "cuda")
    batch = _batch(2, s, t, "cuda", pad, plain)
    truth = eager_attention(q, k, v, batch, 128 ** -0.5)
    low = [x.to(dtype) for x in (q, k, v)]
    eager_error = _max_error(eager_attention(*low, batch, 128 ** -0.5), truth, batch)
    flash_error = _max_error(cuda_attention.flash_attention(*low, batch, 128 ** -0.5), truth,
                             batch)
    assert flash_error <= 2 * eager_error + 1e-3, (flash_error, eager_error)


@needs_gpu
@pytest.mark.skipif(not torch.cuda.is_available() or
                    get_registry().get("attention", "flash_attn").unavailable_reason(
                        torch.device("cuda"), torch.bfloat16) is not None,
                    reason="attention 'flash_attn' is unavailable (flash-attn not installed?)")
@pytest.mark.parametrize("case", sorted(ATTENTION_CASES))
def test_cuda_flash_attn_package_is_as_close_to_float32_as_eager(case):
    s, t, pad, plain = ATTENTION_CASES[case]
    q, k, v = _attention_inputs(2, 16, 8, s, t, 128, torch.float32, "cuda")
    batch = _batch(2, s, t, "cuda", pad, plain)
    truth = eager_attention(q, k, v, batch, 128 ** -0.5)
    low = [x.to(torch.bfloat16) for x in (q, k, v)]
    attend = cuda_attention.make_flash_attn_package_attention()
    eager_error = _max_error(eager_attention(*low, batch, 128 ** -0.5), truth, batch)
    assert _max_error(attend(*low, batch, 128 ** -0.5), truth, batch) <= 2 * eager_error + 1e-3


@needs_gpu
def test_cuda_implementations_are_chosen_automatically_on_a_gpu():
    registry = get_registry()
    selection = registry.select(device="cuda", dtype=torch.bfloat16)
    for component, name in CUDA_IMPLEMENTATIONS.items():
        reason = registry.get(component, name).unavailable_reason(torch.device("cuda"),
                                                                  torch.bfloat16)
        assert reason is None, f"{component} {name}: {reason}"
        assert selection[component].name == name


@needs_gpu
@pytest.mark.parametrize("component", sorted(CUDA_IMPLEMENTATIONS))
def test_cuda_implementation_passes_the_equivalence_suite(component):
    from qwen3core.testing import check_backend

    examples = check_backend(component, CUDA_IMPLEMENTATIONS[component], device="cuda",
                             dtypes=(torch.float32, torch.bfloat16, torch.float16))
    assert examples > 0


# A router near-tie makes a MoE model jump between expert sets under any change of rounding;
# in bfloat16 the suite's tolerance rule does not exempt that (eager vs sdpa on the CPU fails
# it the same way on tiny-moe, seed 5: logits 6.6 apart at step 6), so that pair is left out.
MOE_BF16_ROUTER_TIES = pytest.mark.skip(
    reason="tiny-moe in bfloat16: router near-ties flip expert choices under any rounding "
           "change (eager vs sdpa fails alike); the tolerance rule does not exempt them")
MODEL_CASES = [pytest.param(preset, dtype, id=f"{preset}-{str(dtype).removeprefix('torch.')}",
                            marks=MOE_BF16_ROUTER_TIES if (preset, dtype) == (
                                "tiny-moe", torch.bfloat16) else ())
               for preset in ("tiny", "tiny-moe") for dtype in KERNEL_DTYPES]


@needs_gpu
@pytest.mark.parametrize("prompt_lengths", [(9, 9), (9, 4)], ids=["unpadded", "left-padded"])
@pytest.mark.parametrize("preset, dtype", MODEL_CASES)
def test_cuda_backend_greedy_decoding_matches_eager(preset, dtype, prompt_lengths):

    names = {**reference_names(), **CUDA_IMPLEMENTATIONS}
    if dtype == torch.float32:
        names["attention"] = "eager"  # the flash kernels have no float32
    reference = reference_model(PRESETS[preset], dtype, "cuda")
    candidate = candidate_model(reference, names)
    g = gen(5)
    prompts = [torch.randint(0, 512, (n,), generator=g).tolist() for n in prompt_lengths]
    compared = assert_greedy_equivalent(greedy(reference, prompts, 12),
                                        greedy(candidate, prompts, 12), tolerance_for(dtype),
                                        f"{preset} {dtype}, all cuda implementations")
    assert compared > 0


@needs_gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["float32", "bfloat16"])
def test_cuda_graph_runner_greedy_decoding_matches_eager_and_replays_graphs(dtype):
    """``runner=compile-graphs`` with the static cache: the same greedy tokens as eager, also
    for a second batch of another size whose rows are dropped mid-decode (new cache buffers:
    the graph is recorded again), and inductor skipped no CUDA graph."""
    from torch._dynamo.utils import counters


    names = {**reference_names(), **CUDA_IMPLEMENTATIONS, "kv_cache": "static",
             "runner": "compile-graphs"}
    if dtype == torch.float32:
        names["attention"] = "eager"  # the flash kernels have no float32
    reference = reference_model(PRESETS["tiny"], dtype, "cuda")
    candidate = candidate_model(reference, names)
    g = gen(7)
    skips_before = counters["inductor"]["cudagraph_skips"]
    for lengths, reorder in (((9, 4), None), ((6, 11, 3), (4, (0, 2)))):
        prompts = [torch.randint(0, 512, (n,), generator=g).tolist() for n in lengths]
        compared = assert_greedy_equivalent(
            greedy(reference, prompts, 12, reorder=reorder),
            greedy(candidate, prompts, 12, reorder=reorder), tolerance_for(dtype),
            f"tiny {dtype}, cuda implementations, static cache, CUDA graphs")
        assert compared > 0
    assert counters["inductor"]["cudagraph_skips"] == skips_before, dict(counters["inductor"])

