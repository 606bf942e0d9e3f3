"""Compiling and loading the cpu backend's C++ operators: once per machine, then cached.

The sources in ``csrc/`` are compiled with ``torch.utils.cpp_extension`` on first use into
``$XDG_CACHE_HOME/qwen3core/cpu-kernels/<digest>/`` (``~/.cache`` when unset), where the digest
covers the sources, the flags, the compiler and the torch and Python versions, so an upgrade of
any of them builds afresh instead of loading a stale library. ``QWEN3CORE_CPU_KERNELS_DIR``
replaces the cache root. A later process loads the finished library without running the build. The build is safe to
kill: see :mod:`qwen3core.kernel_build` (a lock that dies with its holder, a bounded wait, an
atomic rename of the finished directory into place).

:func:`unavailable_reason` is the cheap check behind the backend's availability: it looks for
the instructions and the tools but never compiles.
"""

from __future__ import annotations

import functools
import hashlib
import os
import platform
import shutil
import sys
from pathlib import Path

import torch

from qwen3core import kernel_build
from qwen3core.errors import BackendSelectionError
from qwen3core.generation.greedy import register_argmax

NAME = "qwen3core_cpu_kernels"
CSRC = Path(__file__).resolve().parent / "csrc"
SOURCES = ("linear_op.cpp", "avx2.cpp", "avx512.cpp", "avx512_vnni.cpp", "stream_op.cpp",
           "pointwise_ops.cpp", "attention_op.cpp", "decode_avx2.cpp", "decode_attention_avx2.cpp",
           "decode_attention_avx512.cpp", "decode_pointwise_avx512.cpp", "argmax_op.cpp",
           "pack_op.cpp", "quantize_op.cpp", "moe_op.cpp", "layer_op.cpp", "huge_page_op.cpp")
HEADERS = ("kernels.h", "tile_kernels.h", "quant_kernels.h", "a8_kernels.h", "decode_kernels.h",
           "decode_simd.h", "bf16_simd512.h", "exp_polynomial.h", "decode_attention.h",
           "selected_kernels.h", "thread_spans.h")
# -fopenmp: at::parallel_for expands to an OpenMP parallel region in our own translation unit.
CFLAGS = ("-O3", "-fopenmp")
LDFLAGS = ("-fopenmp",)
CACHE_ENV = "QWEN3CORE_CPU_KERNELS_DIR"
_COMPLETE = "complete"  # written after a successful build, so a half-linked library is never loaded

_loaded = False
_failure: str | None = None


def compiler() -> str:
    """The C++ compiler torch's extension builder will call."""
    return os.environ.get("CXX", "c++")


def cpu_lacks() -> str | None:
    """What this CPU lacks for the kernels (AVX2 and FMA on x86-64), or None."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return f"the cpu kernels are written for x86-64 (AVX2/AVX-512), this is {platform.machine()}"
    features = _cpu_features()
    missing = [name for name in ("avx2", "fma") if name not in features]
    if missing:
        return f"this CPU lacks {' and '.join(m.upper() for m in missing)}"
    return None


@functools.cache
def _cpu_features() -> set[str]:
    get = getattr(torch.cpu, "get_capabilities", None)
    if get is not None:
        caps = get()
        found = {name for name in ("avx2", "avx512_f", "avx512_bf16", "amx_bf16")
                 if caps.get(name)}
        if caps.get("fma3"):
            found.add("fma")
        return found
    try:  # older torch: ask the kernel
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_has_native_bf16() -> bool:
    """Whether the CPU multiplies bfloat16 itself (AVX-512 BF16 or AMX), as torch's GEMM can."""
    return bool({"avx512_bf16", "amx_bf16"} & _cpu_features())


def unavailable_reason() -> str | None:
    """Why the kernels cannot be used here (CPU, compiler, ninja, an earlier failed build), or
    None. Cheap: never compiles."""
    lacking = cpu_lacks()
    if lacking:
        return lacking
    if _failure is not None:
        return _failure
    if _loaded or (cache_dir() / _COMPLETE).exists():
        return None
    if shutil.which(compiler()) is None:
        return (f"no C++ compiler: {compiler()!r} is not on PATH (install g++ or set CXX) to "
                f"build the cpu kernels")
    if kernel_build.find_ninja() is None:
        return "torch's extension builder needs ninja: pip install ninja"
    return None


def cache_dir() -> Path:
    root = os.environ.get(CACHE_ENV)
    if root:
        base = Path(root)
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        base = base / "qwen3core" / "cpu-kernels"
    return base / _digest()


@functools.cache
def _digest() -> str:
    h = hashlib.sha256()
    for name in SOURCES + HEADERS:
        h.update(name.encode())
        h.update((CSRC / name).read_bytes())
    for part in (*CFLAGS, *LDFLAGS, compiler(), torch.__version__, sys.version):
        h.update(part.encode())
    return h.hexdigest()[:16]


def load_kernels() -> None:
    """Make ``torch.ops.qwen3core_cpu`` available: build on first use, then load the cache.

    Raises :class:`BackendSelectionError` with the compiler's complaint when the build fails;
    the failure is remembered, so availability checks in this process report it too.
    """
    global _loaded, _failure
    if _loaded:
        return
    if _failure is not None:
        raise BackendSelectionError(_failure)
    reason = unavailable_reason()
    if reason is not None:
        raise BackendSelectionError(f"the cpu kernels are unavailable: {reason}")
    directory = cache_dir()
    library = directory / f"{NAME}.so"
    try:
        # A build loads what it built (from its staging directory); otherwise load the cache.
        built = (not (kernel_build.is_complete(directory, _COMPLETE) and library.exists())
                 and kernel_build.install(directory, _COMPLETE, _build, what="cpu kernels"))
        if not built:
            torch.ops.load_library(str(library))
    except kernel_build.KernelBuildTimeout as exc:
        raise BackendSelectionError(f"{exc}; or select another linear backend, e.g. "
                                    f"backends={{'linear': 'eager'}}") from None
    except Exception as exc:
        detail = str(exc).strip().splitlines()
        _failure = (f"building the cpu kernels in {directory} failed "
                    f"({type(exc).__name__}: {' | '.join(detail[-6:])}); fix the toolchain or "
                    f"select another linear backend, e.g. backends={{'linear': 'eager'}}")
        raise BackendSelectionError(_failure) from exc
    _register_fake()
    register_argmax("cpu", _argmax)
    _loaded = True


