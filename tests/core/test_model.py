import pytest
import torch

import qwen3core
from qwen3core import PRESETS
from qwen3core.build import build_random, select_backends

EAGER = {"attention": "eager", "norm": "eager", "rope": "eager", "kv_cache": "dynamic",
         "linear": "eager", "mlp": "eager", "moe": "eager", "runner": "eager"}


def _tiny(preset="tiny", dtype=torch.float32, seed=0, **spec_changes):
    spec = PRESETS[preset].replace(**spec_changes)
    selection = select_backends(EAGER, device=torch.device("cpu"), dtype=dtype)
    return build_random(spec, selection, dtype=dtype, device=torch.device("cpu"), seed=seed)


def test_load_random_tiny_gives_logits_of_the_right_shape():
    loaded = qwen3core.load("random:tiny", device="cpu", backends=EAGER)
    ids = torch.randint(0, loaded.spec.vocab_size, (3, 5))
    logits = loaded.model(ids)
    assert logits.shape == (3, 5, loaded.spec.vocab_size)
    assert torch.isfinite(logits).all()
    assert loaded.backends == EAGER
    assert loaded.spec is PRESETS["tiny"]


@pytest.mark.parametrize("preset", ["tiny", "tiny-moe"])
@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-12), (torch.float32, 1e-4)])
def test_prefill_plus_decode_through_cache_equals_full_forward(preset, dtype, tol):
    model = _tiny(preset, dtype)
    ids = torch.randint(0, model.spec.vocab_size, (2, 9), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        full = model(ids)
        cache = model.new_cache(2, 16)
        parts = [model(ids[:, :4], cache=cache)]  # prefill
        parts += [model(ids[:, i:i + 1], cache=cache) for i in range(4, 7)]  # decode steps
        parts.append(model(ids[:, 7:], cache=cache))  # a chunk after decoding
    assert torch.allclose(torch.cat(parts, 1), full, atol=tol, rtol=0)
    assert cache.length == 9


def test_left_padded_row_matches_the_unpadded_sequence():
    model = _tiny("tiny", torch.float64)
    ids = torch.randint(0, 512, (1, 6), generator=torch.Generator().manual_seed(2))
    padded = torch.cat([torch.zeros(1, 3, dtype=torch.long), ids], 1)
    mask = torch.cat([torch.zeros(1, 3), torch.ones(1, 6)], 1).long()
    with torch.no_grad():
        alone = model(ids)
        batched = model(padded, attention_mask=mask)
    assert torch.allclose(batched[:, 3:], alone, atol=1e-12, rtol=0)


def test_tied_embeddings_share_storage_and_untied_do_not():
    tied = _tiny("tiny")
    assert tied.lm_head.weight is tied.model.embed_tokens.weight
    untied = _tiny("tiny", tie_word_embeddings=False)
    assert untied.lm_head.weight.data_ptr() != untied.model.embed_tokens.weight.data_ptr()
    keys = set(untied.state_dict())
    assert "lm_head.weight" in keys and "model.layers.0.self_attn.q_norm.weight" in keys


def test_module_names_are_the_checkpoint_keys():
    model = _tiny("tiny-moe", tie_word_embeddings=False, num_hidden_layers=2,
                  decoder_sparse_step=2)
    keys = set(model.state_dict())
    expected = {"model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"}
    for i in range(2):
        p = f"model.layers.{i}."
        expected |= {p + "input_layernorm.weight", p + "post_attention_layernorm.weight"}
        expected |= {p + f"self_attn.{n}.weight" for n in
                     ("q_proj", "k_proj", "v_proj", "o_proj", "q_norm", "k_norm")}
    expected |= {f"model.layers.0.mlp.{n}_proj.weight" for n in ("gate", "up", "down")}
    expected |= {"model.layers.1.mlp.gate.weight"}
    expected |= {f"model.layers.1.mlp.experts.{e}.{n}_proj.weight"
                 for e in range(8) for n in ("gate", "up", "down")}
    assert keys == expected


def test_same_seed_same_model_different_seed_different_model():
    a, b, c = _tiny(seed=3), _tiny(seed=3), _tiny(seed=4)
    ids = torch.arange(10)[None]
    with torch.no_grad():
        assert torch.equal(a(ids), b(ids))
        assert not torch.allclose(a(ids), c(ids))


@pytest.mark.parametrize("preset", ["tiny", "tiny-moe"])
def test_random_model_greedy_output_is_varied(preset):
    # A collapsed init (one repeated token) would make every equivalence test vacuous.
    for seed in range(3):
        model = _tiny(preset, seed=seed)
        cache = model.new_cache(1, 64)
        tokens = []
        with torch.no_grad():
            logits = model(torch.tensor([[1, 2, 3, 4]]), cache=cache, last_only=True)
            for _ in range(32):
                nxt = logits[:, -1].argmax(-1, keepdim=True)
                tokens.append(int(nxt))
                logits = model(nxt, cache=cache)
        assert len(set(tokens)) >= 8, (seed, tokens)


def test_eager_path_trains():
    model = _tiny("tiny-moe").train()
    ids = torch.randint(0, 512, (2, 8), generator=torch.Generator().manual_seed(0))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    losses = []
    for _ in range(5):
        logits = model(ids[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 512), ids[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    # Experts that no token was routed to get no gradient; everything else must.
    missing = [n for n, p in model.named_parameters() if p.grad is None and ".experts." not in n]
    assert missing == []
    assert losses[-1] < losses[0]


def test_cache_overflow_is_a_clear_error():
    model = _tiny()
    cache = model.new_cache(1, 4)
    with torch.no_grad():
        model(torch.tensor([[1, 2, 3]]), cache=cache)
        with pytest.raises(qwen3core.GenerationError, match="holds 4 positions"):
            model(torch.tensor([[1, 2]]), cache=cache)


def test_random_source_seed_suffix():
    a = qwen3core.load("random:tiny@5", device="cpu", backends=EAGER)
    b = qwen3core.load("random:tiny", seed=5, device="cpu", backends=EAGER)
    assert a.source == b.source == "random:tiny@5"
    ids = torch.arange(6)[None]
    with torch.no_grad():
        assert torch.equal(a.model(ids), b.model(ids))
    with pytest.raises(qwen3core.Qwen3CoreError, match="bad seed"):
        qwen3core.load("random:tiny@x", device="cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_missing_gpu_is_a_clear_error():
    with pytest.raises(qwen3core.Qwen3CoreError, match="requested but .*use --device cpu"):
        qwen3core.load("random:tiny", device="cuda")
    with pytest.raises(qwen3core.Qwen3CoreError, match="unknown device"):
        qwen3core.load("random:tiny", device="gpu0")
