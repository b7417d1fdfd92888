"""s2_node in-process over real DDS (localhost), with the real S2Engine and a scripted generator.

The generator answers from a script instead of a model, so stamps, frames, types,
look-down handling, dropping and rejection are checked deterministically. The real
tiny model runs in tests/test_ros_s2_process.py.
"""

from __future__ import annotations

import contextlib
import json
import math
import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")

from internvla_s2_node.ros.executor import spinning  # noqa: E402
from rclpy.lifecycle import TransitionCallbackReturn  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from std_msgs.msg import String  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402

from internvla_s2_node.ros import outputs as out  # noqa: E402
import ros_helpers as T  # noqa: E402
from internvla_s2_node.ros.s2_node import S2Node  # noqa: E402
from ros_domains import domain  # noqa: E402

pytestmark = pytest.mark.ros
DOMAIN_ID = domain("ros_node")
SMALL = [Parameter("resize_w", value=56), Parameter("resize_h", value=56)]


@pytest.fixture(scope="module")
def context():
    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=DOMAIN_ID)
    yield ctx
    rclpy.shutdown(context=ctx)


@contextlib.contextmanager
def running(context, answers, params=(), delay_s=0.0, compressed=False):
    node = S2Node(engine_factory=T.scripted_engine_factory(answers, delay_s), context=context,
                  parameter_overrides=SMALL + list(params))
    probe = T.Probe(context=context, compressed=compressed)
    try:
        with spinning([node, probe], context=context):
            # The lifecycle state too: _active is set inside on_activate, before the transition completes,
            # and a trigger_* from the test during the transition would be rejected.
            assert T.wait_for(lambda: node._active and node._state_machine.current_state[1] == "active" and probe.matched(), 15), \
                "node did not come up / match"
            yield node, probe
    finally:
        node.release()
        node.destroy_node()
        probe.destroy_node()


def send(probe, n, period=0.03, **kw):
    stamps = []
    for _ in range(n):
        stamps.append(round(time.time(), 6))
        probe.send_frame(stamps[-1], **kw)
        time.sleep(period)
    return stamps


def settle(node, quiet_s=0.3, timeout=5.0) -> None:
    """Wait until no more frames arrive (DDS may deliver the last ones late on a busy machine)."""
    last, end = -1, time.monotonic() + timeout
    while time.monotonic() < end:
        n = node._counters.get("frames_received")
        if n == last:
            return
        last = n
        time.sleep(quiet_s)


def stamp_of(msg) -> float:
    return msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9


def close_to_any(t, stamps):
    return any(abs(t - s) < 1e-6 for s in stamps)


def test_actions_waypoint_pixel_goal_stamped_with_their_image(context):
    with running(context, ["↑←", "20,30"]) as (node, probe):
        debug = []
        probe.create_subscription(Image, "/s2_node/debug_image", debug.append, 10)
        probe.instruct("walk to the sofa")
        assert T.wait_for(lambda: node._instruction, 5)
        stamps = send(probe, 12, period=0.06)
        assert T.wait_for(lambda: probe.get("actions") and probe.get("waypoint") and debug, 5)
        actions, waypoints, pixels = probe.get("actions"), probe.get("waypoint"), probe.get("pixel_goal")
        assert list(actions[0].data) == [1, 2]
        for wp in waypoints:
            assert wp.header.frame_id == "odom" and close_to_any(stamp_of(wp), stamps)
            p, q = wp.pose.position, wp.pose.orientation
            assert T.finite([p.x, p.y, p.z, q.x, q.y, q.z, q.w])
            assert p.x > 0  # in front of the robot (camera looks along +x)
        for px in pixels:
            assert px.header.frame_id == "camera_optical" and close_to_any(stamp_of(px), stamps)
            # the model answered (20, 30) in its 56x56 input; published in camera pixels (64x48)
            assert px.point.x == pytest.approx(20 * 64 / 56) and px.point.y == pytest.approx(30 * 48 / 56)
        assert {m.data for m in probe.get("raw_output")} <= {"↑←", "20,30"}
        assert debug[0].encoding == "rgb8" and (debug[0].width, debug[0].height) == (64, 48)
        diag = probe.wait_diagnostics(lambda d: int(d["inferences"]) >= 2)
        assert diag and diag["backbone"] == "scripted" and diag["_message"] == "running"
        assert float(diag["step_latency_ms"]) >= 0 and float(diag["frame_age_ms"]) >= 0


