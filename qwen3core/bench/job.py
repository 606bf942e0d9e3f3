"""What one benchmark process measures, and the prompt every process uses."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch


@dataclass
class Job:
    model: str
    dtype: str | None
    device: str
    selection: dict[str, str] | None
    prompt_len: int
    new_tokens: int
    batch_sizes: list[int]
    repeats: int
    threads: int | None
    seed: int = 0
    label: str = ""
    engine: str = "qwen3core"  # or "transformers", the reference it is compared with
    quantize: str | None = None  # a scheme qwen3core quantizes the projections with
    quantize_head: bool = False  # and the LM head too
    tensor_parallel: int = 1  # ranks the model is split over (qwen3core engine only)

    def to_dict(self) -> dict:
        return asdict(self)


def prompt_ids(job: Job, vocab_size: int, batch: int) -> torch.Tensor:
    """The same random prompt in every process: [batch, prompt_len], rows identical so that
    batch rows can be compared with the batch-1 run."""
    gen = torch.Generator().manual_seed(job.seed)
    row = torch.randint(0, min(vocab_size, 150_000), (1, job.prompt_len), generator=gen)
    return row.expand(batch, -1).contiguous()
