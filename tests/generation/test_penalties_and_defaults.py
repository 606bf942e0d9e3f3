"""Min-p, the repetition / presence / frequency penalties, full-width seeds, and the checkpoint's
generation_config.json defaults: against transformers' own logits processors where it has them,
else against the rule written out by hand."""

import pytest
import torch
from transformers.generation.logits_process import (
    MinPLogitsWarper,
    RepetitionPenaltyLogitsProcessor,
)

from qwen3core.errors import GenerationError
from qwen3core.generation.sampling import (
    SamplingParams,
    TokenHistory,
    apply_penalties,
    default_sampling,
    filter_min_p,
    sample_next,
)

QWEN3_GENERATION_CONFIG = {"bos_token_id": 151643, "do_sample": True,
                           "eos_token_id": [151645, 151643], "pad_token_id": 151643,
                           "temperature": 0.6, "top_k": 20, "top_p": 0.95}
CPU = torch.device("cpu")


def random_logits(rows=3, vocab=40, seed=0):
    return torch.randn(rows, vocab, generator=torch.Generator().manual_seed(seed),
                       dtype=torch.float64) * 3


def test_repetition_penalty_matches_transformers_on_prompt_and_generated_tokens():
    logits = random_logits()
    prompts = [[1, 2, 3], [5, 5], [39]]
    history = TokenHistory(prompts, 40, CPU)
    generated = torch.tensor([7, 2, 0])
    history.add(generated)
    params = SamplingParams(repetition_penalty=1.3)
    ours = apply_penalties(logits, params, history)
    seen = torch.tensor([p + [int(g)] for p, g in zip([[1, 2, 3, 3], [5, 5, 5, 5], [39] * 4],
                                                      generated, strict=True)])
    theirs = RepetitionPenaltyLogitsProcessor(1.3)(seen, logits.clone())
    torch.testing.assert_close(ours, theirs)


def test_presence_and_frequency_penalties_follow_openai_on_generated_tokens_only():
    logits = random_logits(rows=1)
    history = TokenHistory([[4, 4, 9]], 40, CPU)  # prompt tokens are not penalised by these
    for token in (3, 3, 3, 8):
        history.add(torch.tensor([token]))
    params = SamplingParams(presence_penalty=0.5, frequency_penalty=0.25)
    ours = apply_penalties(logits, params, history)
    expected = logits.clone()
    expected[0, 3] -= 0.5 + 0.25 * 3
    expected[0, 8] -= 0.5 + 0.25 * 1
    torch.testing.assert_close(ours, expected)


def test_penalties_change_greedy_choice():
    logits = torch.tensor([[2.0, 1.9, 0.0]])
    history = TokenHistory([[0]], 3, CPU)
    assert sample_next(logits, SamplingParams(), None, history).item() == 0
    assert sample_next(logits, SamplingParams(repetition_penalty=1.5), None, history).item() == 1


def test_penalties_without_history_are_a_clear_error():
    with pytest.raises(GenerationError, match="TokenHistory"):
        sample_next(torch.zeros(1, 3), SamplingParams(repetition_penalty=1.2), None, None)


@pytest.mark.parametrize("min_p", [0.05, 0.3, 0.9])
def test_min_p_matches_transformers(min_p):
    logits = random_logits(rows=4).float()
    ours = filter_min_p(logits, min_p)
    theirs = MinPLogitsWarper(min_p)(None, logits.clone())
    assert torch.equal(torch.isfinite(ours), torch.isfinite(theirs))


def test_min_p_always_keeps_the_most_likely_token():
    logits = torch.tensor([[5.0, 4.99, -3.0]])
    kept = torch.isfinite(filter_min_p(logits, 1.0))[0].tolist()
    assert kept == [True, False, False]


def test_a_tiny_temperature_samples_the_argmax_instead_of_nan():
    logits = torch.tensor([[1.0, 3.0, 2.0]])
    params = SamplingParams(temperature=1e-300, seed=1)
    assert sample_next(logits, params, params.generators(1, CPU)).item() == 1


def draws(seed, n=16):
    params = SamplingParams(temperature=1.0, seed=seed)
    gens = params.generators(1, CPU)
    logits = torch.zeros(1, 1000)
    return [sample_next(logits, params, gens).item() for _ in range(n)]


def test_seeds_use_all_their_bits():
    # A CPU torch.Generator keeps only a seed's low 32 bits: seeds equal mod 2**32 must still
    # differ, and the largest accepted seed must work.
    assert draws(1) != draws(1 + 2**32)
    assert draws(2**64 - 1) == draws(2**64 - 1)
    assert draws(5) == draws(5)


def test_qwen3_generation_config_gives_the_recommended_defaults():
    thinking = default_sampling(QWEN3_GENERATION_CONFIG, enable_thinking=True)
    assert (thinking.temperature, thinking.top_p, thinking.top_k) == (0.6, 0.95, 20)
    plain = default_sampling(QWEN3_GENERATION_CONFIG, enable_thinking=False)
    assert (plain.temperature, plain.top_p, plain.top_k, plain.min_p) == (0.7, 0.8, 20, 0.0)


@pytest.mark.parametrize("config", [None, {}, {"eos_token_id": 2}, {"do_sample": False,
                                                                    "temperature": 0.6}])
def test_without_do_sample_decoding_is_greedy(config):
    assert default_sampling(config).greedy


def test_an_invalid_generation_config_value_is_a_clear_error():
    with pytest.raises(GenerationError, match="generation_config.json has an invalid"):
        default_sampling({"do_sample": True, "top_p": 7})


def test_overrides_replace_only_what_is_given():
    base = default_sampling(QWEN3_GENERATION_CONFIG)
    mine = base.with_overrides(temperature=0.0, top_k=None, seed=3)
    assert mine.temperature == 0 and mine.top_k == 20 and mine.seed == 3
    with pytest.raises(GenerationError, match="unknown sampling option"):
        base.with_overrides(temprature=1.0)


def test_loaded_model_applies_the_checkpoint_defaults(tiny64):
    tiny64.generation_config = dict(QWEN3_GENERATION_CONFIG)
    try:
        sampled = tiny64.generate([1, 2, 3], max_new_tokens=8, seed=11)
        same = tiny64.generate([1, 2, 3], max_new_tokens=8, temperature=0.6, top_p=0.95,
                               top_k=20, seed=11)
        greedy = tiny64.generate([1, 2, 3], max_new_tokens=8, temperature=0)
    finally:
        tiny64.generation_config = {}
    assert sampled.token_ids == same.token_ids
    assert greedy.token_ids == tiny64.generate([1, 2, 3], max_new_tokens=8).token_ids


def test_generation_with_penalties_runs_through_the_loop_and_drops_finished_rows(tiny64):
    results = tiny64.generate([[1, 2, 3], [4, 5]], max_new_tokens=6, repetition_penalty=1.5,
                              frequency_penalty=1.0, presence_penalty=1.0,
                              eos_token_ids=[], temperature=0)
    alone = tiny64.generate([4, 5], max_new_tokens=6, repetition_penalty=1.5,
                            frequency_penalty=1.0, presence_penalty=1.0, eos_token_ids=[])
    assert results[1].token_ids == alone.token_ids
    # A large repetition penalty makes greedy decoding avoid repeating itself.
    strong = tiny64.generate([1], max_new_tokens=12, repetition_penalty=100.0,
                             eos_token_ids=[])
    assert len(set(strong.token_ids)) == len(strong.token_ids)
