"""Episode history: which past frames the model sees, in bounded memory.

The released checkpoints were trained with, at step ``t``, the frames
``unique(linspace(0, t - 1, num_history, dtype=int32))`` of everything seen this
episode. Keeping every frame would make memory grow with the episode, so
:class:`HistoryBuffer` keeps at most ``capacity + 1`` frames: ``capacity`` history frames
and the current one (the engine records the current frame before it selects the history).

* While ``t <= capacity`` every frame is kept and the indices are exact.
* Beyond that the buffer thins itself: it keeps only frames whose index is a
  multiple of a stride, doubling the stride each time it fills up. A requested
  index is served by the kept frame nearest to it, never a later one. The error
  of any served index is below the stride, so a linspace spread over ``t``
  frames stays spread over the whole episode.

Memory is ``capacity + 1`` frames at the model's input resolution (384x384x3 bytes =
432 KiB each; 513 frames = 216 MiB).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Generic, TypeVar

import numpy as np

T = TypeVar("T")


def history_indices(t: int, num_history: int) -> list[int]:
    """Upstream's formula: frames shown as history at step ``t`` (``t`` frames seen before)."""
    if t <= 0 or num_history <= 0:
        return []
    return np.unique(np.linspace(0, t - 1, num_history, dtype=np.int32)).tolist()


class HistoryBuffer(Generic[T]):
    """Thread-safe bounded store of episode frames addressed by their episode index."""

    def __init__(self, capacity: int = 512) -> None:
        if capacity < 2:
            raise ValueError(f"history capacity must be at least 2, got {capacity}")
        self.capacity = capacity
        self._lock = threading.Lock()
        self._frames: OrderedDict[int, T] = OrderedDict()
        self._count = 0
        self._stride = 1

    def __len__(self) -> int:
        """Frames seen this episode (not frames kept)."""
        return self._count

    @property
    def kept(self) -> int:
        return len(self._frames)

    @property
    def stride(self) -> int:
        return self._stride

    @property
    def exact_limit(self) -> int:
        """Step ``t`` up to which every index is served exactly (frames 0..t all kept)."""
        return self.capacity

    def clear(self) -> None:
        with self._lock:
            self._frames.clear()
            self._count = 0
            self._stride = 1

    def append(self, frame: T) -> int:
        """Record a frame; returns its episode index."""
        with self._lock:
            index = self._count
            self._count += 1
            if index % self._stride == 0:
                self._frames[index] = frame
                if len(self._frames) > self.capacity + 1:  # history + the current frame
                    self._thin()
            return index

    def _thin(self) -> None:
        self._stride *= 2
        for index in [i for i in self._frames if i % self._stride != 0]:
            del self._frames[index]

    def get(self, index: int) -> T | None:
        """The frame recorded as ``index`` if it is still kept (not thinned out), else None."""
        with self._lock:
            return self._frames.get(index)

    def resolve(self, index: int) -> int:
        """The kept index that serves ``index``: itself, else the nearest earlier kept frame."""
        with self._lock:
            return self._resolve(index)

    def _resolve(self, index: int) -> int:
        if not 0 <= index < self._count:
            raise IndexError(f"frame {index} not seen (episode has {self._count})")
        if index in self._frames:
            return index
        # Multiples of the current stride are never thinned out, so this one is kept.
        return (index // self._stride) * self._stride

    def select(self, t: int, num_history: int) -> list[tuple[int, T]]:
        """History for step ``t``: (kept index, frame) pairs, de-duplicated, in order."""
        with self._lock:
            out: list[tuple[int, T]] = []
            for index in history_indices(min(t, self._count), num_history):
                kept = self._resolve(index)
                if not out or out[-1][0] != kept:
                    out.append((kept, self._frames[kept]))
            return out
