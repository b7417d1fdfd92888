"""What the ROS benchmark scripts (e2e_dds.py, soak.py) share: synthetic sensor messages and process helpers.

Imported inside their ROS functions (this module imports ROS message types). The tests have their own
helpers (tests/ros_helpers.py); the benchmarks run as plain scripts from a checkout and do not import tests/.
"""

from __future__ import annotations

import signal
import subprocess
import time
from typing import Any, Callable

import numpy as np
from nav_msgs.msg import Odometry
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header

from internvla_s2_node.core.geometry import intrinsics_from_hfov, yaw_to_quaternion
from internvla_s2_node.ros import conversions as conv

FRAME = "camera_optical"


def header(stamp: float, frame_id: str = FRAME) -> Header:
    return Header(stamp=conv.float_to_stamp(stamp), frame_id=frame_id)


def color_msg(stamp: float, w: int, h: int, value: int = 100) -> Image:
    arr = np.full((h, w, 3), value, np.uint8)
    arr[:, : w // 2, 0] = 255 - value  # a little structure
    return conv.rgb_to_image(arr, header(stamp))


def depth_msg(stamp: float, w: int, h: int, metres: float = 2.0, encoding: str = "32FC1") -> Image:
    return conv.depth_to_image(np.full((h, w), metres, np.float32), encoding, header(stamp))


def camera_info_msg(stamp: float, w: int, h: int, hfov_deg: float = 79.0) -> CameraInfo:
    msg = CameraInfo(header=header(stamp), width=w, height=h)
    msg.k = [float(v) for v in intrinsics_from_hfov(w, h, hfov_deg).ravel()]
    return msg


def odom_msg(stamp: float, x: float = 0.0, y: float = 0.0, yaw: float = 0.0) -> Odometry:
    msg = Odometry(header=header(stamp, "odom"), child_frame_id="base_link")
    msg.pose.pose.position.x, msg.pose.pose.position.y = x, y
    o = msg.pose.pose.orientation
    o.x, o.y, o.z, o.w = yaw_to_quaternion(yaw)
    return msg


def wait_for(predicate: Callable[[], Any], timeout: float, period: float = 0.05) -> Any:
    """Poll ``predicate`` until truthy or ``timeout``; returns its last value."""
    deadline = time.monotonic() + timeout
    value = predicate()
    while not value and time.monotonic() < deadline:
        time.sleep(period)
        value = predicate()
    return value


def stop_process(proc, timeout: float = 20.0) -> int:
    """SIGINT a node process, kill it if it has not exited within ``timeout``; its exit code."""
    proc.send_signal(signal.SIGINT)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()
