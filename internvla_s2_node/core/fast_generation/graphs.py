"""CUDA-graph capture helpers: a captured graph, its CPU stand-in for tests, the shared memory pool."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch


class _Graph:
    """A captured CUDA graph and the output its capture produced (overwritten by each replay)."""

    def __init__(self, graph, out) -> None:
        self.graph, self.out = graph, out

    def replay(self):
        self.graph.replay()
        return self.out


class _FakeGraph:
    """CPU stand-in for tests: replays by running the function and copying into the first output,
    so that the static-buffer plumbing around graphs is exercised where CUDA is absent."""

    def __init__(self, fn) -> None:
        self.fn = fn
        self.out = fn()

    def replay(self):
        _copy_into(self.out, self.fn())
        return self.out


def _copy_into(dst, src) -> None:
    if isinstance(dst, torch.Tensor):
        dst.copy_(src)
    elif isinstance(dst, (tuple, list)):
        for d, s in zip(dst, src):
            _copy_into(d, s)


class _DoneEvent:
    """CPU stand-in for a CUDA event (work on the CPU is done when it returns)."""

    def record(self) -> None:
        pass

    def synchronize(self) -> None:
        pass


class _PoolHolder:
    """The memory pool a generator's graphs share (they are replayed one at a time, and their results
    are read right after a replay or live in buffers allocated outside the pool). A new pool is taken
    whenever all graphs may have been dropped (a pool nobody uses any more can't be captured into)."""

    def __init__(self) -> None:
        self.handle = None

    def get(self):
        if self.handle is None:
            self.handle = torch.cuda.graph_pool_handle()
        return self.handle

    def renew(self) -> None:
        self.handle = None


def _capture(fn: Callable[[], Any], device: torch.device, fake: bool, pool: _PoolHolder | None = None, warm: Callable[[], Any] | None = None, warmup: int = 2):
    """``fn`` captured in a CUDA graph after ``warmup`` runs of ``warm`` (default ``fn``) on a side stream."""
    if fake:
        return _FakeGraph(fn)
    warm = warm or fn
    stream = torch.cuda.Stream(device)
    stream.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(stream):
        for _ in range(warmup):
            warm()
    torch.cuda.current_stream(device).wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, pool=pool.get() if pool is not None else None, capture_error_mode="thread_local"):
        out = fn()
    return _Graph(graph, out)
