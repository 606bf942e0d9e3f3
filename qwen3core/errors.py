"""The exceptions qwen3core raises on purpose; each message says what was wrong and what to do."""

class Qwen3CoreError(Exception):
    """Base class for the framework's own errors."""


class SpecError(Qwen3CoreError, ValueError):
    """A config that does not describe a Qwen3 model this framework can build."""


class PluginError(Qwen3CoreError):
    """A plugin could not be loaded or is malformed (misspelled hook, duplicate name)."""


class BackendSelectionError(Qwen3CoreError, ValueError):
    """An unknown component or implementation was selected, or the selected one is unavailable."""


class CheckpointError(Qwen3CoreError, ValueError):
    """A checkpoint is missing, corrupt, or does not match the model it claims to describe."""


class ParallelError(Qwen3CoreError, ValueError):
    """A model cannot be split as requested over tensor-parallel ranks, or the process group is
    missing or does not match the requested size."""


class GenerationError(Qwen3CoreError, ValueError):
    """Invalid generation request (bad parameter, prompt longer than the context, ...)."""


__all__ = [
    "BackendSelectionError",
    "CheckpointError",
    "GenerationError",
    "ParallelError",
    "PluginError",
    "Qwen3CoreError",
    "SpecError",
]
