"""Streaming detokenization: never half a character, and the pieces add up to decode(ids)."""

import itertools
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from qwen3core.detokenize import IncrementalDecoder, decode_stream

TOKENIZER_DIR = Path(__file__).resolve().parents[2] / "shared" / "qwen3-tokenizer"
needs_files = pytest.mark.skipif(not (TOKENIZER_DIR / "tokenizer.json").is_file(),
                                 reason=f"official Qwen3 tokenizer files not found at "
                                        f"{TOKENIZER_DIR} (see REFERENCE.md)")
FFFD = "\ufffd"
# Any text a model could print, except U+FFFD itself (whose presence is what the tests look for).
printable = st.text(st.characters(codec="utf-8", exclude_characters=FFFD), max_size=30)



def gpt2_byte_to_unicode() -> dict[int, str]:
    """The byte-level BPE alphabet: each byte's printable stand-in character."""
    kept = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
            *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = {}, 0
    for byte in range(256):
        if byte in kept:
            chars[byte] = chr(byte)
        else:
            chars[byte] = chr(256 + extra)
            extra += 1
    return chars


def stream(decoder: IncrementalDecoder, chunks) -> list[str]:
    return [decoder.push(chunk) for chunk in chunks] + [decoder.flush()]


def chunked(ids: list[int], cuts: list[int]) -> list[list[int]]:
    points = sorted({c % (len(ids) + 1) for c in cuts} | {0, len(ids)})
    return [ids[a:b] for a, b in itertools.pairwise(points)]


# --- with a plain UTF-8 byte decoder (ids are bytes): needs no tokenizer files -------------
def utf8_decode(ids):
    return bytes(ids).decode("utf-8", errors="replace")


@settings(max_examples=200, deadline=None)
@given(ids=st.lists(st.integers(0, 255), max_size=40), cuts=st.lists(st.integers(0, 40)))
def test_pieces_add_up_for_arbitrary_bytes(ids, cuts):
    pieces = stream(IncrementalDecoder(utf8_decode), chunked(ids, cuts))
    assert "".join(pieces) == utf8_decode(ids)
    assert all(not piece.endswith(FFFD) for piece in pieces[:-1])


@settings(max_examples=100, deadline=None)
@given(text=printable)
def test_never_half_a_character_for_bytes(text):
    pieces = stream(IncrementalDecoder(utf8_decode), list(text.encode()))
    assert "".join(pieces) == text
    assert all(FFFD not in piece for piece in pieces)


def test_holds_back_until_the_character_is_complete():
    decoder = IncrementalDecoder(utf8_decode)
    first, second, third = "世".encode()
    assert decoder.push(ord("a")) == "a"
    assert decoder.push(first) == ""
    assert decoder.push([second]) == ""
    assert decoder.pending_ids == 2
    assert decoder.push(third) == "世"
    assert decoder.pending_ids == 0


def test_flush_releases_broken_bytes_and_resets():
    decoder = IncrementalDecoder(utf8_decode)
    assert decoder.push(list("é".encode())[:1]) == ""
    assert decoder.flush() == FFFD
    assert decoder.push(list(b"ok")) == "ok"  # a fresh stream: nothing left from before
    assert decoder.flush() == ""


def test_accepts_tensor_and_list_ids():
    decoder = IncrementalDecoder(utf8_decode)
    assert decoder.push(torch.tensor(104)) == "h"
    assert decoder.push(torch.tensor([105, 33])) == "i!"


def test_decode_stream_yields_only_non_empty_pieces():
    chunks = [ord("x"), *"🙂".encode(), [ord("y")], [0xE4]]
    assert list(decode_stream(utf8_decode, chunks)) == ["x", "🙂", "y", FFFD]


# --- with the Qwen3 tokenizer ------------------------------------------------------------
# Single-byte tokens split every multi-byte character; special, added and out-of-vocabulary
# ids (the padded rows of the embedding) are mixed in.
def qwen_ids(byte_ids: list[int]):
    return st.lists(st.one_of(st.sampled_from(byte_ids), st.integers(0, 151668),
                              st.integers(151643, 151668), st.integers(151669, 151935)),
                    max_size=30)


@pytest.fixture(scope="module")
def byte_ids(tok):
    return [tok.token_to_id(char) for char in gpt2_byte_to_unicode().values()]


@needs_files
def test_single_byte_tokens_cover_all_bytes(tok, byte_ids):
    assert None not in byte_ids and len(set(byte_ids)) == 256
    assert tok.decode([byte_ids[b] for b in "世".encode()]) == "世"


@needs_files
@settings(max_examples=150, deadline=None)
@given(data=st.data(), skip_special=st.booleans())
def test_pieces_add_up_to_decode_for_any_ids(tok, byte_ids, data, skip_special):
    ids = data.draw(qwen_ids(byte_ids))
    chunks = chunked(ids, data.draw(st.lists(st.integers(0, 30))))
    pieces = stream(tok.stream_decoder(skip_special_tokens=skip_special), chunks)
    assert "".join(pieces) == tok.decode(ids, skip_special_tokens=skip_special)


@needs_files
@settings(max_examples=100, deadline=None)
@given(text=printable, as_bytes=st.booleans())
def test_never_half_a_character_from_the_tokenizer(tok, byte_ids, text, as_bytes):
    # Either the real tokenization or one token per byte, pushed one id at a time.
    ids = [byte_ids[b] for b in text.encode()] if as_bytes else tok.encode(text)
    pieces = stream(tok.stream_decoder(), ids)
    assert "".join(pieces) == tok.decode(ids)
    assert all(FFFD not in piece for piece in pieces)
