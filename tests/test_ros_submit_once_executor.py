"""SubmitOnceExecutor: a callback queued behind busy workers is submitted once and does not spin the executor."""

from __future__ import annotations

import threading
import time

import pytest

rclpy = pytest.importorskip("rclpy")

from rclpy.callback_groups import ReentrantCallbackGroup  # noqa: E402
from rclpy.node import Node  # noqa: E402

import ros_helpers as T  # noqa: E402
from internvla_s2_node.ros.executor import SubmitOnceExecutor  # noqa: E402
from ros_domains import domain  # noqa: E402

pytestmark = pytest.mark.ros


DOMAIN_ID = domain("ros_submit_once_executor")


def _blocked_pool(executor_cls):
    """One worker held by callback A while callback B waits in the pool's queue for 1 s, and the
    executor is woken 1000 times a second meanwhile (as arriving messages and other callbacks do).

    Returns (process CPU seconds during that second, pool submissions, times B ran, times A ran, executor)."""
    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=DOMAIN_ID)
    node = Node("submit_once_probe", context=ctx)
    group = ReentrantCallbackGroup()
    release = threading.Event()
    ran = {"a": 0, "b": 0}

    def a():
        ran["a"] += 1
        release.wait(5)

    def b():
        ran["b"] += 1

    gc_a = node.create_guard_condition(a, callback_group=group)
    gc_b = node.create_guard_condition(b, callback_group=group)
    executor = executor_cls(num_threads=1, context=ctx)
    executor.add_node(node)
    submissions = []
    real_submit = executor._executor.submit
    executor._executor.submit = lambda fn, *args: submissions.append(fn) or real_submit(fn, *args)
    thread = threading.Thread(target=executor.spin, daemon=True)
    thread.start()
    try:
        gc_a.trigger()
        assert T.wait_for(lambda: ran["a"] == 1, 5)
        gc_b.trigger()
        time.sleep(0.1)
        before = len(submissions)
        c0 = time.process_time()
        end = time.monotonic() + 1.0
        while time.monotonic() < end:
            executor.wake()
            time.sleep(0.001)
        cpu = time.process_time() - c0
        during = len(submissions) - before
        release.set()
        assert T.wait_for(lambda: ran["b"] >= 1, 5)
        time.sleep(0.2)
        return cpu, during, ran["b"], ran["a"], executor
    finally:
        release.set()
        executor.shutdown()
        thread.join(5)
        node.destroy_node()
        rclpy.shutdown(context=ctx)


def test_queued_callback_is_submitted_once_and_the_spin_thread_idles():
    cpu, during, b_runs, a_runs, executor = _blocked_pool(SubmitOnceExecutor)
    assert b_runs == 1 and a_runs == 1
    # rclpy's stock MultiThreadedExecutor (Kilted 9.1.2) submits B again at every wake-up here
    # (4763 times in 1 s) and then runs B's callback 97 times for its one trigger.
    assert during == 0, f"B was submitted {during} more times while it waited for a worker"
    assert executor.resubmits_avoided + executor.duplicates_cancelled >= 1
    assert cpu < 0.5, f"{cpu:.2f} s CPU in 1 s while the pool was full"


def test_callback_exceptions_still_reach_spin():
    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=DOMAIN_ID)
    node = Node("submit_once_raise", context=ctx)

    def boom():
        raise RuntimeError("callback failed")

    gc = node.create_guard_condition(boom)
    executor = SubmitOnceExecutor(num_threads=2, context=ctx)
    executor.add_node(node)
    try:
        gc.trigger()
        with pytest.raises(RuntimeError, match="callback failed"):
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                executor.spin_once(timeout_sec=0.1)
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.shutdown(context=ctx)
