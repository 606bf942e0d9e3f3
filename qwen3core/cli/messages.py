"""Error messages as a command-line user needs them: the library's messages name Python
arguments (``device='cuda'``, ``backends={'linear': 'eager'}``, ``max_new_tokens``); the
``qwen3`` command prints the flags instead (``--device cuda``, ``--backend linear=eager``,
``--max-new-tokens``)."""

from __future__ import annotations

import re

# Python keyword -> flag, where the message names the argument itself.
_ARGUMENT_FLAGS = ("max_new_tokens", "top_k", "top_p", "min_p", "repetition_penalty",
                   "presence_penalty", "frequency_penalty", "eos_token_ids")

# Both spellings in one message: keep the command line's.
_BOTH = [
    (re.compile(r"qwen3core\.load\(\.\.\., tokenizer=DIR\) \(CLI: (--tokenizer DIR)\)"), r"\1"),
    (re.compile(r"\(tokenizer=DIR, CLI (--tokenizer DIR)\)"), r"(\1)"),
    (re.compile(r"\(CLI: (--[a-z-]+[^)]*)\)"), r"(\1)"),
]


def _backends(match: re.Match) -> str:
    pairs = re.findall(r"['\"](\w+)['\"]\s*:\s*['\"]([\w.-]+)['\"]", match.group(1))
    return " ".join(f"--backend {component}={name}" for component, name in pairs)


def for_cli(message: str) -> str:
    for pattern, replacement in _BOTH:
        message = pattern.sub(replacement, message)
    message = re.sub(r"\bbackends=\{([^}]*)\}", _backends, message)
    message = re.sub(r"\b(device|dtype|revision)=['\"]([^'\"]+)['\"]",
                     lambda m: f"--{m.group(1)} {m.group(2)}", message)
    message = re.sub(r"(?<![-\w])tokenizer=DIR\b", "--tokenizer DIR", message)
    message = message.replace("load with --", "use --")
    for name in _ARGUMENT_FLAGS:
        message = re.sub(rf"(?<![-\w]){name}\b", "--" + name.replace("_", "-"), message)
    message = re.sub(r"^(temperature|seed) must\b", r"--\1 must", message)
    return message
