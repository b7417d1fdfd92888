"""``sim_bridge``: the ROS side of a simulated robot, for the S2 node. What it publishes comes from an
evaluation, which creates this node in its own process: to evaluate an S2 node started elsewhere run
internvla-s2-eval --s2-mode external --out DIR [--ros-args ...] (sim.launch.py does). Run on its own
it only advertises its topics and spins (e.g. to check its enclave, docs/SECURITY.md).

The bridge publishes what a robot would (relative names, as the S2 node subscribes):
``image`` (rgb8), ``depth`` (32FC1, metres), ``camera_info``, ``odom`` (base pose in the
world, frame ``odom``), ``camera_pose`` (optical frame, tilt included) and ``instruction``
(reliable, transient local). It asks for a decision on a frame with ``<s2>/decide`` (a
``std_msgs/Header`` carrying the frame's stamp; the node runs with
``decision_mode: on_request``) and reads the answer from ``<s2>/decision`` (JSON); a new
episode starts when ``<s2>/active_instruction`` echoes the instruction. Per-episode results
go out on ``~/episode_result`` (JSON). The evaluation side is
``internvla_s2_node.evaluation.s2_session``.
"""

from __future__ import annotations

import json
import sys
import threading
import time

import numpy as np
import rclpy
from nav_msgs.msg import Odometry
from geometry_msgs.msg import PoseStamped
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header, String

from ..cli.errors import guarded
from ..core.actions import Action
from ..core.geometry import Waypoint
from ..core.types import Decision, DecisionKind
from ..sim.backend import Observation
from ..sim.loop import PolicyFailure
from . import conversions as conv
from .executor import spin
from .node_cli import parse_help
from .outputs import ERROR, level_value
from .qos import latched_qos, reliable_qos, sim_frames_qos

ABORT_POLL_S = 0.25
REREQUEST_S = 5.0  # the decide request is sent again at this period while no decision has come


def decision_from_json(data: dict) -> Decision:
    """A core ``Decision`` from the node's ``~/decision`` JSON (waypoint in the odometry frame)."""
    kind = DecisionKind(data.get("kind", "none"))
    wp = data.get("waypoint")
    waypoint = None
    if wp is not None:
        position = np.asarray(wp["position"], dtype=float)
        if position.shape == (3,) and np.all(np.isfinite(position)):
            waypoint = Waypoint(position, float(wp.get("yaw", 0.0)), tuple(data.get("pixel") or (0, 0)), float(wp.get("depth", 0.0)))
    if kind == DecisionKind.WAYPOINT and waypoint is None:
        kind = DecisionKind.NONE  # withheld by the node (e.g. beyond max_waypoint_distance)
    actions = tuple(Action(int(a)) for a in data.get("actions", []))
    return Decision(kind, actions=actions, waypoint=waypoint, raw_text=data.get("raw_text", ""),
                    reason=data.get("reason", ""), timing={"step": float(data.get("step_s") or 0.0)})


