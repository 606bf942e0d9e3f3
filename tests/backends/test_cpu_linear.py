"""The cpu backend's linear layer.

Without the kernels (another CPU, no compiler, ninja missing): the availability checks say why,
cheaply, and the kernel tests skip with that reason. With them: the operator against a float64
reference at odd sizes, every row count the kernel takes, both dtypes and 3-D inputs; the
module's choice between kernel and F.linear; repacking when the weight changes; and greedy
decoding of the tiny presets against the eager backend.
"""

from __future__ import annotations

import pytest
import torch
from qwen3core_backends import cpu as cpu_backend
from qwen3core_backends.cpu import build
from qwen3core_backends.cpu.linear import CpuLinear, kernel_row_limit, pack_weight
from torch.nn import functional as F

import qwen3core
from qwen3core import BackendSelectionError
from qwen3core.registry import get_registry
from qwen3core.testing.harness import greedy
from qwen3core.testing.models import reference_names
from qwen3core.tied_embedding import HeadRowsEmbedding

DTYPES = [torch.bfloat16, torch.float32]
CPU = torch.device("cpu")
# (out_features, in_features): below, at and past one tile / one vector, odd on both sides,
# and a K longer than one accumulation block (256 inputs).
SHAPES = [(1, 1), (5, 3), (16, 8), (17, 33), (100, 65), (48, 258), (31, 1031)]

_missing = cpu_backend._check(CPU, torch.float32)
needs_kernels = pytest.mark.skipif(_missing is not None,
                                   reason=f"cpu kernels unavailable here: {_missing}")


@pytest.fixture(scope="module")
def ops():
    """The kernel operators, built (first time on this machine) and loaded."""
    build.load_kernels()
    return torch.ops.qwen3core_cpu


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def error_bound(x: torch.Tensor, w: torch.Tensor, out_dtype: torch.dtype) -> torch.Tensor:
    """How far a float32-accumulated, once-rounded x @ w.T may be from the exact product:
    the standard dot-product bound K * 2^-24 * sum|x_k w_k| (with a factor 2 to spare), plus
    the rounding to the output dtype (unit roundoff 2^-8 for bfloat16)."""
    k = x.shape[-1]
    magnitude = x.double().abs() @ w.double().abs().T
    exact = (x.double() @ w.double().T).abs()
    unit_roundoff = 2.0 ** -8 if out_dtype == torch.bfloat16 else 2.0 ** -24
    return 2 * k * 2.0 ** -24 * magnitude + unit_roundoff * exact + 1e-30


def assert_within_bound(y: torch.Tensor, x: torch.Tensor, w: torch.Tensor) -> None:
    exact = x.double() @ w.double().T
    excess = (y.double() - exact).abs() - error_bound(x, w, y.dtype)
    worst = excess.max().item()
    assert worst <= 0, f"result off the exact product by {worst:.3g} beyond the float bound"


# == availability (no kernels needed) ============================================================
@pytest.mark.parametrize("dtype", [torch.float64, torch.float16])
def test_unsupported_dtypes_are_unavailable_with_the_reason(dtype):
    reason = cpu_backend._check(CPU, dtype)
    assert reason is not None and str(dtype).replace("torch.", "") in reason
    assert "bfloat16 and float32" in reason


def test_other_devices_are_unavailable():
    assert "not on meta" in cpu_backend._check(torch.device("meta"), torch.float32)
    assert "not on cuda" in cpu_backend._check(torch.device("cuda"), torch.bfloat16)


