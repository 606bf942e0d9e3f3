"""README's commands work as written (from the repository root, with the official tokenizer
where README expects it). Commands that need the network (hub ids) or run for minutes
(`qwen3 bench`, the 0.6B shape) are listed here as skipped, not silently dropped."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
README_TOKENIZER = "../shared/qwen3-tokenizer"


def blocks(language):
    return re.findall(rf"```{language}\n(.*?)```", README, re.DOTALL)


def commands():
    found = []
    for block in blocks("bash"):
        for line in block.replace("\\\n", " ").splitlines():
            if "qwen3 " in line and not line.lstrip().startswith("pip "):
                found.append(line.strip())
    return found


def why_not_run(command):
    if "Qwen/" in command:
        return "needs the network (a hub id)"
    if "qwen3 bench" in command or "random:0.6B" in command:
        return ("the 0.6B shape or a benchmark: too slow for the suite (minutes on 2 cores); "
                "run it by hand")
    return None


@pytest.mark.parametrize("command", commands())
def test_readme_command_runs(command, tokenizer_dir):
    reason = why_not_run(command)
    if reason:
        pytest.skip(reason)
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"]}
    done = subprocess.run(["bash", "-c", "set -o pipefail; " +
                           command.replace(README_TOKENIZER, tokenizer_dir)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
                          check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Traceback" not in done.stderr


def test_readme_python_tour_runs(tokenizer_dir):
    (tour,) = [b for b in blocks("python") if "qwen3core.load(" in b and "import torch" in b]
    code = tour.replace(README_TOKENIZER, tokenizer_dir)
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"},
                          check=False)
    assert done.returncode == 0, done.stderr[-2000:]


def test_the_readme_has_the_tiny_text_and_chat_commands():
    listed = commands()
    assert any("generate --model random:tiny-chat" in c for c in listed)
    assert any("chat --model random:tiny-chat" in c for c in listed)
