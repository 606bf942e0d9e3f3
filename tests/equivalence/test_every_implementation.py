"""Every installed implementation, each component, against the eager reference.

The cases are read from the registry when the tests are collected, so a newly installed
plugin is checked without editing this file. Implementations unavailable here (a CUDA backend
on a CPU machine) are skipped with their availability reason. The compiling runners are
checked in test_compiled.py (each new shape costs a compilation).
"""

from __future__ import annotations

import pytest
import torch

from qwen3core.contracts import COMPONENTS
from qwen3core.registry import get_registry
from qwen3core.testing import DTYPES, check_all_combinations, check_backend, combinations
from qwen3core.testing.models import REFERENCE_PLUGIN
from qwen3core.testing.suite import scaled_examples

CPU = torch.device("cpu")
CASES = [(component, impl.name) for component in COMPONENTS
         for impl in get_registry().implementations(component)
         if impl.plugin != REFERENCE_PLUGIN and component != "runner"]


@pytest.mark.parametrize("component, name", CASES, ids=[f"{c}={n}" for c, n in CASES])
def test_implementation_matches_the_eager_reference(component, name):
    impl = get_registry().get(component, name)
    reasons = {str(d): impl.unavailable_reason(CPU, d) for d in DTYPES}
    if all(reasons.values()):
        pytest.skip(f"{component}={name} is unavailable on cpu: {reasons}")
    assert check_backend(component, name, max_examples=scaled_examples(6)) > 0


def test_every_combination_of_all_components_matches_the_eager_reference():
    """Selections drawn from the product of every available implementation of every
    component (eager runner); the run's summary prints how many were exercised."""
    assert check_backend(max_examples=scaled_examples(20)) > 0


def test_cases_cover_the_first_party_backends():
    names = {f"{c}={n}" for c, n in CASES}
    assert {"attention=sdpa", "kv_cache=static", "moe=grouped"} <= names


def test_every_available_combination_on_one_fixed_example():
    """The whole product of available implementations (eager runner) in every dtype, once."""
    registry = get_registry()
    expected = sum(len(combinations(registry, CPU, d, runners=("eager",))) for d in DTYPES)
    assert check_all_combinations() == expected > 0
