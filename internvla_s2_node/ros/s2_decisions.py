"""Decision path of the S2 node: one model step on the newest frame, and the messages it publishes.

Runs in its own MutuallyExclusive group, woken by a guard condition: takes the slot, pairs the
frame with the nearest depth and odometry (``_build_frame``), runs ``engine.step`` (``_step``) and
publishes the outputs that ``outputs.build_outputs`` makes of the decision (``_publish_decision``).
While a step runs, newer frames only replace the slot: no queue grows.
"""

from __future__ import annotations

import time

import numpy as np
from geometry_msgs.msg import PointStamped, PoseStamped
from sensor_msgs.msg import Image
from std_msgs.msg import String, UInt8MultiArray

from ..core.geometry import camera_extrinsic
from ..core.images import InvalidFrame
from ..core.types import DecisionKind, Frame
from . import conversions as conv
from . import outputs as out
from .pipeline import PendingFrame
from .qos import latched_qos, reliable_qos


def free_accelerator_memory() -> None:
    """Free cached accelerator memory (torch is imported only when the node needs it)."""
    from ..core.backbone import free_accelerator_memory as free

    free()


class DecisionMixin:
    """Inference and outputs of :class:`~internvla_s2_node.ros.s2_node.S2Node` (state lives on the node)."""

    def _create_outputs(self) -> dict:
        """The output publishers (created at configure)."""
        rq = reliable_qos(10)
        return {
            "waypoint": self.create_publisher(PoseStamped, "~/waypoint", rq),
            "pixel_goal": self.create_publisher(PointStamped, "~/pixel_goal", rq),
            "actions": self.create_publisher(UInt8MultiArray, "~/actions", rq),
            "raw_output": self.create_publisher(String, "~/raw_output", rq),
            "debug_image": self.create_publisher(Image, "~/debug_image", reliable_qos(1)),
            "decision": self.create_publisher(String, "~/decision", rq),
            "active_instruction": self.create_publisher(String, "~/active_instruction", latched_qos()),
        }

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
        paired = time.monotonic()
        if self._p["inference_delay_s"] > 0:
            time.sleep(self._p["inference_delay_s"])
        decision = self._step(frame, item)
        if decision is not None:
            intake = item.received - item.arrived if item.arrived is not None else None
            waits = {"intake_s": intake, "queue_s": taken - item.received, "step_done": time.monotonic(),
                     "trace": item.trace | {"pair_s": paired - taken}}
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
            pose = t_odom_base @ self._extrinsic(self._look_downs(item))
        return Frame(item.rgb, depth, k, pose, item.stamp), odom_frame

    def _look_downs(self, item: PendingFrame) -> int:
        """Look-down tilts of ``item``'s camera: 2 once the model asked for a second look-down (command mode)."""
        if not item.look_down:
            return 0
        engine = self._engine
        return max(1, engine.pending_look_downs) if engine is not None else 1

    def _extrinsic(self, look_downs: int) -> np.ndarray:
        p = self._p
        pitch = p["camera_extrinsic.pitch"] + p["look_down_pitch"] * look_downs
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
        if waits and "trace" in waits:
            waits["trace"]["outputs_s"] = time.monotonic() - waits["step_done"]
        if "decision" in self._pubs:
            self._pubs["decision"].publish(out.decision_json(decision, o, item.header, item.episode, waits,
                                                             self._counters.get("frames_received")))
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
