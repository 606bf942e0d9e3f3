"""``qwen3 list`` and ``qwen3 rm`` on a Hugging Face cache laid out as huggingface_hub writes
it (blobs, snapshots of symlinks, refs), in a fresh HF_HOME."""

import hashlib
import json
import os

import pytest


def add_repo(hub, repo_id, model_type, weights_size, commit="c" * 40):
    repo = hub / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / commit
    (repo / "blobs").mkdir(parents=True)
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    files = {"config.json": json.dumps({"model_type": model_type}).encode(),
             "model.safetensors": os.urandom(weights_size)}
    for name, data in files.items():
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        os.symlink(os.path.join("..", "..", "blobs", blob.name), snapshot / name)
    return repo


@pytest.fixture
def cache(tmp_path):
    home = tmp_path / "hf"
    add_repo(home / "hub", "Qwen/Qwen3-Tiny", "qwen3", 3 * 2**20)
    add_repo(home / "hub", "someone/llama", "llama", 1000)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    env.update(HF_HOME=str(home), HF_HUB_OFFLINE="1")
    return env, home


def test_list_shows_cached_qwen3_models_with_size(qwen3, cache):
    env, home = cache
    done = qwen3("list", env=env)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["MODEL", "SIZE", "REVISIONS", "MODIFIED"]
    assert lines[1].split()[:4] == ["Qwen/Qwen3-Tiny", "3.00", "MiB", "main"]
    assert "llama" not in done.stdout
    everything = json.loads(qwen3("list", "--all", "--json", env=env).stdout)
    assert [m["repo_id"] for m in everything["models"]] == ["Qwen/Qwen3-Tiny", "someone/llama"]
    assert everything["models"][0]["model_type"] == "qwen3"
    assert everything["cache"] == str(home / "hub")


def test_rm_asks_for_confirmation_then_deletes(qwen3, cache):
    env, home = cache
    refused = qwen3("rm", "Qwen/Qwen3-Tiny", env=env)  # stdin is not a terminal
    assert refused.returncode == 2 and "pass --yes" in refused.stderr
    assert "Qwen/Qwen3-Tiny" in qwen3("list", env=env).stdout
    done = qwen3("rm", "Qwen/Qwen3-Tiny", "--yes", env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("deleted Qwen/Qwen3-Tiny (")  # and the size it frees
    assert not (home / "hub" / "models--Qwen--Qwen3-Tiny").exists()
    assert "no Qwen3 models in" in qwen3("list", env=env).stdout


def test_rm_of_something_not_cached_is_a_clear_error(qwen3, cache):
    env, _ = cache
    done = qwen3("rm", "nobody/nothing", "--yes", env=env)
    assert done.returncode == 2 and "nobody/nothing is not in the Hugging Face cache" in done.stderr
    bad_revision = qwen3("rm", "Qwen/Qwen3-Tiny", "--revision", "v9", "--yes", env=env)
    assert bad_revision.returncode == 2 and "no cached revision 'v9'" in bad_revision.stderr


def test_rm_of_one_revision_keeps_the_others_and_other_repositories(qwen3, cache):
    env, home = cache
    hub = home / "hub"
    # The same commit hash in two repositories must not delete the other one.
    other = add_repo(hub, "Qwen/Qwen3-Other", "qwen3", 2000)
    done = qwen3("rm", "Qwen/Qwen3-Tiny", "--revision", "main", "--yes", env=env)
    assert done.returncode == 0, done.stderr
    assert not (hub / "models--Qwen--Qwen3-Tiny").exists()  # its only revision
    assert (other / "snapshots" / ("c" * 40) / "model.safetensors").is_file()
    assert (hub / "models--someone--llama" / "refs" / "main").is_file()


def test_rm_of_one_of_two_revisions_keeps_the_shared_files(qwen3, cache):
    env, home = cache
    repo = home / "hub" / "models--Qwen--Qwen3-Tiny"
    main = repo / "snapshots" / ("c" * 40)
    v1 = repo / "snapshots" / ("d" * 40)
    v1.mkdir()
    os.symlink(os.readlink(main / "config.json"), v1 / "config.json")  # shared blob
    extra = os.urandom(500)
    blob = repo / "blobs" / hashlib.sha256(extra).hexdigest()
    blob.write_bytes(extra)
    os.symlink(os.path.join("..", "..", "blobs", blob.name), v1 / "model.safetensors")
    (repo / "refs" / "v1").write_text("d" * 40)
    done = qwen3("rm", "Qwen/Qwen3-Tiny", "--revision", "v1", "--yes", env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("deleted Qwen/Qwen3-Tiny@v1 (500 B)")
    assert not v1.exists() and not blob.exists() and not (repo / "refs" / "v1").exists()
    assert (main / "config.json").read_text() and (main / "model.safetensors").is_file()
