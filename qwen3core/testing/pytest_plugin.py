"""The ``qwen3core`` pytest plugin (entry point ``pytest11``), loaded in every pytest run.

* registers the hypothesis profile ``long`` (``--hypothesis-profile=long``): 10x the examples
  of the default profile in every equivalence property, no deadline;
* prints, at the end of the run, how many examples and backend combinations the equivalence
  suite checked (nothing when it did not run), including those run by pytest-xdist workers.

pytest loads it for every run in an environment where qwen3core is installed, so it does
nothing else.
"""

from __future__ import annotations

import pytest
from hypothesis import settings

from qwen3core.testing import report

LONG_PROFILE = "long"
settings.register_profile(LONG_PROFILE, max_examples=1000, deadline=None)

_WORKER_KEY = "qwen3core_equivalence"


def pytest_sessionfinish(session: pytest.Session) -> None:
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:  # a pytest-xdist worker: hand the record to the controller
        workeroutput[_WORKER_KEY] = report.snapshot()


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error) -> None:
    data = getattr(node, "workeroutput", {}).get(_WORKER_KEY)
    if data:
        report.merge(data)


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    lines = report.summary_lines()
    if not lines:
        return
    terminalreporter.section("qwen3core equivalence suite")
    for line in lines:
        terminalreporter.write_line(line)
