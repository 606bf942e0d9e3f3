"""The JSON bodies of completion and chat completion responses (whole and streamed chunks)."""

from __future__ import annotations

import time
import uuid
from typing import Any

from qwen3core.serving.choices import Choice


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def usage(prompt_tokens: int, choices: list[Choice]) -> dict:
    completion = sum(c.tokens for c in choices)
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion,
            "total_tokens": prompt_tokens + completion}


def envelope(rid: str, obj: str, model: str, choices: list[dict], **extra: Any) -> dict:
    return {"id": rid, "object": obj, "created": int(time.time()), "model": model,
            "choices": choices, **extra}


def _token_text(tokenizer: Any, token_id: int) -> str:
    return tokenizer.decode([token_id])


def chat_logprobs(tokenizer: Any, entries: list) -> dict:
    def one(token_id: int, logprob: float) -> dict:
        text = _token_text(tokenizer, token_id)
        return {"token": text, "logprob": logprob, "bytes": list(text.encode())}

    return {"content": [{**one(t, lp.logprob),
                         "top_logprobs": [one(i, v) for i, v in lp.top]} for t, lp in entries]}


def completion_logprobs(tokenizer: Any, entries: list, offset: int = 0) -> dict:
    tokens, values, tops, offsets = [], [], [], []
    for token_id, lp in entries:
        text = _token_text(tokenizer, token_id)
        tokens.append(text)
        values.append(lp.logprob)
        tops.append({_token_text(tokenizer, i): v for i, v in lp.top})
        offsets.append(offset)
        offset += len(text)
    return {"tokens": tokens, "token_logprobs": values, "top_logprobs": tops,
            "text_offset": offsets}
