"""The public equivalence suite: every backend must reproduce the eager reference.

A plugin author checks an implementation with one line::

    from qwen3core.testing import check_backend
    def test_my_attention():
        check_backend("attention", "my-attention")

or by subclassing :class:`BackendConformance`. With pytest, the ``qwen3core`` pytest plugin
(installed with the package) prints how many examples and backend combinations were checked
and registers the ``long`` hypothesis profile (``--hypothesis-profile=long``).

Building blocks, public so that other properties can be written the same way:
:mod:`~qwen3core.testing.strategies` (specs, workloads, long_specs, long_workloads, selections),
:func:`~qwen3core.testing.harness.greedy` (a small greedy decoder on the model's steps),
:mod:`~qwen3core.testing.models` (reference and candidate models sharing weights),
:func:`~qwen3core.testing.compare.assert_greedy_equivalent` and the per-dtype tolerances in
:mod:`~qwen3core.testing.tolerances`.
"""

from qwen3core.testing.compare import assert_greedy_equivalent, top_margin
from qwen3core.testing.conformance import BackendConformance
from qwen3core.testing.harness import GreedyRun, greedy
from qwen3core.testing.joining import greedy_joining
from qwen3core.testing.models import candidate_model, reference_model, reference_names
from qwen3core.testing.properties import blame_message, check_example, reference_run
from qwen3core.testing.strategies import (
    Workload,
    combinations,
    long_specs,
    long_workloads,
    selections,
    specs,
    workloads,
)
from qwen3core.testing.suite import DTYPES, check_all_combinations, check_backend
from qwen3core.testing.tolerances import TOLERANCES, Tolerance, tolerance_for

__all__ = [
                                          "DTYPES",
                                          "TOLERANCES",
                                          "BackendConformance",
                                          "GreedyRun",
                                          "Tolerance",
                                          "Workload",
                                          "assert_greedy_equivalent",
                                          "blame_message",
                                          "candidate_model",
                                          "check_all_combinations",
                                          "check_backend",
                                          "check_example",
                                          "combinations",
                                          "greedy",
                                          "greedy_joining",
                                          "long_specs",
                                          "long_workloads",
                                          "reference_model",
                                          "reference_names",
                                          "reference_run",
                                          "selections",
                                          "specs",
                                          "tolerance_for",
                                          "top_margin",
                                          "workloads",
]
