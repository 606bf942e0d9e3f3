"""Running ``qwen3`` as a user does: a fresh interpreter, its own stdin/stdout, exit code."""

import os
import subprocess
import sys

import pytest


def cli_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")  # tiny models; a shared machine
    env.update(extra)
    return env


@pytest.fixture
def qwen3():
    """``qwen3(*argv, input=None, timeout=120)`` -> CompletedProcess (text)."""

    def run(*argv: str, input: str | None = None, timeout: float = 120, env=None):
        return subprocess.run([sys.executable, "-m", "qwen3core.cli", *argv], input=input,
                              capture_output=True, text=True, timeout=timeout,
                              env=env or cli_env(), check=False)
    return run
