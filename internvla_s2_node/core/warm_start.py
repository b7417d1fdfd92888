"""Decisions from the first frame: serve with a ready path while the compiled one builds in a thread.

``BackgroundBuild`` runs one build (compiling and capturing the fast path on warm-up requests) in a
daemon thread; the engine's build first waits for the first decision (``S2Engine.build_wait_s`` at
most), so that the first answer does not share the interpreter with the compile. The engine keeps answering with the path it has (the plain path), and between two
steps, when the build is done, takes its result: the switch is one assignment under the engine's
step lock, so a step runs wholly on one path. This module knows nothing of models; ``engine`` supplies
the build and reports the path that answered each decision.

Why it is safe to build while the plain path serves on the same model: the fast path's compile and
capture change nothing the plain path reads (its decode step runs on its own copies of the layers,
its vision-block graphs are used only by the thread that set up a graph context, CUDA graphs are
captured on a side stream in thread-local mode). See ``fast_generation``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

BUILDING, READY, FAILED, CANCELLED = "building", "ready", "failed", "cancelled"


class Cancelled(Exception):
    """Raised inside a build that saw ``cancel()`` (the engine was closed)."""


class BackgroundBuild:
    """``build(check)`` once in a daemon thread; ``check()`` raises ``Cancelled`` after ``cancel()``."""

    def __init__(self, build: Callable[[Callable[[], None]], Any], name: str = "s2-fast-path-build") -> None:
        self._build = build
        self._name = name
        self._done = threading.Event()
        self._cancel = threading.Event()
        self.result: Any = None
        self.error = ""
        self.started: float | None = None  # perf_counter
        self.seconds: float | None = None  # how long the build took, once done
        self._thread: threading.Thread | None = None
        self._taken = False

    def start(self) -> BackgroundBuild:
        self.started = time.perf_counter()
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()
        return self

    def _check(self) -> None:
        if self._cancel.is_set():
            raise Cancelled()

    def _run(self) -> None:
        try:
            self.result = self._build(self._check)
        except Cancelled:
            self.error = "cancelled"
        except Exception as exc:  # noqa: BLE001 - the plain path keeps serving; the reason is reported
            self.error = f"{type(exc).__name__}: {exc}"[:500]
            log.warning("fast path build failed, the plain path keeps serving: %s", self.error)
        finally:
            self.seconds = time.perf_counter() - (self.started or time.perf_counter())
            self._done.set()

    @property
    def state(self) -> str:
        if not self._done.is_set():
            return BUILDING
        if self._cancel.is_set() and self.result is None:
            return CANCELLED
        return READY if self.result is not None else FAILED

    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)

    def cancel(self) -> None:
        """Ask the build to stop at its next check (a compile in progress finishes first)."""
        self._cancel.set()

    def take(self) -> Any:
        """The built result once, when ready (None before, after a failure, and after the first take)."""
        if not self._done.is_set() or self.result is None or self._taken:
            return None
        self._taken = True
        return self.result
