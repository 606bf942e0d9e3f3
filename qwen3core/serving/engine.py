"""The scheduler on a worker thread: model steps run off the event loop.

The HTTP handlers run on asyncio; a model step takes milliseconds to seconds and would stall
every other connection if it ran there. :class:`Engine` owns one thread that calls
``Scheduler.step`` while there is work and sleeps on a condition otherwise. Each request's
events cross back to the event loop through ``loop.call_soon_threadsafe`` into an
``asyncio.Queue``, so the worker never blocks on a slow client.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time

from qwen3core.serving.metrics import Metrics
from qwen3core.serving.request import ServeEvent, ServeRequest
from qwen3core.serving.scheduler import Scheduler

log = logging.getLogger("qwen3core.serving")


class Engine:
    def __init__(self, scheduler: Scheduler, metrics: Metrics | None = None):
        self.scheduler = scheduler
        self.metrics = metrics or Metrics()
        self._wake = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="qwen3core-engine", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with self._wake:
            self._stopping = True
            self._wake.notify()
        self._thread.join(timeout=10)

    def submit(self, request: ServeRequest) -> None:
        """Queue a request (raises what ``Scheduler.submit`` raises) and wake the worker."""
        self.scheduler.submit(request)
        with self._wake:
            self._wake.notify()

    def wake(self) -> None:
        """Let the worker notice a cancellation while it sleeps."""
        with self._wake:
            self._wake.notify()

    def _run(self) -> None:
        scheduler = self.scheduler
        while True:
            with self._wake:
                while scheduler.idle and not self._stopping:
                    self._wake.wait(timeout=1.0)
                if self._stopping:
                    scheduler.fail_all("the server is shutting down")
                    return
            started = time.perf_counter()
            try:
                scheduler.step()
            except Exception as exc:  # one bad step must not kill the server
                log.exception("model step failed")
                scheduler.fail_all(f"the model step failed: {type(exc).__name__}: {exc}")
            self.metrics.observe_step(time.perf_counter() - started, scheduler.running,
                                      scheduler.waiting)


def event_queue(loop: asyncio.AbstractEventLoop, queue: asyncio.Queue, tag: int = 0):
    """An ``emit`` for :class:`ServeRequest` that hands ``(tag, event)`` to ``queue`` on
    ``loop`` from the worker thread."""

    def emit(event: ServeEvent) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, (tag, event))

    return emit
