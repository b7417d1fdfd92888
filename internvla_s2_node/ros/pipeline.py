"""Pure, thread-safe building blocks of the S2 node's data flow (no rclpy).

* :class:`StampedBuffer`: short history of (stamp, value), nearest-stamp lookup
  (odometry, depth).
* :class:`LatestSlot`: the 1-slot "newest frame wins" holder between the fast
  image callback and the inference worker; overwritten frames are counted.
* :class:`Counters` / :class:`LatencyStats`: numbers for /diagnostics.
* :class:`LogThrottle`: at most one log line per key and period.
"""

from __future__ import annotations

import bisect
import collections
import dataclasses
import threading
import time
from typing import Any, Generic, TypeVar

import numpy as np

T = TypeVar("T")


class StampedBuffer(Generic[T]):
    """Values kept for ``horizon_s`` seconds of stamps (and at most ``maxlen``); nearest-stamp lookup."""

    def __init__(self, horizon_s: float = 2.0, maxlen: int = 512) -> None:
        self.horizon_s = horizon_s
        self._items: collections.deque[tuple[float, T]] = collections.deque(maxlen=maxlen)
        self._lock = threading.Lock()
        self._added = threading.Condition(self._lock)

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def add(self, stamp: float, value: T) -> None:
        with self._lock:
            if self._items and stamp < self._items[-1][0]:
                self._items.clear()  # time jumped back (bag loop, sim reset): old samples are meaningless
            self._items.append((stamp, value))
            while self._items and self._items[0][0] < stamp - self.horizon_s:
                self._items.popleft()
            self._added.notify_all()

    def nearest(self, stamp: float, tolerance: float, wait_s: float = 0.0, alive_s: float = 1.0) -> tuple[float, T] | None:
        """The sample whose stamp is closest to ``stamp``, if within ``tolerance`` seconds.

        ``wait_s`` > 0: when the stream is alive (newest sample at most ``alive_s``
        older than ``stamp``) but has nothing at or after ``stamp`` yet, wait up to
        ``wait_s`` for it (a depth image or odometry sample may arrive just after
        its color image).
        """
        deadline = time.monotonic() + wait_s
        with self._lock:
            while self._items and stamp - alive_s <= self._items[-1][0] < stamp:
                left = deadline - time.monotonic()
                if left <= 0 or not self._added.wait(left):
                    break
            return self._nearest(stamp, tolerance)

    def _nearest(self, stamp: float, tolerance: float) -> tuple[float, T] | None:
        if not self._items:
            return None
        stamps = [s for s, _ in self._items]
        i = bisect.bisect_left(stamps, stamp)
        best = min((j for j in (i - 1, i) if 0 <= j < len(stamps)), key=lambda j: abs(stamps[j] - stamp))
        if abs(stamps[best] - stamp) > tolerance:
            return None
        return self._items[best]

    def latest(self) -> tuple[float, T] | None:
        with self._lock:
            return self._items[-1] if self._items else None


@dataclasses.dataclass
class PendingFrame:
    """A color frame waiting for inference."""

    rgb: np.ndarray
    stamp: float
    header: Any  # std_msgs/Header of the image (stamp + camera frame id)
    index: int | None  # episode index from engine.observe(); None for a look-down frame
    episode: int
    look_down: bool = False
    received: float = dataclasses.field(default_factory=time.monotonic)  # ready for inference (monotonic s)
    arrived: float | None = None  # the image callback started (monotonic s)
    trace: dict[str, float] = dataclasses.field(default_factory=dict)  # where the frame's time went before the step (s)


class LatestSlot(Generic[T]):
    """One-slot holder: ``put`` replaces (and counts as dropped) an unconsumed item; ``take`` empties it.

    ``put(..., protect=True)`` marks an item that a later ordinary ``put`` may not
    replace (the look-down frame); the ordinary item is dropped instead.
    """

    def __init__(self) -> None:
        self._item: T | None = None
        self._protected = False
        self._lock = threading.Lock()
        self.dropped = 0
        self.accepted = 0

    def put(self, item: T, protect: bool = False) -> bool:
        """Store ``item``; returns False if it was dropped because a protected item waits."""
        with self._lock:
            if self._item is not None and self._protected and not protect:
                self.dropped += 1
                return False
            if self._item is not None:
                self.dropped += 1
            self._item, self._protected = item, protect
            self.accepted += 1
            return True

    def take(self) -> T | None:
        with self._lock:
            item, self._item, self._protected = self._item, None, False
            return item

    def clear(self) -> None:
        with self._lock:
            self._item, self._protected = None, False

    def __len__(self) -> int:
        return 0 if self._item is None else 1


class RequestMatcher(Generic[T]):
    """Pairs frames with decision requests by stamp (either may come first); both sides bounded.

    ``add_frame``/``add_request`` return the frame once both halves of a pair are in.
    """

    def __init__(self, maxlen: int = 32) -> None:
        self._frames: collections.OrderedDict[int, T] = collections.OrderedDict()
        self._requests: collections.OrderedDict[int, None] = collections.OrderedDict()
        self._maxlen = maxlen
        self._lock = threading.Lock()

    def add_frame(self, key: int, frame: T) -> T | None:
        with self._lock:
            if self._requests.pop(key, False) is None:
                return frame
            self._frames[key] = frame
            self._trim(self._frames)
            return None

    def add_request(self, key: int) -> T | None:
        with self._lock:
            frame = self._frames.pop(key, None)
            if frame is None:
                self._requests[key] = None
                self._trim(self._requests)
            return frame

    def clear(self) -> None:
        with self._lock:
            self._frames.clear()
            self._requests.clear()

    def _trim(self, d: collections.OrderedDict) -> None:
        while len(d) > self._maxlen:
            d.popitem(last=False)


class LatencyStats:
    """Last and exponentially averaged value of a latency (seconds)."""

    def __init__(self, alpha: float = 0.2) -> None:
        self.alpha = alpha
        self.last: float | None = None
        self.mean: float | None = None

    def add(self, value: float) -> None:
        self.last = value
        self.mean = value if self.mean is None else (1 - self.alpha) * self.mean + self.alpha * value


class Counters:
    """Thread-safe named counters plus the last error text."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: collections.Counter[str] = collections.Counter()
        self.last_error = ""
        self.last_error_time: float | None = None

    def inc(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counts[name] += n

    def get(self, name: str) -> int:
        with self._lock:
            return self._counts[name]

    def error(self, text: str) -> None:
        with self._lock:
            self._counts["errors"] += 1
            self.last_error, self.last_error_time = text, time.monotonic()

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)


class LogThrottle:
    """``ok(key)`` is True at most once per ``period_s`` per key (how many were suppressed is returned by ``suppressed``)."""

    def __init__(self, period_s: float = 5.0, max_keys: int = 256) -> None:
        self.period_s = period_s
        self._last: dict[str, float] = {}
        self._suppressed: collections.Counter[str] = collections.Counter()
        self._max_keys = max_keys
        self._lock = threading.Lock()

    def ok(self, key: str, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self.period_s:
                self._suppressed[key] += 1
                return False
            if len(self._last) >= self._max_keys:
                self._last.clear()
            self._last[key] = now
            return True

    def suppressed(self, key: str) -> int:
        with self._lock:
            return self._suppressed.pop(key, 0)
