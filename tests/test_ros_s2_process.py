"""The installed ``s2_node`` executable in its own process with real tiny checkpoints, over real DDS.

Lifecycle through the lifecycle services: configure fails on a bad model_path (the
process stays up and says why), succeeds after fixing the parameter, the model is
swapped through deactivate/cleanup/configure, and frames in give stamped outputs.
The tiny checkpoints have random weights; copies with a generation-time token bias
(ros_helpers.biased_checkpoint) make the real load/generate/parse path answer a pixel
goal or FORWARD actions, so the plumbing is checked, not navigation.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import threading
import time

import pytest

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("transformers")

from diagnostic_msgs.msg import DiagnosticStatus  # noqa: E402
from lifecycle_msgs.msg import Transition  # noqa: E402
from lifecycle_msgs.srv import ChangeState, GetState  # noqa: E402
from rcl_interfaces.msg import Parameter as ParameterMsg  # noqa: E402
from rcl_interfaces.msg import ParameterType, ParameterValue  # noqa: E402
from rcl_interfaces.srv import SetParameters  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402

import ros_helpers as T  # noqa: E402
from ros_domains import domain  # noqa: E402

pytestmark = [pytest.mark.ros, pytest.mark.slow]


DOMAIN_ID = domain("ros_s2_process")
NODE = "/s2_node"


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    from internvla_s2_node.core.tiny import default_tiny_checkpoint

    src = default_tiny_checkpoint("qwen3_vl")
    root = tmp_path_factory.mktemp("biased")
    return {a: T.biased_checkpoint(src, root / a, a) for a in ("pixel", "forward")}


@pytest.fixture(scope="module")
def ros(tmp_path_factory):
    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=DOMAIN_ID)
    probe = T.Probe(context=ctx)
    executor = SingleThreadedExecutor(context=ctx)
    executor.add_node(probe)
    thread = threading.Thread(target=executor.spin, daemon=True)
    thread.start()
    yield probe
    executor.shutdown()
    probe.destroy_node()
    rclpy.shutdown(context=ctx)


def start_node(log: pathlib.Path, *ros_args: str) -> subprocess.Popen:
    exe = pathlib.Path(sys.executable).parent / "s2_node"
    env = dict(os.environ, ROS_DOMAIN_ID=str(DOMAIN_ID), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
               ROS_LOCALHOST_ONLY="1", OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    with open(log, "wb") as out:
        return subprocess.Popen([str(exe), "--ros-args", *ros_args], stdout=out, stderr=subprocess.STDOUT, env=env)


def call(probe, srv_type, name, request, timeout=30.0):
    client = probe.create_client(srv_type, name)
    try:
        assert client.wait_for_service(timeout_sec=15), f"{name} not available"
        future = client.call_async(request)
        assert T.wait_for(future.done, timeout), f"{name} timed out"
        return future.result()
    finally:
        probe.destroy_client(client)


def state(probe) -> str:
    return call(probe, GetState, f"{NODE}/get_state", GetState.Request()).current_state.label


def transition(probe, transition_id) -> bool:
    return call(probe, ChangeState, f"{NODE}/change_state", ChangeState.Request(transition=Transition(id=transition_id))).success


def set_param(probe, name, value):
    if isinstance(value, float):
        v = ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=value)
    else:
        v = ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=value)
    request = SetParameters.Request(parameters=[ParameterMsg(name=name, value=v)])
    return call(probe, SetParameters, f"{NODE}/set_parameters", request).results[0]


def rss_mb(pid: int) -> float:
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def stream(probe, seconds, hz=30.0):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        probe.send_frame(time.time())
        time.sleep(1 / hz)


def run_frames(probe, topic, n=100, period=0.1):
    stamps = []
    for _ in range(n):
        stamps.append(round(time.time(), 6))
        probe.send_frame(stamps[-1])
        if T.wait_for(lambda: probe.get(topic), period, period=0.02):
            break
    return stamps


def test_lifecycle_model_swap_and_stamped_outputs(ros, checkpoints, tmp_path):
    probe = ros
    log = tmp_path / "s2_node.log"
    proc = start_node(log, "-p", "model_path:=/nonexistent/checkpoint", "-p", "num_history:=2",
                      "-p", "device:=cpu", "-p", "max_new_tokens:=6", "-p", "history_capacity:=16")
    try:
        # 1. autostart's configure fails; the process stays up, unconfigured, and says why.
        diag = probe.wait_diagnostics(lambda d: "cannot load model" in d["last_error"], timeout=60)
        assert diag, log.read_text()[-3000:]
        assert proc.poll() is None and state(probe) == "unconfigured"
        assert any(s.level == DiagnosticStatus.ERROR for a in probe.get("diagnostics") for s in a.status)
        assert "configure failed" in log.read_text()

        # 2. fix the parameter, configure + activate through the lifecycle services.
        assert set_param(probe, "model_path", str(checkpoints["pixel"])).successful
        assert transition(probe, Transition.TRANSITION_CONFIGURE), log.read_text()[-3000:]
        assert state(probe) == "inactive"
        rejected = set_param(probe, "model_path", "/elsewhere")
        assert not rejected.successful and "unconfigured" in rejected.reason
        assert transition(probe, Transition.TRANSITION_ACTIVATE) and state(probe) == "active"

        # 3. frames in -> a waypoint stamped with its image, in the odometry frame.
        assert T.wait_for(probe.matched, 10)
        probe.instruct("go to the chair")
        stamps = run_frames(probe, "waypoint")
        wp = probe.get("waypoint")[0]
        t = wp.header.stamp.sec + wp.header.stamp.nanosec * 1e-9
        assert wp.header.frame_id == "odom" and any(abs(t - s) < 1e-6 for s in stamps)
        assert T.finite([wp.pose.position.x, wp.pose.position.y, wp.pose.position.z, wp.pose.orientation.w])
        goals = [g for g in probe.get("pixel_goal") if g.header.stamp == wp.header.stamp]
        assert goals and goals[0].header.frame_id == "camera_optical" and goals[0].point.z > 0  # z: depth (m)
        assert probe.get("raw_output")[0].data.startswith("1,1")
        diag = probe.wait_diagnostics(lambda d: d["backbone"] == "qwen3_vl" and int(d["inferences"]) >= 1, timeout=5)
        assert diag and diag["device"] == "cpu" and diag["_message"] == "running"

        # 4. a slow model (injected delay) under 30 Hz input: frames are dropped, nothing grows.
        assert set_param(probe, "inference_delay_s", 0.3).successful
        done = int(probe.diagnostics()["inferences"])
        for _ in range(8):  # warm up: history full, every prompt length seen once
            stream(probe, 1.0)
            if int(probe.diagnostics()["inferences"]) >= done + 4:
                break
        before = rss_mb(proc.pid)
        stream(probe, 3.0)
        grown = rss_mb(proc.pid) - before  # history is capped at 16 frames (7 MB): no growth with frames
        diag = probe.wait_diagnostics(lambda d: int(d["frames_dropped"]) > 30 and int(d["frames_pending"]) <= 1)
        # frames kept arriving (best-effort delivery on a loaded host passes a varying share) and RSS did not grow
        assert diag and int(diag["history_frames"]) > 30 and grown < 40, (grown, diag)
        assert set_param(probe, "inference_delay_s", 0.0).successful

        # 5. swap the model: deactivate, cleanup (frees it), set, configure, activate.
        for tr in (Transition.TRANSITION_DEACTIVATE, Transition.TRANSITION_CLEANUP):
            assert transition(probe, tr)
        assert state(probe) == "unconfigured" and "model released" in log.read_text()
        assert set_param(probe, "model_path", str(checkpoints["forward"])).successful
        for tr in (Transition.TRANSITION_CONFIGURE, Transition.TRANSITION_ACTIVATE):
            assert transition(probe, tr)
        probe.clear()
        run_frames(probe, "actions")
        assert set(probe.get("actions")[0].data) == {1}  # FORWARD only
    finally:
        code = T.stop_process(proc)
    assert code == 0, log.read_text()[-3000:]
