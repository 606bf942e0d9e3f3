"""Turning whatever a caller passes as ``prompts`` into token-id lists.

Accepted shapes (one prompt, or a list of them):

==============================  ===========================  ===========
what is passed                  read as                      returns
==============================  ===========================  ===========
``"text"``                      one text prompt              one result
``["a", "b"]``                  a batch of text prompts      a list
``[1, 2, 3]``                   one prompt of token ids      one result
``[[1, 2], [3]]``               a batch of token-id prompts  a list
``[{"role", "content"}, ...]``  one chat conversation        one result
``[[{...}, ...], [...]]``       a batch of conversations     a list
==============================  ===========================  ===========

Text and chat prompts need a tokenizer; chat prompts are rendered with its chat template and a
generation prompt (``enable_thinking`` is passed to the template).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from qwen3core.errors import GenerationError

_NO_TOKENIZER = ("this model has no tokenizer, so {what} cannot be encoded; load one with "
                 "qwen3core.load(..., tokenizer=DIR) (CLI: --tokenizer DIR) or pass token ids "
                 "(CLI: --prompt-ids 1,2,3)")


@dataclass(frozen=True)
class EncodedPrompts:
    token_ids: list[list[int]]  # one list per prompt, in the order given
    single: bool  # the caller passed one prompt (return one result, not a list)


def encode_prompts(prompts: Any, tokenizer: Any, *, enable_thinking: bool = True
                   ) -> EncodedPrompts:
    """Classify ``prompts`` (see the module docstring) and encode each one."""
    if isinstance(prompts, torch.Tensor):
        prompts = prompts.tolist()
    if isinstance(prompts, str):
        return EncodedPrompts([_encode_text(prompts, tokenizer)], single=True)
    if isinstance(prompts, dict):
        raise GenerationError("a chat prompt is a list of messages; pass [message], "
                              "not a single message dict")
    if not isinstance(prompts, (list, tuple)) or not prompts:
        raise GenerationError(
            f"prompts must be a string, token ids, a chat message list, or a non-empty list of "
            f"those; got {_describe(prompts)}")
    kind = _kind_of_items(prompts)
    if kind == "int":
        return EncodedPrompts([_check_ids(prompts, 0)], single=True)
    if kind == "message":
        return EncodedPrompts([_encode_chat(prompts, tokenizer, enable_thinking)], single=True)
    if kind == "str":
        return EncodedPrompts([_encode_text(p, tokenizer) for p in prompts], single=False)
    encoded = []
    for index, item in enumerate(prompts):
        inner = _kind_of_items(item) if item else "empty"
        if inner == "int":
            encoded.append(_check_ids(item, index))
        elif inner == "message":
            encoded.append(_encode_chat(item, tokenizer, enable_thinking))
        elif inner == "empty":
            raise GenerationError(f"prompt {index} is empty; every prompt needs at least one "
                                  f"token")
        else:
            raise GenerationError(
                f"prompt {index} is a list of {inner} items; a prompt in a list is a string, "
                f"a list of token ids, or a list of chat messages")
    return EncodedPrompts(encoded, single=False)


def _kind_of_items(items: Sequence[Any]) -> str:
    """"int", "str", "message", "list" when all items agree, else a description of the mix."""
    kinds = set()
    for item in items:
        if isinstance(item, bool):
            kinds.add("bool")
        elif isinstance(item, int):
            kinds.add("int")
        elif isinstance(item, str):
            kinds.add("str")
        elif isinstance(item, dict):
            kinds.add("message")
        elif isinstance(item, (list, tuple)):
            kinds.add("list")
        else:
            kinds.add(type(item).__name__)
    if len(kinds) == 1 and kinds <= {"int", "str", "message", "list"}:
        return kinds.pop()
    raise GenerationError(
        f"cannot read prompts made of {', '.join(sorted(kinds))}; pass a string, token ids, "
        f"chat messages, or a list of one of those")


def _encode_text(text: str, tokenizer: Any) -> list[int]:
    if tokenizer is None:
        raise GenerationError(_NO_TOKENIZER.format(what="text prompts"))
    if not text:
        raise GenerationError("the prompt is an empty string; give at least one token")
    return list(tokenizer.encode(text))


def _encode_chat(messages: Sequence[dict], tokenizer: Any, enable_thinking: bool) -> list[int]:
    if tokenizer is None:
        raise GenerationError(_NO_TOKENIZER.format(what="chat messages"))
    for message in messages:
        if "role" not in message:
            raise GenerationError(f"chat message {message!r} has no 'role'")
    return list(tokenizer.apply_chat_template(list(messages), add_generation_prompt=True,
                                              enable_thinking=enable_thinking, tokenize=True))


def _check_ids(ids: Sequence[int], index: int) -> list[int]:
    if not ids:
        raise GenerationError(f"prompt {index} is empty; every prompt needs at least one token")
    return [int(t) for t in ids]


def _describe(value: Any) -> str:
    if isinstance(value, (list, tuple)) and not value:
        return "an empty list"
    return type(value).__name__
