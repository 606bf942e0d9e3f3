"""``qwen3 download REPO_ID [--revision R]``: fetch a model's files into the Hugging Face cache
(configs, safetensors weights, tokenizer files) and print the local folder."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("download", help="download a hub model's files into the Hugging Face "
                                        "cache (honours HF_HOME, HF_HUB_OFFLINE)")
    p.add_argument("repo_id", metavar="REPO_ID", help="hub id such as Qwen/Qwen3-0.6B "
                                                      "(owner/name[@revision])")
    p.add_argument("--revision", default=None,
                   help="branch, tag or commit hash (default: the repository's main branch)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from qwen3core.checkpoint import download

    print(download(args.repo_id, args.revision))
    return 0
