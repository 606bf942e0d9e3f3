"""The plugin held to qwen3core's equivalence suite, plus its own kernel checks."""

from __future__ import annotations

import pytest
import torch
from qwen3core_backends.eager.attention import eager_attention
from qwen3core_chunked_attention import chunked_attention

from qwen3core import AttentionBatch, Implementation, hookimpl
from qwen3core.registry import get_registry
from qwen3core.testing import BackendConformance


class TestChunkedAttention(BackendConformance):
    """The installed plugin, exactly as users get it (found through its entry point)."""

    component = "attention"
    name = "chunked"


class FourKeyChunks:
    """The same kernel with 4-key chunks, so the suite's short prompts span many chunks."""

    @hookimpl
    def qwen3core_attention(self):
        return Implementation("attention", "chunked-4", lambda ctx: (
            lambda q, k, v, batch, scale: chunked_attention(q, k, v, batch, scale, 4)))


class TestChunkedAttentionManyChunks(BackendConformance):
    component = "attention"
    name = "chunked-4"
    plugins = (FourKeyChunks(),)


def test_discovered_through_its_entry_point():
    impl = get_registry().get("attention", "chunked")
    assert impl.plugin == "chunked_attention"


@pytest.mark.parametrize("chunk", [1, 3, 7, 64])
@pytest.mark.parametrize("groups", [1, 4])
def test_equals_eager_attention_for_any_chunk_size(chunk, groups):
    gen = torch.Generator().manual_seed(chunk)
    q = torch.randn(2, 2 * groups, 5, 8, generator=gen, dtype=torch.float64)
    k = torch.randn(2, 2, 9, 8, generator=gen, dtype=torch.float64)
    v = torch.randn(2, 2, 9, 8, generator=gen, dtype=torch.float64)
    mask = torch.arange(9)[None, :] <= torch.arange(4, 9)[:, None]  # causal, 4 cached keys
    mask = mask.expand(2, 1, 5, 9).clone()
    mask[0, :, :, :6] = False  # row 0: six slots of left padding ...
    mask[0, 0, 0, 4] = mask[0, 0, 1, 5] = True  # ... whose queries see their own slot only
    batch = AttentionBatch(torch.zeros(2, 5, dtype=torch.long), mask, 4, False)
    got = chunked_attention(q, k, v, batch, 0.35, chunk)
    assert torch.allclose(got, eager_attention(q, k, v, batch, 0.35), atol=1e-12, rtol=0)
