"""qwen3core: a plugin-based, multi-backend inference framework for the Qwen3 model family.

Public API: :func:`load`, the plugin marker :data:`hookimpl`, :class:`Implementation` (what a
plugin hook returns), the spec :class:`Qwen3Spec` and the registry accessor
:func:`get_registry`.
"""

from qwen3core.contracts import AttentionBatch, BuildContext, Implementation
from qwen3core.errors import (
                              BackendSelectionError,
                              CheckpointError,
                              GenerationError,
                              PluginError,
                              Qwen3CoreError,
                              SpecError,
)
from qwen3core.hookspecs import hookimpl
from qwen3core.load import load
from qwen3core.registry import get_registry
from qwen3core.spec import PRESETS, Qwen3Spec, preset

__version__ = "0.1.0"

__all__ = [
                              "PRESETS",
                              "AttentionBatch",
                              "BackendSelectionError",
                              "BuildContext",
                              "CheckpointError",
                              "GenerationError",
                              "Implementation",
                              "PluginError",
                              "Qwen3CoreError",
                              "Qwen3Spec",
                              "SpecError",
                              "__version__",
                              "get_registry",
                              "hookimpl",
                              "load",
                              "preset",
]
