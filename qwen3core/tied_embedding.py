"""A tied model's token embedding read from its LM head: one copy of the matrix.

With ``tie_word_embeddings`` the embedding and the LM head are one matrix. A linear that keeps
its weight in a layout of its own (the ``cpu`` linear's kernel tiles) would otherwise hold that
layout *and* leave the dense parameter to the embedding, which needs whole rows for its
lookups: the matrix twice (0.29 GiB for the 0.6B in bfloat16, 0.58 GiB in float32). A linear
module that can read rows of its weight offers ``weight_rows(ids)`` (``F.embedding(ids,
weight)``'s result, see :class:`qwen3core.contracts.WeightRows`); the model then looks its
tokens up through the head (:func:`serve_embedding_from_head`, from ``prepare_weights``) and
the head's layout is the only copy.

The checkpoint keys stay as they were: the state dict carries ``model.embed_tokens.weight``
(the head's dense weight) and loading that key writes the head.
"""

from __future__ import annotations

import torch
from torch import nn

from qwen3core.parallel.embedding import VocabParallelEmbedding, lookup_held_rows
from qwen3core.parallel.layout import ParallelLayout


class HeadRowsEmbedding(nn.Module):
    """``model.embed_tokens`` of a tied model whose head serves the rows (see the module
    docstring). Holds no tensor of its own; the head stays a module of the model (``lm_head``)
    and is not registered here, so it appears once in ``modules()`` and the state dict."""

    def __init__(self, head: nn.Module, layout: ParallelLayout | None = None, start: int = 0,
                 stop: int | None = None):
        super().__init__()
        self.__dict__["head"] = head  # a plain reference, not a submodule (see above)
        self.layout = layout
        self.start = start
        self.stop = head.out_features if stop is None else stop

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        if self.layout is None or not self.layout.is_parallel:
            return self.head.weight_rows(input_ids)
        return lookup_held_rows(input_ids, self.start, self.stop, self.layout,
                                self.head.weight_rows)

    @property
    def weight(self) -> torch.Tensor:
        """The dense [rows, hidden] matrix, as the head gives it (unpacked: a new tensor each
        read where the head holds only its own layout)."""
        return self.head.weight

    def _probe(self) -> torch.Tensor:
        # [0, hidden]: the dtype and device without a copy. CPU ids: the one implementation of
        # weight_rows (the cpu linear) holds its tiles there.
        return self.head.weight_rows(torch.zeros(0, dtype=torch.long))

    @property
    def dtype(self) -> torch.dtype:
        return self._probe().dtype

    @property
    def device(self) -> torch.device:
        return self._probe().device

    def _save_to_state_dict(self, destination, prefix, keep_vars) -> None:
        destination[prefix + "weight"] = self.head.weight if keep_vars else self.head.weight.detach()

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs) -> None:
        key = prefix + "weight"
        if key not in state_dict:
            if strict:
                missing_keys.append(key)
            return
        value = state_dict[key]
        want = (self.head.out_features, self.head.in_features)
        if tuple(value.shape) != want:
            error_msgs.append(f"size mismatch for {key}: copying a param with shape "
                              f"{tuple(value.shape)} from checkpoint, the shape in current model "
                              f"is {torch.Size(want)}.")
            return
        # The head is the matrix's holder: it takes the entry as it takes its own.
        self.head._load_from_state_dict({"weight": value}, "", local_metadata, True, [], [],
                                        error_msgs)

    def extra_repr(self) -> str:
        return f"rows {self.start}..{self.stop} read from the LM head ({type(self.head).__name__})"


def serve_embedding_from_head(model: nn.Module) -> None:
    """Make ``model.model.embed_tokens`` read from ``model.lm_head`` where the two are tied (the
    head's weight *is* the embedding's parameter) and the head offers ``weight_rows``; the
    embedding then lets go of the parameter, so the head, preparing its weight next, is its
    only holder. A head that took a quantized weight is not tied (the embedding keeps its
    exact rows) and is left alone, as is a head without ``weight_rows``."""
    embedding, head = model.model.embed_tokens, model.lm_head
    if not model.spec.tie_word_embeddings or not callable(getattr(head, "weight_rows", None)):
        return
    if isinstance(embedding, HeadRowsEmbedding):
        return
    dense = getattr(embedding, "weight", None)
    if dense is None or head._parameters.get("weight") is not dense:
        return
    if isinstance(embedding, VocabParallelEmbedding):
        model.model.embed_tokens = HeadRowsEmbedding(head, embedding.layout, embedding.start,
                                                     embedding.stop)
    elif isinstance(embedding, nn.Embedding):
        model.model.embed_tokens = HeadRowsEmbedding(head)
