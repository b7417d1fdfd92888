"""``sim_bridge``: a simulated robot for the S2 node, and the S2 policy of the evaluation loop.

The bridge publishes what a robot would (relative names, as the S2 node subscribes):
``image`` (rgb8), ``depth`` (32FC1, metres), ``camera_info``, ``odom`` (base pose in the
world, frame ``odom``), ``camera_pose`` (optical frame, tilt included) and ``instruction``
(reliable, transient local). It asks for a decision on a frame with ``<s2>/decide`` (a
``std_msgs/Header`` carrying the frame's stamp; the node runs with
``decision_mode: on_request``) and reads the answer from ``<s2>/decision`` (JSON); a new
episode starts when ``<s2>/active_instruction`` echoes the instruction. Per-episode results
go out on ``~/episode_result`` (JSON).

Frames taken at the level camera are published after every simulator step, so the node's
history holds every step as in training; the look-down frame is published only when the
loop asks for the decision on it.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import subprocess
import sys
import threading
import time

import numpy as np
import rclpy
from nav_msgs.msg import Odometry
from geometry_msgs.msg import PoseStamped
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header, String

from ..core.actions import Action
from ..core.geometry import Waypoint
from ..core.types import Decision, DecisionKind
from ..sim.backend import Observation
from ..sim.loop import PolicyFailure
from ..sim.policies import Policy
from . import conversions as conv
from .executor import spinning
from .qos import latched_qos, reliable_qos, sensor_qos

CONFIG_DIR = pathlib.Path(__file__).resolve().parents[2] / "config"
SIM_PARAMS = "sim.yaml"
DEFAULT_DOMAIN_ID = 42
STARTUP_TIMEOUT_S = 600.0  # loading a large checkpoint can take minutes
POLL_S = 0.005
LEVEL_TOLERANCE_DEG = 1e-6
ABORT_POLL_S = 0.25


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
        sq, rq = sensor_qos(), reliable_qos(10)
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
        self.create_subscription(String, f"{s2}/decision", self._on_decision, rq)
        self.create_subscription(String, f"{s2}/active_instruction", self._on_active_instruction, latched_qos())

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
        self._pub["decide"].publish(Header(stamp=_ns_to_time(stamp_ns), frame_id=self.camera_frame))
        deadline = time.monotonic() + timeout
        with self._cond:
            while stamp_ns not in self._decisions:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                why = abort() if abort is not None else ""
                if why:
                    raise PolicyFailure(why)
                self._cond.wait(min(left, ABORT_POLL_S) if abort is not None else left)
            data = self._decisions.pop(stamp_ns, None)
        if data is None:
            raise PolicyFailure(f"no S2 decision within {timeout:.0f} s")
        return decision_from_json(data)

    def publish_result(self, record: dict) -> None:
        self._pub["result"].publish(String(data=json.dumps(record, default=str)))

    def wait_for_s2(self, timeout: float) -> bool:
        """True once the S2 node's decision publisher and request subscriber are matched."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
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


class S2RosPolicy(Policy):
    """The S2 node as a policy of the episode loop, through the bridge."""

    name = "s2"

    def __init__(self, bridge: SimBridge, timeout_s: float) -> None:
        self.bridge = bridge
        self.timeout_s = timeout_s
        self.episode_latencies: list[float] = []
        self._published: tuple[int, int] | None = None  # (id of the observation, stamp)
        self._failure = ""

    process = None  # the s2_node child process (s2_mode "process"), watched so a dead node fails fast

    def process_exit(self) -> str:
        """Why the S2 node cannot answer any more ('' while it may): its child process has exited."""
        proc = self.process
        if proc is not None and proc.poll() is not None:
            return f"the S2 node process exited with code {proc.returncode}"
        return ""

    def reset(self, episode, backend) -> None:
        self.episode_latencies = []
        self._published = None
        self._failure = self.process_exit()
        if self._failure:
            return
        try:
            self.bridge.start_episode(episode.instruction, self.timeout_s)
        except PolicyFailure as exc:
            self._failure = self.process_exit() or str(exc)  # raised from act(), inside the loop, so the episode is recorded

    def observe(self, obs: Observation, action: Action) -> None:
        """Loop observer: every level-camera frame goes to the node's history."""
        if abs(obs.camera_pitch_deg) <= LEVEL_TOLERANCE_DEG and obs.rgb is not None:
            self._publish(obs)

    def _publish(self, obs: Observation) -> int:
        if self._published is None or self._published[0] != id(obs):
            self._published = (id(obs), self.bridge.publish_observation(obs))
        return self._published[1]

    def act(self, obs: Observation) -> Decision:
        if self._failure:
            raise PolicyFailure(self._failure)
        if obs.rgb is None:
            raise PolicyFailure("the simulator renders no images (render is off)")
        decision = self.bridge.request_decision(self._publish(obs), self.timeout_s, abort=self.process_exit)
        self.episode_latencies.append(decision.timing.get("step", 0.0))
        return decision


# -------------------------------------------------------------------- sessions
def sim_params_files(extra: str | None) -> list[str]:
    files = [str(CONFIG_DIR / SIM_PARAMS)]
    return files + [extra] if extra else files


def ros_arguments(cfg) -> list[str]:
    args = ["--ros-args"]
    for f in sim_params_files(cfg.params_file):
        args += ["--params-file", f]
    return args + ["-p", f"model_path:={cfg.model}"]


def shard_domain_id(cfg) -> int:
    if cfg.domain_id is not None:
        return cfg.domain_id
    return int(os.environ.get("ROS_DOMAIN_ID", DEFAULT_DOMAIN_ID)) + cfg.rank


@contextlib.contextmanager
def s2_policy_session(cfg):
    """The S2 policy for ``EvalConfig`` ``cfg``: the bridge plus the S2 node.

    ``cfg.s2_mode``: ``inprocess`` (one executor), ``process`` (``s2_node`` as a child
    process) or ``external`` (a node started elsewhere, e.g. by sim.launch.py).
    """
    if cfg.s2_mode != "external" or "ROS_DOMAIN_ID" not in os.environ:
        os.environ["ROS_DOMAIN_ID"] = str(shard_domain_id(cfg))
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    args = ros_arguments(cfg) if cfg.s2_mode != "external" else list(cfg.ros_args)
    rclpy.init(args=["internvla-s2-eval", *args])
    nodes, process = [SimBridge()], None
    try:
        if cfg.s2_mode == "process":
            process = subprocess.Popen([sys.executable, "-m", "internvla_s2_node.ros.s2_node", *args])
        elif cfg.s2_mode == "inprocess":
            from .s2_node import S2Node

            nodes.append(S2Node())
        with spinning(nodes):
            if not nodes[0].wait_for_s2(STARTUP_TIMEOUT_S):
                raise RuntimeError(f"the S2 node did not come up within {STARTUP_TIMEOUT_S:.0f} s")
            policy = S2RosPolicy(nodes[0], cfg.s2_timeout_s)
            policy.process = process
            yield policy
    finally:
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
        for node in nodes:
            if hasattr(node, "release"):
                node.release()
            node.destroy_node()
        rclpy.try_shutdown()


def main(args=None) -> None:
    """``sim_bridge [internvla-s2-eval options] [--ros-args ...]``: evaluate an S2 node started elsewhere."""
    from ..sim.eval_cli import main as eval_main

    argv = list(sys.argv[1:] if args is None else args)
    split = argv.index("--ros-args") if "--ros-args" in argv else len(argv)
    sys.exit(eval_main(["--s2-mode", "external", *argv[:split]], ros_args=argv[split:]))
