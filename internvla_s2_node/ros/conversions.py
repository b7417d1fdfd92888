"""Pure numpy <-> ROS message helpers (no node, no executor).

Every decoder raises :class:`BadMessage` (a ``ValueError``) with a human-readable
reason; callers log it and skip the message.
"""

from __future__ import annotations

import io
import math

import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import Pose
from PIL import Image as PILImage
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from nav_msgs.msg import Odometry

from ..core.geometry import MillimetreDepth, quaternion_to_matrix, valid_intrinsics


class BadMessage(ValueError):
    """A message that cannot be used; the text says why."""


# encoding -> (channels, numpy dtype)
COLOR_ENCODINGS = {"rgb8": (3, np.uint8), "bgr8": (3, np.uint8), "rgba8": (4, np.uint8), "bgra8": (4, np.uint8), "mono8": (1, np.uint8)}
DEPTH_ENCODINGS = {"16UC1": (1, np.uint16), "mono16": (1, np.uint16), "32FC1": (1, np.float32)}
ENCODINGS = {**COLOR_ENCODINGS, **DEPTH_ENCODINGS}
# Largest decoded size of a CompressedImage (pixels): a few-kB PNG can claim 20k x 20k; the header is
# checked before decoding. 8K video is 33 Mpx.
MAX_DECODED_PIXELS = 40_000_000


# ---------------------------------------------------------------- time
def stamp_to_float(stamp) -> float:
    """``builtin_interfaces/Time`` -> seconds."""
    return float(stamp.sec) + float(stamp.nanosec) * 1e-9


def float_to_stamp(t: float) -> Time:
    """Seconds -> ``builtin_interfaces/Time`` (nanoseconds rounded, carried into seconds)."""
    if not math.isfinite(t) or t < 0:
        raise ValueError(f"stamp must be a finite non-negative number of seconds, got {t}")
    ns = int(round(t * 1e9))
    return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


# ---------------------------------------------------------------- images
def image_to_array(msg: Image, allowed: dict | None = None) -> np.ndarray:
    """HxWxC (or HxW for one channel) array view of an ``Image``, honouring ``step`` padding and endianness."""
    allowed = ENCODINGS if allowed is None else allowed
    if msg.encoding not in allowed:
        raise BadMessage(f"unsupported encoding {msg.encoding!r} (expected one of {sorted(allowed)})")
    channels, dtype = allowed[msg.encoding]
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    if h <= 0 or w <= 0:
        raise BadMessage(f"image has no pixels ({w}x{h})")
    n = len(msg.data)
    if n == 0:
        raise BadMessage("image data is empty")
    row_bytes = w * channels * np.dtype(dtype).itemsize
    if step < row_bytes:
        raise BadMessage(f"step {step} is smaller than width*channels*bytes = {row_bytes}")
    if n != h * step:
        raise BadMessage(f"data has {n} bytes but height*step = {h}*{step} = {h * step}")
    dt = np.dtype(dtype).newbyteorder(">" if msg.is_bigendian else "<")
    raw = np.frombuffer(msg.data, dtype=np.uint8).reshape(h, step)[:, :row_bytes]
    arr = np.ascontiguousarray(raw).view(dt).reshape(h, w, channels).astype(dtype, copy=False)
    return arr[:, :, 0] if channels == 1 else arr


def image_to_rgb(msg: Image) -> np.ndarray:
    """Color ``Image`` (rgb8, bgr8, rgba8, bgra8, mono8) -> HxWx3 uint8 RGB."""
    arr = image_to_array(msg, COLOR_ENCODINGS)
    enc = msg.encoding
    if enc == "mono8":
        return np.repeat(arr[:, :, None], 3, axis=2)
    if enc in ("bgr8", "bgra8"):
        return np.ascontiguousarray(arr[:, :, 2::-1])
    return np.ascontiguousarray(arr[:, :, :3])


def compressed_to_rgb(msg: CompressedImage) -> np.ndarray:
    """``CompressedImage`` (JPEG/PNG/... via PIL) -> HxWx3 uint8 RGB."""
    if len(msg.data) == 0:
        raise BadMessage("compressed image data is empty")
    try:
        with PILImage.open(io.BytesIO(bytes(msg.data))) as img:
            w, h = img.size
            if w * h > MAX_DECODED_PIXELS:
                raise BadMessage(f"compressed image claims {w}x{h} pixels, more than {MAX_DECODED_PIXELS} (not decoded)")
            rgb = np.asarray(img.convert("RGB"))
    except BadMessage:
        raise
    except Exception as exc:  # PIL raises many types for corrupt data
        raise BadMessage(f"cannot decode compressed image ({msg.format!r}): {exc}") from exc
    if rgb.shape[0] < 2 or rgb.shape[1] < 2:
        raise BadMessage(f"compressed image is too small: {rgb.shape[1]}x{rgb.shape[0]}")
    return rgb


def image_to_depth(msg: Image, lazy: bool = False) -> np.ndarray | MillimetreDepth:
    """Depth ``Image`` -> HxW float32 metres. 16UC1/mono16 are millimetres (0 = no return), 32FC1 metres.
    ``lazy``: millimetres stay as they are, in a ``MillimetreDepth`` that converts what is read of it.

    NaN/inf/0 pixels are kept (REP 118 "no return") and treated as invalid later;
    an image without a single finite positive value is rejected.
    """
    arr = image_to_array(msg, DEPTH_ENCODINGS)
    if arr.dtype == np.uint16:  # millimetres are finite, so "valid" is "not all zero"
        if not arr.any():
            raise BadMessage("depth image has no finite positive value (all zero)")
        depth_mm = MillimetreDepth(arr)
        return depth_mm if lazy else np.asarray(depth_mm)  # one conversion formula: MillimetreDepth's
    depth = arr.astype(np.float32, copy=True)
    with np.errstate(invalid="ignore"):
        valid = np.isfinite(depth) & (depth > 0)
    if not valid.any():
        raise BadMessage("depth image has no finite positive value (all NaN, inf or zero)")
    return depth


