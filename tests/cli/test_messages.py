"""Errors printed by the command line name flags, not Python arguments."""

import pytest

from qwen3core.cli.messages import for_cli


@pytest.mark.parametrize("library, command_line", [
    ("needs a CUDA device, not cpu (load with device='cuda')",
     "needs a CUDA device, not cpu (use --device cuda)"),
    ("pass dtype='float16' or dtype='float32'", "pass --dtype float16 or --dtype float32"),
    ("select other implementations, e.g. backends={'norm': 'eager', 'rope': 'eager'}",
     "select other implementations, e.g. --backend norm=eager --backend rope=eager"),
    ("load one (tokenizer=DIR, CLI --tokenizer DIR) or stop",
     "load one (--tokenizer DIR) or stop"),
    ("load one with qwen3core.load(..., tokenizer=DIR) (CLI: --tokenizer DIR) or pass "
     + "token ids (CLI: --prompt-ids 1,2,3)",
     "load one with --tokenizer DIR or pass token ids (--prompt-ids 1,2,3)"),
    ("lower max_new_tokens to at most 7", "lower --max-new-tokens to at most 7"),
    ("top_p must be in (0, 1]", "--top-p must be in (0, 1]"),
    ("temperature must be a finite number", "--temperature must be a finite number"),
    ("--min-p stays as it is", "--min-p stays as it is"),
])
def test_python_arguments_become_flags(library, command_line):
    assert for_cli(library) == command_line


def test_the_command_prints_flags(qwen3):
    done = qwen3("generate", "--model", "random:tiny", "--prompt-ids", "1",
                 "--backend", "attention=flash")
    assert done.returncode == 2
    assert "(use --device cuda)" in done.stderr and "device='" not in done.stderr
