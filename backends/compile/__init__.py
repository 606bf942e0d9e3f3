"""The ``compile`` runners: the model's steps compiled with ``torch.compile`` (inductor).

Provides ``runner`` "compile" (the decode step only: it runs once per token, and its shapes
are the same at every step) and "compile-all" (prefill too: its prompt length changes from
call to call, so expect a recompile for a new length until dynamo makes it dynamic). Compiled
code is shared by every model built in the process and reused across calls and batch sizes;
``torch._dynamo.utils.counters["stats"]["unique_graphs"]`` counts what was compiled.

Opt-in (priority below the eager runner): the first calls pay the compilation (tens of
seconds on a CPU). Needs inductor's toolchain: a C++ compiler on CPU, triton on GPU. Pair it
with ``kv_cache=static`` for one decode compilation for all steps; with the growing cache the
key length changes every step and dynamo recompiles once to make it dynamic.

"compile-graphs" (CUDA only) compiles the decode step with ``mode="reduce-overhead"``: inductor
records the step as a CUDA graph and replays it, so a decode step costs one launch instead of
one per operator (hundreds for a Qwen3 layer stack), which is what bounds small-batch decode
on a GPU. It needs ``kv_cache=static``: a graph has fixed shapes and addresses, and the static
cache's buffers (marked as fixed addresses, see :mod:`qwen3core_backends.static_cache`) are.
"""

from qwen3core import Implementation, hookimpl

from .availability import compile_unavailable, cuda_graphs_unavailable
from .runner import CompileRunner


@hookimpl
def qwen3core_runner():
    return [
        Implementation("runner", "compile", lambda ctx: CompileRunner(("decode",)),
                       priority=-10, check=compile_unavailable, supports_autograd=True,
                       summary="torch.compile (inductor) of the decode step"),
        Implementation("runner", "compile-all", lambda ctx: CompileRunner(("prefill", "decode")),
                       priority=-20, check=compile_unavailable, supports_autograd=True,
                       summary="torch.compile (inductor) of prefill and decode steps"),
        Implementation("runner", "compile-graphs",
                       lambda ctx: CompileRunner(("decode",), mode="reduce-overhead"),
                       priority=-30, check=cuda_graphs_unavailable, supports_autograd=False,
                       summary="torch.compile of the decode step, replayed as a CUDA graph "
                               "(with kv_cache=static)"),
    ]
