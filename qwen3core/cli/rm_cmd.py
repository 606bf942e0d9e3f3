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
    strategy = info.delete_revisions(*(r.commit_hash for r in revisions))
    what = (f"{args.repo_id}" + (f"@{args.revision}" if args.revision else "") +
            f" ({format_bytes(strategy.expected_freed_size)})")
    if not args.yes:
        if not sys.stdin.isatty():
            raise Qwen3CoreError(f"deleting {what} needs confirmation: pass --yes")
        answer = input(f"delete {what}? [y/N] ").strip().lower()
        if answer not in ("y", "yes"):
            print("nothing deleted")
            return 1
    strategy.execute()
    print(f"deleted {what}")
    return 0
