"""``qwen3 list``: the models in the Hugging Face cache (where ``qwen3 download`` puts them),
with their size on disk, revisions and whether they are Qwen3 checkpoints."""

from __future__ import annotations

import argparse
import json
from datetime import datetime, timezone
from pathlib import Path

from qwen3core.cli.common import HelpFormatter


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("list", help="list the models in the Hugging Face cache, with sizes",
                       description="List model repositories in the Hugging Face cache "
                                   "(HF_HOME / HF_HUB_CACHE). `qwen3 rm` removes one.",
                       formatter_class=HelpFormatter)
    p.add_argument("--all", action="store_true",
                   help="also list repositories that are not Qwen3 checkpoints")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(run=run)


def cached_models(include_all: bool = False) -> list[dict]:
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    from qwen3core.checkpoint.hub import cache_dir

    try:
        info = scan_cache_dir(cache_dir())
    except CacheNotFound:
        return []
    models = []
    for repo in sorted(info.repos, key=lambda r: r.repo_id.lower()):
        if repo.repo_type != "model":
            continue
        architecture = _architecture(repo)
        if not include_all and not (architecture or "").startswith("qwen3"):
            continue
        models.append({
            "repo_id": repo.repo_id,
            "size_bytes": repo.size_on_disk,
            "revisions": [{"commit": rev.commit_hash, "refs": sorted(rev.refs),
                           "size_bytes": rev.size_on_disk} for rev in repo.revisions],
            "model_type": architecture,
            "last_modified": datetime.fromtimestamp(repo.last_modified, timezone.utc)
            .isoformat(timespec="seconds"),
            "path": str(repo.repo_path),
        })
    return models


def _architecture(repo) -> str | None:
    """The config's model_type in the newest revision that has a config.json."""
    for rev in sorted(repo.revisions, key=lambda r: r.last_modified, reverse=True):
        config = Path(rev.snapshot_path) / "config.json"
        try:
            return json.loads(config.read_text()).get("model_type")
        except (OSError, ValueError, AttributeError):
            continue
    return None


def run(args: argparse.Namespace) -> int:
    from qwen3core.checkpoint.hub import cache_dir
    from qwen3core.cli.info_cmd import format_bytes

    models = cached_models(args.all)
    if args.json:
        print(json.dumps({"cache": cache_dir(), "models": models}, indent=2))
        return 0
    if not models:
        print(f"no {'' if args.all else 'Qwen3 '}models in {cache_dir()}; "
              f"`qwen3 download Qwen/Qwen3-0.6B` fetches one")
        return 0
    rows = [("MODEL", "SIZE", "REVISIONS", "MODIFIED")]
    for m in models:
        revisions = ", ".join(",".join(r["refs"]) or r["commit"][:12] for r in m["revisions"])
        rows.append((m["repo_id"], format_bytes(m["size_bytes"]), revisions,
                     m["last_modified"][:10]))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    print(f"(in {cache_dir()})")
    return 0
