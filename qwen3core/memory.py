"""Whether a model's weights fit the device before anything is allocated.

A load that does not fit otherwise ends in the allocator (a ``MemoryError``, a CUDA OOM, or the
kernel's OOM killer on Linux, which gives no message at all) after minutes of work. The estimate
here is the weights alone, in closed form (so a config naming 10**12 layers costs no loop);
caches and activations come on top, so passing the check is necessary, not sufficient.
``QWEN3CORE_SKIP_MEMORY_CHECK=1`` skips it (swap, overcommit, a better estimate of your own).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import mmap
import os
import sys
from pathlib import Path

import torch

from qwen3core.dtypes import bytes_per_element, dtype_name
from qwen3core.errors import Qwen3CoreError
from qwen3core.spec import Qwen3Spec

SKIP_ENV = "QWEN3CORE_SKIP_MEMORY_CHECK"
GIB = 2**30


class InsufficientMemoryError(Qwen3CoreError, MemoryError):
    """The weights of the requested model do not fit the memory the device has free."""


def parameter_count(spec: Qwen3Spec) -> int:
    """Parameters stored (a tied head once), like ``spec.parameter_count(count_tied_twice=
    False)`` but without a loop over the layers."""
    h, d, layers = spec.hidden_size, spec.head_dim, spec.num_hidden_layers
    q_out, kv_out = spec.num_attention_heads * d, spec.num_key_value_heads * d
    per_layer = h * q_out + 2 * h * kv_out + q_out * h + 2 * d + 2 * h
    sparse = _sparse_layers(spec)
    experts = h * spec.num_experts + spec.num_experts * 3 * h * spec.moe_intermediate_size
    total = layers * per_layer + sparse * experts + (layers - sparse) * 3 * h * spec.intermediate_size
    embed = spec.vocab_size * h
    return total + embed + (0 if spec.tie_word_embeddings else embed) + h


def _sparse_layers(spec: Qwen3Spec) -> int:
    if spec.num_experts <= 0:
        return 0
    step, layers = spec.decoder_sparse_step, spec.num_hidden_layers
    excluded = {i for i in spec.mlp_only_layers if 0 <= i < layers and (i + 1) % step == 0}
    return layers // step - len(excluded)


def weight_bytes(spec: Qwen3Spec, dtype: torch.dtype) -> int:
    return parameter_count(spec) * bytes_per_element(dtype)


def available_bytes(device: torch.device) -> int | None:
    """Memory free for new allocations on ``device``, or None when it cannot be told."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    if device.type != "cpu":
        return None
    candidates = [v for v in (_meminfo_available(), _cgroup_available()) if v is not None]
    return min(candidates) if candidates else None


def _meminfo_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _cgroup_available() -> int | None:
    """A container's own limit (cgroup v2), which /proc/meminfo does not show."""
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit == "max":
            return None
        used = int(Path("/sys/fs/cgroup/memory.current").read_text().strip())
        return max(int(limit) - used, 0)
    except (OSError, ValueError):
        return None