def test_new_instruction_and_reset_service_start_new_episodes(context):
    with running(context, ["↑"]) as (node, probe):
        probe.instruct("go to the door")
        assert T.wait_for(lambda: node._episode == 1, 5)
        send(probe, 8)
        assert T.wait_for(lambda: len(node._engine.history) >= 6, 5)
        settle(node)
        probe.instruct("now go to the kitchen")
        assert T.wait_for(lambda: node._episode == 2, 5)
        assert len(node._engine.history) <= 1 and node._engine.instruction == "now go to the kitchen"
        send(probe, 4)
        assert T.wait_for(lambda: len(node._engine.history) >= 3, 5)
        settle(node)
        client = probe.create_client(Trigger, "/s2_node/reset")
        assert client.wait_for_service(timeout_sec=5)
        future = client.call_async(Trigger.Request())
        assert T.wait_for(future.done, 5) and future.result().success
        assert node._episode == 3 and len(node._engine.history) == 0
        assert node._engine.instruction == "now go to the kitchen"


def test_slow_model_drops_frames_and_stays_bounded(context):
    params = [Parameter("inference_delay_s", value=0.25), Parameter("history_capacity", value=16),
              Parameter("num_history", value=4)]
    with running(context, ["←"], params=params) as (node, probe):
        probe.instruct("turn around")
        assert T.wait_for(lambda: node._instruction, 5)
        pending = []
        t0 = time.monotonic()
        for _ in range(75):  # 2.5 s at 30 Hz
            probe.send_frame(time.time())
            pending.append(len(node._slot))
            time.sleep(1 / 30)
        elapsed = time.monotonic() - t0
        time.sleep(0.6)
        assert max(pending) <= 1 and len(node._slot) <= 1
        assert node._engine.history.kept <= 16 + 1 and len(node._depth) <= 10 and len(node._odom) <= 2.0 * 30 + 5
        received, dropped = node._counters.get("frames_received"), node._slot.dropped
        inferences = node._counters.get("inferences")
        assert received >= 50, "subscription callbacks fell behind at 30 Hz"
        assert inferences <= elapsed / 0.25 + 2 and inferences >= 4
        assert dropped >= received - inferences - 3 > 0
        assert probe.wait_diagnostics(lambda d: int(d["frames_dropped"]) > 0)


def test_max_frame_age_skips_frames_that_waited_for_the_model(context):
    """With max_frame_age_s, a step starts only on a frame that did not wait long for the model."""
    params = [Parameter("inference_delay_s", value=0.15), Parameter("max_frame_age_s", value=0.02)]
    with running(context, ["←"], params=params) as (node, probe):
        probe.instruct("turn around")
        assert T.wait_for(lambda: node._instruction, 5)
        send(probe, 30, period=0.1)  # 10 Hz: every step ends with a frame already waiting
        settle(node)
        assert T.wait_for(lambda: len(probe.get("decision")) >= 3, 5)
        queued = [json.loads(m.data)["queue_s"] for m in probe.get("decision")]
        too_old = node._counters.get("frames_too_old")
        assert too_old >= 3 and node._counters.get("inferences") >= 3
        assert all(q is not None and q <= 0.02 for q in queued), queued
        assert probe.wait_diagnostics(lambda d: int(d["frames_too_old"]) == too_old)


def test_decision_trace_splits_the_frames_time_in_path_order(context):
    """~/decision's trace: the frame's time split into callback arrival, conversion, history, pairing, outputs;
    the message is sent after all of it (wall clock of the same host as the frame's stamp)."""
    with running(context, ["↑"], params=[Parameter("inference_delay_s", value=0.05)]) as (node, probe):
        probe.instruct("explore")
        assert T.wait_for(lambda: node._instruction == "explore", 5)
        probe.send_frame(time.time())
        assert T.wait_for(lambda: len(probe.get("decision")) >= 1, 5)
        d = json.loads(probe.get("decision")[0].data)
        trace, stamp = d["trace"], d["stamp"]["sec"] + d["stamp"]["nanosec"] * 1e-9
        for key in ("in_s", "convert_s", "record_s", "depth_convert_s", "pair_s", "outputs_s"):
            assert 0.0 <= trace[key] < 1.0, (key, trace)
        assert trace["in_s"] >= trace["depth_convert_s"]  # depth is converted before its color frame arrives
        assert abs(d["intake_s"] - trace["convert_s"] - trace["record_s"]) < 1e-3
        inside = trace["in_s"] + d["intake_s"] + d["queue_s"] + trace["pair_s"] + 0.05 + d["step_s"] + trace["outputs_s"]
        assert inside <= trace["sent_unix"] - stamp + 2e-3 < inside + 0.5