class SimBridge(Node):
    def __init__(self, node_name: str = "sim_bridge", **kwargs) -> None:
        super().__init__(node_name, **kwargs)
        self.declare_parameter("s2_node", "s2_node")
        self.declare_parameter("camera_frame", "camera_color_optical_frame")
        self.declare_parameter("odom_frame", "odom")
        self.declare_parameter("base_frame", "base_link")
        s2 = self.get_parameter("s2_node").value
        self.camera_frame = self.get_parameter("camera_frame").value
        self.odom_frame = self.get_parameter("odom_frame").value
        self.base_frame = self.get_parameter("base_frame").value
        sq, rq = sim_frames_qos(), reliable_qos(10)  # frames reliable: DDS resends what it lost
        self._pub = {
            "image": self.create_publisher(Image, "image", sq),
            "depth": self.create_publisher(Image, "depth", sq),
            "camera_info": self.create_publisher(CameraInfo, "camera_info", sq),
            "odom": self.create_publisher(Odometry, "odom", sq),
            "camera_pose": self.create_publisher(PoseStamped, "camera_pose", sq),
            "instruction": self.create_publisher(String, "instruction", latched_qos()),
            "decide": self.create_publisher(Header, f"{s2}/decide", rq),
            "result": self.create_publisher(String, "~/episode_result", rq),
        }
        self._cond = threading.Condition()
        self._decisions: dict[int, dict] = {}
        self._echoes: list[str] = []
        self._last_stamp_ns = 0
        self.frames_published = 0  # color frames sent (vs the node's frames_received: frames lost)
        self.frames_received = None  # the node's count in its latest decision
        self.rerequests = 0
        self.create_subscription(String, f"{s2}/decision", self._on_decision, rq)
        self.create_subscription(String, f"{s2}/active_instruction", self._on_active_instruction, latched_qos())
        self.s2_failure = ""  # the S2 node's reason when its configure failed (from /diagnostics)
        self._s2_name = s2.rsplit("/", 1)[-1]
        self.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, reliable_qos(10))

    # ---------------------------------------------------------------- inputs
    def _on_decision(self, msg: String) -> None:
        try:
            data = json.loads(msg.data)
            key = int(data["stamp"]["sec"]) * 1_000_000_000 + int(data["stamp"]["nanosec"])
        except (ValueError, KeyError, TypeError):
            self.get_logger().warn(f"ignoring malformed decision message: {msg.data[:120]!r}")
            return
        with self._cond:
            self._decisions[key] = data
            while len(self._decisions) > 64:
                self._decisions.pop(next(iter(self._decisions)))
            self._cond.notify_all()

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        """Note the S2 node's configure failure: ERROR while unconfigured, with the reason as message."""
        for status in msg.status:
            if not status.name.endswith(self._s2_name):
                continue
            values = {kv.key: kv.value for kv in status.values}
            failed = level_value(status.level) >= level_value(ERROR) and values.get("state") == "unconfigured"
            self.s2_failure = status.message if failed else ""

    def _on_active_instruction(self, msg: String) -> None:
        with self._cond:
            self._echoes.append(msg.data)
            self._cond.notify_all()

    # ---------------------------------------------------------------- outputs
    def _next_stamp(self):
        now = self.get_clock().now().nanoseconds
        self._last_stamp_ns = max(now, self._last_stamp_ns + 1)
        return _ns_to_time(self._last_stamp_ns)

    def publish_observation(self, obs: Observation) -> int:
        """Publish one observation as robot sensors would; returns its stamp in nanoseconds."""
        stamp = self._next_stamp()
        cam = Header(stamp=stamp, frame_id=self.camera_frame)
        odom_h = Header(stamp=stamp, frame_id=self.odom_frame)
        odom = Odometry(header=odom_h, child_frame_id=self.base_frame)
        odom.pose.pose = conv.matrix_to_pose(obs.t_world_base)
        self._pub["odom"].publish(odom)
        self._pub["camera_pose"].publish(PoseStamped(header=odom_h, pose=conv.matrix_to_pose(obs.t_world_optical)))
        h, w = obs.rgb.shape[:2]
        self._pub["camera_info"].publish(camera_info(obs.intrinsics, w, h, cam))
        self._pub["depth"].publish(conv.depth_to_image(obs.depth, "32FC1", cam))
        self._pub["image"].publish(conv.rgb_to_image(obs.rgb, cam))
        self.frames_published += 1
        return stamp.sec * 1_000_000_000 + stamp.nanosec

    def start_episode(self, instruction: str, timeout: float) -> None:
        """Publish the instruction and wait until the S2 node has started the episode with it."""
        with self._cond:
            seen = len(self._echoes)
            self._decisions.clear()
        self._pub["instruction"].publish(String(data=instruction))
        with self._cond:
            ok = self._cond.wait_for(lambda: instruction in self._echoes[seen:], timeout)
        if not ok:
            raise PolicyFailure(f"the S2 node did not start the episode within {timeout:.0f} s")

    def request_decision(self, stamp_ns: int, timeout: float, abort=None) -> Decision:
        """The node's decision on the frame ``stamp_ns``; PolicyFailure after ``timeout`` s, or at once
        when ``abort()`` returns a reason (checked every ABORT_POLL_S, e.g. the node's process died)."""
        request = Header(stamp=_ns_to_time(stamp_ns), frame_id=self.camera_frame)
        self._pub["decide"].publish(request)
        now = time.monotonic()
        deadline, resend_at = now + timeout, now + REREQUEST_S
        with self._cond:
            while stamp_ns not in self._decisions:
                now = time.monotonic()
                if now >= deadline:
                    break
                why = abort() if abort is not None else ""
                if why:
                    raise PolicyFailure(why)
                if now >= resend_at:  # the node pairs a request with its frame once; a repeat is harmless
                    self._pub["decide"].publish(request)
                    self.rerequests += 1
                    resend_at = now + REREQUEST_S
                self._cond.wait(min(deadline - now, resend_at - now, ABORT_POLL_S))
            data = self._decisions.pop(stamp_ns, None)
        if data is None:
            raise PolicyFailure(f"no S2 decision within {timeout:.0f} s")
        if isinstance(data.get("frames_received"), int):
            self.frames_received = data["frames_received"]
        return decision_from_json(data)

    def publish_result(self, record: dict) -> None:
        self._pub["result"].publish(String(data=json.dumps(record, default=str)))

    def wait_for_s2(self, timeout: float, abort=None) -> bool:
        """True once the S2 node's decision publisher and request subscriber are matched. PolicyFailure
        at once when the node reports a failed configure, or ``abort()`` returns a reason."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            why = self.s2_failure or (abort() if abort is not None else "")
            if why:
                raise PolicyFailure(why)
            if self._pub["decide"].get_subscription_count() > 0 and self.count_publishers(
                self._pub["decide"].topic_name.rsplit("/", 1)[0] + "/decision"
            ) > 0:
                return True
            time.sleep(0.05)
        return False


def _ns_to_time(ns: int):
    from builtin_interfaces.msg import Time

    return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def camera_info(k: np.ndarray, width: int, height: int, header: Header) -> CameraInfo:
    msg = CameraInfo(header=header, width=width, height=height, distortion_model="plumb_bob")
    msg.k = [float(v) for v in k.reshape(-1)]
    msg.d = [0.0] * 5
    msg.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    msg.p = [float(k[0, 0]), 0.0, float(k[0, 2]), 0.0, 0.0, float(k[1, 1]), float(k[1, 2]), 0.0, 0.0, 0.0, 1.0, 0.0]
    return msg


@guarded("sim_bridge")
def main(args=None) -> None:
    argv = list(sys.argv if args is None else args)
    parse_help(argv, "sim_bridge", __doc__)
    rclpy.init(args=argv)
    spin([SimBridge()], num_threads=2)


if __name__ == "__main__":
    sys.exit(main())
