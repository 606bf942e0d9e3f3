"""``qwen3 generate``: streamed output, --json fields, and errors that say what to do."""

import json

import pytest

import qwen3core
from qwen3core import PRESETS
from qwen3core.cli import main


@pytest.fixture
def run_cli(capsys, eager_backends):
    """Run ``qwen3 generate ...`` in this process with the eager backends pinned."""
    pin = [arg for c, n in eager_backends.items() for arg in ("--backend", f"{c}={n}")]

    def run(*argv):
        code = main(["generate", *argv, *pin])
        out = capsys.readouterr()
        return code, out.out, out.err
    return run


def test_json_output_has_ids_text_finish_reason_and_timings(run_cli, eager_backends):
    code, out, _ = run_cli("--model", "random:tiny", "--prompt-ids", "1,2,3",
                           "--max-new-tokens", "5", "--json")
    assert code == 0
    data = json.loads(out)
    loaded = qwen3core.load("random:tiny", backends=eager_backends)
    expected = loaded.generate([1, 2, 3], max_new_tokens=5)
    assert data["token_ids"] == expected.token_ids
    assert data["text"] is None and data["finish_reason"] == "length"
    assert data["prompt_tokens"] == 3
    assert set(data["timings"]) == {"prefill_s", "time_to_first_token_s", "decode_s",
                                    "decode_tokens_per_s"}
    assert data["backends"] == eager_backends


def test_without_a_tokenizer_the_ids_stream_to_stdout(run_cli, eager_backends):
    code, out, err = run_cli("--model", "random:tiny", "--prompt-ids", "1, 2, 3",
                             "--max-new-tokens", "4", "--temperature", "0.7", "--seed", "2",
                             "--verbose")
    expected = qwen3core.load("random:tiny", backends=eager_backends).generate(
        [1, 2, 3], max_new_tokens=4, temperature=0.7, seed=2)
    assert code == 0
    assert [int(t) for t in out.split()] == expected.token_ids
    assert "backends attention=eager" in err and "tokens/s" in err


def test_a_text_prompt_without_tokenizer_is_a_clear_error(run_cli):
    code, out, err = run_cli("--model", "random:tiny", "--prompt", "Hi")
    assert code == 2 and out == ""
    assert "--tokenizer" in err and "--prompt-ids" in err


def test_bad_prompt_ids_are_a_clear_error(run_cli):
    code, _, err = run_cli("--model", "random:tiny", "--prompt-ids", "1,x")
    assert code == 2 and "comma-separated integers" in err


@pytest.fixture
def tiny_vocab_preset(monkeypatch, tiny_vocab_spec, tokenizer_dir):
    monkeypatch.setitem(PRESETS, "tiny-vocab", tiny_vocab_spec)
    return ["--model", "random:tiny-vocab", "--tokenizer", str(tokenizer_dir)]


def test_text_streams_and_matches_the_json_text(run_cli, tiny_vocab_preset, tokenizer):
    args = [*tiny_vocab_preset, "--prompt", "Hello", "--max-new-tokens", "8"]
    code, streamed, _ = run_cli(*args)
    assert code == 0
    code, out, _ = run_cli(*args, "--json")
    data = json.loads(out)
    assert streamed == data["text"] + "\n"
    assert data["text"] == tokenizer.decode(data["token_ids"])
    assert data["prompt_tokens"] == len(tokenizer.encode("Hello"))


def test_chat_prompt_uses_the_template_and_no_think(run_cli, tiny_vocab_preset, tokenizer):
    code, out, _ = run_cli(*tiny_vocab_preset, "--prompt", "Hello", "--chat",
                           "--no-think", "--max-new-tokens", "3", "--json")
    assert code == 0
    rendered = tokenizer.apply_chat_template([{"role": "user", "content": "Hello"}],
                                             enable_thinking=False)
    assert json.loads(out)["prompt_tokens"] == len(rendered)


def test_stop_option_cuts_the_text(run_cli, tiny_vocab_preset):
    base = [*tiny_vocab_preset, "--prompt", "Hello", "--max-new-tokens", "12", "--json"]
    _, out, _ = run_cli(*base)
    text = json.loads(out)["text"]
    _, out, _ = run_cli(*base, "--stop", text[4:8], "never-there")
    data = json.loads(out)
    assert data["finish_reason"] == "stop" and data["text"] == text[:text.find(text[4:8])]


def test_sampling_flags_reach_the_sampler_and_verbose_shows_them(run_cli, eager_backends):
    code, out, err = run_cli("--model", "random:tiny", "--prompt-ids", "1,2,3",
                             "--max-new-tokens", "6", "--temperature", "0.9", "--top-k", "7",
                             "--min-p", "0.05", "--repetition-penalty", "1.3",
                             "--presence-penalty", "0.5", "--frequency-penalty", "0.25",
                             "--seed", "9", "--verbose")
    expected = qwen3core.load("random:tiny", backends=eager_backends).generate(
        [1, 2, 3], max_new_tokens=6, temperature=0.9, top_k=7, min_p=0.05,
        repetition_penalty=1.3, presence_penalty=0.5, frequency_penalty=0.25, seed=9)
    assert code == 0
    assert [int(t) for t in out.split()] == expected.token_ids
    assert ("sampling temperature 0.9, top-k 7, min-p 0.05, seed 9, repetition penalty 1.3, "
            "presence penalty 0.5, frequency penalty 0.25") in err


def test_a_model_without_generation_config_decodes_greedily_and_says_so(run_cli):
    code, _, err = run_cli("--model", "random:tiny", "--prompt-ids", "1", "--max-new-tokens",
                           "2", "--verbose")
    assert code == 0 and "sampling greedy" in err


@pytest.mark.parametrize("flag, value, message", [
    ("--temperature", "inf", "temperature must be a finite number"),
    ("--seed", str(2**64), "seed must be an integer in [0, 2**64)"),
    ("--min-p", "2", "min_p must be a finite number in [0, 1]"),
])
def test_bad_sampling_flags_are_one_line_errors(run_cli, flag, value, message):
    code, _, err = run_cli("--model", "random:tiny", "--prompt-ids", "1", flag, value)
    assert code == 2 and message in err and "Traceback" not in err