def test_malformed_input_is_skipped_and_node_keeps_serving(context):
    with running(context, ["↑"]) as (node, probe):
        probe.instruct("explore")
        assert T.wait_for(lambda: node._instruction == "explore", 5)
        now = time.time()
        bad_encoding = T.color_msg(now)
        bad_encoding.encoding = "yuv422"
        short = T.color_msg(now)
        short.data = bytes(short.data)[:-10]
        empty = T.color_msg(now)
        empty.data = b""
        nan_depth = T.depth_msg(now, metres=float("nan"))
        zero_focal = T.camera_info_msg(now)
        zero_focal.k = [0.0] * 9
        for msg in (bad_encoding, short, empty):
            probe.image_pub.publish(msg)
        probe.depth_pub.publish(nan_depth)
        probe.info_pub.publish(zero_focal)
        probe.instruction_pub.publish(String(data="   "))
        time.sleep(0.3)  # the instruction topic keeps only the newest message
        probe.instruction_pub.publish(String(data="x" * 10_000))
        expected = {"rejected_image": 3, "rejected_depth": 1, "rejected_camera_info": 1, "rejected_instruction": 2}
        assert T.wait_for(lambda: all(node._counters.get(k) >= v for k, v in expected.items()), 5), \
            node._counters.snapshot()
        assert node._instruction == "explore" and node._episode == 1
        probe.clear()
        send(probe, 5)
        assert T.wait_for(lambda: probe.get("actions"), 5), "node stopped serving after bad input"
        diag = probe.wait_diagnostics(lambda d: int(d["frames_rejected"]) >= 7)
        assert diag and diag["last_rejected_input"]


def test_compressed_images(context):
    with running(context, ["→"], params=[Parameter("use_compressed", value=True)], compressed=True) as (node, probe):
        probe.instruct("go")
        assert T.wait_for(lambda: node._instruction, 5)
        for _ in range(5):
            t = time.time()
            probe.odom_pub.publish(T.odom_msg(t))
            probe.image_pub.publish(T.compressed_msg(t))
            time.sleep(0.05)
        assert T.wait_for(lambda: probe.get("actions"), 5)
        assert list(probe.get("actions")[0].data) == [3]


def test_look_down_command_mode_uses_next_frame_unrecorded(context):
    params = [Parameter("look_down_mode", value="command")]
    with running(context, ["↓", "5,40"], params=params) as (node, probe):
        probe.instruct("find the chair")
        assert T.wait_for(lambda: node._instruction, 5)
        stamps = send(probe, 1)
        assert T.wait_for(lambda: probe.get("actions"), 5)
        assert list(probe.get("actions")[0].data) == [5]
        assert T.wait_for(lambda: node._look_down_wait, 2)
        recorded = len(node._engine.history)
        look_stamps = send(probe, 1)
        assert T.wait_for(lambda: probe.get("pixel_goal"), 5)
        goal = probe.get("pixel_goal")[0]
        assert close_to_any(stamp_of(goal), look_stamps) and not close_to_any(stamp_of(goal), stamps)
        assert (goal.point.x, goal.point.y) == (5.0, 40.0)  # look-down answers are in camera pixels
        assert len(node._engine.history) == recorded  # the look-down frame is not history


