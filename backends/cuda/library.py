"""Compiling and loading the CUDA kernels: on first use (then cached), or ahead of time.

The kernels (``csrc/*.cu``, plain CUDA C++ without torch headers) and their torch binding
(``csrc/bindings.cpp``) are compiled with ``torch.utils.cpp_extension`` for the GPU in use:
``-gencode arch=compute_XY,code=sm_XY`` for its compute capability X.Y, plus
``code=compute_XY`` PTX that the driver can JIT for newer GPUs. The library goes to
``$XDG_CACHE_HOME/qwen3core/cuda-kernels/<digest>/sm_XY/`` (``~/.cache`` when unset;
``QWEN3CORE_CUDA_KERNELS_DIR`` replaces the root), where the digest covers the sources, the
flags and the torch and CUDA versions. A later process loads a finished library without
running the build, so a machine with the library but without ``nvcc`` can still use it.

To build ahead of time (in a container image, say): ``python -m qwen3core_backends.cuda.build``
(:mod:`.build`). Building is safe to kill: see :mod:`qwen3core.kernel_build` (a lock that dies
with its holder, a bounded wait, an atomic rename of the finished directory into place).

:func:`unavailable_reason` is the cheap check behind the backend's availability: it looks for
the tools and a finished build but never compiles.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from qwen3core import kernel_build
from qwen3core.errors import PluginError

NAME = "qwen3core_cuda_kernels"
CSRC = Path(__file__).resolve().parent / "csrc"
KERNEL_SOURCES = ("rms_norm.cu", "rotary.cu", "silu_mul.cu")
BINDING_SOURCE = "bindings.cpp"
HEADERS = ("launchers.h", "common.cuh")
# No --use_fast_math: the kernels must round like PyTorch's own (precise expf, cosf, division).
NVCC_FLAGS = ("-O3", "-std=c++17", "-lineinfo")
CXX_FLAGS = ("-O3",)
CACHE_ENV = "QWEN3CORE_CUDA_KERNELS_DIR"
# Written after a successful build, so that a half-linked library is never loaded.
_COMPLETE = "complete"

Capability = tuple[int, int]

_loaded = False
_failure: str | None = None


class KernelBuildError(PluginError):
    """The CUDA kernels could not be compiled or loaded."""


# -- flags -----------------------------------------------------------------------------------------
def arch_name(capability: Capability) -> str:
    return f"{capability[0]}{capability[1]}"


def gencode_flags(capabilities: Sequence[Capability]) -> list[str]:
    """Machine code for every capability, plus PTX of the newest one for GPUs not yet born."""
    archs = sorted({arch_name(c) for c in capabilities}, key=int)
    flags = [f"-gencode=arch=compute_{a},code=sm_{a}" for a in archs]
    flags.append(f"-gencode=arch=compute_{archs[-1]},code=compute_{archs[-1]}")
    return flags


def nvcc_flags(capabilities: Sequence[Capability]) -> list[str]:
    """Everything the build passes to nvcc besides include paths (torch adds its own defines,
    reproduced here so that the compile check in CI sees what the real build sees)."""
    from torch.utils.cpp_extension import COMMON_NVCC_FLAGS

    return [*COMMON_NVCC_FLAGS, *NVCC_FLAGS, *gencode_flags(capabilities)]


def parse_capability(text: str) -> Capability:
    """"9.0" or "90" or "sm_90" -> (9, 0)."""
    digits = text.lower().removeprefix("sm_").removeprefix("compute_").replace(".", "")
    if not digits.isdigit() or len(digits) < 2:
        raise KernelBuildError(f"bad CUDA architecture {text!r}: write it like 9.0, 90 or sm_90")
    return int(digits[:-1]), int(digits[-1])


# -- the cache ---------------------------------------------------------------------------------
def cache_root() -> Path:
    root = os.environ.get(CACHE_ENV)
    if root:
        return Path(root) / _digest()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "qwen3core" / "cuda-kernels" / _digest()


def build_directory(capabilities: Sequence[Capability]) -> Path:
    return cache_root() / "+".join(f"sm_{a}" for a in sorted({arch_name(c) for c in capabilities},
                                                                key=int))


@functools.cache
def _digest() -> str:
    h = hashlib.sha256()
    for name in (*KERNEL_SOURCES, BINDING_SOURCE, *HEADERS):
        h.update(name.encode())
        h.update((CSRC / name).read_bytes())
    for part in (*NVCC_FLAGS, *CXX_FLAGS, torch.__version__, str(torch.version.cuda)):
        h.update(part.encode())
    return h.hexdigest()[:16]


def finished_build_for(capability: Capability) -> Path | None:
    """A finished library in the cache that holds machine code for ``capability``."""
    root = cache_root()
    if not root.is_dir():
        return None
    wanted = f"sm_{arch_name(capability)}"
    for directory in sorted(root.iterdir()):
        library = directory / f"{NAME}.so"
        if "." in directory.name:  # a staging directory or a lock (qwen3core.kernel_build)
            continue
        if (wanted in directory.name.split("+") and kernel_build.is_complete(directory, _COMPLETE)
                and library.exists()):
            return library
    return None


# -- availability ----------------------------------------------------------------------------------
def toolchain_reason() -> str | None:
    """Why the kernels cannot be compiled here (no nvcc, wrong CUDA major, no ninja), or None.
    Reads files only; never runs the compiler."""
    from torch.utils import cpp_extension

    cuda_home = cpp_extension.CUDA_HOME
    if cuda_home is None or not Path(cuda_home, "bin", "nvcc").exists():
        return ("nvcc was not found, and the kernels are compiled on first use: install the CUDA "
                f"toolkit {torch.version.cuda} (or set CUDA_HOME), or build them ahead of time "
                "with `python -m qwen3core_backends.cuda.build` where nvcc exists")
    toolkit = _toolkit_version(Path(cuda_home))
    built_with = torch.version.cuda
    if toolkit and built_with and toolkit.split(".")[0] != built_with.split(".")[0]:
        return (f"the CUDA toolkit at {cuda_home} is version {toolkit} but torch was built "
                f"with CUDA {built_with}; install a matching toolkit or set CUDA_HOME")
    if kernel_build.find_ninja() is None:
        return "torch's extension builder needs ninja to compile the kernels: pip install ninja"
    return None


def _toolkit_version(cuda_home: Path) -> str | None:
    try:
        return json.loads((cuda_home / "version.json").read_text())["cuda"]["version"]
    except (OSError, KeyError, ValueError, TypeError):
        return None


def unavailable_reason(capability: Capability) -> str | None:
    """Why the kernels cannot run on a GPU of ``capability`` (an earlier failed build, no
    toolchain and no finished build), or None. Cheap: never compiles."""
    if _failure is not None:
        return _failure
    if _loaded or finished_build_for(capability) is not None:
        return None
    return toolchain_reason()


# -- building and loading --------------------------------------------------------------------------
def load_kernels(device: torch.device | None = None) -> None:
    """Make ``torch.ops.qwen3core_cuda`` available for ``device``'s GPU: load a finished build,
    or compile one first. Idempotent.

    Raises :class:`KernelBuildError` with the compiler's complaint when the build fails; the
    failure is remembered, so availability checks in this process report it too.
    """
    global _loaded, _failure
    if _loaded:
        return
    if _failure is not None:
        raise KernelBuildError(_failure)
    capability = torch.cuda.get_device_capability(device)
    library = finished_build_for(capability)
    try:
        if library is not None:
            torch.ops.load_library(str(library))
        else:
            reason = toolchain_reason()
            if reason is not None:
                raise KernelBuildError(reason)
            build([capability])
    except Exception as exc:
        detail = str(exc).strip().splitlines()
        _failure = (f"building the cuda kernels for sm_{arch_name(capability)} failed "
                    f"({type(exc).__name__}: {' | '.join(detail[-6:])}); fix the toolchain or "
                    f"select other implementations, e.g. backends={{'norm': 'eager', 'rope': "
                    f"'eager', 'mlp': 'eager'}}, or block the plugin with "
                    f"QWEN3CORE_BLOCK_PLUGINS=cuda")
        raise KernelBuildError(_failure) from exc
    from .ops import register_fake_kernels

    register_fake_kernels()
    _loaded = True


def build(capabilities: Sequence[Capability], *, verbose: bool = False) -> Path:
    """Compile the library for ``capabilities`` into the cache and load it; returns its path."""
    from torch.utils import cpp_extension

    directory = build_directory(capabilities)
    names = ", ".join("sm_" + arch_name(c) for c in capabilities)

    def compile_into(staging: Path) -> str:
        print(f"qwen3core: compiling the cuda kernels for {names} into {directory} (once per "
              f"machine, about a minute)", file=sys.stderr, flush=True)
        cpp_extension.load(
            name=NAME,
            sources=[str(CSRC / s) for s in (BINDING_SOURCE, *KERNEL_SOURCES)],
            extra_cflags=list(CXX_FLAGS),
            # Explicit -gencode flags: torch then adds no arch flags of its own.
            extra_cuda_cflags=[*NVCC_FLAGS, *gencode_flags(capabilities)],
            extra_include_paths=[str(CSRC)],
            build_directory=str(staging), is_python_module=False, verbose=verbose)
        return json.dumps({"name": NAME, "archs": [arch_name(c) for c in capabilities],
                           "torch": torch.__version__, "cuda": torch.version.cuda}) + "\n"

    try:
        built = kernel_build.install(directory, _COMPLETE, compile_into, what="cuda kernels")
    except kernel_build.KernelBuildTimeout as exc:
        raise KernelBuildError(str(exc)) from None
    library = directory / f"{NAME}.so"
    if not built:  # another process built it while this one waited
        torch.ops.load_library(str(library))
    return library
