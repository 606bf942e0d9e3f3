"""A killed kernel build never wedges later runs (qwen3core.kernel_build, issue 18 item 1).

The cheap tests drive :func:`kernel_build.install` with a Python "compiler" that sleeps in a
subprocess; the last one kills a real first-use build of the cpu kernels and times the next
load. Every test uses its own temporary kernel directory, never the shared cache.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from qwen3core import kernel_build

# A build that writes a half library, says so on stdout, then sleeps: the moment to kill it.
_SLOW_BUILD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from qwen3core import kernel_build

    def build(staging):
        (staging / "lib.so").write_text("half")
        print("building", flush=True)
        time.sleep(600)
        return "done"

    kernel_build.install(Path(sys.argv[1]), "complete", build)
""")


def _start_slow_build(target: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_BUILD, str(target)],
                            stdout=subprocess.PIPE, text=True, start_new_session=True)
    assert proc.stdout.readline().strip() == "building"
    return proc


def _finish(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


def _quick_build(staging: Path) -> str:
    (staging / "lib.so").write_text("whole")
    return "done"


def test_a_build_killed_by_sigterm_does_not_block_the_next(tmp_path):
    target = tmp_path / "digest"
    proc = _start_slow_build(target)
    try:
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=30) == -signal.SIGTERM
        assert not target.exists()  # the half build never appeared under the real name
        started = time.monotonic()
        assert kernel_build.install(target, "complete", _quick_build) is True
        assert time.monotonic() - started < 10
    finally:
        _finish(proc)
    assert (target / "lib.so").read_text() == "whole"
    assert (target / "complete").read_text() == "done"
    # The dead build's staging directory was cleared; only the target and the lock remain.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["digest", "digest.lock"]


def test_a_live_builder_is_waited_for_a_bounded_time_then_named(tmp_path, monkeypatch):
    target = tmp_path / "digest"
    proc = _start_slow_build(target)
    try:
        monkeypatch.setenv(kernel_build.WAIT_ENV, "1")
        started = time.monotonic()
        with pytest.raises(kernel_build.KernelBuildTimeout,
                           match=rf"process {proc.pid} .*{kernel_build.WAIT_ENV}"):
            kernel_build.install(target, "complete", _quick_build)
        assert time.monotonic() - started < 10
    finally:
        _finish(proc)


def test_a_half_built_directory_from_an_older_scheme_is_rebuilt(tmp_path):
    target = tmp_path / "digest"
    target.mkdir()
    (target / "lock").write_text("")  # torch's build baton, left by a killed build
    (target / "lib.so").write_text("half")
    assert kernel_build.install(target, "complete", _quick_build) is True
    assert (target / "lib.so").read_text() == "whole"
    assert not (target / "lock").exists()


def test_a_finished_build_is_not_rebuilt_and_a_failed_one_leaves_nothing(tmp_path):
    target = tmp_path / "digest"
    assert kernel_build.install(target, "complete", _quick_build) is True
    assert kernel_build.install(target, "complete", lambda s: 1 / 0) is False

    other = tmp_path / "other"

    def broken(staging: Path) -> str:
        (staging / "lib.so").write_text("half")
        raise RuntimeError("compiler said no")

    with pytest.raises(RuntimeError, match="compiler said no"):
        kernel_build.install(other, "complete", broken)
    assert not other.exists()
    assert not list(tmp_path.glob("other.build-*"))


def test_a_bad_wait_setting_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv(kernel_build.WAIT_ENV, "soon")
    with pytest.raises(kernel_build.BackendSelectionError, match="number of seconds"):
        kernel_build.install(tmp_path / "digest", "complete", _quick_build)


# -- the real cpu kernels ---------------------------------------------------------------------
_LOAD_CPU_KERNELS = "from qwen3core_backends.cpu import build; build.load_kernels(); print('ok')"


def _cpu_kernels_buildable() -> str | None:
    from qwen3core_backends.cpu import build

    lacking = build.cpu_lacks()
    if lacking:
        return lacking
    import shutil

    if shutil.which(build.compiler()) is None or shutil.which("ninja") is None:
        return "no C++ compiler or ninja"
    return None


def test_sigterm_during_the_first_cpu_kernel_build_then_the_next_load_completes(tmp_path):
    missing = _cpu_kernels_buildable()
    if missing:
        pytest.skip(f"the cpu kernels cannot be built here: {missing}")
    env = {**os.environ, "QWEN3CORE_CPU_KERNELS_DIR": str(tmp_path)}
    first = subprocess.Popen([sys.executable, "-c", _LOAD_CPU_KERNELS], env=env,
                             stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert "compiling the cpu kernels" in first.stderr.readline()
        time.sleep(3)  # into the compiler
        os.killpg(first.pid, signal.SIGTERM)  # what a cancelled CI job or docker stop does
        first.wait(timeout=30)
    finally:
        _finish(first)
    # Bounded: a full build takes about 35 s on an idle 2-core machine; a hang would be forever.
    second = subprocess.run([sys.executable, "-c", _LOAD_CPU_KERNELS], env=env, check=False,
                            capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip() == "ok"
    # And a third process loads the finished library without compiling.
    third = subprocess.run([sys.executable, "-c", _LOAD_CPU_KERNELS], env=env, check=False,
                           capture_output=True, text=True, timeout=120)
    assert third.returncode == 0 and "compiling" not in third.stderr, third.stderr


# -- the build tools (issue 18 item 7) --------------------------------------------------------
def test_ninja_is_a_declared_dependency_and_found_without_an_activated_environment(monkeypatch):
    import tomllib

    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    dependencies = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    assert any(d.split(">")[0].split("=")[0].strip() == "ninja" for d in dependencies)
    ninja = pytest.importorskip("ninja", reason="the ninja wheel is not installed here")
    monkeypatch.setenv("PATH", "/nonexistent")  # as when a venv's python runs unactivated
    found = kernel_build.find_ninja()
    assert found is not None and found.startswith(str(ninja.BIN_DIR))


def test_qwen3_backends_says_which_build_tools_are_missing(monkeypatch, capsys):
    from qwen3core.cli import main

    monkeypatch.setenv("CXX", "no-such-compiler-qwen3core")
    monkeypatch.setattr(kernel_build, "find_ninja", lambda: None)
    assert main(["backends"]) == 0
    out = capsys.readouterr().out
    assert "missing: no-such-compiler-qwen3core, ninja" in out
    assert "pip install ninja" in out
