"""ROS test helpers: synthetic sensor messages, a scripted engine, biased checkpoints, a probe node,
process helpers. Used by tests/test_ros_*.py, test_fuzz_*.py, test_faults_*.py and test_sim_bridge.py.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import json
import math
import pathlib
import threading
import time
import types
from typing import Any, Callable

import numpy as np
from nav_msgs.msg import Odometry
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header, String

from internvla_s2_node.core.geometry import intrinsics_from_hfov, yaw_to_quaternion
from internvla_s2_node.ros import conversions as conv
from internvla_s2_node.ros.qos import latched_qos, reliable_qos, sensor_qos

# ------------------------------------------------------------------ messages


def header(stamp: float, frame_id: str) -> Header:
    return Header(stamp=conv.float_to_stamp(stamp), frame_id=frame_id)


def color_msg(stamp: float, w: int = 64, h: int = 48, value: int = 100, frame_id: str = "camera_optical",
              encoding: str = "rgb8") -> Image:
    channels = conv.ENCODINGS[encoding][0]
    arr = np.full((h, w, channels), value, np.uint8)
    arr[:, : w // 2, 0] = 255 - value  # a little structure
    return conv.array_to_image(arr, encoding, header(stamp, frame_id))


def compressed_msg(stamp: float, w: int = 64, h: int = 48, frame_id: str = "camera_optical") -> CompressedImage:
    import io

    from PIL import Image as PILImage

    buf = io.BytesIO()
    PILImage.fromarray(np.full((h, w, 3), 90, np.uint8)).save(buf, format="JPEG")
    return CompressedImage(header=header(stamp, frame_id), format="jpeg", data=buf.getvalue())


def depth_msg(stamp: float, w: int = 64, h: int = 48, metres: float = 2.0, encoding: str = "32FC1",
              frame_id: str = "camera_optical") -> Image:
    return conv.depth_to_image(np.full((h, w), metres, np.float32), encoding, header(stamp, frame_id))


def camera_info_msg(stamp: float, w: int = 64, h: int = 48, hfov_deg: float = 79.0,
                    frame_id: str = "camera_optical") -> CameraInfo:
    msg = CameraInfo(header=header(stamp, frame_id), width=w, height=h)
    msg.k = [float(v) for v in intrinsics_from_hfov(w, h, hfov_deg).ravel()]
    return msg


def odom_msg(stamp: float, x: float = 0.0, y: float = 0.0, yaw: float = 0.0, frame_id: str = "odom",
             child: str = "base_link") -> Odometry:
    msg = Odometry(header=header(stamp, frame_id), child_frame_id=child)
    msg.pose.pose.position.x, msg.pose.pose.position.y = x, y
    qx, qy, qz, qw = yaw_to_quaternion(yaw)
    o = msg.pose.pose.orientation
    o.x, o.y, o.z, o.w = qx, qy, qz, qw
    return msg


# ------------------------------------------------------------------ scripted engine


class ScriptedGenerator:
    """Stands in for the model: answers from a cycle of strings, optionally slowly."""

    def __init__(self, answers, delay_s: float = 0.0) -> None:
        self.answers = list(answers)
        self.delay_s = delay_s
        self.calls = 0

    def reset(self) -> None:
        pass

    def generate(self, messages, images, keys):
        from internvla_s2_node.core.generation import Generated

        if self.delay_s:
            time.sleep(self.delay_s)
        text = self.answers[self.calls % len(self.answers)]
        self.calls += 1
        return Generated(text, [], {"generate": self.delay_s})


def scripted_engine_factory(answers, delay_s: float = 0.0, fail: str = "") -> Callable:
    """Engine factory for ``S2Node(engine_factory=...)``: the real S2Engine with a scripted generator.

    ``fail``: model_path values that raise like a broken checkpoint would.
    """

    def factory(cfg):
        from internvla_s2_node.core.engine import S2Engine

        if fail and cfg.model_path == fail:
            raise FileNotFoundError(f"no checkpoint at {cfg.model_path}")
        kind = types.SimpleNamespace(value="scripted", model_class_name="Scripted")
        backbone = types.SimpleNamespace(kind=kind, device="cpu", dtype="float32", attn_implementation="none",
                                         path=cfg.model_path)
        engine = S2Engine(dataclasses.replace(cfg, fast_path="off"), backbone=backbone)
        engine.generator = ScriptedGenerator(answers, delay_s)
        return engine

    return factory


# Token ids in the Qwen2+/Qwen3 vocabulary the tiny checkpoints share with the released ones.
QWEN_UP_ARROW_ID, QWEN_ONE_ID, QWEN_COMMA_ID = 76286, 16, 11  # "↑", "1", ","


def biased_checkpoint(src: pathlib.Path, dst: pathlib.Path, answer: str) -> pathlib.Path:
    """A copy (symlinks) of a tiny checkpoint whose greedy answer is forced by ``sequence_bias``.

    ``answer`` "forward": always the "↑" token (-> FORWARD actions); "pixel": "1,1,1,..." (-> pixel goal (1, 1)).
    Random weights otherwise answer noise; this makes the real load/generate/parse path produce a decision.
    """
    dst.mkdir(parents=True, exist_ok=True)
    for f in pathlib.Path(src).iterdir():
        if f.name != "generation_config.json" and not (dst / f.name).exists():
            (dst / f.name).symlink_to(f.resolve())
    up, one, comma = QWEN_UP_ARROW_ID, QWEN_ONE_ID, QWEN_COMMA_ID
    if answer == "forward":
        bias = [[[up], 100.0]]
    else:  # "1" then "," alternate: after "1" the "1" token is pushed below ","
        bias = [[[one], 100.0], [[comma], 90.0], [[one, one], -200.0], [[comma, comma], -200.0]]
    gen = json.loads((pathlib.Path(src) / "generation_config.json").read_text())
    gen["sequence_bias"] = bias
    (dst / "generation_config.json").write_text(json.dumps(gen))
    return dst


# ------------------------------------------------------------------ probe node


class Probe(Node):
    """Publishes sensor messages to an ``s2_node`` and records everything it outputs."""

    OUTPUTS = {
        "waypoint": "geometry_msgs.msg.PoseStamped",
        "pixel_goal": "geometry_msgs.msg.PointStamped",
        "actions": "std_msgs.msg.UInt8MultiArray",
        "raw_output": "std_msgs.msg.String",
        "decision": "std_msgs.msg.String",
    }

    def __init__(self, target: str = "/s2_node", name: str = "s2_probe", compressed: bool = False, **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        from diagnostic_msgs.msg import DiagnosticArray

        sq = sensor_qos()
        self.image_pub = self.create_publisher(CompressedImage if compressed else Image, "image", sq)
        self.depth_pub = self.create_publisher(Image, "depth", sq)
        self.info_pub = self.create_publisher(CameraInfo, "camera_info", sq)
        self.odom_pub = self.create_publisher(Odometry, "odom", sq)
        self.instruction_pub = self.create_publisher(String, "instruction", latched_qos())
        self.received: dict[str, list] = collections.defaultdict(list)
        self._lock = threading.Lock()
        for name, type_name in self.OUTPUTS.items():
            msg_type = _import_type(type_name)
            self.create_subscription(msg_type, f"{target}/{name}", self._collector(name), reliable_qos(100))
        self.create_subscription(DiagnosticArray, "/diagnostics", self._collector("diagnostics"), reliable_qos(100))

    def _collector(self, name: str):
        def cb(msg):
            with self._lock:
                self.received[name].append(msg)
                if len(self.received[name]) > 2000:
                    del self.received[name][:1000]

        return cb

    def get(self, name: str) -> list:
        with self._lock:
            return list(self.received[name])

    def clear(self) -> None:
        with self._lock:
            self.received.clear()

    def send_frame(self, stamp: float, depth: bool = True, odom: bool = True, depth_encoding: str = "32FC1", **kw) -> None:
        """Odometry, camera info and depth first, then the color image, all with ``stamp``."""
        if odom:
            self.odom_pub.publish(odom_msg(stamp))
        self.info_pub.publish(camera_info_msg(stamp))
        if depth:
            self.depth_pub.publish(depth_msg(stamp, encoding=depth_encoding))
        self.image_pub.publish(color_msg(stamp, **kw))

    def instruct(self, text: str) -> None:
        self.instruction_pub.publish(String(data=text))

    def diagnostics(self) -> dict[str, str] | None:
        """Values of the latest s2_node diagnostics status."""
        for arr in reversed(self.get("diagnostics")):
            for status in arr.status:
                if status.name.endswith("s2_node"):
                    return {kv.key: kv.value for kv in status.values} | {"_message": status.message}
        return None

    def wait_diagnostics(self, predicate: Callable[[dict], Any], timeout: float = 3.0) -> dict | None:
        """The first s2_node diagnostics values (newest first) for which ``predicate`` holds, waiting up to ``timeout``."""

        def check():
            d = self.diagnostics()
            return d if d is not None and predicate(d) else None

        return wait_for(check, timeout)

    def matched(self) -> bool:
        """All five input publishers are matched by the node's subscriptions."""
        pubs = (self.image_pub, self.depth_pub, self.info_pub, self.odom_pub, self.instruction_pub)
        return all(p.get_subscription_count() > 0 for p in pubs)


