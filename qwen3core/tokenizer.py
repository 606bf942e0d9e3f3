"""The tokenizer of a Qwen3 model directory, on the ``tokenizers`` library.

Built from ``tokenizer.json`` (the byte-level BPE and the added tokens), ``tokenizer_config.json``
(eos/pad token, the chat template) and, when present, ``generation_config.json`` (extra eos ids)
and ``chat_template.jinja`` (a template saved as its own file, which takes priority). It gives the
same ids as ``transformers.AutoTokenizer`` on the same files, without importing transformers.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import tokenizers

from qwen3core.chat_template import ChatTemplateError, render_chat_template
from qwen3core.detokenize import IncrementalDecoder
from qwen3core.errors import CheckpointError

TOKENIZER_FILE = "tokenizer.json"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
GENERATION_CONFIG_FILE = "generation_config.json"
CHAT_TEMPLATE_FILE = "chat_template.jinja"
EXTRA_CHAT_TEMPLATES_DIR = "additional_chat_templates"

IM_END = "<|im_end|>"
END_OF_TEXT = "<|endoftext|>"

# The named special tokens a chat template may read (``{{ eos_token }}``), as in transformers.
NAMED_SPECIAL_TOKENS = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token",
                        "cls_token", "mask_token")


class Tokenizer:
    """Text <-> token ids, the eos set, and chat rendering with the model's own template."""

    def __init__(self, backend: tokenizers.Tokenizer, *, eos_token_ids: Sequence[int],
                 pad_token_id: int | None = None, special_tokens: Mapping[str, str] | None = None,
                 chat_templates: Mapping[str, str] | None = None, name: str = "tokenizer"):
        if not eos_token_ids:
            raise CheckpointError(f"{name}: a tokenizer needs at least one eos token id")
        self._backend = backend
        self.eos_token_ids: tuple[int, ...] = tuple(int(i) for i in eos_token_ids)
        self.pad_token_id = pad_token_id
        self.special_tokens: dict[str, str] = dict(special_tokens or {})
        self._chat_templates: dict[str, str] = dict(chat_templates or {})
        self.name = name

    @classmethod
    def from_dir(cls, path: str | Path) -> Tokenizer:
        """Load the tokenizer of a Hugging Face model directory.

        Needs ``tokenizer.json`` and ``tokenizer_config.json``; reads ``generation_config.json``
        and ``chat_template.jinja`` when present. Raises :class:`CheckpointError` naming what is
        missing or malformed.
        """
        directory = Path(path)
        if not directory.is_dir():
            raise CheckpointError(f"tokenizer directory {directory} does not exist or is not a "
                                  "directory; pass a local Hugging Face model directory")
        missing = [f for f in (TOKENIZER_FILE, TOKENIZER_CONFIG_FILE)
                   if not (directory / f).is_file()]
        if missing:
            raise CheckpointError(
                f"{directory} has no {' or '.join(missing)}; a model directory needs both "
                f"{TOKENIZER_FILE} and {TOKENIZER_CONFIG_FILE} from the model's Hugging Face "
                "repository (download them next to config.json)")
        try:
            backend = tokenizers.Tokenizer.from_file(str(directory / TOKENIZER_FILE))
        except Exception as exc:  # the Rust side raises a bare Exception on bad JSON
            raise CheckpointError(f"{directory / TOKENIZER_FILE} could not be read by the "
                                  f"tokenizers library ({exc}); re-download it") from exc
        config = _read_json(directory / TOKENIZER_CONFIG_FILE)
        generation = (_read_json(directory / GENERATION_CONFIG_FILE)
                      if (directory / GENERATION_CONFIG_FILE).is_file() else {})

        special = {name: _token_content(config[name]) for name in NAMED_SPECIAL_TOKENS
                   if config.get(name) is not None}
        for name, token in special.items():
            if backend.token_to_id(token) is None:
                raise CheckpointError(f"{directory / TOKENIZER_CONFIG_FILE}: {name} {token!r} "
                                      f"is not in {TOKENIZER_FILE}; the files do not belong "
                                      "together")
        return cls(backend, eos_token_ids=_eos_ids(backend, special.get("eos_token"),
                                                   generation, directory),
                   pad_token_id=_pad_id(backend, special.get("pad_token"), generation),
                   special_tokens=special, chat_templates=_chat_templates(directory, config),
                   name=str(directory))

    # --- text <-> ids ----------------------------------------------------------------------
    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``. No BOS is added (Qwen3 has none); special-token strings in
        the text, such as ``<|im_start|>``, become their special ids."""
        if not isinstance(text, str):
            raise TypeError(f"encode() takes a str, got {type(text).__name__}")
        return self._backend.encode(text, add_special_tokens=False).ids

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = False) -> str:
        """Text of ``ids``; bytes that do not form valid UTF-8 become U+FFFD, ids outside the
        vocabulary (the padded rows of the embedding) decode to nothing."""
        return self._backend.decode([int(i) for i in ids],
                                    skip_special_tokens=skip_special_tokens)

    def stream_decoder(self, skip_special_tokens: bool = False) -> IncrementalDecoder:
        """An incremental decoder for generated ids: ``push(ids) -> str``, ``flush() -> str``."""
        return IncrementalDecoder(partial(self.decode, skip_special_tokens=skip_special_tokens))

    def token_to_id(self, token: str) -> int | None:
        return self._backend.token_to_id(token)

    def id_to_token(self, token_id: int) -> str | None:
        return self._backend.id_to_token(int(token_id))

    @property
    def vocab_size(self) -> int:
        """Number of token ids including the added tokens (151,669 for Qwen3); the model's
        embedding is larger (151,936) and its extra rows never decode to text."""
        return self._backend.get_vocab_size(with_added_tokens=True)

    @property
    def max_token_id(self) -> int:
        """The largest id this tokenizer can produce (added tokens included)."""
        return max(self._backend.get_vocab(with_added_tokens=True).values())

    @property
    def eos_token_id(self) -> int:
        """The primary eos id (the one tokenizer_config.json names)."""
        return self.eos_token_ids[0]

    @property
    def backend(self) -> tokenizers.Tokenizer:
        """The underlying ``tokenizers.Tokenizer`` (batch encoding, offsets, ...)."""
        return self._backend

    # --- chat ------------------------------------------------------------------------------
    @property
    def chat_template(self) -> str | None:
        """The default chat template (jinja source), or ``None`` when the model has none."""
        return self._chat_templates.get("default")

    @property
    def chat_templates(self) -> dict[str, str]:
        """All named templates; ``default``, and ``tool_use`` on models that ship one."""
        return dict(self._chat_templates)

    def apply_chat_template(self, messages: Sequence[Mapping[str, Any]], *,
                            add_generation_prompt: bool = True, enable_thinking: bool = True,
                            tools: Sequence[Mapping[str, Any]] | None = None,
                            tokenize: bool = True, **template_kwargs: Any) -> list[int] | str:
        """Render ``messages`` with the model's own chat template.

        Returns the prompt ids (``tokenize=True``) or text. ``enable_thinking=False`` asks a
        hybrid-thinking template for an empty ``<think></think>`` block; templates that do not
        read it ignore it. ``tools`` are JSON-schema dicts; ``template_kwargs`` are passed to
        the template as variables. Raises :class:`ChatTemplateError` when the model has no
        template or the template rejects the conversation.
        """
        rendered = render_chat_template(
            self._template_for(tools), messages, add_generation_prompt=add_generation_prompt,
            tools=tools, special_tokens=self.special_tokens,
            **{**template_kwargs, "enable_thinking": enable_thinking})
        return self.encode(rendered) if tokenize else rendered

    def _template_for(self, tools) -> str:
        if tools is not None and "tool_use" in self._chat_templates:
            return self._chat_templates["tool_use"]
        if "default" in self._chat_templates:
            return self._chat_templates["default"]
        if self._chat_templates:
            raise ChatTemplateError(
                f"{self.name} has several chat templates {sorted(self._chat_templates)} but no "
                "'default' one; add a chat_template.jinja to the model directory")
        raise ChatTemplateError(
            f"{self.name} has no chat template (no 'chat_template' in {TOKENIZER_CONFIG_FILE} "
            f"and no {CHAT_TEMPLATE_FILE}). Base models ship none: encode plain text with "
            "encode(), or use an instruct/chat model directory")

    def __repr__(self) -> str:
        return (f"Tokenizer({self.name!r}, vocab_size={self.vocab_size}, "
                f"eos_token_ids={self.eos_token_ids}, pad_token_id={self.pad_token_id}, "
                f"chat_template={'yes' if self.chat_template else 'no'})")


def _eos_ids(backend: tokenizers.Tokenizer, eos_token: str | None, generation: Mapping,
             directory: Path) -> tuple[int, ...]:
    ids: list[int] = []

    def add(token_id: int | None) -> None:
        if token_id is not None and token_id not in ids:
            ids.append(int(token_id))

    if eos_token is not None:
        add(backend.token_to_id(eos_token))
        # Chat models end a turn with <|im_end|> but can also emit <|endoftext|>; stopping on
        # only one of them runs past the answer.
        if eos_token == IM_END:
            add(backend.token_to_id(END_OF_TEXT))
    generation_eos = generation.get("eos_token_id")
    for token_id in ([] if generation_eos is None else
                     generation_eos if isinstance(generation_eos, list) else [generation_eos]):
        add(token_id)
    if not ids:
        add(backend.token_to_id(END_OF_TEXT))  # a base model's documents end there
    if not ids:
        raise CheckpointError(
            f"{directory}: no eos token found (no eos_token in {TOKENIZER_CONFIG_FILE}, no "
            f"eos_token_id in {GENERATION_CONFIG_FILE}, no {END_OF_TEXT} in the vocabulary)")
    return tuple(ids)


def _pad_id(backend: tokenizers.Tokenizer, pad_token: str | None,
            generation: Mapping) -> int | None:
    if pad_token is not None:
        return backend.token_to_id(pad_token)
    pad = generation.get("pad_token_id")
    return int(pad) if isinstance(pad, int) else None


def _chat_templates(directory: Path, config: Mapping) -> dict[str, str]:
    """Named templates; files saved beside the config take priority over the config's entry,
    as in transformers."""
    from_files = {}
    if (directory / CHAT_TEMPLATE_FILE).is_file():
        from_files["default"] = (directory / CHAT_TEMPLATE_FILE).read_text(encoding="utf-8")
    extra = directory / EXTRA_CHAT_TEMPLATES_DIR
    if extra.is_dir():
        for file in sorted(extra.glob("*.jinja")):
            from_files[file.stem] = file.read_text(encoding="utf-8")
    if from_files:
        return from_files
    entry = config.get("chat_template")
    if entry is None:
        return {}
    if isinstance(entry, str):
        return {"default": entry}
    if isinstance(entry, list):  # the older format for several templates
        return {item["name"]: item["template"] for item in entry}
    raise CheckpointError(f"{directory / TOKENIZER_CONFIG_FILE}: 'chat_template' must be a "
                          f"string or a list of {{name, template}}, got {type(entry).__name__}")


def _token_content(value: Any) -> str:
    # Older configs store special tokens as serialized AddedToken dicts.
    return value["content"] if isinstance(value, Mapping) else str(value)


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path} is not valid JSON ({exc}); re-download it") from exc
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} must hold a JSON object, got {type(data).__name__}")
    return data


__all__ = ["END_OF_TEXT", "IM_END", "ChatTemplateError", "Tokenizer"]
