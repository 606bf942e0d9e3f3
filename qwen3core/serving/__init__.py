"""Serving: a continuously batching scheduler, the thread that runs it, and the HTTP server.

:class:`~qwen3core.serving.scheduler.Scheduler` admits waiting requests into the running
decode batch at step boundaries and lets finished or cancelled rows leave at once;
:class:`~qwen3core.serving.engine.Engine` runs it on a worker thread, off the event loop;
:mod:`qwen3core.serving.app` is the OpenAI-compatible HTTP API on top.
"""

from qwen3core.serving.request import ServeEvent, ServeRequest
from qwen3core.serving.scheduler import QueueFullError, Scheduler

__all__ = ["QueueFullError", "Scheduler", "ServeEvent", "ServeRequest"]
