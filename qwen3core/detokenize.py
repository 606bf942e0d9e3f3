"""Incremental (streaming) detokenization.

Byte-level BPE tokens are byte strings: one character of CJK text or an emoji is often split
over two or three tokens, and decoding a prefix that ends inside a character gives U+FFFD. The
decoder re-decodes the ids since the last clean boundary and emits only text that ends in a
complete character, so a stream never shows half a character, and the pieces of a stream add up
exactly to ``decode`` of all its ids.

Why the concatenation is exact: ``decode`` joins the tokens' bytes and decodes them leniently.
When the decoded text does not end in U+FFFD, the bytes end on a complete character, and lenient
UTF-8 decoding of ``A + B`` is then ``decode(A) + decode(B)``. Text that ends in U+FFFD (an
incomplete character, or bytes that will never be valid) is held back until a later token ends
cleanly or :meth:`IncrementalDecoder.flush` is called.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

REPLACEMENT_CHARACTER = "\ufffd"


class IncrementalDecoder:
    """Turns a stream of token ids into text pieces.

    ``decode`` maps a list of ids to text (``Tokenizer.decode``; use
    ``Tokenizer.stream_decoder()`` to get one). ``push`` takes the ids generated since the last
    call and returns the new text (possibly empty); ``flush`` ends the stream, returns what was
    held back, and leaves the decoder ready for a new stream.
    """

    def __init__(self, decode: Callable[[Sequence[int]], str]):
        self._decode = decode
        # Ids from the last clean boundary on. The ids before ``_read`` were already emitted;
        # they are kept so that decoders that look at context (leading spaces) see them.
        self._ids: list[int] = []
        self._read = 0

    def push(self, token_ids: int | Iterable[int]) -> str:
        """Add generated ids; return the text they complete (``""`` while a character is
        still incomplete)."""
        self._ids.extend(_as_ids(token_ids))
        text = self._decode(self._ids)
        if text.endswith(REPLACEMENT_CHARACTER):
            return ""
        piece = text[len(self._decode(self._ids[:self._read])):]
        # The end is a clean boundary now: the ids already emitted are no longer needed.
        self._ids = self._ids[self._read:]
        self._read = len(self._ids)
        return piece

    def flush(self) -> str:
        """End the stream: return the held-back text (with U+FFFD for bytes that never formed
        a character) and reset the decoder."""
        piece = self._decode(self._ids)[len(self._decode(self._ids[:self._read])):]
        self._ids, self._read = [], 0
        return piece

    @property
    def pending_ids(self) -> int:
        """How many pushed ids have not been emitted as text yet."""
        return len(self._ids) - self._read


def _as_ids(token_ids) -> list[int]:
    try:
        return [int(i) for i in token_ids]
    except TypeError:  # one id: a Python int, a numpy scalar or a 0-d tensor
        return [int(token_ids)]


def decode_stream(decode: Callable[[Sequence[int]], str],
                  chunks: Iterable[int | Iterable[int]]) -> Iterable[str]:
    """Yield the non-empty text pieces of ``chunks`` (ids, or lists of ids), then the rest."""
    decoder = IncrementalDecoder(decode)
    for chunk in chunks:
        if piece := decoder.push(chunk):
            yield piece
    if rest := decoder.flush():
        yield rest


__all__ = ["REPLACEMENT_CHARACTER", "IncrementalDecoder", "decode_stream"]
