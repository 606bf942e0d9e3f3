"""``qwen3 generate`` options people reach for: --version, --threads, prompts from stdin or a
file, --system."""

import json

import qwen3core


def test_version(qwen3):
    done = qwen3("--version")
    assert done.returncode == 0
    assert done.stdout.startswith(f"qwen3 (qwen3core) {qwen3core.__version__}, torch ")


def test_threads_are_applied_and_checked(qwen3):
    done = qwen3("generate", "--model", "random:tiny", "--prompt-ids", "1,2",
                 "--max-new-tokens", "2", "--threads", "1", "--verbose")
    assert done.returncode == 0, done.stderr
    assert "threads  1\n" in done.stderr
    bad = qwen3("generate", "--model", "random:tiny", "--prompt-ids", "1", "--threads", "0")
    assert bad.returncode == 2 and "--threads must be >= 1" in bad.stderr


def test_prompt_from_stdin_and_from_a_file_equal_the_inline_prompt(qwen3, tokenizer_dir,
                                                                   tmp_path):
    text = "Once upon a time,\nin a land"
    common = ["generate", "--model", "random:tiny-chat", "--tokenizer", tokenizer_dir,
              "--max-new-tokens", "4", "--json"]
    inline = json.loads(qwen3(*common, "--prompt", text).stdout)
    piped = json.loads(qwen3(*common, "--prompt", "-", input=text).stdout)
    (tmp_path / "p.txt").write_text(text, encoding="utf-8")
    from_file = json.loads(qwen3(*common, "--prompt-file", str(tmp_path / "p.txt")).stdout)
    assert inline["prompt_tokens"] > 5
    assert inline["token_ids"] == piped["token_ids"] == from_file["token_ids"]
    assert inline["prompt_tokens"] == piped["prompt_tokens"] == from_file["prompt_tokens"]


def test_a_missing_prompt_file_is_a_clear_error(qwen3, tmp_path):
    done = qwen3("generate", "--model", "random:tiny", "--prompt-file", str(tmp_path / "no"))
    assert done.returncode == 2
    assert f"--prompt-file {tmp_path / 'no'}: cannot read it" in done.stderr


def test_system_message_renders_a_chat(qwen3, tokenizer_dir):
    done = qwen3("generate", "--model", "random:tiny-chat", "--tokenizer", tokenizer_dir,
                 "--prompt", "Hi", "--system", "Be brief.", "--max-new-tokens", "3", "--json")
    assert done.returncode == 0, done.stderr
    loaded = qwen3core.load("random:tiny-chat", tokenizer=tokenizer_dir)
    expected = loaded.generate([{"role": "system", "content": "Be brief."},
                                {"role": "user", "content": "Hi"}], max_new_tokens=3)
    data = json.loads(done.stdout)
    assert data["prompt_tokens"] == expected.prompt_tokens
    assert data["token_ids"] == expected.token_ids


def test_a_reader_that_leaves_early_is_not_a_traceback(tmp_path):
    import os
    import subprocess
    import sys

    done = subprocess.run(
        f"{sys.executable} -m qwen3core.cli generate --model random:tiny --prompt-ids 1 "
        f"--max-new-tokens 300 | head -c 10", shell=True, capture_output=True,
        text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"}, check=False)
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr
