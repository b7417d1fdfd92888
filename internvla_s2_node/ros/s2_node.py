"""``s2_node``: the InternVLA-N1 System-2 policy as a ROS 2 lifecycle node.

Data flow (logic lives in ``pipeline``, ``conversions``, ``outputs``, ``params``):

* input group (MutuallyExclusive): color/depth/camera-info/odometry/instruction
  callbacks. The color callback decodes the frame, records it in the episode
  history (``engine.observe``) and puts it in a 1-slot holder (newest wins; an
  overwritten frame counts as dropped), then wakes the worker.
* inference group (MutuallyExclusive): a guard-condition callback takes the slot,
  pairs the frame with the nearest depth and odometry, runs ``engine.step`` and
  publishes. While it runs, newer frames only replace the slot: no queue grows.
* default group: lifecycle services, parameters, ``~/reset``, diagnostics.

Lifecycle: configure validates parameters and loads the model (failure -> FAILURE
with the reason logged and on /diagnostics; the process stays up), activate starts
processing/publishing, deactivate stops it (waits for the step in flight and empties
the CUDA cache), cleanup/shutdown close the engine (model and GPU memory freed).
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any, Callable

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PointStamped, PoseStamped
from nav_msgs.msg import Odometry
from rcl_interfaces.msg import SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.lifecycle import Node as LifecycleNode
from rclpy.lifecycle import State, TransitionCallbackReturn
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header, String, UInt8MultiArray
from std_srvs.srv import Trigger

from ..core.geometry import camera_extrinsic
from ..core.images import InvalidFrame
from ..core.types import DecisionKind, Frame
from . import conversions as conv
from . import outputs as out
from . import params
from .executor import SubmitOnceExecutor
from .pipeline import Counters, LatencyStats, LatestSlot, LogThrottle, PendingFrame, RequestMatcher, StampedBuffer
from .qos import incompatible_qos_hint, latched_qos, reliable_qos, sensor_qos

SUCCESS, FAILURE = TransitionCallbackReturn.SUCCESS, TransitionCallbackReturn.FAILURE
DIAG_NAME = "internvla_s2: s2_node"
DEPTH_BUFFER_LEN = 10
STEP_ERROR_HOLD_S = 10.0  # /diagnostics stays ERROR this long after a failed step
INSTRUCTION_HINT = ("instructions must be published reliable + transient local, e.g. "
                    "ros2 topic pub --once --qos-reliability reliable --qos-durability transient_local "
                    "/instruction std_msgs/msg/String \"data: 'go to the kitchen'\"")


def default_engine_factory(cfg):
    """Load the real engine (torch/transformers are imported only here)."""
    from ..core.engine import S2Engine

    return S2Engine(cfg)


def free_accelerator_memory() -> None:
    """Free cached accelerator memory (torch is imported only when the node needs it)."""
    from ..core.backbone import free_accelerator_memory as free

    free()


def stamp_key(stamp) -> int:
    """A message stamp as integer nanoseconds (exact, unlike float seconds)."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def instruction_problem(text: str, max_chars: int) -> str:
    if not text or not text.strip():
        return "instruction is empty"
    if len(text) > max_chars:
        return f"instruction has {len(text)} characters, more than max_instruction_chars {max_chars}"
    return ""


