"""How weights arrive: memory-mapped without a copy, converted with the mapping released, into
whatever layout the selected backend keeps; plus tokenizer, generation config, sources, CLI."""

import contextlib
import gc
import io
import json
import shutil
import sys
from pathlib import Path

import pytest
import torch
from qwen3core_backends.eager.moe import route
from torch import nn
from torch.nn import functional as F

import qwen3core
from qwen3core import CheckpointError, Implementation, hookimpl
from qwen3core.checkpoint import HubSource, LocalSource, parse_source

TOKENIZER_DIR = Path(__file__).resolve().parents[3] / "shared" / "qwen3-tokenizer"


def _mapped_ranges(path):
    ranges = []
    with open("/proc/self/maps") as maps:
        for line in maps:
            if line.rstrip().endswith(str(path)):
                start, end = line.split()[0].split("-")
                ranges.append((int(start, 16), int(end, 16)))
    return ranges


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/maps")
def test_stored_dtype_on_cpu_keeps_the_weights_mapped_from_the_file(tmp_path, ref):
    directory = ref.write_hf_checkpoint(tmp_path / "m", "dense",
                                        ref.CASES["dense-tied-gqa1"][1])
    weights = (directory / "model.safetensors").resolve()
    loaded = qwen3core.load(str(directory), device="cpu", backends=ref.EAGER)
    ranges = _mapped_ranges(weights)
    assert ranges, "the weights file should be memory-mapped"
    copied = [name for name, param in loaded.model.named_parameters()
              if not any(lo <= param.data_ptr() < hi for lo, hi in ranges)]
    assert copied == []
    del loaded
    gc.collect()
    assert _mapped_ranges(weights) == []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/maps")
def test_converting_releases_the_mapping(tmp_path, ref):
    directory = ref.write_hf_checkpoint(tmp_path / "m", "dense",
                                        ref.CASES["dense-tied-gqa1"][1])
    loaded = qwen3core.load(str(directory), dtype="bfloat16", device="cpu", backends=ref.EAGER)
    gc.collect()
    assert loaded.dtype == torch.bfloat16
    assert _mapped_ranges((directory / "model.safetensors").resolve()) == []


class StackedMoE(nn.Module):
    """Experts stacked in two 3-D parameters, as grouped-GEMM kernels want them. It takes the
    checkpoint's per-expert keys in ``_load_from_state_dict``, as the contract asks of a
    backend with its own layout."""

    PROJECTIONS = ("gate_proj", "up_proj", "down_proj")

    def __init__(self, ctx):
        super().__init__()
        spec = ctx.spec
        self.top_k, self.normalise = spec.num_experts_per_tok, spec.norm_topk_prob
        self.num_experts, width = spec.num_experts, spec.moe_intermediate_size
        self.gate = ctx.linear(spec.hidden_size, spec.num_experts)
        self.gate_up = nn.Parameter(torch.empty(spec.num_experts, 2 * width, spec.hidden_size,
                                                dtype=ctx.dtype, device=ctx.device))
        self.down = nn.Parameter(torch.empty(spec.num_experts, spec.hidden_size, width,
                                             dtype=ctx.dtype, device=ctx.device))

    def _load_from_state_dict(self, state_dict, prefix, *args):
        def key(e, projection):
            return f"{prefix}experts.{e}.{projection}.weight"

        wanted = [key(e, p) for e in range(self.num_experts) for p in self.PROJECTIONS]
        if all(k in state_dict for k in wanted):
            gate, up, down = ([state_dict.pop(key(e, p)) for e in range(self.num_experts)]
                              for p in self.PROJECTIONS)
            state_dict[prefix + "gate_up"] = torch.stack(
                [torch.cat((g, u)) for g, u in zip(gate, up)])  # [E, 2I, H]
            state_dict[prefix + "down"] = torch.stack(down)  # [E, H, I]
        super()._load_from_state_dict(state_dict, prefix, *args)

    def forward(self, x):
        tokens = x.reshape(-1, x.shape[-1])  # [N, H]
        weights, experts = route(self.gate(tokens), self.top_k, self.normalise, x.dtype)
        out = torch.zeros_like(tokens)
        for e in range(self.num_experts):
            rows, slots = torch.where(experts == e)
            gate, up = F.linear(tokens[rows], self.gate_up[e]).chunk(2, dim=-1)
            out[rows] += F.linear(F.silu(gate) * up, self.down[e]) * weights[rows, slots, None]
        return out.reshape(x.shape)


