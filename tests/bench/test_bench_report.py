"""What `qwen3 bench` prints: why greedy tokens differ (the reference's margin against the
suite's rule), no range for a single run, totals said to be totals, a titled and labelled
chart, and help on every option."""

import pytest

from qwen3core.bench.report import explain_difference, format_table, plot, rows
from qwen3core.cli import build_parser


def result(label, tokens, margins=None, scales=None, runs=3):
    spread = {"median": 10.0, "min": 9.0, "max": 11.0, "n": runs}
    batch = {"greedy_tokens": tokens, "decode_tokens_per_s": spread,
             "prefill_tokens_per_s": spread, "ttft_seconds": spread}
    if margins is not None:
        batch.update(greedy_margins=margins, greedy_logit_scales=scales)
    return {"label": label, "load_seconds": 1.0, "peak_memory_bytes": 2**20,
            "batches": {"1": batch}, "backends": {}}


EAGER = result("eager", [5, 6, 7, 8], margins=[3.0, 0.05, 2.0, 1.0],
               scales=[10.0, 10.0, 10.0, 10.0])


def test_a_near_tie_is_explained_as_allowed():
    line = explain_difference(result("auto", [5, 9, 1, 1]), EAGER, "bfloat16")
    assert line.startswith("auto differs from eager at step 1: eager's top-1/top-2 logit "
                           "margin there is 0.05")
    assert "2 x 0.0625 x max(1, |logits|) = 1.25" in line and "near-tie" in line


def test_a_clear_choice_is_explained_as_a_failure():
    line = explain_difference(result("auto", [5, 6, 0, 1]), EAGER, "bfloat16")
    assert "at step 2" in line and "margin there is 2" in line
    assert "would count this as a failure" in line


def test_float64_allows_no_different_token():
    line = explain_difference(result("auto", [5, 9, 7, 8]), EAGER, "float64")
    assert "every token must match" in line


def test_same_tokens_need_no_explanation():
    assert explain_difference(result("auto", [5, 6, 7, 8]), EAGER, "bfloat16") is None


def test_one_run_prints_no_range_and_batches_say_total():
    table = rows([result("eager", [1], runs=1)], [1])
    text = format_table(table, [1])
    assert "10.00" in text and "(9.00-11.00)" not in text
    three = format_table(rows([result("eager", [1])], [1]), [1])
    assert "10.00 (9.00-11.00)" in three
    table8 = [dict(table[0], decode_b8_tok_s=80.0, decode_b8_spread=(80.0, 80.0))]
    assert "decode b=8 tok/s (total)" in format_table(table8, [1, 8])


def test_the_chart_has_a_title_values_on_bars_and_says_total(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib", reason="--plot needs matplotlib (the bench extra)")
    from matplotlib.figure import Figure

    seen = {}
    real_savefig = Figure.savefig

    def savefig(fig, path, **kwargs):
        seen["title"] = fig._suptitle.get_text()
        seen["texts"] = [t.get_text() for ax in fig.axes for t in ax.texts]
        seen["ylabels"] = [ax.get_ylabel() for ax in fig.axes]
        return real_savefig(fig, path, **kwargs)

    monkeypatch.setattr(Figure, "savefig", savefig)
    table = [dict(rows([result("eager", [1])], [1])[0], decode_b8_tok_s=80.0,
                  decode_b8_spread=(79.0, 81.0))]
    plot(table, [1, 8], str(tmp_path / "c.png"), title="random:tiny, bfloat16, cpu, 2026-01-01")
    assert seen["title"] == "random:tiny, bfloat16, cpu, 2026-01-01"
    assert seen["texts"] == ["10.0", "80.0"]
    assert seen["ylabels"] == ["tokens/s", "tokens/s, total of 8 rows"]
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"


def test_every_bench_option_has_help_and_defaults_are_shown():
    parser = build_parser()
    bench = parser._subparsers._group_actions[0].choices["bench"]
    for action in bench._actions:
        assert action.help, action.option_strings
    text = bench.format_help()
    assert "(default: 16)" in text and "(default: 64)" in text and "(default: 3)" in text
    assert "(default: random:0.6B)" in text