class S2Node(LifecycleNode):
    def __init__(self, node_name: str = "s2_node", *, engine_factory: Callable | None = None, **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        params.declare(self, params.S2_SPECS)
        self._specs = params.specs_by_name(params.S2_SPECS)
        self._p = params.values(self, params.S2_SPECS)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._engine_factory = engine_factory or default_engine_factory
        self._init_state()
        self._input_group = MutuallyExclusiveCallbackGroup()
        self._infer_group = MutuallyExclusiveCallbackGroup()
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", reliable_qos(10))
        self.create_timer(self._p["diagnostics_period_s"], self.publish_diagnostics)
        self.create_service(Trigger, "~/reset", self._on_reset)
        self._wake = self.create_guard_condition(self._infer_once, callback_group=self._infer_group)
        self._autostart_timer = self.create_timer(0.05, self._autostart) if self._p["autostart"] else None

    def _init_state(self) -> None:
        self._engine = None
        self._engine_info: dict[str, str] = {}
        self._engine_lock = threading.Lock()  # step vs close
        self._frame_lock = threading.Lock()  # look-down flag vs slot
        self._state_label = "unconfigured"
        self._active = False
        self._load_error = ""
        self._instruction: str | None = None
        self._episode = 0
        self._look_down_wait = False
        self._last_observed: float | None = None
        self._slot: LatestSlot[PendingFrame] = LatestSlot()
        self._requests: RequestMatcher[PendingFrame] = RequestMatcher()
        self._odom: StampedBuffer = StampedBuffer(self._p["odom_buffer_s"])
        self._depth: StampedBuffer = StampedBuffer(self._p["odom_buffer_s"], maxlen=DEPTH_BUFFER_LEN)
        self._camera: tuple[np.ndarray, tuple[int, int]] | None = None
        self._counters = Counters()
        self._latency, self._frame_age = LatencyStats(), LatencyStats()
        self._throttle = LogThrottle(5.0)
        self._last_reject = self._last_none = ""
        self._step_error_at: float | None = None  # monotonic time of the last failed step
        self._subs: list = []
        self._pubs: dict[str, Any] = {}

    # ------------------------------------------------------------ parameters
    def _on_set_parameters(self, changes) -> SetParametersResult:
        for p in changes:
            reason = params.check_change(self._specs.get(p.name), p.value, self._engine is not None, self._state_label)
            if reason:
                self.get_logger().warn(f"rejected parameter change: {reason}")
                return SetParametersResult(successful=False, reason=reason)
        for p in changes:
            if p.name in self._specs:
                self._p[p.name] = p.value
        self._odom.horizon_s = self._depth.horizon_s = self._p["odom_buffer_s"]
        return SetParametersResult(successful=True)

    def _config_problems(self) -> list[str]:
        problems = [r for s in params.S2_SPECS if (r := params.check_value(s, self._p[s.name]))]
        if not problems:
            try:
                params.engine_config(self._p)
            except ValueError as exc:
                problems.append(str(exc))
        return problems

    # ------------------------------------------------------------ lifecycle
    def _autostart(self) -> None:
        self._autostart_timer.cancel()
        self.destroy_timer(self._autostart_timer)
        if self.trigger_configure() == SUCCESS:
            self.trigger_activate()

    def on_configure(self, state: State) -> TransitionCallbackReturn:
        problems = self._config_problems()
        if problems:
            return self._fail_configure("invalid parameters: " + "; ".join(problems))
        cfg = params.engine_config(self._p)
        self.get_logger().info(f"loading model {cfg.model_path!r} (device {cfg.device}, dtype {cfg.dtype})")
        try:
            engine = self._engine_factory(cfg)
        except Exception as exc:  # any loader error must leave the node up and unconfigured
            free_accelerator_memory()
            return self._fail_configure(f"cannot load model {cfg.model_path!r}: {type(exc).__name__}: {exc}")
        self._engine, self._load_error = engine, ""
        self._engine_info = dict(getattr(engine, "info", {}) or {})
        self._create_io()
        if self._instruction:
            self._apply_instruction(self._instruction)
        self._state_label = "inactive"
        self.get_logger().info("model loaded: " + ", ".join(f"{k}={v}" for k, v in self._engine_info.items()))
        return SUCCESS

    def _fail_configure(self, reason: str) -> TransitionCallbackReturn:
        self._load_error = reason
        self._counters.error(reason)
        self.get_logger().error(f"configure failed: {reason}")
        self.publish_diagnostics()
        return FAILURE

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        self._slot.clear()
        self._active, self._state_label = True, "active"
        self.get_logger().info("active: processing frames")
        return SUCCESS

    def on_deactivate(self, state: State) -> TransitionCallbackReturn:
        self._stop_processing()
        self._state_label = "inactive"
        return SUCCESS

    def on_cleanup(self, state: State) -> TransitionCallbackReturn:
        self.release()
        return SUCCESS

    def on_shutdown(self, state: State) -> TransitionCallbackReturn:
        self.release()
        return SUCCESS

    def on_error(self, state: State) -> TransitionCallbackReturn:
        self.get_logger().error("error processing: releasing the model")
        self.release()
        return SUCCESS

    def _stop_processing(self) -> None:
        self._active = False
        with self._frame_lock:
            self._slot.clear()
            self._requests.clear()
            self._look_down_wait = False
        with self._engine_lock:  # waits for the step in flight, whose result is then dropped
            pass
        free_accelerator_memory()

    def release(self) -> None:
        """Stop, destroy topics and close the engine (frees the model and GPU memory). Idempotent."""
        self._stop_processing()
        self._destroy_io()
        with self._engine_lock:
            engine, self._engine = self._engine, None
        if engine is not None:
            engine.close()
            if self.context.ok():  # after Ctrl-C the context is gone and rosout with it
                self.get_logger().info("model released")
        free_accelerator_memory()
        self._state_label = "unconfigured"

    # ------------------------------------------------------------ topics
    def _create_io(self) -> None:
        g, sq = self._input_group, sensor_qos()
        color_type = CompressedImage if self._p["use_compressed"] else Image
        self._subs = [  # image last: when several are ready at once, depth/odometry go first
            self.create_subscription(String, "instruction", self._on_instruction, latched_qos(), callback_group=g,
                                     event_callbacks=incompatible_qos_hint(self.get_logger(), "instruction", INSTRUCTION_HINT)),
            self.create_subscription(CameraInfo, "camera_info", self._on_camera_info, sq, callback_group=g),
            self.create_subscription(Odometry, "odom", self._on_odom, sq, callback_group=g),
            self.create_subscription(Image, "depth", self._on_depth, sq, callback_group=g),
            self.create_subscription(color_type, "image", self._on_color, sq, callback_group=g),
        ]
        if self._p["decision_mode"] == "on_request":
            self._subs.append(self.create_subscription(Header, "~/decide", self._on_decide, reliable_qos(10), callback_group=g))
        rq = reliable_qos(10)
        self._pubs = {
            "waypoint": self.create_publisher(PoseStamped, "~/waypoint", rq),
            "pixel_goal": self.create_publisher(PointStamped, "~/pixel_goal", rq),
            "actions": self.create_publisher(UInt8MultiArray, "~/actions", rq),
            "raw_output": self.create_publisher(String, "~/raw_output", rq),
            "debug_image": self.create_publisher(Image, "~/debug_image", reliable_qos(1)),
            "decision": self.create_publisher(String, "~/decision", rq),
            "active_instruction": self.create_publisher(String, "~/active_instruction", latched_qos()),
        }

    def _destroy_io(self) -> None:
        for sub in self._subs:
            self.destroy_subscription(sub)
        for pub in self._pubs.values():
            self.destroy_publisher(pub)
        self._subs, self._pubs = [], {}

    # ------------------------------------------------------------ input callbacks (fast)
    def _reject(self, kind: str, reason: Any) -> None:
        self._counters.inc("rejected")
        self._counters.inc(f"rejected_{kind}")
        self._last_reject = f"{kind}: {reason}"
        self._warn(f"reject_{kind}", f"skipped {kind} message: {reason}")

    def _warn(self, key: str, text: str) -> None:
        if self._throttle.ok(key):
            n = self._throttle.suppressed(key)
            self.get_logger().warn(text + (f" ({n} similar suppressed)" if n else ""))

    def _on_color(self, msg) -> None:
        arrived = time.monotonic()
        engine = self._engine
        if not self._active or engine is None:
            return
        self._counters.inc("frames_received")
        try:
            rgb = conv.compressed_to_rgb(msg) if isinstance(msg, CompressedImage) else conv.image_to_rgb(msg)
        except conv.BadMessage as exc:
            return self._reject("image", exc)
        stamp = conv.stamp_to_float(msg.header.stamp)
        with self._frame_lock:  # the look-down decision and the slot change together
            if self._look_down_wait:
                self._look_down_wait = False
                item = PendingFrame(rgb, stamp, msg.header, None, self._episode, look_down=True)
            else:
                item = self._record_frame(engine, rgb, stamp, msg.header)
            if item is None:
                return
            item.arrived = arrived
            if self._p["decision_mode"] == "on_request":
                item = self._requests.add_frame(stamp_key(msg.header.stamp), item)
                if item is None:
                    return
            self._slot.put(item, protect=item.look_down or self._p["decision_mode"] == "on_request")
        self._wake.trigger()

    def _on_decide(self, msg: Header) -> None:
        """on_request mode: infer on the frame with this stamp (now, or when it arrives)."""
        if not self._active:
            return
        item = self._requests.add_request(stamp_key(msg.stamp))
        if item is not None:
            self._slot.put(item, protect=True)
            self._wake.trigger()

    def _record_frame(self, engine, rgb: np.ndarray, stamp: float, header) -> PendingFrame | None:
        """Record an ordinary frame in the history (caller holds the frame lock); None if it was not recorded."""
        if self._instruction is None:
            self._counters.inc("frames_without_instruction")
            return None
        interval, last = self._p["history_min_interval_s"], self._last_observed
        if interval > 0 and last is not None and 0 <= stamp - last < interval:
            self._counters.inc("frames_not_recorded")
            return None
        try:
            index = engine.observe(rgb)
        except InvalidFrame as exc:
            self._reject("image", exc)
            return None
        self._last_observed = stamp
        return PendingFrame(rgb, stamp, header, index, self._episode)

    def _on_depth(self, msg: Image) -> None:
        if self._engine is None:
            return
        try:
            depth = conv.image_to_depth(msg)
        except conv.BadMessage as exc:
            return self._reject("depth", exc)
        self._depth.add(conv.stamp_to_float(msg.header.stamp), depth)

    def _on_camera_info(self, msg: CameraInfo) -> None:
        try:
            k = conv.camera_info_to_k(msg)
        except conv.BadMessage as exc:
            return self._reject("camera_info", exc)
        self._camera = (k, (int(msg.width), int(msg.height)))

    def _on_odom(self, msg: Odometry) -> None:
        try:
            t = conv.odometry_to_matrix(msg)
        except conv.BadMessage as exc:
            return self._reject("odom", exc)
        self._odom.add(conv.stamp_to_float(msg.header.stamp), (t, msg.header.frame_id or "odom"))

    def _on_instruction(self, msg: String) -> None:
        problem = instruction_problem(msg.data, self._p["max_instruction_chars"])
        if problem:
            return self._reject("instruction", problem)
        self._apply_instruction(msg.data)

    def _apply_instruction(self, text: str) -> bool:
        """New episode with ``text`` (history cleared, pending frame and look-down dropped)."""
        engine = self._engine
        if engine is not None:
            try:
                engine.reset(text)
            except ValueError as exc:
                self._reject("instruction", exc)
                return False
        with self._frame_lock:
            self._instruction = text
            self._episode += 1
            self._slot.clear()
            self._requests.clear()
            self._look_down_wait = False
            self._last_observed = None
        self._counters.inc("episodes")
        pub = self._pubs.get("active_instruction")
        if pub is not None:
            pub.publish(String(data=text))
        self.get_logger().info(f"new episode {self._episode}: {text[:120]!r}")
        return True

    def _on_reset(self, request, response):
        if self._engine is None:
            response.success, response.message = False, f"not configured (state {self._state_label})"
        elif self._instruction is None:
            response.success, response.message = False, "no instruction yet"
        else:
            response.success = self._apply_instruction(self._instruction)
            response.message = f"episode {self._episode}" if response.success else self._last_reject
        return response

    # ------------------------------------------------------------ inference (own group)
    def _infer_once(self) -> None:
        item = self._slot.take()
        if item is None:
            return
        if not self._active or item.episode != self._episode:
            self._counters.inc("frames_stale")
            return
        taken = time.monotonic()
        max_age = self._p["max_frame_age_s"]
        if max_age > 0 and taken - item.received > max_age and not item.look_down and self._p["decision_mode"] == "continuous":
            self._counters.inc("frames_too_old")  # the next frame starts a step the moment it arrives
            return
        frame, odom_frame = self._build_frame(item)
        if self._p["inference_delay_s"] > 0:
            time.sleep(self._p["inference_delay_s"])
        decision = self._step(frame, item)
        if decision is not None:
            intake = item.received - item.arrived if item.arrived is not None else None
            waits = {"intake_s": intake, "queue_s": taken - item.received, "step_done": time.monotonic()}
            self._publish_decision(decision, item, frame, odom_frame, waits)

    def _build_frame(self, item: PendingFrame) -> tuple[Frame, str]:
        tol = self._p["depth_tolerance_s"]
        depth_entry = self._depth.nearest(item.stamp, tol, wait_s=tol)
        depth = depth_entry[1] if depth_entry else None
        k = None
        if depth is not None and self._camera is not None:
            k = conv.scale_intrinsics(self._camera[0], self._camera[1], (depth.shape[1], depth.shape[0]))
        pose, odom_frame = None, "odom"
        tol = self._p["odom_tolerance_s"]
        odom_entry = self._odom.nearest(item.stamp, tol, wait_s=tol)
        if odom_entry is not None:
            t_odom_base, odom_frame = odom_entry[1]
            pose = t_odom_base @ self._extrinsic(item.look_down)
        return Frame(item.rgb, depth, k, pose, item.stamp), odom_frame

    def _extrinsic(self, look_down: bool) -> np.ndarray:
        p = self._p
        pitch = p["camera_extrinsic.pitch"] + (p["look_down_pitch"] if look_down else 0.0)
        return camera_extrinsic(p["camera_extrinsic.x"], p["camera_extrinsic.y"], p["camera_extrinsic.z"],
                                p["camera_extrinsic.roll"], pitch, p["camera_extrinsic.yaw"])

    def _step(self, frame: Frame, item: PendingFrame):
        with self._engine_lock:
            engine = self._engine
            if engine is None or not self._active:
                return None
            try:
                decision = engine.step(frame, item.index)
            except InvalidFrame as exc:
                self._reject("image", exc)
                return None
            except Exception as exc:  # keep serving; the reason goes to the log and /diagnostics
                self._counters.error(f"step failed: {type(exc).__name__}: {exc}"[:500])
                self._step_error_at = time.monotonic()
                self._warn(f"step_error_{type(exc).__name__}", f"step failed (frame dropped): {type(exc).__name__}: {exc}"[:500])
                if "OutOfMemoryError" in type(exc).__name__:
                    free_accelerator_memory()
                return None
        self._counters.inc("inferences")
        if "step" in decision.timing:
            self._latency.add(decision.timing["step"])
        return decision

    def _publish_decision(self, decision, item: PendingFrame, frame: Frame, odom_frame: str, waits: dict | None = None) -> None:
        if not self._active or item.episode != self._episode:
            self._counters.inc("decisions_stale")
            return
        origin = frame.t_odom_optical[:3, 3] if frame.t_odom_optical is not None else None
        model_size = (self._p["resize_w"], self._p["resize_h"])
        camera_size = (item.rgb.shape[1], item.rgb.shape[0])
        o = out.build_outputs(decision, item.header, odom_frame, origin, model_size, camera_size,
                              self._p["max_waypoint_distance"])
        if decision.kind == DecisionKind.LOOK_DOWN:
            self._await_look_down()
        self._send(o)
        if "decision" in self._pubs:
            self._pubs["decision"].publish(out.decision_json(decision, o, item.header, item.episode, waits))
        self._note_decision(decision, o)
        self._send_debug_image(decision, item, o)
        age = (self.get_clock().now().nanoseconds * 1e-9) - item.stamp
        self._frame_age.add(age)

    def _await_look_down(self) -> None:
        with self._frame_lock:
            self._look_down_wait = True
            self._slot.clear()

    def _send(self, o: out.Outputs) -> None:
        pubs = self._pubs
        for name in ("actions", "pixel_goal", "waypoint", "raw_output"):
            msg = getattr(o, name)
            if msg is not None and name in pubs:
                pubs[name].publish(msg)

    def _note_decision(self, decision, o: out.Outputs) -> None:
        self._counters.inc(f"decisions_{decision.kind.value}")
        if o.waypoint is not None:
            self._counters.inc("waypoints_published")
        if o.rejected:
            self._counters.inc("waypoints_rejected")
            self._last_none = o.rejected
            self._warn("waypoint_rejected", f"waypoint not published: {o.rejected}")
        if decision.kind in (DecisionKind.NONE, DecisionKind.PIXEL_GOAL) and decision.reason:
            self._last_none = f"{decision.kind.value}: {decision.reason}"
            self._warn(f"decision_{decision.kind.value}", f"{decision.kind.value} decision: {decision.reason}")

    def _send_debug_image(self, decision, item: PendingFrame, o: out.Outputs) -> None:
        pub = self._pubs.get("debug_image")
        if pub is None or pub.get_subscription_count() == 0:
            return
        drawn = out.draw_debug(item.rgb, o.pixel, out.decision_label(decision))
        pub.publish(conv.rgb_to_image(drawn, out.header(item.header.stamp, item.header.frame_id)))

    # ------------------------------------------------------------ diagnostics
    def diagnostics_values(self) -> dict[str, Any]:
        c = self._counters.snapshot()
        engine = self._engine
        ms = lambda v: None if v is None or not math.isfinite(v) else v * 1e3  # noqa: E731
        values = {
            "state": self._state_label,
            **{k: self._engine_info.get(k, "") for k in ("backbone", "device", "dtype", "model_path", "generator")},
            "model_path_parameter": self._p["model_path"],
            "instruction": (self._instruction or "")[:80],
            "episode": self._episode,
            "history_frames": len(engine.history) if engine is not None and hasattr(engine, "history") else 0,
            "frames_received": c.get("frames_received", 0),
            "frames_dropped": self._slot.dropped,
            "frames_too_old": c.get("frames_too_old", 0),
            "frames_pending": len(self._slot),
            "frames_rejected": c.get("rejected", 0),
            "inferences": c.get("inferences", 0),
            "step_latency_ms": ms(self._latency.last),
            "step_latency_mean_ms": ms(self._latency.mean),
            "frame_age_ms": ms(self._frame_age.last),
            "waypoints_published": c.get("waypoints_published", 0),
            "waypoints_rejected": c.get("waypoints_rejected", 0),
            "errors": c.get("errors", 0),
            "last_error": self._load_error or self._counters.last_error,
            "last_rejected_input": self._last_reject,
            "last_no_decision": self._last_none,
        }
        values.update({k: v for k, v in c.items() if k.startswith(("rejected_", "decisions_"))})
        serving = getattr(engine, "serving", None) if engine is not None else None
        if isinstance(serving, dict):  # live: the plain path serves while the fast path builds
            values.update(serving)
        return values

    def _level(self) -> tuple[bytes, str]:
        if self._load_error and self._engine is None:
            return out.ERROR, self._load_error
        if not self._active:
            return out.WARN, f"not active ({self._state_label})"
        if self._instruction is None:
            return out.WARN, "waiting for an instruction"
        err_at = self._step_error_at
        if err_at is not None and time.monotonic() - err_at < STEP_ERROR_HOLD_S:
            return out.ERROR, self._counters.last_error or "step failed"
        return out.OK, "running"

    def publish_diagnostics(self) -> None:
        level, message = self._level()
        arr = out.diagnostic_array(self.get_clock().now().to_msg(), DIAG_NAME, self._engine_info.get("backbone", ""),
                                   level, message, self.diagnostics_values())
        self._diag_pub.publish(arr)


def spin(nodes, num_threads: int = 4) -> None:
    """Spin ``nodes`` on one multi-threaded executor until Ctrl-C / shutdown, then release them."""
    try:
        from rclpy.executors import ExternalShutdownException
    except ImportError:  # pragma: no cover - very old rclpy
        ExternalShutdownException = KeyboardInterrupt  # noqa: N806
    executor = SubmitOnceExecutor(num_threads=num_threads)
    for node in nodes:
        executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
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


def main(args=None) -> None:
    rclpy.init(args=args)
    spin([S2Node()])


if __name__ == "__main__":
    main()
