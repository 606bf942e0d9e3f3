"""Progress on long waits: a live line on a terminal, one status line in a pipe or log, and
nothing from the library unless a command turned it on."""

import io
import os
import pty
import re
import select
import subprocess
import sys
import time

import pytest

from qwen3core import progress

# Building random:0.6B takes seconds (kernels compiled or not): longer than progress.DELAY.
SLOW = ["generate", "--model", "random:0.6B", "--prompt-ids", "1", "--max-new-tokens", "1"]


def run_with_stderr_on_a_terminal(argv, timeout=300):
    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "qwen3core.cli", *argv],
                            stdout=subprocess.PIPE, stderr=follower, stdin=subprocess.DEVNULL,
                            env=dict(os.environ, OMP_NUM_THREADS="1"))
    os.close(follower)
    seen = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the terminal closed: the command has exited
                break
            if not chunk:
                break
            seen += chunk
        elif proc.poll() is not None:
            break
    os.close(leader)
    proc.wait(timeout=30)
    return proc.returncode, proc.stdout.read().decode(), seen.decode(errors="replace")


def test_a_slow_command_draws_a_live_line_on_a_terminal():
    code, out, err = run_with_stderr_on_a_terminal(SLOW)
    assert code == 0, err
    assert out.strip().isdigit()  # the one generated token id, on stdout only
    frames = re.findall(r"\r\x1b\[K[|/\\-] building random:0\.6B@0 \((?:bfloat16|float32)", err)
    assert len(frames) >= 2, err  # redrawn while it runs, with a growing clock
    assert re.search(r"qwen3: building random:0\.6B@0 \(\w+, cpu\): done in \d+\.\d s", err)


def test_a_slow_command_writes_one_status_line_to_a_pipe(qwen3):
    done = qwen3(*SLOW, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "\r" not in done.stderr and "\x1b" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if "building" in line]
    assert len(lines) == 1
    assert re.fullmatch(r"qwen3: building random:0\.6B@0 \(\w+, cpu\): done in \d+\.\d s",
                        lines[0])


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


@pytest.fixture
def fast_progress(monkeypatch):
    monkeypatch.setattr(progress, "DELAY", 0.05)
    monkeypatch.setattr(progress, "FRAME", 0.01)
    progress.enable()
    yield
    progress.enable(False)


def test_nested_phases_show_the_inner_step_and_details(fast_progress, monkeypatch):
    screen = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", screen)
    with progress.phase("outer") as outer:
        outer.update("step 1")
        with progress.phase("inner"):
            time.sleep(0.2)
    text = screen.getvalue()
    assert "outer (step 1) > inner" in text
    assert re.search(r"qwen3: inner: done in 0\.\d s\n.*qwen3: outer: done in 0\.\d s\n$",
                     text, re.DOTALL)


def test_short_phases_and_library_use_print_nothing(monkeypatch):
    screen = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", screen)
    with progress.phase("not enabled") as shown:
        shown.update("ignored")
        time.sleep(0.01)
    progress.enable()
    try:
        with progress.phase("quick"):
            pass
    finally:
        progress.enable(False)
    assert screen.getvalue() == ""


def test_a_failed_phase_says_it_stopped(fast_progress, monkeypatch):
    log = io.StringIO()
    monkeypatch.setattr(sys, "stderr", log)
    with pytest.raises(KeyboardInterrupt), progress.phase("long"):
        time.sleep(0.1)
        raise KeyboardInterrupt
    assert re.fullmatch(r"qwen3: long: stopped after 0\.\d s\n", log.getvalue())
