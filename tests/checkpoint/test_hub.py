"""Hub ids resolved through huggingface_hub against a real, populated cache in offline mode.

The cache is written in the layout huggingface_hub itself writes and reads
(``models--owner--name/{blobs,refs,snapshots}``: content-addressed blobs, snapshot entries that
are relative symlinks to them, refs holding commit hashes), and huggingface_hub's own
``scan_cache_dir`` must accept it. huggingface_hub reads HF_HOME and HF_HUB_OFFLINE when it is
imported, so the checks run in a fresh interpreter with that environment, as a user's would.
"""

import hashlib
import json
import os
import subprocess
import sys
import textwrap

import pytest

OWNER_NAME = "qwen3core-tests/tiny-qwen3"
COMMIT_MAIN = "a" * 40
COMMIT_V1 = "b" * 40
CONFIG_ONLY = "qwen3core-tests/config-only"
PARTIAL = "qwen3core-tests/partial"  # an interrupted download: weights still *.incomplete


def _blob_name(path):
    data = path.read_bytes()
    if path.suffix == ".safetensors":  # LFS files are addressed by their sha256
        return hashlib.sha256(data).hexdigest()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()  # git blob id


def populate_cache(hub_cache, repo_id, commit, source_dir, refs=(), only=None):
    """Put ``source_dir``'s files into the hub cache as snapshot ``commit`` of ``repo_id``."""
    repo = hub_cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / commit
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    snapshot.mkdir(parents=True)
    for path in sorted(source_dir.iterdir()):
        if only is not None and path.name not in only:
            continue
        blob = repo / "blobs" / _blob_name(path)
        blob.write_bytes(path.read_bytes())
        os.symlink(os.path.join("..", "..", "blobs", blob.name), snapshot / path.name)
    for ref in refs:
        (repo / "refs" / ref).parent.mkdir(parents=True, exist_ok=True)
        (repo / "refs" / ref).write_text(commit)  # no trailing newline, as huggingface_hub
    return snapshot


SCRIPT = textwrap.dedent('''
    import contextlib, io, json, sys
    import torch
    import huggingface_hub
    import qwen3core
    from qwen3core.checkpoint import read_spec
    from qwen3core.cli import main

    args = json.loads(sys.argv[1])
    eager = args["eager"]
    out = {}

    def attempt(name, fn):
        try:
            out[name] = fn()
        except qwen3core.Qwen3CoreError as exc:
            out[name] = {"error": type(exc).__name__, "message": str(exc)}

    def cli(*argv):
        stdout, stderr = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            code = main(list(argv))
        return {"code": code, "stdout": stdout.getvalue(), "stderr": stderr.getvalue()}

    info = huggingface_hub.scan_cache_dir()
    out["scan"] = {"errors": [str(w) for w in info.warnings],
                   "repos": {r.repo_id: sorted([rev.commit_hash, *sorted(rev.refs)]
                                              for rev in r.revisions) for r in info.repos}}
    ids = torch.randint(0, 512, (1, 9), generator=torch.Generator().manual_seed(0))

    def load(source, local):
        loaded = qwen3core.load(source, device="cpu", backends=eager)
        direct = qwen3core.load(local, device="cpu", backends=eager)
        with torch.no_grad():
            same = torch.equal(loaded.model(ids), direct.model(ids))
        return {"source": loaded.source, "heads": loaded.spec.num_attention_heads,
                "same_logits_as_local_dir": same,
                "generation_config": loaded.generation_config}

    repo = args["repo"]
    attempt("main", lambda: load(repo, args["local_main"]))
    attempt("tag", lambda: load(repo + "@v1", args["local_v1"]))
    attempt("commit", lambda: load(repo + "@" + args["commit_v1"], args["local_v1"]))
    attempt("tag_keyword", lambda: qwen3core.load(repo, revision="v1", device="cpu",
                                                  backends=eager).spec.num_attention_heads)
    attempt("read_spec", lambda: [read_spec(repo)[0].num_attention_heads,
                                  str(read_spec(repo)[1])])
    attempt("absent", lambda: qwen3core.load("nobody/absent-model", device="cpu"))
    attempt("absent_revision", lambda: qwen3core.load(repo + "@no-such-tag", device="cpu"))
    attempt("config_only", lambda: qwen3core.load(args["config_only"], device="cpu"))
    attempt("config_only_spec", lambda: read_spec(args["config_only"])[0].num_hidden_layers)
    out["cli_download"] = cli("download", repo)
    out["cli_download_partial"] = cli("download", args["partial"])
    out["cli_download_config_only"] = cli("download", args["config_only"])
    attempt("partial", lambda: qwen3core.load(args["partial"], device="cpu"))
    out["cli_download_absent"] = cli("download", "nobody/absent-model", "--revision", "v2")
    out["cli_info"] = cli("info", "--model", repo, "--json", "--device", "cpu")
    out["cache_dir"] = huggingface_hub.constants.HF_HUB_CACHE
    print(json.dumps(out))
''')


