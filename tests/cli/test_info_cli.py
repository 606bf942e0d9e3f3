"""``qwen3 info``: the tied head mentioned only when tied, sizes in a unit that fits, and the
KV cache per token and per full context."""

import json

from qwen3core.cli import main
from qwen3core.cli.info_cmd import format_bytes


def info(capsys, *argv):
    assert main(["info", "--device", "cpu", *argv]) == 0
    return capsys.readouterr().out


def test_tied_head_is_mentioned_only_for_tied_models(capsys):
    assert "(tied head counted twice)" in info(capsys, "--model", "random:0.6B")
    untied = info(capsys, "--model", "random:8B")
    assert "tied head" not in untied and "8,190,735,360" in untied


def test_tiny_models_have_no_zero_gib(capsys):
    out = info(capsys, "--model", "random:tiny")
    assert "0.00 GiB" not in out and "KiB" in out


def test_kv_cache_per_token_and_full_context(capsys):
    # Qwen3-8B: 36 layers x 8 kv heads x 128 dims, keys and values, 2 bytes in bfloat16.
    data = json.loads(info(capsys, "--model", "random:8B", "--dtype", "bfloat16", "--json"))
    assert data["kv_cache_bytes_per_token"] == 2 * 36 * 8 * 128 * 2 == 147456
    assert data["kv_cache_bytes_full_context"] == 147456 * 40960
    out = info(capsys, "--model", "random:8B", "--dtype", "bfloat16")
    assert "kv cache   144.00 KiB per token, 5.62 GiB for the full context of 40,960 tokens" in out


def test_format_bytes_picks_a_unit_that_fits():
    assert format_bytes(512) == "512 B"
    assert format_bytes(3 * 2**10) == "3.00 KiB"
    assert format_bytes(5 * 2**20) == "5.00 MiB"
    assert format_bytes(2**31) == "2.00 GiB"
