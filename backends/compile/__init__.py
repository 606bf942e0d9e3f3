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
"""

from qwen3core import Implementation, hookimpl

from .availability import compile_unavailable
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
    ]