@pytest.fixture(scope="module")
def hub_run(hf_checkpoint, tmp_path_factory, ref):
    local_main = hf_checkpoint("dense-tied-gqa1")
    local_v1 = hf_checkpoint("dense-tied-gqa4")
    home = tmp_path_factory.mktemp("hf-home")
    hub_cache = home / "hub"  # HF_HOME/hub: the default place, derived from HF_HOME alone
    populate_cache(hub_cache, OWNER_NAME, COMMIT_MAIN, local_main, refs=["main"])
    populate_cache(hub_cache, OWNER_NAME, COMMIT_V1, local_v1, refs=["v1"])
    populate_cache(hub_cache, CONFIG_ONLY, COMMIT_MAIN, local_main, refs=["main"],
                   only={"config.json"})
    partial = populate_cache(hub_cache, PARTIAL, COMMIT_MAIN, local_main, refs=["main"],
                             only={"config.json", "generation_config.json"})
    weights = (local_main / "model.safetensors").read_bytes()
    (partial.parent.parent / "blobs" / (hashlib.sha256(weights).hexdigest() + ".incomplete")
     ).write_bytes(weights[:100])
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("HF_", "HUGGINGFACE_", "TRANSFORMERS_"))}
    env.update(HF_HOME=str(home), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    args = {"repo": OWNER_NAME, "local_main": str(local_main), "local_v1": str(local_v1),
            "commit_v1": COMMIT_V1, "config_only": CONFIG_ONLY, "partial": PARTIAL,
            "eager": ref.EAGER}
    done = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(args)], env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["home"] = str(home)
    return result


def test_the_hand_made_cache_is_one_huggingface_hub_accepts(hub_run):
    assert hub_run["scan"]["errors"] == []
    assert hub_run["scan"]["repos"][OWNER_NAME] == [[COMMIT_MAIN, "main"], [COMMIT_V1, "v1"]]
    assert hub_run["cache_dir"] == os.path.join(hub_run["home"], "hub")


def test_hub_id_loads_the_main_revision_from_the_cache(hub_run):
    main = hub_run["main"]
    assert main["source"] == f"{OWNER_NAME}@{COMMIT_MAIN}"
    assert main["heads"] == 4
    assert main["same_logits_as_local_dir"] is True
    assert main["generation_config"]["transformers_version"]  # generation_config.json was read


@pytest.mark.parametrize("how", ["tag", "commit"])
def test_a_revision_selects_another_snapshot(hub_run, how):
    loaded = hub_run[how]
    assert loaded["source"] == f"{OWNER_NAME}@{COMMIT_V1}"
    assert loaded["heads"] == 8
    assert loaded["same_logits_as_local_dir"] is True


def test_revision_keyword_of_load(hub_run):
    assert hub_run["tag_keyword"] == 8  # the v1 snapshot, as with "owner/name@v1"


def test_read_spec_of_a_hub_id(hub_run):
    assert hub_run["read_spec"] == [4, "torch.float32"]


def test_offline_with_nothing_cached_says_so_and_what_to_do(hub_run):
    error = hub_run["absent"]
    assert error["error"] == "CheckpointError"
    assert "nobody/absent-model is not in the Hugging Face cache" in error["message"]
    assert "HF_HUB_OFFLINE is set" in error["message"]
    assert "`qwen3 download nobody/absent-model`" in error["message"]
    assert "Traceback" not in error["message"]


def test_offline_with_an_uncached_revision(hub_run):
    error = hub_run["absent_revision"]
    assert f"{OWNER_NAME}@no-such-tag is not in the Hugging Face cache" in error["message"]


def test_a_snapshot_with_only_the_config_cached(hub_run):
    assert hub_run["config_only_spec"] == 2  # enough for `qwen3 info`
    error = hub_run["config_only"]
    assert error["error"] == "CheckpointError"
    assert "has no weights" in error["message"]
    assert f"run `qwen3 download {CONFIG_ONLY}` with network access" in error["message"]


def test_download_command_prints_the_cached_snapshot(hub_run):
    run = hub_run["cli_download"]
    assert run["code"] == 0
    assert run["stdout"].strip() == os.path.join(
        hub_run["home"], "hub", "models--qwen3core-tests--tiny-qwen3", "snapshots", COMMIT_MAIN)


def test_download_command_offline_fails_in_one_line(hub_run):
    run = hub_run["cli_download_absent"]
    assert run["code"] == 2
    assert run["stderr"].startswith("qwen3 download: error: nobody/absent-model@v2 is not in "
                                    "the Hugging Face cache")
    assert "--revision v2" in run["stderr"]
    assert len(run["stderr"].strip().splitlines()) == 1


def test_info_command_on_a_hub_id(hub_run):
    run = hub_run["cli_info"]
    assert run["code"] == 0, run["stderr"]
    info = json.loads(run["stdout"])
    assert info["spec"]["num_attention_heads"] == 4
    assert info["spec"]["rope_theta"] == 10000.0  # from rope_parameters (transformers 5)
    assert info["stored_dtype"] == "float32"


def test_download_offline_of_an_interrupted_snapshot_fails(hub_run):
    run = hub_run["cli_download_partial"]
    assert run["code"] == 2 and run["stdout"] == ""
    message = run["stderr"]
    assert message.startswith(f"qwen3 download: error: the cached snapshot of {PARTIAL}")
    assert "lacks model.safetensors" in message and "partly downloaded" in message
    assert f"run `qwen3 download {PARTIAL}` with network access" in message
    assert hub_run["partial"]["error"] == "CheckpointError"
    assert "partly downloaded" in hub_run["partial"]["message"]


def test_download_offline_of_a_snapshot_without_weights_fails(hub_run):
    run = hub_run["cli_download_config_only"]
    assert run["code"] == 2 and "lacks model.safetensors" in run["stderr"]
