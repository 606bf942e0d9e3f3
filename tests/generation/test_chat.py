"""``qwen3 chat`` and its session: history kept the way the chat template expects, replies split
into thinking and answer, and the command driven through a pseudo-terminal and a pipe."""

import io
import json
import os
import subprocess
import sys

import pytest

from qwen3core.cli.chat_cmd import show_reply
from qwen3core.errors import GenerationError
from qwen3core.generation.chat import ChatReply, ChatSession
from qwen3core.generation.results import GenerationResult, StreamEvent, Timings
from qwen3core.generation.stream import GenerationStream


def first_turn(user: str, answer: str) -> str:
    """A finished user/assistant exchange as the Qwen3 template renders it in later prompts."""
    return (f"<|im_start|>user\n{user}<|im_end|>\n"
            f"<|im_start|>assistant\n{answer}<|im_end|>\n")


def test_two_turns_keep_the_first_in_the_second_prompt(chat_model):
    session = ChatSession(chat_model.model, chat_model.tokenizer, enable_thinking=False,
                          max_new_tokens=6)
    reply = session.send("Hello there")
    list(reply)
    one = reply.turn
    assert one.prompt == ("<|im_start|>user\nHello there<|im_end|>\n<|im_start|>assistant\n"
                          "<think>\n\n</think>\n\n")
    reply = session.send("And again")
    list(reply)
    two = reply.turn
    assert two.prompt.startswith(first_turn("Hello there", one.answer))
    # The template, given the whole first reply, renders the same prompt (it strips thinking
    # from earlier turns itself).
    assert two.prompt == chat_model.tokenizer.apply_chat_template(
        [{"role": "user", "content": "Hello there"},
         {"role": "assistant", "content": one.text},
         {"role": "user", "content": "And again"}], enable_thinking=False, tokenize=False)
    assert len(session.messages) == 4
    session.reset()
    assert session.messages == []
    assert session.render("x") == chat_model.tokenizer.apply_chat_template(
        [{"role": "user", "content": "x"}], enable_thinking=False, tokenize=False)


def test_an_empty_message_is_refused(chat_model):
    session = ChatSession(chat_model.model, chat_model.tokenizer)
    with pytest.raises(GenerationError, match="empty"):
        session.send("")


def scripted(pieces: list[str]) -> GenerationStream:
    """A finished generation whose text arrives in ``pieces`` (one token id per piece)."""
    def events():
        for i, piece in enumerate(pieces):
            yield StreamEvent(0, [i], piece, "length" if i == len(pieces) - 1 else None)
        return [GenerationResult(list(range(len(pieces))), "".join(pieces), "length", 5,
                                 Timings(0.1, 0.1, 0.1, 10.0))]
    return GenerationStream(events(), single=True)


THINKING_REPLY = ["<think>", "\nLet me", " think.\n", "</think>", "\n\n", "Hi", " there!"]


@pytest.mark.parametrize("show, shown", [
    (False, "Hi there!\n"),
    (True, "<think>\nLet me think.\n</think>\n\nHi there!\n"),
])
def test_replies_hide_or_show_thinking_and_history_keeps_the_answer(tokenizer, show, shown):
    session = ChatSession(None, tokenizer, system="Be brief.")
    prompt = session.render("Hello")
    reply = ChatReply(session, "Hello", prompt, scripted(THINKING_REPLY))
    out = io.StringIO()
    show_reply(reply, show_thinking=show, out=out)
    assert out.getvalue() == shown
    assert reply.turn.reasoning == "Let me think." and reply.turn.answer == "Hi there!"
    assert session.messages[-1] == {"role": "assistant", "content": "Hi there!"}
    assert session.render("Next") == tokenizer.apply_chat_template(
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"},
         {"role": "assistant", "content": "".join(THINKING_REPLY)},
         {"role": "user", "content": "Next"}], tokenize=False)


def test_an_abandoned_reply_leaves_the_history_unchanged(tokenizer):
    session = ChatSession(None, tokenizer)
    reply = ChatReply(session, "Hello", session.render("Hello"), scripted(THINKING_REPLY))
    next(reply)
    assert session.messages == []


# -- the command, in a subprocess ------------------------------------------------------------

# random:tiny-chat: tiny, with the 151936-row vocabulary the real tokenizer needs.
LAUNCH = """
import sys
from qwen3core.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture
def chat_command(tokenizer_dir, eager_backends):
    pin = [arg for c, n in eager_backends.items() for arg in ("--backend", f"{c}={n}")]

    def command(*extra):
        return [sys.executable, "-c", LAUNCH, "chat", "--model", "random:tiny-chat",
                "--tokenizer", str(tokenizer_dir), "--max-new-tokens", "6", "--verbose",
                *pin, *extra]
    return command


def quiet_env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONIOENCODING": "utf-8",
            "QWEN3CORE_CHAT_HISTORY": os.devnull}


def turns_in(stderr: str) -> list[dict]:
    return [json.loads(line) for line in stderr.splitlines() if line.startswith('{"turn"')]


def test_chat_through_a_pseudo_terminal_for_two_turns(chat_command, tokenizer, tmp_path,
                                                     pty_terminal):
    controller, child = os.openpty()
    with open(tmp_path / "stderr", "w") as stderr:
        proc = subprocess.Popen(chat_command("--no-think"), stdin=child,
                                stdout=child, stderr=stderr, env=quiet_env(), close_fds=True)
    os.close(child)
    terminal = pty_terminal(controller)
    try:
        terminal.wait_for("you> ", 1)
        terminal.type("Hello there")
        terminal.wait_for("you> ", 2)
        terminal.type("What did I just say?")
        terminal.wait_for("you> ", 3)
        terminal.type("/exit")
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(controller)
    turns = turns_in((tmp_path / "stderr").read_text())
    assert [t["turn"] for t in turns] == [1, 2]
    one, two = turns
    assert two["prompt"].startswith(first_turn("Hello there", one["answer"]))
    assert two["prompt"] == tokenizer.apply_chat_template(
        [{"role": "user", "content": "Hello there"},
         {"role": "assistant", "content": one["text"]},
         {"role": "user", "content": "What did I just say?"}],
        enable_thinking=False, tokenize=False)
    shown = terminal.text()
    assert one["answer"] in shown and two["answer"] in shown


def test_chat_with_piped_input_resets_and_ends_at_eof(chat_command):
    proc = subprocess.run(chat_command(), input="Hello\n/reset\n\nHi again\n",
                          capture_output=True, text=True, env=quiet_env(), timeout=120,
                          encoding="utf-8", check=False)
    assert proc.returncode == 0, proc.stderr
    turns = turns_in(proc.stderr)
    assert [t["turn"] for t in turns] == [1, 2]
    assert turns[1]["prompt"] == "<|im_start|>user\nHi again<|im_end|>\n<|im_start|>assistant\n"
    assert "(history cleared)" in proc.stderr
    assert "you> " not in proc.stdout  # no prompt when input is not a terminal
    assert turns[0]["answer"] in proc.stdout and turns[1]["answer"] in proc.stdout
