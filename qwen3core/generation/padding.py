"""Left padding: prompts of different lengths share one [B, S] tensor and end on the same slot.

Ending together means every row's next token goes into the same cache slot, so one decode step
serves the whole batch; the mask tells attention which slots are padding.
"""

from __future__ import annotations

import torch

# Padding slots are masked out everywhere, so which id fills them never matters.
PAD_ID = 0


def left_pad(prompts: list[list[int]], device: torch.device
             ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """-> input_ids [B, S] and attention_mask [B, S] (1 real, 0 pad), or None when every
    prompt has the same length (which lets attention take its plain causal path)."""
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), PAD_ID, dtype=torch.int64)
    mask = torch.zeros((len(prompts), width), dtype=torch.int64)
    for row, prompt in enumerate(prompts):
        ids[row, width - len(prompt):] = torch.tensor(prompt, dtype=torch.int64)
        mask[row, width - len(prompt):] = 1
    uniform = all(len(p) == width for p in prompts)
    return ids.to(device), None if uniform else mask.to(device)
