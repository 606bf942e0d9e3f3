"""What a checkpoint ``source`` string names: a local directory or a Hugging Face hub repository.

A path that exists on disk is always local. Anything that looks like a path (starts with ``.``,
``/`` or ``~``, has a backslash or more than one ``/``) is local too, so a typo such as
``./qwen3-0.6b`` is reported as a missing directory instead of becoming a hub lookup. What is
left must be a hub id, ``owner/name`` with an optional ``@revision`` (branch, tag or commit).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from qwen3core.errors import CheckpointError

# The characters the hub allows in each half of an id (huggingface_hub validates the details).
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")


@dataclass(frozen=True)
class LocalSource:
    path: Path

    def __str__(self) -> str:
        return str(self.path)


@dataclass(frozen=True)
class HubSource:
    repo_id: str
    revision: str | None = None  # None: the repository's default branch

    def __str__(self) -> str:
        return self.repo_id if self.revision is None else f"{self.repo_id}@{self.revision}"


Source = LocalSource | HubSource


def parse_source(source: str | Path, revision: str | None = None) -> Source:
    """Classify ``source``; raise :class:`CheckpointError` for a missing local path."""
    text = str(source)
    path = Path(text).expanduser()
    if path.exists():
        if revision is not None:
            raise CheckpointError(f"revision={revision!r} was given for the local directory "
                                  f"{text!r}; revisions only apply to hub ids (owner/name)")
        if not path.is_dir():
            raise CheckpointError(f"{text!r} is a file; pass the model directory that holds "
                                  "config.json and the *.safetensors weights")
        return LocalSource(path.resolve())
    repo_id, at, named_revision = text.partition("@")
    if _looks_like_path(repo_id) or not _HUB_ID.match(repo_id):
        raise CheckpointError(
            f"no such directory: {text!r}. Pass an existing local Hugging Face model directory, "
            "a hub id such as Qwen/Qwen3-0.6B (optionally @revision), or random:<preset>")
    if at and not named_revision:
        raise CheckpointError(f"{text!r} ends with '@' but names no revision; write "
                              "owner/name@<branch, tag or commit>")
    if at and revision is not None and revision != named_revision:
        raise CheckpointError(f"{text!r} names revision {named_revision!r} but "
                              f"revision={revision!r} was passed; give it once")
    _validate_repo_id(repo_id)
    return HubSource(repo_id, named_revision or revision)


def _looks_like_path(text: str) -> bool:
    return (text.startswith((".", "/", "~")) or "\\" in text or text.count("/") != 1
            or text.endswith("/"))


def _validate_repo_id(repo_id: str) -> None:
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(repo_id)
    except ValueError as exc:  # HFValidationError
        raise CheckpointError(f"{repo_id!r} is neither an existing directory nor a valid hub "
                              f"id: {exc}") from None
