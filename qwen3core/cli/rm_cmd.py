"""``qwen3 rm REPO_ID``: delete a model (or one revision of it) from the Hugging Face cache."""

from __future__ import annotations

import argparse
import sys

from qwen3core.cli.common import HelpFormatter
from qwen3core.errors import Qwen3CoreError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("rm", help="delete a model from the Hugging Face cache",
                       description="Delete a cached model's files (every revision, or the one "
                                   "given). Asks first on a terminal; elsewhere pass --yes.",
                       formatter_class=HelpFormatter)
    p.add_argument("repo_id", metavar="REPO_ID", help="hub id such as Qwen/Qwen3-0.6B "
                                                      "(see `qwen3 list`)")
    p.add_argument("--revision", default=None,
                   help="only this revision: a branch, tag or commit hash (default: all)")
    p.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    from qwen3core.checkpoint.hub import cache_dir
    from qwen3core.cli.info_cmd import format_bytes

    try:
        info = scan_cache_dir(cache_dir())
    except CacheNotFound:
        info = None
    repo = next((r for r in (info.repos if info else ())
                 if r.repo_type == "model" and r.repo_id == args.repo_id), None)
    if repo is None:
        raise Qwen3CoreError(f"{args.repo_id} is not in the Hugging Face cache ({cache_dir()}); "
                             f"`qwen3 list --all` shows what is")
    revisions = [r for r in repo.revisions if args.revision is None
                 or args.revision in r.refs or r.commit_hash.startswith(args.revision)]
    if not revisions:
        known = ", ".join(sorted({ref for r in repo.revisions for ref in r.refs}
                                 | {r.commit_hash[:12] for r in repo.revisions}))
        raise Qwen3CoreError(f"{args.repo_id} has no cached revision {args.revision!r}; "
                             f"cached: {known}")
    # Not huggingface_hub's delete_revisions: it selects by commit hash across the whole cache,
    # and two repositories may hold the same hash (mirrors, test caches).
    doomed_blobs = _blobs_only_in(repo, revisions)
    freed = (repo.size_on_disk if len(revisions) == len(repo.revisions)
             else sum(size for size in doomed_blobs.values()))
    what = (f"{args.repo_id}" + (f"@{args.revision}" if args.revision else "") +
            f" ({format_bytes(freed)})")
    if not args.yes:
        if not sys.stdin.isatty():
            raise Qwen3CoreError(f"deleting {what} needs confirmation: pass --yes")
        answer = input(f"delete {what}? [y/N] ").strip().lower()
        if answer not in ("y", "yes"):
            print("nothing deleted")
            return 1
    _delete(repo, revisions, doomed_blobs)
    print(f"deleted {what}")
    return 0


def _blobs_only_in(repo, revisions) -> dict:
    """blob path -> size, for the blobs of ``revisions`` that no other revision uses."""
    chosen = {r.commit_hash for r in revisions}
    kept = {f.blob_path for r in repo.revisions if r.commit_hash not in chosen for f in r.files}
    return {f.blob_path: f.size_on_disk for r in revisions for f in r.files
            if f.blob_path not in kept}


def _delete(repo, revisions, blobs: dict) -> None:
    import shutil

    if len(revisions) == len(repo.revisions):
        shutil.rmtree(repo.repo_path)
        return
    chosen = {r.commit_hash for r in revisions}
    for revision in revisions:
        shutil.rmtree(revision.snapshot_path, ignore_errors=True)
    refs = repo.repo_path / "refs"
    for ref in refs.rglob("*") if refs.is_dir() else ():
        if ref.is_file() and ref.read_text().strip() in chosen:
            ref.unlink()
    for blob in blobs:
        blob.unlink(missing_ok=True)
