"""What the suite tells its users: the pytest summary, and the `qwen3 backends` listing."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from types import SimpleNamespace

from qwen3core.testing import pytest_plugin, report


def test_a_pytest_run_prints_the_number_of_examples_and_combinations(tmp_path):
    test_file = tmp_path / "test_one_line.py"
    test_file.write_text(textwrap.dedent("""
        from qwen3core.testing import check_backend

        def test_sdpa():
            check_backend("attention", "sdpa", max_examples=2, long_examples=1)
    """))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(test_file)],
        check=False, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "qwen3core equivalence suite" in result.stdout
    assert "3 examples checked against the eager reference" in result.stdout
    # The long example: a prompt of 350-420 tokens and a few decode steps past it.
    found = re.search(r"longest prompt (\d+) tokens, deepest position checked (\d+) "
                      r"\(0-based\); 1 examples checked positions past 100, \d+ past a yarn "
                      r"spec's original context", result.stdout)
    assert found, result.stdout
    assert 350 <= int(found[1]) <= 420 and int(found[1]) + 1 <= int(found[2]) <= int(found[1]) + 7
    assert "available to draw from (cpu float64, attention=sdpa):" in result.stdout


def test_records_from_xdist_workers_are_merged_into_the_summary():
    saved = report.snapshot()
    report.reset()
    try:
        worker = {"examples": [{"selection": {"attention": "sdpa"}, "dtype": "float32",
                                "device": "cpu", "tokens": 7}],
                  "spaces": {"cpu float32, attention=sdpa": 8}}
        pytest_plugin.pytest_testnodedown(SimpleNamespace(workeroutput={
            pytest_plugin._WORKER_KEY: worker}), None)
        lines = report.summary_lines()
        assert lines[0].startswith("1 examples checked") and "7 greedy tokens" in lines[0]
        assert any("8 combinations" in line for line in lines)
    finally:
        report.reset()
        report.merge(saved)


def test_qwen3_backends_lists_this_issues_backends():
    result = subprocess.run([sys.executable, "-m", "qwen3core.cli", "backends", "--json"],
                            check=False, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)["implementations"]
    listed = {(r["component"], r["name"]): r for r in rows}
    for key in [("attention", "eager"), ("attention", "sdpa"), ("kv_cache", "static"),
                ("moe", "grouped"), ("runner", "compile"), ("runner", "compile-all")]:
        assert key in listed, key
        assert listed[key]["available"], listed[key]
    # The default attention on this machine: the cpu kernels' where they build, else SDPA.
    fastest = "cpu" if listed[("attention", "cpu")]["available"] else "sdpa"
    assert listed[("runner", "eager")]["default"] and listed[("attention", fastest)]["default"]
    try:
        import qwen3core_chunked_attention  # noqa: F401  (the example plugin, if installed)
    except ImportError:
        return
    assert listed[("attention", "chunked")]["plugin"] == "chunked_attention"