@contextlib.contextmanager
def probe_on(domain: int, target: str):
    """A Probe node on its own context and executor (spun on a thread) in ``domain``."""
    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=domain)
    probe = Probe(target=target, context=ctx)
    executor = SingleThreadedExecutor(context=ctx)
    executor.add_node(probe)
    thread = threading.Thread(target=executor.spin, daemon=True)
    thread.start()
    try:
        yield probe
    finally:
        executor.shutdown()
        probe.destroy_node()
        rclpy.shutdown(context=ctx)
        thread.join(5)


def _import_type(dotted: str):
    module, _, name = dotted.rpartition(".")
    return getattr(__import__(module, fromlist=[name]), name)


def stop_process(proc, timeout: float = 20.0) -> int:
    """Ctrl-C a node process (SIGINT), kill it if it has not exited within ``timeout``; its exit code."""
    import signal
    import subprocess

    proc.send_signal(signal.SIGINT)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def wait_for(predicate: Callable[[], Any], timeout: float, period: float = 0.05) -> Any:
    """Poll ``predicate`` until truthy or ``timeout``; returns its last value."""
    deadline = time.monotonic() + timeout
    value = predicate()
    while not value and time.monotonic() < deadline:
        time.sleep(period)
        value = predicate()
    return value


def now_s() -> float:
    return time.time()


def finite(values) -> bool:
    return all(math.isfinite(float(v)) for v in values)
