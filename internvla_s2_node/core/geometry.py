"""Pinhole geometry: a pixel goal plus depth, intrinsics and pose give a 3-D waypoint.

Conventions (REP 103/105): the odometry frame and robot base are x forward, y left,
z up; camera points are in the optical frame (x right, y down, z forward).
Poses are 4x4 homogeneous matrices ``T_a_b`` mapping points in frame b to frame a.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

# Columns are the optical axes expressed in the body frame (x fwd, y left, z up).
R_BODY_OPTICAL = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])


def intrinsics_from_hfov(width: int, height: int, hfov_deg: float) -> np.ndarray:
    """Square-pixel pinhole matrix with the principal point at the image centre."""
    f = width / (2.0 * math.tan(math.radians(hfov_deg) / 2.0))
    return np.array([[f, 0.0, (width - 1) / 2.0], [0.0, f, (height - 1) / 2.0], [0.0, 0.0, 1.0]])


def valid_intrinsics(k: np.ndarray | None) -> bool:
    if k is None:
        return False
    k = np.asarray(k, dtype=float)
    return k.shape == (3, 3) and bool(np.all(np.isfinite(k))) and k[0, 0] > 0 and k[1, 1] > 0


def rotation_rpy(roll: float, pitch: float, yaw: float) -> np.ndarray:
    """R = Rz(yaw) Ry(pitch) Rx(roll), angles in radians."""
    cr, sr, cp, sp, cy, sy = (math.cos(roll), math.sin(roll), math.cos(pitch), math.sin(pitch), math.cos(yaw), math.sin(yaw))
    rz = np.array([[cy, -sy, 0], [sy, cy, 0], [0, 0, 1.0]])
    ry = np.array([[cp, 0, sp], [0, 1.0, 0], [-sp, 0, cp]])
    rx = np.array([[1.0, 0, 0], [0, cr, -sr], [0, sr, cr]])
    return rz @ ry @ rx


def transform(rotation: np.ndarray, translation) -> np.ndarray:
    t = np.eye(4)
    t[:3, :3] = rotation
    t[:3, 3] = np.asarray(translation, dtype=float)
    return t


def planar_pose(x: float, y: float, yaw: float, z: float = 0.0) -> np.ndarray:
    return transform(rotation_rpy(0.0, 0.0, yaw), (x, y, z))


def quaternion_to_matrix(x: float, y: float, z: float, w: float) -> np.ndarray:
    n = math.sqrt(x * x + y * y + z * z + w * w)
    if not math.isfinite(n) or n < 1e-9:
        raise ValueError("quaternion has zero or non-finite norm")
    x, y, z, w = x / n, y / n, z / n, w / n
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def yaw_to_quaternion(yaw: float) -> tuple[float, float, float, float]:
    """(x, y, z, w) of a rotation about z."""
    return (0.0, 0.0, math.sin(yaw / 2.0), math.cos(yaw / 2.0))


def yaw_of(t: np.ndarray) -> float:
    return math.atan2(t[1, 0], t[0, 0])


def camera_extrinsic(x: float, y: float, z: float, roll: float, pitch: float, yaw: float) -> np.ndarray:
    """``T_base_optical`` for a camera mounted at (x, y, z) with body-frame roll/pitch/yaw.

    Positive pitch tilts the camera down (a rotation about the body y axis, which
    points left, turns x toward -z).
    """
    return transform(rotation_rpy(roll, pitch, yaw) @ R_BODY_OPTICAL, (x, y, z))


def pixel_to_camera(u: float, v: float, depth: float, k: np.ndarray) -> np.ndarray:
    """Back-project pixel (column ``u``, row ``v``) at range ``depth`` (m, along z)."""
    fx, fy, cx, cy = k[0, 0], k[1, 1], k[0, 2], k[1, 2]
    return np.array([(u - cx) * depth / fx, (v - cy) * depth / fy, depth])


class MillimetreDepth:
    """A 16-bit millimetre depth image that becomes float32 metres where it is read (0 stays 0: no return).

    It has the image's ``shape``, ``ndim`` and ``size``; indexing gives metres with the values of a whole-image
    conversion (``np.asarray`` converts all of it). The node keeps its depth messages this way: converting
    each 640x480 image took about a millisecond of every frame's path on the H200 host, and a projection
    reads an 11x11 window of one of them.
    """

    __slots__ = ("mm",)
    ndim = 2

    def __init__(self, mm: np.ndarray) -> None:
        if mm.dtype != np.uint16 or mm.ndim != 2:
            raise ValueError(f"millimetre depth must be a 2-D uint16 array, got {mm.dtype} {mm.shape}")
        self.mm = mm

    @property
    def shape(self) -> tuple[int, int]:
        return self.mm.shape

    @property
    def size(self) -> int:
        return self.mm.size

    def __getitem__(self, key):
        return np.multiply(self.mm[key], np.float32(0.001), dtype=np.float32)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        metres = self[...]
        return metres if dtype is None else metres.astype(dtype)


@dataclasses.dataclass(frozen=True)
class DepthSample:
    depth: float | None
    pixel: tuple[int, int] | None  # where the valid depth was read
    reason: str = ""


def sample_depth(depth: np.ndarray | MillimetreDepth, u: int, v: int, min_depth: float, max_depth: float, window: int = 5) -> DepthSample:
    """Depth at (u, v), else the valid depth nearest to it within ``window`` pixels.

    Zero, negative, NaN/inf and out-of-range values are invalid.
    """
    h, w = depth.shape[:2]
    if not (0 <= u < w and 0 <= v < h):
        return DepthSample(None, None, f"pixel ({u}, {v}) outside the {w}x{h} depth image")
    r0, r1, c0, c1 = max(0, v - window), min(h, v + window + 1), max(0, u - window), min(w, u + window + 1)
    patch = np.asarray(depth[r0:r1, c0:c1], dtype=np.float64)
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(patch) & (patch >= min_depth) & (patch <= max_depth)
    if not ok.any():
        return DepthSample(None, None, f"no valid depth within {window} px of ({u}, {v}) (range {min_depth}-{max_depth} m)")
    rows, cols = np.nonzero(ok)
    dist = (rows + r0 - v) ** 2 + (cols + c0 - u) ** 2
    best = int(np.argmin(dist))
    rr, cc = int(rows[best] + r0), int(cols[best] + c0)
    return DepthSample(float(depth[rr, cc]), (cc, rr))


@dataclasses.dataclass(frozen=True)
class Waypoint:
    position: np.ndarray  # (3,) in the odometry frame
    yaw: float  # heading from the camera toward the goal, in the odometry frame
    pixel: tuple[int, int]  # (column, row) in the model's image
    depth: float


@dataclasses.dataclass(frozen=True)
class ProjectionResult:
    waypoint: Waypoint | None
    reason: str = ""


def project_pixel_goal(
    pixel: tuple[int, int],
    image_size: tuple[int, int],
    depth: np.ndarray | None,
    k: np.ndarray | None,
    t_odom_optical: np.ndarray | None,
    min_depth: float = 0.1,
    max_depth: float = 10.0,
    window: int = 5,
) -> ProjectionResult:
    """3-D waypoint for ``pixel`` (in an image of ``image_size`` = (w, h)).

    The depth image and ``k`` may have another resolution than the model's image:
    the pixel is scaled to the depth image, whose resolution ``k`` must describe.
    """
    if depth is None or depth.ndim != 2 or depth.size == 0:
        return ProjectionResult(None, "no depth image")
    if not valid_intrinsics(k):
        return ProjectionResult(None, "no valid camera intrinsics")
    if t_odom_optical is None or not np.all(np.isfinite(t_odom_optical)):
        return ProjectionResult(None, "no camera pose")
    w, h = image_size
    dh, dw = depth.shape
    u = int(round(pixel[0] * dw / w)) if w != dw else pixel[0]
    v = int(round(pixel[1] * dh / h)) if h != dh else pixel[1]
    u, v = min(max(u, 0), dw - 1), min(max(v, 0), dh - 1)
    sample = sample_depth(depth, u, v, min_depth, max_depth, window)
    if sample.depth is None:
        return ProjectionResult(None, sample.reason)
    p_cam = pixel_to_camera(sample.pixel[0], sample.pixel[1], sample.depth, np.asarray(k, dtype=float))
    p_odom = (t_odom_optical @ np.append(p_cam, 1.0))[:3]
    origin = t_odom_optical[:3, 3]
    yaw = math.atan2(p_odom[1] - origin[1], p_odom[0] - origin[0])
    if not np.all(np.isfinite(p_odom)):
        return ProjectionResult(None, "projection is not finite")
    return ProjectionResult(Waypoint(p_odom, yaw, tuple(pixel), sample.depth))


def waypoint_problem(position: np.ndarray, yaw: float, origin: np.ndarray, max_distance: float) -> str:
    """Why a waypoint must not be driven to ('' if fine): not finite, or beyond ``max_distance`` (planar) of ``origin``."""
    if not (np.all(np.isfinite(position)) and math.isfinite(yaw)):
        return "waypoint is not finite"
    dist = float(np.hypot(position[0] - origin[0], position[1] - origin[1]))
    if dist > max_distance:
        return f"waypoint is {dist:.2f} m away, more than max_waypoint_distance {max_distance:.2f} m"
    return ""