def check_fits(spec: Qwen3Spec, dtype: torch.dtype, device: torch.device, what: str,
               ranks: int = 1, needed: int | None = None) -> None:
    """Raise :class:`InsufficientMemoryError` when ``what``'s weights cannot fit ``device``.

    ``ranks``: tensor-parallel ranks. On a GPU each rank holds about 1/ranks of the weights on
    its own device; on the CPU the ranks share the machine's memory, so the whole must fit.
    ``needed``: the weights' bytes when not the dense size in ``dtype`` (e.g. quantized)."""
    if os.environ.get(SKIP_ENV, "") not in ("", "0"):
        return
    needed = weight_bytes(spec, dtype) if needed is None else needed
    if device.type == "cuda" and ranks > 1:
        needed = -(-needed // ranks)
    free = available_bytes(device)
    if free is None or needed <= free:
        return
    smaller = [name for name in ("bfloat16", "float16") if
               bytes_per_element(getattr(torch, name)) < bytes_per_element(dtype)]
    advice = []
    if smaller:
        halves = needed * bytes_per_element(torch.bfloat16) // bytes_per_element(dtype)
        advice.append(f"a smaller dtype (dtype='{smaller[0]}' needs {halves / GIB:.1f} GiB)")
    other = "device='cuda'" if device.type == "cpu" else "device='cpu'"
    advice += ["a quantized checkpoint", f"another device with more free memory ({other})",
               "a smaller model"]
    raise InsufficientMemoryError(
        f"{what} in {dtype_name(dtype)} needs {needed / GIB:.1f} GiB for its weights alone "
        f"({parameter_count(spec):,} parameters) but {device} has {free / GIB:.1f} GiB free. "
        f"Use {', '.join(advice[:-1])} or {advice[-1]}; set {SKIP_ENV}=1 to try anyway")


def return_freed_memory() -> bool:
    """Give the pages of memory the process has freed back to the system; False where that is
    not possible (not glibc).

    glibc keeps freed heap memory for reuse: a load that makes and drops many transient
    tensors (drawing, converting, quantizing, packing) otherwise leaves its resident set near
    its peak, and interleaved live and freed blocks make the heap grow past what is live
    (quantizing the 0.6B to int4 left 0.46 GiB of freed memory resident). ``malloc_trim(0)``
    releases every free page, also inside the heap. It costs a walk of the free blocks and the
    faults of reusing released pages, so loaders call it now and then, not per tensor."""
    global _malloc_trim
    if _malloc_trim is None:
        _malloc_trim = _find_malloc_trim()
    if not _malloc_trim:
        return False
    _malloc_trim(0)
    return True


_malloc_trim = None


class ReturnFreedEvery:
    """Calls :func:`return_freed_memory` once every ``every_bytes`` of memory its caller
    reports having freed (:meth:`freed`): often enough that freed blocks do not pile up into
    the peak, rarely enough that the trims cost little."""

    def __init__(self, every_bytes: int) -> None:
        self.every_bytes = every_bytes
        self.pending = 0

    def freed(self, nbytes: int) -> None:
        self.pending += nbytes
        if self.pending >= self.every_bytes:
            return_freed_memory()
            self.pending = 0


def _find_malloc_trim():
    if not sys.platform.startswith("linux"):
        return False
    return libc_function("malloc_trim")  # not in musl


_MADV_DONTNEED = 4


def madvise(address: int, nbytes: int, advice: int) -> int:
    """``madvise`` over the whole pages inside the ``nbytes`` at ``address``; returns the bytes
    advised (0 where there are none, the call is missing (not Linux) or refused)."""
    global _madvise
    if not sys.platform.startswith("linux"):
        return 0
    page = mmap.PAGESIZE
    lo, hi = -(-address // page) * page, (address + nbytes) // page * page
    if hi <= lo:
        return 0
    if _madvise is None:
        _madvise = libc_function("madvise")
    if not _madvise or _madvise(ctypes.c_void_p(lo), ctypes.c_size_t(hi - lo), advice) != 0:
        return 0
    return hi - lo


_madvise = None


def drop_file_pages(address: int, nbytes: int) -> int:
    """Drop from the resident set the pages of a file mapping that hold the ``nbytes`` at
    ``address`` (a tensor's), whose values this process no longer needs in memory (a
    checkpoint tensor already converted into a layout of the backend's own). Returns the bytes
    dropped.

    A checkpoint loaded in its stored dtype is a memory mapping of its file (see
    :mod:`qwen3core.checkpoint.tensors`); the mapping lives as long as any of its tensors (the
    embedding), so every page read while converting the others would stay resident until then.
    The pages are clean copies of the file: dropped, they are mapped again from it if ever read.
    Only file mappings are touched (dropping anonymous memory would lose it), only whole pages
    inside the range, and the caller must hold the tensor's storage so that the range cannot
    be unmapped meanwhile. Linux only; 0 elsewhere."""
    if not sys.platform.startswith("linux"):
        return 0
    page = mmap.PAGESIZE
    lo, hi = -(-address // page) * page, (address + nbytes) // page * page
    if hi <= lo or not _inside_file_mapping(lo, hi):
        return 0
    return madvise(lo, hi - lo, _MADV_DONTNEED)


def is_file_mapped(address: int, nbytes: int) -> bool:
    """Whether the ``nbytes`` at ``address`` may lie in a mapping of a file (a checkpoint read
    in place, perhaps read-only: never to be written). True where it cannot be told (not
    Linux, /proc unreadable)."""
    if not sys.platform.startswith("linux") or not os.access("/proc/self/maps", os.R_OK):
        return True
    return _inside_file_mapping(address, address + max(nbytes, 1))


def _inside_file_mapping(lo: int, hi: int) -> bool:
    """Whether [lo, hi) lies inside one mapping of a file (/proc/self/maps)."""
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                fields = line.split(maxsplit=5)
                first, last = (int(v, 16) for v in fields[0].split("-"))
                if first <= lo < last:
                    path = fields[5].strip() if len(fields) > 5 else ""
                    return hi <= last and fields[4] != "0" and path.startswith("/")
    except (OSError, ValueError, IndexError):
        pass
    return False


def libc_function(name: str):
    """The C library's function ``name`` through ctypes, or False where there is none."""
    try:
        return getattr(ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6"), name)
    except (OSError, AttributeError):
        return False
