"""Sequence bookkeeping around the KV storage: per-row slots, padding, positions and masks.

Every row of a batch has its own write offset (``next_slot``): a row's new tokens go to the
slots after its own last one, so rows may sit at different positions. That is what lets a
continuously batched server add a row that was prefilled on its own (:meth:`Cache.extend`)
to a batch that is mid-decode, and drop finished rows (:meth:`Cache.reorder`) at any step.
An offline batch still left-pads its prompts to a common length, so its rows advance in step;
what differs per row is which slots hold real tokens (``valid``) and how many real tokens a row
has seen (its next rotary position). From those facts this module builds the one
:class:`~qwen3core.contracts.AttentionBatch` that every layer's attention receives.
"""

from __future__ import annotations

import torch

from qwen3core.contracts import AttentionBatch, KVCache
from qwen3core.errors import GenerationError


def mark_fixed_address(tensor: torch.Tensor) -> None:
    """Tell ``torch.compile`` that ``tensor`` is state which keeps its address from step to step
    (a static KV buffer, a cache's per-row counters and validity record), like a module's buffer.

    Only on a CUDA device, where it matters: a step replayed as a CUDA graph
    (``runner=compile-graphs``) may write in place only to inputs at fixed addresses; inductor
    skips the graph for any other mutated input. A new tensor in its place (a reorder, another
    request's cache) makes the graph be recorded again, not a recompilation.
    """
    if tensor.is_cuda:
        torch._dynamo.mark_static_address(tensor, guard=False)


class PassThroughStorage:
    """Storage for a forward pass without a cache: attention sees exactly this call's keys."""

    capacity = None
    returns_full_capacity = False

    def update(self, layer_idx, start, k, v, length):
        return k, v

    def reorder(self, rows):  # pragma: no cover - nothing is stored
        pass

    def extend(self, other):  # pragma: no cover - nothing is stored
        raise GenerationError("a forward pass without a cache has no rows to extend")


