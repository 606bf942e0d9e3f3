"""``qwen3 chat`` as typed: commands, unknown commands, replies cut by the token limit,
keystrokes during a streamed reply, and a line editor whose history survives the session."""

import json
import os
import subprocess
import sys
import time

import pytest


def chat_argv(tokenizer_dir, *extra):
    return [sys.executable, "-m", "qwen3core.cli", "chat", "--model", "random:tiny-chat",
            "--tokenizer", tokenizer_dir, "--threads", "1", "--verbose", *extra]


def env_with_history(path):
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONIOENCODING": "utf-8",
            "QWEN3CORE_CHAT_HISTORY": str(path)}


def turns_in(stderr):
    return [json.loads(line) for line in stderr.splitlines() if line.startswith('{"turn"')]


def test_commands_are_handled_and_unknown_ones_never_reach_the_model(tokenizer_dir, tmp_path):
    done = subprocess.run(chat_argv(tokenizer_dir, "--max-new-tokens", "3"),
                          input="/help\n/bogus thing\n//etc is a folder\n/settings\n",
                          capture_output=True, text=True, timeout=180, check=False,
                          env=env_with_history(tmp_path / "h"))
    err = done.stderr
    for command in ("/help", "/reset", "/settings", "/exit"):
        assert f"  {command}" in err
    assert "qwen3 chat: unknown command /bogus; /help lists the commands" in err
    turns = turns_in(err)
    assert len(turns) == 1  # only the // message was sent, without its escape
    assert "<|im_start|>user\n/etc is a folder<|im_end|>" in turns[0]["prompt"]
    assert "sampling greedy, at most 3 new tokens per reply" in err
    assert done.returncode == 1  # piped input with an error is a failed run


def test_a_reply_cut_by_the_token_limit_is_marked(tokenizer_dir, tmp_path):
    done = subprocess.run(chat_argv(tokenizer_dir, "--max-new-tokens", "2", "--no-think"),
                          input="Hello\n", capture_output=True, text=True, timeout=180,
                          check=False, env=env_with_history(tmp_path / "h"))
    assert done.returncode == 0, done.stderr
    (turn,) = turns_in(done.stderr)
    if turn["finish_reason"] == "length":
        assert "(reply cut off: it reached --max-new-tokens 2)" in done.stderr
    else:  # random weights may end at once with an eos token: then nothing is cut
        assert "cut off" not in done.stderr


def test_chat_help_has_no_raw_markup(qwen3):
    done = qwen3("chat", "--help")
    assert done.returncode == 0
    assert "``" not in done.stdout and "/help" in done.stdout
    assert "(default: 1024)" in done.stdout


@pytest.fixture
def terminal_chat(tokenizer_dir, tmp_path, pty_terminal):
    procs = []

    def start(*extra):
        controller, child = os.openpty()
        stderr = open(tmp_path / f"stderr{len(procs)}", "w")  # noqa: SIM115 - closed below
        proc = subprocess.Popen(chat_argv(tokenizer_dir, *extra), stdin=child, stdout=child,
                                stderr=stderr, env=env_with_history(tmp_path / "history"),
                                close_fds=True)
        os.close(child)
        procs.append((proc, controller, stderr))
        return proc, pty_terminal(controller), tmp_path / f"stderr{len(procs) - 1}"
    yield start
    for proc, controller, stderr in procs:
        if proc.poll() is None:
            proc.kill()
        os.close(controller)
        stderr.close()


def test_keys_typed_during_a_reply_do_not_land_in_it(terminal_chat):
    # Long enough that the reply is still streaming when the keys are typed, even on a fast
    # machine (tiny-chat decodes hundreds of tokens a second).
    proc, terminal, stderr = terminal_chat("--max-new-tokens", "1500", "--no-think")
    terminal.wait_for("you> ", 1)
    terminal.write("Tell me a story\n")
    time.sleep(0.3)  # the reply is being generated now
    terminal.write("zzqq")
    terminal.wait_for("you> ", 2)
    terminal.write("/exit\n")
    assert proc.wait(timeout=30) == 0
    assert b"zzqq" not in terminal.seen  # neither echoed into the reply...
    turns = turns_in(stderr.read_text())
    assert len(turns) == 1  # ...nor sent later as (part of) a message


def test_history_is_kept_across_sessions(terminal_chat, tmp_path):
    proc, terminal, _ = terminal_chat("--max-new-tokens", "1")
    terminal.wait_for("you> ", 1)
    terminal.write("remember this line\n")
    terminal.wait_for("you> ", 2)
    terminal.write("/exit\n")
    assert proc.wait(timeout=30) == 0
    assert "remember this line" in (tmp_path / "history").read_text()
    proc, terminal, stderr = terminal_chat("--max-new-tokens", "1")
    terminal.wait_for("you> ", 1)
    terminal.write("\x1b[A\x1b[A\n")  # up twice (past /exit): the earlier message again
    terminal.wait_for("you> ", 2)
    terminal.write("/exit\n")
    assert proc.wait(timeout=30) == 0
    (turn,) = turns_in(stderr.read_text())
    assert "remember this line" in turn["prompt"]
