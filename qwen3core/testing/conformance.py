"""A ready-made test class: subclass it, name the implementation, and pytest runs the suite."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import ClassVar

import torch
from hypothesis import strategies as st

from qwen3core.testing.strategies import workloads
from qwen3core.testing.suite import DTYPES, check_backend


class BackendConformance:
    """Subclass as ``class TestMyAttention(BackendConformance)`` and set ``component`` and
    ``name`` (and ``plugins`` for a backend that is not installed as a distribution).

    Every other attribute is an argument of :func:`~qwen3core.testing.check_backend` of the
    same name, with one different default: ``others = "reference"`` pins every other component
    to the eager reference, so that this class fails only for this implementation's bugs, never
    for those of another installed plugin. Set ``others = "drawn"`` to draw them from what is
    installed as well (a failure then names the implementations that diverge on their own).
    """

    component: ClassVar[str] = ""
    name: ClassVar[str] = ""
    plugins: ClassVar[Sequence[object]] = ()
    device: ClassVar[str] = "cpu"
    dtypes: ClassVar[Sequence[torch.dtype]] = DTYPES
    max_examples: ClassVar[int | None] = None  # None: the suite's default, profile-scaled
    long_examples: ClassVar[int | None] = None  # None: the suite's default; 0: none
    others: ClassVar[str] = "reference"
    pinned: ClassVar[Mapping[str, str] | None] = None
    runners: ClassVar[Iterable[str] | None] = ("eager",)
    spec_strategy: ClassVar[st.SearchStrategy | None] = None
    workload_strategy: ClassVar[Callable[[int], st.SearchStrategy]] = staticmethod(workloads)
    alone: ClassVar[bool] = True
    shrink: ClassVar[bool] = True
    quantize: ClassVar[str | None] = None  # a quantization scheme both models hold ("int4")

    def test_selectable_by_name(self):
        from qwen3core.registry import get_registry

        selection = get_registry(self.plugins).select(
            {self.component: self.name}, device=self.device, dtype=self._first_usable_dtype())
        assert selection[self.component].name == self.name

    def test_greedy_equivalent_to_the_eager_reference(self):
        import pytest

        from qwen3core.registry import get_registry

        impl = get_registry(self.plugins).get(self.component, self.name)
        reasons = {str(d): impl.unavailable_reason(torch.device(self.device), d)
                   for d in self.dtypes}
        if all(reasons.values()):
            pytest.skip(f"{self.component}={self.name} is unavailable on {self.device}: "
                        f"{reasons}")
        ran = check_backend(self.component, self.name, plugins=self.plugins,
                            device=self.device, dtypes=self.dtypes,
                            max_examples=self.max_examples, runners=self.runners,
                            pinned=self.pinned, spec_strategy=self.spec_strategy,
                            workload_strategy=type(self).workload_strategy,
                            alone=self.alone, shrink=self.shrink, others=self.others,
                            long_examples=self.long_examples, quantize=self.quantize)
        assert ran > 0

    def _first_usable_dtype(self) -> torch.dtype:
        from qwen3core.registry import get_registry

        impl = get_registry(self.plugins).get(self.component, self.name)
        for dtype in self.dtypes:
            if impl.unavailable_reason(torch.device(self.device), dtype) is None:
                return dtype
        return self.dtypes[0]  # select() then explains why it is unavailable