def rgb_to_image(rgb: np.ndarray, header=None) -> Image:
    """HxWx3 uint8 RGB -> ``Image`` (rgb8, tightly packed)."""
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    msg = Image()
    if header is not None:
        msg.header = header
    msg.height, msg.width = int(rgb.shape[0]), int(rgb.shape[1])
    msg.encoding = "rgb8"
    msg.is_bigendian = 0
    msg.step = msg.width * 3
    msg.data = rgb.tobytes()
    return msg


def array_to_image(arr: np.ndarray, encoding: str, header=None) -> Image:
    """Any supported array -> ``Image`` with ``encoding`` (tests and the simulator bridge)."""
    channels, dtype = ENCODINGS[encoding]
    arr = np.ascontiguousarray(arr, dtype=dtype)
    if channels == 1 and arr.ndim == 3:
        arr = arr[:, :, 0]
    msg = Image()
    if header is not None:
        msg.header = header
    msg.height, msg.width = int(arr.shape[0]), int(arr.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = 0
    msg.step = msg.width * channels * np.dtype(dtype).itemsize
    msg.data = arr.tobytes()
    return msg


def depth_to_image(depth_m: np.ndarray, encoding: str = "32FC1", header=None) -> Image:
    """HxW metres -> ``Image``: 32FC1 metres or 16UC1 millimetres (invalid -> 0)."""
    if encoding == "16UC1":
        mm = np.where(np.isfinite(depth_m), np.round(np.asarray(depth_m, dtype=np.float64) * 1000.0), 0.0)
        return array_to_image(np.clip(mm, 0, 65535).astype(np.uint16), "16UC1", header)
    return array_to_image(np.asarray(depth_m, dtype=np.float32), "32FC1", header)


# ---------------------------------------------------------------- camera info, poses
def camera_info_to_k(msg: CameraInfo) -> np.ndarray:
    """3x3 intrinsics from ``CameraInfo.k``; rejects zero/negative/non-finite focal lengths."""
    k = np.asarray(msg.k, dtype=np.float64)
    if k.size != 9:
        raise BadMessage(f"camera info K has {k.size} values, expected 9")
    k = k.reshape(3, 3)
    if not valid_intrinsics(k):
        raise BadMessage(f"camera info has an invalid focal length (fx={k[0, 0]}, fy={k[1, 1]})")
    return k


def scale_intrinsics(k: np.ndarray, from_size: tuple[int, int], to_size: tuple[int, int]) -> np.ndarray:
    """``k`` for an image of ``from_size`` (w, h) rescaled to ``to_size`` (w, h)."""
    if from_size == to_size or 0 in from_size:
        return k
    sx, sy = to_size[0] / from_size[0], to_size[1] / from_size[1]
    out = np.array(k, dtype=np.float64)
    out[0, :] *= sx
    out[1, :] *= sy
    return out


def pose_to_matrix(pose: Pose) -> np.ndarray:
    """``geometry_msgs/Pose`` -> 4x4 homogeneous transform."""
    p, q = pose.position, pose.orientation
    t = np.eye(4)
    try:
        t[:3, :3] = quaternion_to_matrix(q.x, q.y, q.z, q.w)
    except ValueError as exc:
        raise BadMessage(str(exc)) from exc
    t[:3, 3] = (p.x, p.y, p.z)
    if not np.all(np.isfinite(t)):
        raise BadMessage("pose is not finite")
    return t


def odometry_to_matrix(msg: Odometry) -> np.ndarray:
    """``T_odom_base`` (header.frame_id <- child_frame_id) from an ``Odometry``."""
    return pose_to_matrix(msg.pose.pose)


def matrix_to_quaternion(r: np.ndarray) -> tuple[float, float, float, float]:
    """(x, y, z, w) of a 3x3 rotation matrix (Shepperd's method)."""
    m = np.asarray(r, dtype=np.float64)
    tr = m[0, 0] + m[1, 1] + m[2, 2]
    if tr > 0:
        s = math.sqrt(tr + 1.0) * 2
        w, x, y, z = 0.25 * s, (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s
    elif m[0, 0] > m[1, 1] and m[0, 0] > m[2, 2]:
        s = math.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2]) * 2
        w, x, y, z = (m[2, 1] - m[1, 2]) / s, 0.25 * s, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s
    elif m[1, 1] > m[2, 2]:
        s = math.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2]) * 2
        w, x, y, z = (m[0, 2] - m[2, 0]) / s, (m[0, 1] + m[1, 0]) / s, 0.25 * s, (m[1, 2] + m[2, 1]) / s
    else:
        s = math.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1]) * 2
        w, x, y, z = (m[1, 0] - m[0, 1]) / s, (m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, 0.25 * s
    n = math.sqrt(x * x + y * y + z * z + w * w)
    return (x / n, y / n, z / n, w / n)


def matrix_to_pose(t: np.ndarray) -> Pose:
    """4x4 homogeneous transform -> ``geometry_msgs/Pose``."""
    t = np.asarray(t, dtype=np.float64)
    if t.shape != (4, 4) or not np.all(np.isfinite(t)):
        raise ValueError("pose matrix must be a finite 4x4 array")
    pose = Pose()
    pose.position.x, pose.position.y, pose.position.z = (float(v) for v in t[:3, 3])
    x, y, z, w = matrix_to_quaternion(t[:3, :3])
    pose.orientation.x, pose.orientation.y, pose.orientation.z, pose.orientation.w = x, y, z, w
    return pose
