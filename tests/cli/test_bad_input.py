"""Bad command-line input is one clear line on stderr and exit code 2, found before any work."""

import os

import pytest


def one_line_error(done, command: str, message: str) -> None:
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith(f"qwen3 {command}: error: "), done.stderr
    assert message in done.stderr, done.stderr


@pytest.mark.parametrize("ids", ["1,,2", "1,2,", ",1", "1,x"])
def test_prompt_ids_with_an_empty_or_bad_item(qwen3, ids):
    done = qwen3("generate", "--model", "random:tiny", "--prompt-ids", ids)
    one_line_error(done, "generate", "--prompt-ids expects comma-separated integers")


@pytest.mark.parametrize("flag, value, message", [
    ("--temperature", "inf", "--temperature must be a finite number"),
    ("--seed", str(2**64), "--seed must be an integer in [0, 2**64)"),
    ("--top-p", "0", "--top-p must be a finite number in (0, 1]"),
])
def test_bad_sampling_values(qwen3, flag, value, message):
    done = qwen3("generate", "--model", "random:tiny", "--prompt-ids", "1", flag, value)
    one_line_error(done, "generate", message)


@pytest.mark.parametrize("flag", ["--json", "--markdown", "--plot"])
def test_bench_output_into_a_missing_folder_fails_before_benchmarking(qwen3, tmp_path, flag):
    # random:0.6B would take minutes to benchmark: the timeout proves nothing ran.
    target = tmp_path / "no" / "such" / "out.png"
    done = qwen3("bench", "--model", "random:0.6B", flag, str(target), timeout=60)
    one_line_error(done, "bench", f"{flag} {target}: the folder {target.parent} does not exist")


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write into a read-only folder")
def test_bench_output_into_an_unwritable_folder_fails_before_benchmarking(qwen3, tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        done = qwen3("bench", "--model", "random:0.6B", "--json", str(folder / "r.json"),
                     timeout=60)
    finally:
        folder.chmod(0o700)
    one_line_error(done, "bench", "is not writable")


def test_bench_output_onto_a_directory_fails_before_benchmarking(qwen3, tmp_path):
    done = qwen3("bench", "--model", "random:0.6B", "--markdown", str(tmp_path), timeout=60)
    one_line_error(done, "bench", "that is a directory")
