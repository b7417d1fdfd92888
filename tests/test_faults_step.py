"""Fault: an exception or a CUDA out-of-memory error inside a step (injected into the generator).

The failure is logged (/rosout), /diagnostics goes ERROR with the reason (it said OK "running"
before this test existed), the frame is dropped (no output carries its stamp), the next frame is
served, and the level returns to OK once STEP_ERROR_HOLD_S has passed without another failure.
"""

from __future__ import annotations

import contextlib
import json
import time

import pytest

rclpy = pytest.importorskip("rclpy")
torch = pytest.importorskip("torch")

from diagnostic_msgs.msg import DiagnosticStatus  # noqa: E402
from rcl_interfaces.msg import Log  # noqa: E402
from internvla_s2_node.ros.executor import spinning  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from std_msgs.msg import String  # noqa: E402

from internvla_s2_node.ros import outputs as out  # noqa: E402
from internvla_s2_node.ros import s2_diagnostics  # noqa: E402
from internvla_s2_node.ros import s2_node as s2  # noqa: E402
import ros_helpers as T  # noqa: E402
from internvla_s2_node.ros.qos import reliable_qos  # noqa: E402
from ros_domains import domain  # noqa: E402

pytestmark = pytest.mark.ros


DOMAIN_ID = domain("faults_step")


class FaultyGenerator(T.ScriptedGenerator):
    """Answers like ScriptedGenerator, except that call number ``n`` raises ``faults[n]``."""

    def __init__(self, answers, faults: dict[int, BaseException]) -> None:
        super().__init__(answers)
        self.faults = faults

    def generate(self, messages, images, keys):
        n = self.calls
        if n in self.faults:
            self.calls += 1
            raise self.faults[n]
        return super().generate(messages, images, keys)


@contextlib.contextmanager
def running(context, generator):
    base = T.scripted_engine_factory(["STOP"])

    def factory(cfg):
        engine = base(cfg)
        engine.generator = generator
        return engine

    node = s2.S2Node(engine_factory=factory, context=context,
                     parameter_overrides=[Parameter("resize_w", value=56), Parameter("resize_h", value=56),
                                          Parameter("diagnostics_period_s", value=0.2)])
    probe = T.Probe(context=context)
    logs: list[Log] = []
    probe.create_subscription(Log, "/rosout", logs.append, 200)
    probe.decisions = []
    probe.create_subscription(String, "/s2_node/decision", lambda m: probe.decisions.append(json.loads(m.data)),
                              reliable_qos(50))
    try:
        with spinning([node, probe], context=context):
            assert T.wait_for(lambda: node._active and probe.matched(), 15)
            assert T.wait_for(lambda: all(probe.count_publishers(f"/s2_node/{t}") > 0 for t in ("actions", "decision"))
                              and probe.count_publishers("/rosout") > 0, 10)
            yield node, probe, logs
    finally:
        node.release()
        node.destroy_node()
        probe.destroy_node()


def step_once(probe, generator, node, timeout: float = 15.0) -> float:
    """Send one frame (again only if DDS lost it) and wait until the generator is called for it; returns its stamp.

    Only one frame is ever in flight, so a slow step never lets a second frame take the next scripted call.
    """
    before, received = generator.calls, node._counters.get("frames_received")
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        stamp = round(time.time(), 6)
        probe.send_frame(stamp)
        if T.wait_for(lambda: node._counters.get("frames_received") > received, 1.0, period=0.01):
            assert T.wait_for(lambda: generator.calls > before, timeout, period=0.01), "the node did not step"
            return stamp
    raise AssertionError("the node received no frame")


def outputs_with(probe, stamp: float) -> list:
    """Decisions (``~/decision`` JSON: every decision, whatever its kind) stamped with ``stamp``."""
    return [d for d in list(probe.decisions) if abs(d["stamp"]["sec"] + d["stamp"]["nanosec"] * 1e-9 - stamp) < 1e-6]


def level_of(arr) -> tuple[int, str, dict]:
    s = next(s for s in arr.status if s.name.endswith("s2_node"))
    return out.level_value(s.level), s.message, {kv.key: kv.value for kv in s.values}


def test_exception_and_cuda_oom_in_a_step(monkeypatch):
    monkeypatch.setattr(s2_diagnostics, "STEP_ERROR_HOLD_S", 1.5)
    oom = torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
    generator = FaultyGenerator(["\u2191"], {1: RuntimeError("injected failure in the model"), 3: oom})
    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=DOMAIN_ID)
    try:
        with running(ctx, generator) as (node, probe, logs):
            probe.instruct("go forward")
            assert T.wait_for(lambda: node._instruction, 5)
            ok1 = step_once(probe, generator, node)  # call 0: served
            assert T.wait_for(lambda: outputs_with(probe, ok1), 15)
            assert probe.wait_diagnostics(lambda d: d["_message"] == "running", 15)

            bad1 = step_once(probe, generator, node)  # call 1: RuntimeError
            assert T.wait_for(lambda: node._counters.get("errors") == 1, 15)
            diag = probe.wait_diagnostics(lambda d: "injected failure" in d["_message"], 15)
            assert diag and "RuntimeError" in diag["last_error"] and diag["errors"] == "1"
            assert any(level_of(a)[0] == out.level_value(DiagnosticStatus.ERROR) and "injected failure" in level_of(a)[1]
                       for a in probe.get("diagnostics"))
            ok2 = step_once(probe, generator, node)  # call 2: the next frame is served
            assert T.wait_for(lambda: outputs_with(probe, ok2), 15)

            bad2 = step_once(probe, generator, node)  # call 3: CUDA out of memory
            assert T.wait_for(lambda: node._counters.get("errors") == 2, 15)
            diag = probe.wait_diagnostics(lambda d: "OutOfMemoryError" in d["_message"], 15)
            assert diag and "CUDA out of memory" in diag["last_error"]
            assert any(level_of(a)[0] == out.level_value(DiagnosticStatus.ERROR) and "OutOfMemoryError" in level_of(a)[1]
                       for a in probe.get("diagnostics"))
            ok3 = step_once(probe, generator, node)  # call 4: served again
            assert T.wait_for(lambda: outputs_with(probe, ok3), 15)

            time.sleep(0.5)  # late outputs would have arrived by now
            assert outputs_with(probe, bad1) == [] and outputs_with(probe, bad2) == []  # dropped frames
            assert [d["actions"] for d in probe.decisions] == [[1]] * 3
            assert [list(m.data) for m in probe.get("actions")] == [[1]] * 3
            warned = [m.msg for m in logs if m.level >= Log.WARN and "step failed" in m.msg]
            assert any("RuntimeError: injected failure" in m for m in warned), [m.msg for m in logs][-10:]
            assert any("OutOfMemoryError: CUDA out of memory" in m for m in warned), warned
            # no new failure for STEP_ERROR_HOLD_S: OK again, the counters keep the history
            diag = probe.wait_diagnostics(lambda d: d["_message"] == "running", 5)
            assert diag and diag["errors"] == "2" and "OutOfMemoryError" in diag["last_error"]
            assert node._active and node._state_label == "active"
    finally:
        rclpy.shutdown(context=ctx)