class Cache:
    """One batch's decoding state: KV storage plus, per row, its slots and real tokens.

    Each row's next slot lives on the device (``next_slot`` [B], the ``start`` every step hands
    the storage). A growing storage also needs the number of slots attention sees as a python
    int (``AttentionBatch.length``), so the per-row lengths are mirrored on the host. A
    full-capacity storage (``returns_full_capacity``) needs no host number: under compilation
    :meth:`begin` reads none that changes from step to step, so a compiled decode step is traced
    once and reused for every later step instead of being specialised for each slot.
    """

    def __init__(self, storage: KVCache, batch_size: int, capacity: int | None,
                 device: torch.device):
        if storage.returns_full_capacity:
            if capacity is None or storage.capacity is None:
                raise GenerationError("a KV storage that returns its full capacity needs a "
                                      "capacity; pass one to model.new_cache")
            # It may hold more slots than asked for (rounded up so that requests of similar
            # lengths share compiled code); the mask must cover all of them.
            capacity = storage.capacity
        self.storage = storage
        self.capacity = capacity
        self.seen = torch.zeros(batch_size, dtype=torch.int64, device=device)  # [B]
        self.valid = torch.zeros(batch_size, capacity or 0, dtype=torch.bool, device=device)
        #: True while every row has written the same slots and none of them is padding: lets
        #: kernels use their built-in causal path (``AttentionBatch.plain_causal``).
        self.unpadded = True
        self.next_slot = torch.zeros(batch_size, dtype=torch.int64, device=device)  # [B]
        # Slots written per row, on the host. None while only the device knows them (after a
        # compiled step); ``lengths`` then reads ``next_slot``.
        self._host_lengths: list[int] | None = [0] * batch_size
        self._fix_addresses()

    def _fix_addresses(self) -> None:
        # The per-row state that every step writes in place; a full-capacity validity record
        # keeps its shape, so its decode steps write it in place too.
        mark_fixed_address(self.seen)
        mark_fixed_address(self.next_slot)
        if self.storage.returns_full_capacity:
            mark_fixed_address(self.valid)

    @property
    def batch_size(self) -> int:
        """Rows in the batch (``reorder`` and ``extend`` change it)."""
        return self.seen.shape[0]

    @property
    def lengths(self) -> list[int]:
        """Slots written by each row; may synchronise with the device after a compiled step."""
        if self._host_lengths is None:
            self._host_lengths = self.next_slot.tolist()
        return self._host_lengths

    @property
    def length(self) -> int:
        """Slots attention sees: the longest row's (0 for an empty batch)."""
        return max(self.lengths, default=0)

    def begin(self, attention_mask: torch.Tensor | None, num_new: int) -> AttentionBatch:
        """Account for ``num_new`` new slots per row and describe them for attention.

        ``attention_mask`` [B, S] marks real tokens (1) and padding (0); None means every
        new token is real (and avoids inspecting the tensor, which would sync a GPU).
        """
        full_capacity = self.storage.returns_full_capacity
        if full_capacity and torch.compiler.is_compiling():
            # Reading the host lengths would make the compiled step specialise on them (and
            # recompile at every step); the storage's scatter still refuses a slot beyond
            # the capacity.
            self._host_lengths = None
        else:
            self._check_room(self.length + num_new)
        # One real token per row (a decode step) needs neither the prefix sums nor the causal
        # comparison: see _decode_step.
        one_real_token = attention_mask is None and num_new == 1
        # ``seen`` and ``next_slot`` advance in place (so ``positions`` and ``start`` are copies):
        # a step replayed as a CUDA graph may leave nothing behind but what it wrote into its
        # inputs, since its outputs are overwritten by the next replay.
        if one_real_token:
            positions = self.seen[:, None].clone()  # each row's count of real tokens so far
            self.seen += 1
        else:
            new_valid = self._new_valid(attention_mask, num_new)  # [B, S]
            positions = self.seen[:, None] + torch.cumsum(new_valid, dim=1) - 1  # [B, S]
            positions = positions.clamp_(min=0)
            self.seen += new_valid.sum(dim=1)
        start = self.next_slot.clone()  # [B]
        self.next_slot += num_new
        if self._host_lengths is not None:
            self._host_lengths = [n + num_new for n in self._host_lengths]
        if full_capacity:
            visible, length = self.capacity, None
        else:
            visible = length = self.length
            if self.valid.shape[1] < visible:  # unbounded storage: extend the validity record
                self.valid = _widen(self.valid, visible)
        if one_real_token:
            mask = self._decode_step(start, visible)
        else:
            query_slots = start[:, None] + torch.arange(num_new, device=start.device)  # [B, S]
            self.valid.scatter_(1, query_slots, new_valid)
            key_slots = torch.arange(visible, device=start.device)  # [T]
            mask = _mask(self.valid[:, :visible], new_valid, query_slots, key_slots)
        return AttentionBatch(positions=positions, mask=mask, start=start, length=length,
                              plain_causal=not full_capacity and self.unpadded)

    def _decode_step(self, start: torch.Tensor, visible: int) -> torch.Tensor:
        """Mark each row's one new slot valid and return the step's mask [B, 1, 1, T].

        With one real query per row, ``_mask`` reduces to the validity record itself: a row's
        valid slots are the ones it wrote, all at or before its new slot, so the causal
        comparison removes nothing, and no query is padding. A copy (one operator instead of the
        general path's dozen), since the record changes in place at the next step.
        """
        self.valid.scatter_(1, start[:, None], True)
        return self.valid[:, None, None, :visible].clone()

    def _new_valid(self, attention_mask: torch.Tensor | None, num_new: int) -> torch.Tensor:
        device = self.seen.device
        if attention_mask is None:
            # Sized from ``seen`` rather than the python ``batch_size`` so a compiled step with a
            # dynamic batch dimension has one symbol for it.
            return torch.ones(self.seen.shape[0], num_new, dtype=torch.bool, device=device)
        self.unpadded = False
        return attention_mask.to(device=device, dtype=torch.bool)

    def _check_room(self, end: int) -> None:
        if self.capacity is not None and end > self.capacity:
            raise GenerationError(
                f"the cache holds {self.capacity} positions but {end} are needed; create it "
                f"with a larger capacity (prompt length + max_new_tokens)")

    def reorder(self, rows: torch.Tensor) -> None:
        """Keep only batch rows ``rows`` (e.g. drop finished sequences)."""
        self.storage.reorder(rows)
        self.seen = self.seen.index_select(0, rows)
        self.valid = self.valid.index_select(0, rows)
        self.next_slot = self.next_slot.index_select(0, rows)
        self._fix_addresses()
        if self._host_lengths is not None:
            self._host_lengths = [self._host_lengths[i] for i in rows.tolist()]

    def extend(self, other: Cache) -> None:
        """Append ``other``'s rows after this batch's, each at its own position (a request
        prefilled on its own joins a running batch). ``other`` must come from the same model's
        ``new_cache`` with the same capacity; it must not be used afterwards."""
        if type(other.storage) is not type(self.storage) or other.capacity != self.capacity:
            raise GenerationError(
                f"cannot join a {type(other.storage).__name__} cache of capacity "
                f"{other.capacity} to a {type(self.storage).__name__} cache of capacity "
                f"{self.capacity}; create both with the same model and capacity")
        lengths = self.lengths + other.lengths
        aligned = len(set(lengths)) <= 1
        self.storage.extend(other.storage)
        width = max(self.valid.shape[1], other.valid.shape[1])
        self.valid = torch.cat((_widen(self.valid, width), _widen(other.valid, width)))
        self.seen = torch.cat((self.seen, other.seen))
        self.next_slot = torch.cat((self.next_slot, other.next_slot))
        self._fix_addresses()
        self._host_lengths = lengths
        self.unpadded = self.unpadded and other.unpadded and aligned


def _widen(valid: torch.Tensor, width: int) -> torch.Tensor:
    """valid [B, T] -> [B, width] with the new slots unwritten (False)."""
    grow = width - valid.shape[1]
    if grow <= 0:
        return valid
    return torch.cat((valid, valid.new_zeros(valid.shape[0], grow)), 1)


def _mask(valid: torch.Tensor, new_valid: torch.Tensor, query_slots: torch.Tensor,
          key_slots: torch.Tensor) -> torch.Tensor:
    """valid [B, T], new_valid [B, S], query_slots [B, S], key_slots [T] -> mask [B, 1, S, T].

    A real query sees the real keys at or before its slot (in its own row). A padding query
    would see nothing, and a softmax over nothing is NaN in most kernels; it sees its own slot
    instead, which keeps every kernel finite and changes no real token's output (padding
    outputs are never read).
    """
    causal = key_slots[None, None, :] <= query_slots[:, :, None]  # [B, S, T]
    own = key_slots[None, None, :] == query_slots[:, :, None]  # [B, S, T]
    mask = valid[:, None, :] & causal
    mask = mask | (own & ~new_valid[:, :, None])
    return mask[:, None]  # [B, 1, S, T]