class StackedMoEPlugin:
    @hookimpl
    def qwen3core_moe(self):
        return Implementation("moe", "stacked-test", StackedMoE, summary="test: stacked experts")


def test_a_backend_with_stacked_experts_loads_the_per_expert_keys(hf_checkpoint, ref):
    directory = hf_checkpoint("moe-normtopk-mlponly-sharded")
    index = json.loads((directory / "model.safetensors.index.json").read_text())["weight_map"]
    layer_shards = {v for k, v in index.items() if k.startswith("model.layers.1.mlp.experts.")}
    assert len(layer_shards) > 1, "the test needs a layer whose experts span shards"
    eager = qwen3core.load(str(directory), device="cpu", backends=ref.EAGER)
    stacked = qwen3core.load(str(directory), device="cpu",
                             backends={**ref.EAGER, "moe": "stacked-test"},
                             plugins=[StackedMoEPlugin()])
    assert stacked.backends["moe"] == "stacked-test"
    assert stacked.model.model.layers[1].mlp.gate_up.shape == (8, 64, 64)
    ids = torch.randint(0, 512, (2, 10), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert torch.allclose(stacked.model(ids), eager.model(ids), atol=1e-5, rtol=0)


def test_a_stacking_backend_still_reports_missing_experts(hf_checkpoint, ref, tmp_path):
    from safetensors.torch import load_file, save_file

    directory = tmp_path / "m"
    shutil.copytree(hf_checkpoint("moe-normtopk-mlponly-sharded"), directory)
    index = json.loads((directory / "model.safetensors.index.json").read_text())["weight_map"]
    key = "model.layers.2.mlp.experts.5.up_proj.weight"
    tensors = load_file(directory / index[key])
    del tensors[key]
    save_file(tensors, directory / index[key], metadata={"format": "pt"})
    del index[key]
    (directory / "model.safetensors.index.json").write_text(json.dumps({"weight_map": index}))
    with pytest.raises(CheckpointError) as info:
        qwen3core.load(str(directory), device="cpu", backends={**ref.EAGER, "moe": "stacked-test"},
                       plugins=[StackedMoEPlugin()])
    message = str(info.value)
    assert "missing from the checkpoint (2): model.layers.2.mlp.gate_up, " \
           "model.layers.2.mlp.down\n" in message
    assert "unexpected in the checkpoint (23): model.layers.2.mlp.experts." in message
    assert "(16 shards: model-00001-of-00016.safetensors ... model-00016-of-00016" in message


@pytest.mark.skipif(not TOKENIZER_DIR.is_dir(), reason=f"tokenizer files not at {TOKENIZER_DIR}")
def test_tokenizer_and_generation_config_come_with_the_directory(hf_checkpoint, ref, tmp_path):
    directory = tmp_path / "m"
    shutil.copytree(hf_checkpoint("dense-real-vocab"), directory)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(TOKENIZER_DIR / name, directory / name)
    (directory / "generation_config.json").write_text(json.dumps(
        {"temperature": 0.6, "top_p": 0.95, "eos_token_id": [151645, 151643]}))
    loaded = qwen3core.load(str(directory), device="cpu", backends=ref.EAGER)
    assert loaded.tokenizer.encode("Hello, world!") == [9707, 11, 1879, 0]
    assert loaded.generation_config["temperature"] == 0.6


@pytest.mark.skipif(not TOKENIZER_DIR.is_dir(), reason=f"tokenizer files not at {TOKENIZER_DIR}")
def test_a_tokenizer_that_does_not_fit_the_vocabulary_is_refused(hf_checkpoint, ref, tmp_path):
    directory = tmp_path / "m"
    shutil.copytree(hf_checkpoint("dense-tied-gqa1"), directory)  # vocabulary of 512
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(TOKENIZER_DIR / name, directory / name)
    with pytest.raises(CheckpointError, match="produces ids up to 151668, but .* has a "
                                              "vocabulary of 512"):
        qwen3core.load(str(directory), device="cpu", backends=ref.EAGER)


def test_without_tokenizer_files_there_is_no_tokenizer(hf_checkpoint, ref):
    loaded = qwen3core.load(str(hf_checkpoint("dense-tied-gqa1")), device="cpu",
                            backends=ref.EAGER)
    assert loaded.tokenizer is None


@pytest.mark.parametrize("text, revision, expected", [
    ("Qwen/Qwen3-0.6B", None, HubSource("Qwen/Qwen3-0.6B")),
    ("Qwen/Qwen3-0.6B@v2", None, HubSource("Qwen/Qwen3-0.6B", "v2")),
    ("Qwen/Qwen3-0.6B@refs/pr/3", None, HubSource("Qwen/Qwen3-0.6B", "refs/pr/3")),
    ("Qwen/Qwen3-0.6B", "c" * 40, HubSource("Qwen/Qwen3-0.6B", "c" * 40)),
])
def test_hub_ids_and_revisions(text, revision, expected):
    assert parse_source(text, revision) == expected


@pytest.mark.parametrize("text, revision, expected", [
    ("Qwen/Qwen3-0.6B@v2", "v3", r"names revision 'v2' but revision='v3' was passed"),
    ("Qwen/Qwen3-0.6B@", None, r"names no revision"),
    ("Qwen--x/Qwen3", None, r"neither an existing directory nor a valid hub id"),
    ("qwen3-0.6b", None, r"no such directory: 'qwen3-0.6b'"),
])
def test_bad_sources(text, revision, expected):
    with pytest.raises(CheckpointError, match=expected):
        parse_source(text, revision)


def test_an_existing_directory_wins_over_a_hub_id(tmp_path, monkeypatch):
    (tmp_path / "Qwen" / "Qwen3-0.6B").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    assert parse_source("Qwen/Qwen3-0.6B") == LocalSource(tmp_path / "Qwen" / "Qwen3-0.6B")
    with pytest.raises(CheckpointError, match=r"revisions only apply to hub ids"):
        parse_source("Qwen/Qwen3-0.6B", "v1")


def _cli(*argv):
    from qwen3core.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def test_info_command_on_a_directory(hf_checkpoint):
    directory = hf_checkpoint("moe-rawtopk-step2-gqa4", torch.bfloat16)
    code, out, _ = _cli("info", "--model", str(directory), "--json", "--device", "cpu")
    assert code == 0
    info = json.loads(out)
    assert info["stored_dtype"] == "bfloat16" and info["dtype"] == "bfloat16"
    assert info["spec"]["num_experts"] == 8  # saved as num_local_experts by transformers 5
    assert info["spec"]["mlp_only_layers"] == [3] and info["sparse_layers"] == 1
    assert info["spec"]["norm_topk_prob"] is False


def test_download_command_wants_a_hub_id(hf_checkpoint):
    code, _, err = _cli("download", str(hf_checkpoint("dense-tied-gqa1")))
    assert code == 2
    assert "is a local directory already" in err


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_bar_only_on_a_terminal(hf_checkpoint, ref, monkeypatch, capfd):
    directory = str(hf_checkpoint("dense-tied-gqa1"))
    capfd.readouterr()  # whatever writing the checkpoint printed
    qwen3core.load(directory, device="cpu", backends=ref.EAGER)
    assert capfd.readouterr().err == ""  # stderr is a pipe under pytest
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    qwen3core.load(directory, device="cpu", backends=ref.EAGER)
    assert f"Loading {directory}" in terminal.getvalue()
