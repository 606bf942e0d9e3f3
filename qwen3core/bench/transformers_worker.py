"""The same measurements for Hugging Face ``transformers`` on the same weights.

For a ``random:`` source the transformers model gets exactly qwen3core's random weights (the
state-dict keys are the checkpoint keys; MoE experts are stacked into the fused layout
transformers 5 keeps in memory), so greedy outputs are comparable too.
"""

from __future__ import annotations

import time

import torch

from qwen3core.bench.clock import now
from qwen3core.bench.job import Job, prompt_ids
from qwen3core.bench.measure import measure
from qwen3core.dtypes import parse_dtype
from qwen3core.sources import RANDOM_PREFIX


def _hf_config(spec, dtype):
    import transformers

    fields = spec.to_dict()
    if spec.is_moe:
        return transformers.Qwen3MoeConfig(**fields, dtype=dtype)
    return transformers.Qwen3Config(**fields, dtype=dtype)


def _fused_moe_state(state: dict, spec) -> dict:
    """Per-expert checkpoint keys -> transformers 5's stacked ``gate_up_proj``/``down_proj``."""
    out = {k: v for k, v in state.items() if ".mlp.experts." not in k}
    for i in range(spec.num_hidden_layers):
        if not spec.is_sparse_layer(i):
            continue
        p = f"model.layers.{i}.mlp.experts."
        gate_up = [torch.cat([state[f"{p}{e}.gate_proj.weight"], state[f"{p}{e}.up_proj.weight"]])
                   for e in range(spec.num_experts)]
        out[p + "gate_up_proj"] = torch.stack(gate_up)
        out[p + "down_proj"] = torch.stack(
            [state[f"{p}{e}.down_proj.weight"] for e in range(spec.num_experts)])
        out[f"model.layers.{i}.mlp.gate.weight"] = state[f"model.layers.{i}.mlp.gate.weight"]
    return out


def load_transformers_model(job: Job):
    import transformers

    dtype = parse_dtype(job.dtype) or torch.float32
    if job.model.startswith(RANDOM_PREFIX):
        import qwen3core

        ours = qwen3core.load(job.model, dtype=dtype, device="cpu",
                              backends={"linear": "eager", "moe": "eager"})
        state = ours.model.state_dict()
        if ours.spec.is_moe:
            state = _fused_moe_state(state, ours.spec)
        config = _hf_config(ours.spec, dtype)
        with torch.device("meta"):
            model = transformers.AutoModelForCausalLM.from_config(config, dtype=dtype)
        model.load_state_dict(state, strict=False, assign=True)
        # Buffers computed at construction (the rotary inverse frequencies) are still on
        # meta: rebuild that module on the CPU.
        rotary = model.model.rotary_emb
        model.model.rotary_emb = type(rotary)(config=config)
        model.tie_weights()
        del ours, state
        return model.to(job.device).eval(), config.vocab_size
    model = transformers.AutoModelForCausalLM.from_pretrained(job.model, dtype=dtype)
    return model.to(job.device).eval(), model.config.vocab_size


def run_transformers(job: Job) -> dict:
    from qwen3core.bench.measure import report_phase

    report_phase("loading the model into transformers")
    started = time.perf_counter()
    model, vocab_size = load_transformers_model(job)
    load_seconds = time.perf_counter() - started
    device = torch.device(job.device)

    class StepClock:
        """A logits processor: transformers calls it once per generated token, right after
        that step's forward pass, so its timestamps split prefill from decode in one run."""

        def __init__(self):
            self.times: list[float] = []

        def __call__(self, input_ids, scores):
            self.times.append(now(device))
            return scores

    @torch.inference_mode()
    def one_run(batch: int, new_tokens: int):
        ids = prompt_ids(job, vocab_size, batch).to(device)
        clock = StepClock()
        t0 = now(device)
        out = model.generate(ids, attention_mask=torch.ones_like(ids),
                             max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                             do_sample=False, pad_token_id=0, logits_processor=[clock])
        t_end = now(device)
        return clock.times[0] - t0, t_end - clock.times[0], out[:, ids.shape[1]:]

    header = {"load_seconds": load_seconds, "backends": {"engine": "transformers"},
              "dtype": job.dtype, "device": str(device)}
    return measure(job, one_run, device, header)