def _argmax(logits: torch.Tensor) -> torch.Tensor:
    """torch.argmax(logits, dim=-1) through the kernel where it takes the dtype (see
    :mod:`qwen3core.generation.greedy`); torch's own for the rest (and its errors)."""
    if logits.dtype in (torch.bfloat16, torch.float32) and logits.dim() and logits.shape[-1]:
        return torch.ops.qwen3core_cpu.argmax(logits)
    return logits.argmax(dim=-1)


def _register_fake() -> None:
    # Shapes without running the kernels, so torch.compile can trace through the operators.
    @torch.library.register_fake("qwen3core_cpu::linear")
    def _(x: torch.Tensor, packed: torch.Tensor, out_features: int) -> torch.Tensor:
        return x.new_empty((*x.shape[:-1], out_features))

    @torch.library.register_fake("qwen3core_cpu::qlinear")
    def _(x: torch.Tensor, levels: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor,
          bits: int, group_size: int, zero_const: float, out_features: int) -> torch.Tensor:
        return x.new_empty((*x.shape[:-1], out_features))

    @torch.library.register_fake("qwen3core_cpu::qlinear_a8")
    def _(x: torch.Tensor, levels: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor,
          bits: int, group_size: int, zero_const: int, out_features: int) -> torch.Tensor:
        return x.new_empty((*x.shape[:-1], out_features))

    @torch.library.register_fake("qwen3core_cpu::moe_experts")
    def _(x: torch.Tensor, experts: torch.Tensor, weights: torch.Tensor, *rest) -> torch.Tensor:
        return x.new_empty(x.shape)

    @torch.library.register_fake("qwen3core_cpu::argmax")
    def _(logits: torch.Tensor) -> torch.Tensor:
        return logits.new_empty(logits.shape[:-1], dtype=torch.int64)

    @torch.library.register_fake("qwen3core_cpu::rms_norm")
    def _(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
        return x.new_empty(x.shape)

    @torch.library.register_fake("qwen3core_cpu::add_rms_norm")
    def _(x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, eps: float
          ) -> tuple[torch.Tensor, torch.Tensor]:
        return x.new_empty(x.shape), x.new_empty(x.shape)

    @torch.library.register_fake("qwen3core_cpu::rotary")
    def _(q: torch.Tensor, k: torch.Tensor, positions: torch.Tensor, inv_freq: torch.Tensor,
          scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.empty_like(q), torch.empty_like(k)

    @torch.library.register_fake("qwen3core_cpu::attention")
    def _(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor, scale: float
          ) -> torch.Tensor:
        b, h, s, d = q.shape
        return q.new_empty((b, s, h, d)).transpose(1, 2)

    @torch.library.register_fake("qwen3core_cpu::qk_norm_rotary")
    def _(q: torch.Tensor, k: torch.Tensor, q_weight: torch.Tensor, k_weight: torch.Tensor,
          eps: float, positions: torch.Tensor, inv_freq: torch.Tensor, scale: float = 1.0
          ) -> tuple[torch.Tensor, torch.Tensor]:
        if q.dim() == 3:  # projections [B, S, H * D] -> [B, H, S, D] views
            d = q_weight.shape[0]
            q = q.new_empty((q.shape[0], q.shape[1], q.shape[2] // d, d)).transpose(1, 2)
            k = k.new_empty((k.shape[0], k.shape[1], k.shape[2] // d, d)).transpose(1, 2)
        return torch.empty_like(q), torch.empty_like(k)

    @torch.library.register_fake("qwen3core_cpu::silu_mul")
    def _(gate_up: torch.Tensor) -> torch.Tensor:
        return gate_up.new_empty((*gate_up.shape[:-1], gate_up.shape[-1] // 2))


def _build(directory: Path) -> str:
    """Compile into ``directory`` (a fresh staging directory; see :func:`kernel_build.install`)
    and return the completion marker's text."""
    from torch.utils import cpp_extension

    from qwen3core import progress

    if not progress.enabled():  # the command line shows it as a phase instead
        print(f"qwen3core: compiling the cpu kernels into {cache_dir()} (once per machine, "
              f"about a minute)", file=sys.stderr, flush=True)
    with progress.phase(f"compiling the cpu kernels into {cache_dir()} (once per machine)"):
        cpp_extension.load(
            name=NAME, sources=[str(CSRC / s) for s in SOURCES], extra_cflags=list(CFLAGS),
            extra_ldflags=list(LDFLAGS), extra_include_paths=[str(CSRC)],
            build_directory=str(directory), is_python_module=False, verbose=False)
    return NAME + "\n"


def isa() -> str:
    """The instruction set the loaded kernels dispatch to ("avx2", "avx512f", "avx512bf16")."""
    load_kernels()
    return torch.ops.qwen3core_cpu.isa()


def a8_isa() -> str:
    """The instruction set of the integer kernels for int8 activations ("avx512vnni",
    "avx2")."""
    load_kernels()
    return torch.ops.qwen3core_cpu.a8_isa()
