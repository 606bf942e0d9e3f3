"""qwen3core-chunked-attention: an example third-party backend plugin for qwen3core.

Provides ``attention`` "chunked": online-softmax attention over chunks of
:data:`CHUNK_KEYS` keys, which bounds the memory attention needs on long prompts. Needs only
torch; works on every device and dtype. Installed as its own distribution, it is found through
the ``qwen3core.backends`` entry point in its pyproject.toml, and selected with
``qwen3core.load(..., backends={"attention": "chunked"})``.
"""

from qwen3core import Implementation, hookimpl

from .attention import chunked_attention, make_chunked_attention

#: Keys per chunk: the memory of one chunk's scores is B * H_q * S * CHUNK_KEYS floats.
CHUNK_KEYS = 256


@hookimpl
def qwen3core_attention():
    # Priority below eager: bounded memory costs a Python loop per chunk, so it is chosen by
    # name, for long prompts, not by default.
    return Implementation("attention", "chunked",
                          lambda ctx: make_chunked_attention(CHUNK_KEYS), priority=-10,
                          supports_autograd=True,
                          summary=f"online softmax over {CHUNK_KEYS}-key chunks (bounded memory)")


__all__ = ["CHUNK_KEYS", "chunked_attention", "make_chunked_attention"]