def test_a_second_look_down_tilts_the_third_turns_camera_pose_twice(context):
    """A '↓' answered on the look-down turn (upstream's evaluator tilts to 60 deg and asks a third turn,
    InternNav habitat_vln_evaluator.py:823-828, 877-880, 731-739): the node publishes LOOK_DOWN again and
    poses the next frame's camera with 2 x look_down_pitch."""
    params = [Parameter("look_down_mode", value="command")]
    with running(context, ["↓", "↓", "5,40"], params=params) as (node, probe):
        probe.instruct("find the chair")
        assert T.wait_for(lambda: node._instruction, 5)
        poses = []
        step = node._engine.step
        node._engine.step = lambda frame, index=None: poses.append(frame.t_odom_optical) or step(frame, index)
        for n in (1, 2):
            send(probe, 1)
            assert T.wait_for(lambda: len(probe.get("actions")) == n and node._look_down_wait, 5), n
            assert list(probe.get("actions")[-1].data) == [5]
        send(probe, 1)
        assert T.wait_for(lambda: probe.get("pixel_goal"), 5)
        pitch = node._p["look_down_pitch"]
        forward_z = [float(pose[2, 2]) for pose in poses]  # odometry z of the optical axis: -sin(pitch)
        assert forward_z == pytest.approx([0.0, -math.sin(pitch), -math.sin(2 * pitch)], abs=1e-6)
        assert probe.get("raw_output")[-1].data == "↓\n↓\n5,40"


def test_millimetre_depth_gives_the_waypoint_of_metres(context):
    """16UC1 depth stays integers in the node (``MillimetreDepth``) until the projection reads it: the
    waypoint is the one a 32FC1 image of the same metres gives."""
    positions = {}
    for encoding in ("32FC1", "16UC1"):
        with running(context, ["20,30"]) as (node, probe):
            probe.instruct("walk to the sofa")
            assert T.wait_for(lambda: node._instruction, 5)
            send(probe, 6, period=0.06, depth_encoding=encoding)
            assert T.wait_for(lambda: probe.get("waypoint"), 5)
            p = probe.get("waypoint")[0].pose.position
            positions[encoding] = (p.x, p.y, p.z)
    assert positions["16UC1"] == pytest.approx(positions["32FC1"], abs=1e-6)
    assert positions["16UC1"][0] > 0


def test_far_waypoint_is_withheld_and_reported(context):
    with running(context, ["20,30"], params=[Parameter("max_waypoint_distance", value=0.5)]) as (node, probe):
        probe.instruct("go far")
        assert T.wait_for(lambda: node._instruction, 5)
        send(probe, 4)
        assert T.wait_for(lambda: node._counters.get("waypoints_rejected") >= 1, 5)
        assert probe.get("waypoint") == [] and probe.get("pixel_goal")
        diag = probe.wait_diagnostics(lambda d: int(d["waypoints_rejected"]) >= 1)
        assert "max_waypoint_distance" in diag["last_no_decision"]


def test_lifecycle_parameters_rejected_while_loaded(context):
    with running(context, ["STOP"]) as (node, probe):
        result = node.set_parameters([Parameter("model_path", value="/elsewhere")])[0]
        assert not result.successful and "unconfigured" in result.reason
        assert node.set_parameters([Parameter("max_waypoint_distance", value=3.0)])[0].successful
        assert not node.set_parameters([Parameter("look_down_mode", value="sideways")])[0].successful
        assert node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
        assert node.trigger_cleanup() == TransitionCallbackReturn.SUCCESS
        assert node._engine is None
        assert node.set_parameters([Parameter("model_path", value="/elsewhere")])[0].successful
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert node._engine is not None and node._engine.cfg.model_path == "/elsewhere"
        node.trigger_activate()
        probe.instruct("stop here")
        send(probe, 3)
        assert T.wait_for(lambda: probe.get("actions"), 5)
        assert list(probe.get("actions")[0].data) == [0]
        assert probe.wait_diagnostics(lambda d: d["state"] == "active" and math.isfinite(float(d["episode"])))


def test_frames_without_depth_or_odometry_give_pixel_goals_only(context):
    with running(context, ["20,30"]) as (node, probe):
        probe.instruct("go")
        assert T.wait_for(lambda: node._instruction, 5)
        send(probe, 3, depth=False, odom=False)
        assert T.wait_for(lambda: probe.get("pixel_goal"), 5)
        assert probe.get("waypoint") == []
        assert node._counters.get("decisions_pixel_goal") >= 1
        assert np.isfinite(probe.get("pixel_goal")[0].point.x)


