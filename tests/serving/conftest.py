"""A real ``qwen3 serve`` process on 127.0.0.1 and a free port, for the HTTP tests.

The model is the ``tiny`` preset with the real Qwen3 vocabulary (151936), so that the official
tokenizer's ids fit, with random weights; the tokenizer is the official one from
../shared/qwen3-tokenizer beside the checkout (the tests skip where it is absent).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

# As tests/conftest.py finds it: QWEN3CORE_TOKENIZER_DIR, else ../shared beside the checkout.
TOKENIZER = Path(os.environ.get("QWEN3CORE_TOKENIZER_DIR")
                 or Path(__file__).resolve().parents[3] / "shared" / "qwen3-tokenizer")
API_KEY = "test-key-123"
MODEL = "random:tiny-vocab"

# The CLI entry point, with a preset of the real vocabulary registered first.
LAUNCH = ("import sys; from qwen3core.spec import PRESETS; "
          "PRESETS['tiny-vocab'] = PRESETS['tiny'].replace(vocab_size=151936, "
          "tie_word_embeddings=True, max_position_embeddings=4096); "
          "from qwen3core.cli import main; sys.exit(main(sys.argv[1:]))")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(*extra: str, api_key: str | None = API_KEY):
    if not (TOKENIZER / "tokenizer.json").is_file():
        pytest.skip(f"the official Qwen3 tokenizer is not at {TOKENIZER} (set "
                    f"QWEN3CORE_TOKENIZER_DIR)")
    port = free_port()
    args = [sys.executable, "-c", LAUNCH, "serve", "--model", MODEL, "--tokenizer",
            str(TOKENIZER), "--port", str(port), "--max-context", "4096", *extra]
    if api_key:
        args += ["--api-key", api_key]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("QWEN3CORE_API_KEY", None)
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}: {proc.stdout.read()}")
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError("the server did not become healthy within 120 s")


def stop_server(proc) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="module")
def server():
    proc, base = start_server("--max-batch", "4", "--max-waiting", "8")
    yield base
    stop_server(proc)


@pytest.fixture
def client(server):
    openai = pytest.importorskip("openai", reason="the server tests use the official client")
    return openai.OpenAI(base_url=f"{server}/v1", api_key=API_KEY, max_retries=0, timeout=60)
