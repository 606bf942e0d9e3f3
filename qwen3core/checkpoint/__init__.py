"""Hugging Face checkpoints: local directories and hub ids, read from safetensors.

``load_pretrained`` is what :func:`qwen3core.load` calls for anything that is not a random
preset; ``read_spec`` serves ``qwen3 info`` without touching the weights; ``download`` serves
``qwen3 download``. See docs/checkpoints.md.
"""

from qwen3core.checkpoint.loader import download, load_pretrained, locate, read_spec
from qwen3core.checkpoint.source import HubSource, LocalSource, parse_source

__all__ = [
           "HubSource",
           "LocalSource",
           "download",
           "load_pretrained",
           "locate",
           "parse_source",
           "read_spec",
]
