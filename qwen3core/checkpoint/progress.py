"""Progress bars for downloading and loading, shown only when stderr is a terminal (a log file
or a test run should not fill up with carriage-return frames)."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

from tqdm.auto import tqdm


def on_terminal() -> bool:
    return sys.stderr.isatty()


def load_bar(total_bytes: int, desc: str) -> tqdm:
    return tqdm(total=total_bytes, desc=desc, unit="B", unit_scale=True, unit_divisor=1024,
                disable=not on_terminal(), leave=False)


@contextlib.contextmanager
def hub_progress_bars() -> Iterator[None]:
    """huggingface_hub draws its own bars; silence them for the call when not on a terminal."""
    from huggingface_hub.utils import (
        are_progress_bars_disabled,
        disable_progress_bars,
        enable_progress_bars,
    )

    if on_terminal() or are_progress_bars_disabled():
        yield
        return
    disable_progress_bars()
    try:
        yield
    finally:
        enable_progress_bars()