def test_configure_fails_with_reasons_and_recovers(context):
    bad = [Parameter("autostart", value=False), Parameter("dtype", value="float8"),
           Parameter("num_history", value=32), Parameter("history_capacity", value=8)]
    node = S2Node(engine_factory=T.scripted_engine_factory(["STOP"], fail="/broken"), context=context,
                  parameter_overrides=SMALL + bad)
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
        assert "dtype must be one of" in node._load_error and node._engine is None
        node.set_parameters([Parameter("dtype", value="float32"), Parameter("history_capacity", value=64)])
        node.set_parameters([Parameter("model_path", value="/broken")])
        assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
        assert "cannot load model '/broken'" in node._load_error
        level, message = node._level()
        assert level == out.ERROR and "/broken" in message
        assert node.set_parameters([Parameter("model_path", value="/fine")])[0].successful
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS and node._load_error == ""
        assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS and node._state_label == "active"
    finally:
        node.release()
        node.destroy_node()


def test_look_down_requery_mode_answers_on_the_same_frame(context):
    with running(context, ["↓", "5,40"]) as (node, probe):
        probe.instruct("find the chair")
        assert T.wait_for(lambda: node._instruction, 5)
        stamps = send(probe, 4, period=0.1)  # the first messages after discovery may be lost (best effort)
        assert T.wait_for(lambda: probe.get("waypoint"), 5)
        wp = probe.get("waypoint")[0]
        goal = next(g for g in probe.get("pixel_goal") if g.header.stamp == wp.header.stamp)
        assert close_to_any(stamp_of(goal), stamps)
        assert (goal.point.x, goal.point.y) == (5.0, 40.0) and probe.get("actions") == []
        assert probe.get("raw_output")[0].data == "↓\n5,40"


def test_decision_and_diagnostics_say_which_path_answered(context):
    """Issue 14 item 1 in the node: while the fast path builds in the background the plain path answers
    (``path: plain`` on ~/decision and /diagnostics); once the build is done, the fast one does. Scripted
    generators stand in for both paths (the real switch is tested in tests/test_warm_start.py)."""
    import threading

    from internvla_s2_node.core.warm_start import BackgroundBuild

    class Plain(T.ScriptedGenerator):
        path = "plain"

    class Fast(T.ScriptedGenerator):
        path = "fast"

    gate = threading.Event()

    def factory(cfg):
        engine = T.scripted_engine_factory(["↑"])(cfg)
        engine.generator = Plain(["↑"])
        engine.fast_build = BackgroundBuild(lambda check: Fast(["←"]) if gate.wait(30) else None).start()
        return engine

    node = S2Node(engine_factory=factory, context=context, parameter_overrides=SMALL)
    probe = T.Probe(context=context)
    try:
        with spinning([node, probe], context=context):
            assert T.wait_for(lambda: node._active and probe.matched(), 15)
            probe.instruct("walk to the sofa")
            assert T.wait_for(lambda: node._instruction, 5)
            send(probe, 3, period=0.06)
            assert T.wait_for(lambda: len(probe.get("decision")) >= 2, 5)
            diag = probe.wait_diagnostics(lambda d: int(d["inferences"]) >= 2)
            assert (diag["path"], diag["generator"], diag["fast_path_build"]) == ("plain", "Plain", "building")
            gate.set()
            assert T.wait_for(lambda: node._engine.fast_build.done(), 5)
            settle(node)
            before = len(probe.get("decision"))
            send(probe, 3, period=0.06)
            assert T.wait_for(lambda: len(probe.get("decision")) >= before + 2, 5)
            decisions = [json.loads(m.data) for m in probe.get("decision")]
            assert {d["path"] for d in decisions[:before]} == {"plain"} and decisions[-1]["path"] == "fast"
            assert [d["actions"] for d in decisions if d["path"] == "fast"][0] == [2]  # the fast generator's answer
            diag = probe.wait_diagnostics(lambda d: d["path"] == "fast")
            assert diag["generator"] == "Fast" and diag["fast_path_build"] == "ready" and float(diag["fast_path_build_s"]) >= 0
    finally:
        node.release()
        node.destroy_node()
        probe.destroy_node()
