"""The command line with --tensor-parallel: ranks launched through torch.distributed.run."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

import qwen3core
from qwen3core.cli import main
from qwen3core.errors import ParallelError

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(),
                                reason="this torch build has no torch.distributed")


def _generate_json(*extra: str) -> dict:
    args = ["generate", "--model", "random:tiny-moe@5", "--dtype", "float64", "--device", "cpu",
            "--prompt-ids", "3,14,15,92,65", "--max-new-tokens", "6", "--json",
            "--backend", "moe=grouped", *extra]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE")}
    proc = subprocess.run([sys.executable, "-m", "qwen3core.cli", *args], capture_output=True,
                          text=True, timeout=300, env=env, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 1, proc.stdout  # rank 0 alone writes
    return json.loads(lines[0])


def test_generate_with_two_ranks_prints_what_one_process_prints(capsys):
    """Sampled with a seed: the ranks' logits equal one process's (to float64 rounding), and
    every rank draws with the same seed, so the tokens are one process's."""
    assert main(["generate", "--model", "random:tiny-moe@5", "--dtype", "float64", "--device",
                 "cpu", "--prompt-ids", "3,14,15,92,65", "--max-new-tokens", "6", "--json",
                 "--backend", "moe=grouped", "--temperature", "0.8", "--seed", "7"]) == 0
    alone = json.loads(capsys.readouterr().out)
    split = _generate_json("--temperature", "0.8", "--seed", "7", "--tensor-parallel", "2")
    assert split["token_ids"] == alone["token_ids"]
    assert len(split["token_ids"]) == 6


def test_info_shows_weight_bytes_per_rank(capsys):
    assert main(["info", "--model", "random:8B", "--dtype", "bfloat16", "--device", "cpu",
                 "--tensor-parallel", "2", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    whole = info["parameters_unique"] * 2
    per_rank = info["weights_bytes_per_rank"]
    norms = 2 * (2 * 4096 + 2 * 128) * 36 + 2 * 4096  # replicated: every rank has them
    assert per_rank == [(whole - norms) // 2 + norms] * 2
    assert main(["info", "--model", "random:8B", "--tensor-parallel", "2"]) == 0
    assert "per rank" in capsys.readouterr().out


def test_info_refuses_a_split_the_model_does_not_allow(capsys):
    assert main(["info", "--model", "random:tiny", "--tensor-parallel", "3"]) == 2
    assert "cannot be split over 3 ranks" in capsys.readouterr().err


def test_load_with_tensor_parallel_outside_a_launcher_says_how_to_launch(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with pytest.raises(ParallelError, match="torchrun --nproc-per-node 2"):
        qwen3core.load("random:tiny", device="cpu", tensor_parallel=2)


def test_generate_refuses_a_split_before_starting_any_rank(capsys, monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    started = []
    monkeypatch.setattr("qwen3core.parallel.launch.relaunch", lambda *a: started.append(a))
    assert main(["generate", "--model", "random:tiny", "--prompt-ids", "1,2",
                 "--tensor-parallel", "3"]) == 2
    assert "num_attention_heads (4) is not a multiple of 3" in capsys.readouterr().err
    assert not started