def test_cpu_without_avx2_is_unavailable(monkeypatch):
    monkeypatch.setattr(build.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(build, "_cpu_features", lambda: {"avx2"})
    assert build.cpu_lacks() == "this CPU lacks FMA"
    assert cpu_backend._check(CPU, torch.float32) == "this CPU lacks FMA"
    monkeypatch.setattr(build.platform, "machine", lambda: "aarch64")
    assert "x86-64" in cpu_backend._check(CPU, torch.bfloat16)


def test_missing_compiler_is_reported_without_compiling(monkeypatch, tmp_path):
    monkeypatch.setattr(build, "cpu_lacks", lambda: None)
    monkeypatch.setattr(build, "_loaded", False)
    monkeypatch.setattr(build, "_failure", None)
    monkeypatch.setenv(build.CACHE_ENV, str(tmp_path))  # an empty cache: a build would be due
    monkeypatch.setenv("CXX", "no-such-compiler-qwen3core")
    build._digest.cache_clear()
    try:
        reason = cpu_backend._check(CPU, torch.float32)
        assert "no-such-compiler-qwen3core" in reason and "not on PATH" in reason
        with pytest.raises(BackendSelectionError, match="not on PATH"):
            build.load_kernels()
    finally:
        build._digest.cache_clear()
    assert list(tmp_path.iterdir()) == []  # nothing was built or written


def test_selection_prefers_cpu_for_its_dtypes_and_falls_back_otherwise():
    registry = get_registry()
    expected = "cpu" if _missing is None else "eager"
    assert registry.select(device="cpu", dtype=torch.bfloat16)["linear"].name == expected
    assert registry.select(device="cpu", dtype=torch.float64)["linear"].name == "eager"
    with pytest.raises(BackendSelectionError, match="not float64"):
        registry.select({"linear": "cpu"}, device="cpu", dtype=torch.float64)


# == the operator ================================================================================
@needs_kernels
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rows", range(1, 17))  # decode batches
def test_kernel_matches_exact_product(dtype, rows, ops):
    for i, (n, k) in enumerate(SHAPES):
        w = torch.randn(n, k, generator=gen(i)).to(dtype)
        x = torch.randn(rows, k, generator=gen(100 + i)).to(dtype)
        y = ops.linear(x, pack_weight(w), n)
        assert y.shape == (rows, n) and y.dtype == dtype
        assert_within_bound(y, x, w)
        # and so within twice the bound of torch's own result
        torch.testing.assert_close(y.double(), F.linear(x, w).double(), rtol=0,
                                   atol=2 * error_bound(x, w, dtype).max().item())


@needs_kernels
@pytest.mark.parametrize("dtype", DTYPES)
def test_kernel_takes_3d_strided_and_many_rows(dtype, ops):
    n, k = 40, 71
    w = torch.randn(n, k, generator=gen(1)).to(dtype)
    packed = pack_weight(w)
    x = torch.randn(3, 2, k, generator=gen(2)).to(dtype)  # [B, S, E]
    y = ops.linear(x, packed, n)
    assert y.shape == (3, 2, n)
    assert_within_bound(y.reshape(-1, n), x.reshape(-1, k), w)
    wide = torch.randn(k, 5, generator=gen(3)).to(dtype).T  # rows 5 apart in memory
    assert_within_bound(ops.linear(wide, packed, n), wide, w)
    many = torch.randn(70, k, generator=gen(4)).to(dtype)  # past one pass of 32 rows
    assert_within_bound(ops.linear(many, packed, n), many, w)
    # A multiple of 64 rows: laid out with a row stride of R + 8 (kernels.h), by the 8x8
    # transposes where K allows (bfloat16, K a multiple of 16) and row by row otherwise.
    for k_in, packed_in, w_in in ((k, packed, w), (64, pack_weight(w[:, :64]), w[:, :64])):
        rows = torch.randn(128, k_in, generator=gen(5)).to(dtype)
        assert_within_bound(ops.linear(rows, packed_in, n), rows, w_in)
    assert ops.linear(x[:0], packed, n).shape == (0, 2, n)


@needs_kernels
def test_rows_in_eights_are_laid_out_as_row_by_row(ops):
    """8 or 16 bfloat16 rows with K a multiple of 16 are laid out for the kernels by 8x8
    transposes (bf16_pairs_by_eights, where the kernels take input pairs); the same rows inside
    a batch of 9 or 17 go through the row-by-row loop. The tiles see the same inputs either way,
    so the products agree bit for bit."""
    n, k = 48, 272
    packed = pack_weight(torch.randn(n, k, generator=gen(21)).bfloat16())
    for rows in (8, 16):
        x = torch.randn(rows + 1, k, generator=gen(22 + rows)).bfloat16()
        assert torch.equal(ops.linear(x[:rows], packed, n), ops.linear(x, packed, n)[:rows])


@needs_kernels
@pytest.mark.parametrize("dtype", DTYPES)
def test_kernel_splits_large_matrices_over_threads(dtype, ops):
    n, k = 520, 1030  # 1-2 MiB: past the size that stays on the calling thread
    w = torch.randn(n, k, generator=gen(11)).to(dtype)
    packed = pack_weight(w)
    for rows in (1, 8, 37):
        x = torch.randn(rows, k, generator=gen(12 + rows)).to(dtype)
        assert_within_bound(ops.linear(x, packed, n), x, w)


@needs_kernels
@pytest.mark.parametrize("threads", [2, 3, 5])
def test_every_tile_is_computed_once_whatever_the_thread_count(threads, ops):
    """The threads share the chunks of tiles as spans, each thread its own and then the rests
    of the others' (csrc/thread_spans.h); every tile is one thread's whole sum, so any thread
    count, more than the cores included, must give the single thread's output bit for bit."""
    n, k = 1000, 1030  # ~2 MiB of bfloat16 tiles: 16 chunks, not a multiple of 3 or 5 threads
    w = torch.randn(n, k, generator=gen(21)).bfloat16()
    packed = pack_weight(w)
    x = torch.randn(3, k, generator=gen(22)).bfloat16()
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        alone = ops.linear(x, packed, n)
        torch.set_num_threads(threads)
        for _ in range(3):
            assert torch.equal(ops.linear(x, packed, n), alone)
    finally:
        torch.set_num_threads(before)


@needs_kernels
def test_kernel_rejects_mismatched_inputs(ops):
    w = torch.randn(20, 10)
    packed = pack_weight(w)
    with pytest.raises(RuntimeError, match="activations are BFloat16"):
        ops.linear(torch.randn(2, 10).bfloat16(), packed, 20)
    with pytest.raises(RuntimeError, match="input features"):
        ops.linear(torch.randn(2, 12), packed, 20)
    with pytest.raises(RuntimeError, match="out_features"):
        ops.linear(torch.randn(2, 10), packed, 40)
    with pytest.raises(RuntimeError, match="layout"):
        ops.linear(torch.randn(2, 10), w, 20)


def _check_stream_read(sizes=(0, 31, 32, 100_003)):
    """stream_read is the XOR of every 64-bit word: whole 256-byte steps, a thread's tail and
    a tensor shorter than one step alike."""
    for size in sizes:
        words = torch.randint(-2**62, 2**62, (size,), generator=gen(size))
        expected = 0
        for word in words.tolist():
            expected ^= word
        assert torch.ops.qwen3core_cpu.stream_read(words) == expected, size


@needs_kernels
def test_stream_read_reads_every_byte(ops):
    _check_stream_read()


@needs_kernels
def test_stream_read_avx2_loop_when_forced(run_forced_avx2):
    run_forced_avx2("from qwen3core_backends.cpu.build import load_kernels; load_kernels();"
                    "from tests.backends.test_cpu_linear import _check_stream_read;"
                    "_check_stream_read()")


# == the module ==================================================================================
def make_linear(in_f: int, out_f: int, dtype: torch.dtype, seed: int = 0) -> CpuLinear:
    layer = CpuLinear(in_f, out_f, dtype=dtype, device=CPU)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(out_f, in_f, generator=gen(seed)))
    layer.prepare_weights()
    return layer


