"""Fetching hub repositories through ``huggingface_hub``: its cache, ``HF_HOME``/``HF_HUB_CACHE``,
``HF_HUB_OFFLINE`` and revisions behave exactly as they do for every other Hugging Face tool.

Only the files a Qwen3 model needs are fetched: configs, safetensors weights (+ index) and
tokenizer files; never ``*.bin``/``*.pt`` pickles, ONNX or GGUF exports a repository may also hold.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from qwen3core.checkpoint.config import CONFIG_FILE
from qwen3core.checkpoint.progress import hub_progress_bars
from qwen3core.checkpoint.source import HubSource
from qwen3core.errors import CheckpointError

ALLOW_PATTERNS = [
    "config.json", "generation_config.json",
    "model.safetensors", "model-*.safetensors", "model.safetensors.index.json",
    "tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt",
    "special_tokens_map.json", "added_tokens.json", "chat_template.jinja",
    "additional_chat_templates/*",
]


def fetch_snapshot(source: HubSource) -> Path:
    """The local snapshot folder of ``source``, downloading what the cache lacks."""
    from huggingface_hub import snapshot_download

    with _translate_hub_errors(source), hub_progress_bars():
        folder = Path(snapshot_download(source.repo_id, revision=source.revision,
                                        allow_patterns=ALLOW_PATTERNS))
    check_snapshot_complete(folder, source, weights=False)
    return folder


def check_snapshot_complete(folder: Path, source: HubSource, *, weights: bool = True) -> None:
    """Refuse a snapshot an interrupted download left behind. Offline, huggingface_hub returns
    the snapshot folder even when a file is still a ``blobs/*.incomplete`` partial (it has no
    entry in the snapshot yet), so any partial blob of the repository is an error here, and so
    (with ``weights``, as ``qwen3 download`` asks) is a missing config or weight file."""
    partial = sorted(p.name for p in (folder.parent.parent / "blobs").glob("*.incomplete"))
    if not weights and not partial:
        return
    index = folder / "model.safetensors.index.json"
    missing = [CONFIG_FILE] if not (folder / CONFIG_FILE).is_file() else []
    if index.is_file():
        import json

        try:
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (ValueError, KeyError, TypeError, AttributeError):
            shards = []  # a malformed index is reported by the loader with its own message
        missing += [s for s in shards if not (folder / s).is_file()]
    elif not (folder / "model.safetensors").is_file():
        missing.append("model.safetensors")
    if not partial and not missing:
        return
    what = []
    if missing:
        what.append("lacks " + ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else ""))
    if partial:
        what.append(f"has {len(partial)} partly downloaded file(s) ({partial[0]} ...)")
    command = f"`qwen3 download {source.repo_id}" + (
        f" --revision {source.revision}`" if source.revision else "`")
    fix = (f"run {command} with network access (HF_HUB_OFFLINE unset) to finish it"
           if is_offline() else f"run {command} again")
    raise CheckpointError(f"the cached snapshot of {source} ({folder}) is incomplete: it "
                          f"{' and '.join(what)}, as an interrupted download leaves it; {fix}")


def fetch_config(source: HubSource) -> Path:
    """Only ``config.json`` of ``source`` (from the cache when offline)."""
    from huggingface_hub import hf_hub_download

    with _translate_hub_errors(source), hub_progress_bars():
        return Path(hf_hub_download(source.repo_id, CONFIG_FILE, revision=source.revision))


def cache_dir() -> str:
    from huggingface_hub import constants

    return constants.HF_HUB_CACHE


def is_offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


@contextlib.contextmanager
def _translate_hub_errors(source: HubSource) -> Iterator[None]:
    from huggingface_hub import errors

    try:
        yield
    except errors.LocalEntryNotFoundError as exc:
        incomplete = getattr(errors, "IncompleteSnapshotError", ())  # huggingface_hub >= 1.x
        if incomplete and isinstance(exc, incomplete):
            raise CheckpointError(f"the cached snapshot of {source} lacks files and cannot be "
                                  f"completed now: {_first_line(exc)}") from None
        if is_offline():
            raise CheckpointError(
                f"{source} is not in the Hugging Face cache ({cache_dir()}) and HF_HUB_OFFLINE "
                f"is set, so it cannot be downloaded. Run `qwen3 download {source.repo_id}"
                f"{' --revision ' + source.revision if source.revision else ''}` on a machine "
                "with network access using the same HF_HOME (or copy the cache), unset "
                "HF_HUB_OFFLINE, or pass a local model directory") from None
        raise CheckpointError(
            f"{source} is not in the Hugging Face cache ({cache_dir()}) and the hub could not "
            f"be reached ({_first_line(exc)}). Check the network connection, or pass a local "
            "model directory") from None
    except errors.GatedRepoError:
        raise CheckpointError(
            f"{source.repo_id} is gated: accept its license on "
            f"https://huggingface.co/{source.repo_id} and log in (`hf auth login` or HF_TOKEN)"
        ) from None
    except errors.RepositoryNotFoundError:
        raise CheckpointError(
            f"{source.repo_id!r} is not a local directory, and the hub has no repository of "
            "that name that you can access (if it is private, log in with `hf auth login` or "
            "set HF_TOKEN)") from None
    except errors.RevisionNotFoundError:
        raise CheckpointError(f"{source.repo_id} has no revision {source.revision!r} (a "
                              "branch, tag or commit hash)") from None
    except errors.EntryNotFoundError as exc:
        raise CheckpointError(f"{source}: {_first_line(exc)}; a Qwen3 model repository holds "
                              f"{CONFIG_FILE} and *.safetensors weights") from None
    except errors.HfHubHTTPError as exc:
        raise CheckpointError(f"downloading {source} failed: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
