"""Bounds on what an untrusted chat template may cost: render time and output size.

jinja2's sandbox stops a template from reaching the interpreter, not from spending it: nested
``range(100000)`` loops run for hours and ``'a' * 10**10`` asks for ten gigabytes. The sandbox
below keeps jinja's protections and adds a budget, checked where a template can spend:

- every loop over ``range`` and every call or filter checks the render's deadline;
- ``*``, ``**`` and ``%`` are intercepted: a repetition or a power whose result would exceed the
  bounds is refused before it is computed, and so is a ``%`` format with a huge width;
- an integer argument larger than the output bound, handed to a string method or a filter
  that sizes its output by it (``center(10**10)``, ``ljust``, ``indent``, ``wordwrap``, ...),
  is refused for the same reason;
- the output is produced in chunks and its size checked as it grows.

Whatever a template does wrong ends as :class:`LimitExceeded`, a ``jinja2.TemplateError`` that
the renderer turns into a ``ChatTemplateError``.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import jinja2
from jinja2.sandbox import MAX_RANGE, ImmutableSandboxedEnvironment

#: A rendered prompt longer than this is refused: far above any context Qwen3 supports
#: (131072 tokens are well under a million characters of text).
MAX_OUTPUT_CHARS = 4 * 2**20
#: Rendering the official templates takes milliseconds even for long conversations.
MAX_RENDER_SECONDS = 5.0
_MAX_POWER_DIGITS = 1000  # ** results beyond ~1000 decimal digits are never a prompt's need
_HUGE_WIDTH = re.compile(r"\d{7,}")  # a format width of a million or more characters
#: Filters whose integer arguments size their output.
_SIZING_FILTERS = frozenset({"center", "indent", "wordwrap", "truncate", "batch", "slice",
                             "format"})


class LimitExceeded(jinja2.TemplateError):
    """A chat template went over its time or size budget."""


@dataclass
class _Budget:
    deadline: float
    seconds: float

    def check(self) -> None:
        if time.monotonic() > self.deadline:
            raise LimitExceeded(f"rendering took longer than {self.seconds:g} s; the template "
                                f"loops too long for this conversation")


_budget: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar("budget", default=None)


def _check_time() -> None:
    budget = _budget.get()
    if budget is not None:
        budget.check()


def _check_arguments(args: tuple, kwargs: dict) -> None:
    for value in (*args, *kwargs.values()):
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_OUTPUT_CHARS:
            raise LimitExceeded(f"the template passed {value} to a function; numbers above "
                                f"{MAX_OUTPUT_CHARS} could only build an oversized prompt")


def bounded_range(*args: int) -> Iterator[int]:
    """jinja's sandboxed range (at most MAX_RANGE items) that checks the deadline as it goes."""
    _check_arguments(args, {})
    rng = range(*args)
    if len(rng) > MAX_RANGE:
        raise LimitExceeded(f"range of {len(rng)} items; the sandbox allows {MAX_RANGE}")
    return _ticking(rng)


class _ticking:
    """An iterable over ``items`` that checks the deadline every 256 items; it keeps ``len``
    and ``in`` so templates that use them on a range still work."""

    def __init__(self, items: range):
        self._items = items

    def __iter__(self) -> Iterator[int]:
        for i, item in enumerate(self._items):
            if not i & 255:
                _check_time()
            yield item

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, item: object) -> bool:
        return item in self._items

    def __getitem__(self, index):
        return self._items[index]

    def __reversed__(self):
        return _ticking(self._items[::-1])


def _sized(value: Any) -> int | None:
    return len(value) if isinstance(value, (str, list, tuple, bytes)) else None


def _safe_multiply(left: Any, right: Any) -> Any:
    for seq, count in ((left, right), (right, left)):
        size = _sized(seq)
        if size is not None and isinstance(count, int) and size * max(count, 0) > MAX_OUTPUT_CHARS:
            raise LimitExceeded(f"repeating {size} items {count} times exceeds "
                                f"{MAX_OUTPUT_CHARS} characters")
    return left * right


def _safe_power(left: Any, right: Any) -> Any:
    if (isinstance(left, int) and isinstance(right, int) and abs(left) > 1 and right > 0
            and right * len(str(abs(left))) > _MAX_POWER_DIGITS):
        raise LimitExceeded(f"{left} ** {right} is a number of more than "
                                f"{_MAX_POWER_DIGITS} digits")
    return left**right


def _safe_modulo(left: Any, right: Any) -> Any:
    if isinstance(left, str) and _HUGE_WIDTH.search(left):
        raise LimitExceeded("a % format with a width of a million characters or more")
    return left % right


class BoundedSandbox(ImmutableSandboxedEnvironment):
    """jinja's immutable sandbox with the bounds of this module."""

    intercepted_binops = frozenset({"*", "**", "%"})

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.globals["range"] = bounded_range
        self.binop_table["*"] = _safe_multiply
        self.binop_table["**"] = _safe_power
        self.binop_table["%"] = _safe_modulo

    def guard_filters(self) -> None:
        """Wrap every filter registered so far (call once the environment is complete)."""
        for name, fn in list(self.filters.items()):
            self.filters[name] = _guarded(fn, sizing=name in _SIZING_FILTERS)

    def call(self, context, obj, /, *args: Any, **kwargs: Any) -> Any:
        _check_time()
        target = getattr(obj, "__wrapped__", obj)  # the sandbox wraps str.format
        owner = getattr(target, "__self__", None)
        if isinstance(owner, (str, list, tuple, bytes)):
            _check_arguments(args, kwargs)  # "a".center(n), "a".ljust(n), ...
        if (getattr(target, "__name__", None) in ("format", "format_map")
                and isinstance(owner, str) and _HUGE_WIDTH.search(owner)):
            raise LimitExceeded("a format with a width of a million characters or more")
        return super().call(context, obj, *args, **kwargs)


def _guarded(fn, *, sizing: bool):
    # The value, and the context or environment jinja passes first to some filters, are not
    # sizes; the filter's own arguments follow them.
    skip = 1 + (jinja2.utils._PassArg.from_obj(fn) is not None)

    @functools.wraps(fn)  # keeps jinja's pass_context/pass_environment markers
    def guarded(*args: Any, **kwargs: Any) -> Any:
        _check_time()
        if sizing:
            _check_arguments(args[skip:], kwargs)
        return fn(*args, **kwargs)

    return guarded


@contextlib.contextmanager
def budget(seconds: float) -> Iterator[None]:
    token = _budget.set(_Budget(time.monotonic() + seconds, seconds))
    try:
        yield
    finally:
        _budget.reset(token)


def render_bounded(template: jinja2.Template, seconds: float | None = None,
                   max_chars: int | None = None, **context: Any) -> str:
    """``template.render(**context)`` within the time and size bounds (the module's, unless
    given)."""
    seconds = MAX_RENDER_SECONDS if seconds is None else seconds
    max_chars = MAX_OUTPUT_CHARS if max_chars is None else max_chars
    with budget(seconds):
        parts, size = [], 0
        for chunk in template.generate(**context):
            size += len(chunk)
            if size > max_chars:
                raise LimitExceeded(f"the rendered prompt exceeds {max_chars} characters")
            parts.append(chunk)
            _check_time()
        return "".join(parts)
