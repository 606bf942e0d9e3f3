"""scripts/gpu_floor.py: decode speed as a share of the read floor, from a bench's JSON."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "gpu_floor.py"


@pytest.fixture(scope="module")
def gpu_floor():
    spec = importlib.util.spec_from_file_location("gpu_floor", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _bench(tmp_path: Path, model: str, speeds: dict[str, float]) -> Path:
    results = [{"label": label, "batches": {"1": {"decode_tokens_per_s": {"median": speed}},
                                            "8": {"decode_tokens_per_s": {"median": 8 * speed}}}}
               for label, speed in speeds.items()]
    results.append({"label": "broken", "error": "every run failed"})  # no numbers: left out
    path = tmp_path / "bench.json"
    path.write_text(json.dumps({"meta": {"model": model, "dtype": "bfloat16", "prompt_len": 32,
                                         "new_tokens": 64}, "results": results}))
    return path


def test_the_06b_step_reads_its_12_gb_and_the_share_follows(gpu_floor, tmp_path, capsys):
    path = _bench(tmp_path, "random:0.6B", {"eager": 30.0, "graphs": 400.0})
    markdown = tmp_path / "floor.md"
    assert gpu_floor.main([str(path), "--bandwidth", "4800", "--markdown", str(markdown)]) == 0
    rows = gpu_floor.rows(json.loads(path.read_text()), 4800.0)
    assert [r["combination"] for r in rows] == ["eager", "graphs"]
    # The 0.6B shape's bfloat16 weights a token passes through: 1.19 GB (the head is 26 %),
    # and its KV cache at position 64: 28 layers x 8 heads x 128 x 2 x 2 bytes x 64 = 7.3 MB.
    assert 1.19e9 < rows[0]["bytes_per_token"] < 1.21e9
    floor = 4800e9 / rows[0]["bytes_per_token"]
    assert rows[1]["share"] == pytest.approx(400.0 / floor)
    assert 0.09 < rows[1]["share"] < 0.11
    printed = capsys.readouterr().out
    assert markdown.read_text() == printed and "| random:0.6B | graphs | 400.0 |" in printed


def test_a_checkpoint_bench_cannot_be_sized_and_a_missing_file_is_named(gpu_floor, tmp_path,
                                                                      capsys):
    with pytest.raises(SystemExit, match="only random:<shape>"):
        gpu_floor.main([str(_bench(tmp_path, "Qwen/Qwen3-8B", {"cuda": 1.0})),
                        "--bandwidth", "1"])
    assert gpu_floor.main([str(tmp_path / "absent.json"), "--bandwidth", "1"]) == 2
    assert "absent.json: cannot read" in capsys.readouterr().err
