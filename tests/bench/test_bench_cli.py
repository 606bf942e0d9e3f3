"""`qwen3 bench` end to end on a tiny model: every output it promises, and greedy agreement
with transformers on the same random weights (float32, where both must pick the same tokens)."""

import json

import pytest

from qwen3core.bench.combos import EAGER_SELECTION, parse_combo
from qwen3core.cli import main
from qwen3core.errors import Qwen3CoreError


def test_parse_combo_forms():
    assert parse_combo("eager").selection == EAGER_SELECTION
    assert parse_combo("auto").selection is None
    c = parse_combo("fast:attention=eager,kv_cache=dynamic")
    assert c.label == "fast" and c.selection == {"attention": "eager", "kv_cache": "dynamic"}
    with pytest.raises(Qwen3CoreError, match="bad combination"):
        parse_combo("fast:attention")


@pytest.mark.parametrize("preset", ["tiny", "tiny-moe"])
def test_bench_writes_json_markdown_and_plot(tmp_path, capsys, preset):
    pytest.importorskip("matplotlib", reason="--plot needs matplotlib (the bench extra)")
    pytest.importorskip("transformers", reason="--compare-transformers needs transformers")
    out = tmp_path / "r.json"
    code = main(["bench", "--model", f"random:{preset}", "--dtype", "float32", "--device", "cpu",
                 "--new-tokens", "6", "--prompt-len", "5", "--batch-sizes", "2", "--repeats", "1",
                 "--combo", "eager", "--combo", "auto", "--compare-transformers",
                 "--json", str(out), "--markdown", str(tmp_path / "r.md"),
                 "--plot", str(tmp_path / "r.png")])
    printed = capsys.readouterr().out
    assert code == 0, printed
    data = json.loads(out.read_text())
    labels = [r["label"] for r in data["results"]]
    assert labels == ["eager", "auto", "transformers"]
    for r in data["results"]:
        assert set(r["batches"]) == {"1", "2"}  # batch 1 is always measured
        assert r["batches"]["2"]["rows_agree"]  # identical rows decode identically
        assert len(r["batches"]["1"]["greedy_tokens"]) == 6
        assert r["peak_memory_bytes"] > 0
    eager = data["results"][0]["batches"]["1"]  # what a difference would be judged by
    assert len(eager["greedy_margins"]) == len(eager["greedy_logit_scales"]) == 6
    assert all(m >= 0 for m in eager["greedy_margins"])
    verdicts = {row["combination"]: row["greedy"] for row in data["table"]}
    assert verdicts == {"eager": "reference", "auto": "same", "transformers": "same"}
    assert "decode vs transformers" in printed
    assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"
    assert "| combination |" in (tmp_path / "r.md").read_text()
    # The read floor measured around the combinations (qwen3core.bench.floor), where the cpu
    # backend's read loop exists, and each row's batch-1 decode as a share of it.
    floor = data["meta"]["read_floor"]
    assert floor["bytes_per_token"] == floor["dense_bytes_per_token"] > 0
    if floor["read_bytes_per_s"] is None:
        assert f"read floor: not measured ({floor['why_not']})" in printed
    else:
        assert floor["read_bytes_per_s"] > 1e8
        for row in data["table"]:
            share = row["decode_b1_share_of_floor"]
            assert share == pytest.approx(row["decode_b1_tok_s"] * floor["bytes_per_token"]
                                          / floor["read_bytes_per_s"])
            assert f"{row['combination']} decode b=1: {100 * share:.0f} % of its read floor" \
                in printed
        assert "read floor:" in (tmp_path / "r.md").read_text()


def test_bench_rejects_bad_options(capsys):
    assert main(["bench", "--model", "random:tiny", "--batch-sizes", "x"]) == 2
    assert "--batch-sizes" in capsys.readouterr().err