@needs_kernels
@pytest.mark.parametrize("dtype", DTYPES)
def test_module_uses_the_kernel_for_decode_and_f_linear_past_its_row_limit(dtype, ops):
    layer = make_linear(33, 50, dtype)
    decode = torch.randn(4, 1, 33, generator=gen(1)).to(dtype)  # [B, S=1, E]
    assert torch.equal(layer(decode), ops.linear(decode, pack_weight(layer.weight), 50))
    limit = kernel_row_limit(dtype)
    if dtype == torch.float32:
        assert limit is not None
    at_limit = torch.randn(2, (limit or 40) // 2, 33, generator=gen(2)).to(dtype)
    assert torch.equal(layer(at_limit), ops.linear(at_limit, pack_weight(layer.weight), 50))
    prefill = torch.randn(2, (limit or 40) // 2 + 1, 33, generator=gen(3)).to(dtype)
    if limit is None:  # bfloat16 where torch's own bfloat16 GEMM is slower at every size
        assert torch.equal(layer(prefill), ops.linear(prefill, pack_weight(layer.weight), 50))
    else:  # past the limit: F.linear on the weight unpacked for the call
        assert torch.equal(layer(prefill), F.linear(prefill, layer.weight))


@needs_kernels
def test_module_in_another_dtype_uses_f_linear(ops):
    layer = make_linear(12, 9, torch.float16)  # built directly; selection would refuse
    x = torch.randn(2, 12, generator=gen(3)).half()
    assert torch.equal(layer(x), F.linear(x, layer.weight))


@needs_kernels
def test_module_repacks_when_the_weight_changes():
    layer = make_linear(24, 20, torch.float32)
    x = torch.randn(2, 24, generator=gen(5))
    layer(x)
    new = torch.randn(20, 24, generator=gen(6))
    layer.load_state_dict({"weight": new})  # writes in place after prepare_weights
    assert_within_bound(layer(x), x, new)
    layer.weight = torch.nn.Parameter(new * 2)  # replaced, as tying does
    assert_within_bound(layer(x), x, new * 2)


@needs_kernels
def test_module_compiles_without_graph_breaks(ops):
    layer = make_linear(40, 24, torch.float32)
    compiled = torch.compile(layer, fullgraph=True)  # fullgraph: a graph break is an error
    x = torch.randn(3, 1, 40, generator=gen(7))
    with torch.no_grad():
        assert torch.equal(compiled(x), layer(x))


# == the model ===================================================================================
@needs_kernels
@pytest.mark.parametrize("preset", ["tiny", "tiny-moe"])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_greedy_decoding_matches_eager(preset, dtype):
    names = reference_names()
    reference = qwen3core.load(f"random:{preset}", dtype=dtype, device="cpu", backends=names)
    candidate = qwen3core.load(f"random:{preset}", dtype=dtype, device="cpu",
                               backends={**names, "linear": "cpu"})
    assert isinstance(candidate.model.lm_head, CpuLinear)
    if candidate.spec.tie_word_embeddings:  # the embedding reads the head's tiles
        assert isinstance(candidate.model.model.embed_tokens, HeadRowsEmbedding)
        assert "weight" not in candidate.model.lm_head._parameters
    # One short prompt (prefill of 5 rows: the kernel) and a padded batch of three (prefill of
    # 3 x 180 rows: F.linear on unpacked weights, past both dtypes' row limits); decode runs the
    # kernel with 1 and 3 rows.
    for prompts in ([[3, 1, 4, 1, 5]], [[2, 7], [1, 8, 2, 8, 1, 8], list(range(40, 220))]):
        want = greedy(reference.model, prompts, 10)
        got = greedy(candidate.model, prompts, 10)
        assert got.tokens == want.tokens
        tolerance = 1e-4 if dtype == "float32" else 0.1  # a bfloat16 ulp of logits near 8
        for g, w in zip(got.logits, want.logits):
            torch.testing.assert_close(g, w, rtol=0, atol=tolerance)
