"""``SubmitOnceExecutor``: a MultiThreadedExecutor that hands each ready callback to its pool once.

rclpy's MultiThreadedExecutor (Humble to Kilted; fixed upstream by ros2/rclpy#1547 for #1452) yields a
task again on every pass of its wait loop for as long as the task waits in the thread pool's queue
for a free worker, and submits it again each time. With every worker busy (an inference step plus
input callbacks) the spin thread turns that into a hot loop: it holds the GIL and fills the pool's
queue with no-op copies, and the inference thread starves. Measured in the soak: ~1800 re-yields/s
and 3-5 s model steps for 0.1-0.3 s of work (``benchmarks/results/soak_*``). The same loop makes a
new task for a triggered guard condition on every pass until one of them starts (its trigger is only
taken then), so one trigger runs the callback many times (97 times in ``tests/test_ros_submit_once_executor.py``).

Here a task that is queued and not yet started is never submitted again, and a second task for an
entity whose first task has not started is cancelled; the spin thread waits (bounded) for the queued
task to start instead. A task that started and later needs resuming (a coroutine callback awaiting a
future) is submitted again as before.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Callable

import rclpy
from rclpy.executors import (
    ConditionReachedException,
    MultiThreadedExecutor,
    ShutdownException,
    TimeoutException,
)

try:
    from rclpy.executors import ExternalShutdownException
except ImportError:  # pragma: no cover - very old rclpy
    ExternalShutdownException = ShutdownException  # noqa: N816

_NOTHING_READY = (ExternalShutdownException, ShutdownException, TimeoutException, ConditionReachedException)


class SubmitOnceExecutor(MultiThreadedExecutor):
    """Drop-in MultiThreadedExecutor; ``requeue_wait_s`` bounds one wait for a queued task to start."""

    def __init__(self, num_threads: int | None = None, *, context=None, requeue_wait_s: float = 0.05) -> None:
        super().__init__(num_threads=num_threads, context=context)
        self.requeue_wait_s = float(requeue_wait_s)
        self._cv = threading.Condition()
        self._queued: dict = {}  # task -> entity: submitted, not started
        self._queued_entities: dict = {}  # entity -> its queued task
        self._running: set = set()  # started, handler not returned yet
        self.submitted = 0
        self.resubmits_avoided = 0
        self.duplicates_cancelled = 0

    def _spin_once_impl(self, timeout_sec=None, wait_condition=lambda: False) -> None:
        try:
            handler, entity, _node = self.wait_for_ready_callbacks(timeout_sec, None, wait_condition)
        except _NOTHING_READY:
            return
        with self._cv:
            if handler in self._queued or handler in self._running:
                self.resubmits_avoided += 1
                self._cv.wait_for(lambda: handler not in self._queued, timeout=self.requeue_wait_s)
                return
            earlier = self._queued_entities.get(entity) if entity is not None else None
            if earlier is not None:
                handler.cancel()  # the queued task takes this trigger when it starts
                self.duplicates_cancelled += 1
                self._cv.wait_for(lambda: earlier not in self._queued, timeout=self.requeue_wait_s)
                return
            self._queued[handler] = entity
            if entity is not None:
                self._queued_entities[entity] = handler
            self.submitted += 1
        self._executor.submit(self._run, handler)
        self._futures.append(handler)
        for future in self._futures[:]:
            if future.done():
                self._futures.remove(future)
                future.result()  # raise what a callback raised, as the base class does

    def _run(self, handler) -> None:
        with self._cv:
            entity = self._queued.pop(handler, None)
            if entity is not None and self._queued_entities.get(entity) is handler:
                del self._queued_entities[entity]
            self._running.add(handler)
            self._cv.notify_all()
        try:
            handler()
        finally:
            with self._cv:
                self._running.discard(handler)


@contextlib.contextmanager
def spinning(nodes, num_threads: int | None = 4, context=None):
    """``nodes`` spun by a :class:`SubmitOnceExecutor` on a daemon thread for the ``with`` block; the
    executor is shut down (callbacks finished) on exit. Yields the executor."""
    executor = SubmitOnceExecutor(num_threads=num_threads, context=context)
    for node in nodes:
        executor.add_node(node)
    thread = threading.Thread(target=executor.spin, name="ros-executor", daemon=True)
    thread.start()
    try:
        yield executor
    finally:
        executor.shutdown()
        thread.join(5)


def spin(nodes, num_threads: int = 4, on_stop: Callable[[], None] | None = None) -> None:
    """Spin ``nodes`` on one multi-threaded executor until Ctrl-C / shutdown, then release them
    (the ``main`` of every node process). ``on_stop`` runs first when spinning ends."""
    executor = SubmitOnceExecutor(num_threads=num_threads)
    for node in nodes:
        executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if on_stop is not None:
            on_stop()
        for node in nodes:
            if hasattr(node, "release"):
                node.release()
        executor.shutdown()
        for node in nodes:
            node.destroy_node()
        if hasattr(rclpy, "try_shutdown"):
            rclpy.try_shutdown()
        elif rclpy.ok():
            rclpy.shutdown()
