"""Pure builders of the S2 node's output messages from an engine Decision.

Every builder returns ``None`` (plus a reason where it matters) instead of a
message with NaN/inf in it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from typing import Any

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import PointStamped, PoseStamped
from PIL import Image as PILImage
from PIL import ImageDraw
from std_msgs.msg import Header, String, UInt8MultiArray

from ..core.actions import Action
from ..core.geometry import waypoint_problem, yaw_to_quaternion
from ..core.types import Decision, DecisionKind


@dataclasses.dataclass
class Outputs:
    """What to publish for one decision (None: nothing on that topic)."""

    actions: UInt8MultiArray | None = None
    waypoint: PoseStamped | None = None
    pixel_goal: PointStamped | None = None
    raw_output: String | None = None
    pixel: tuple[float, float] | None = None  # (column, row) in the camera image, for the debug image
    rejected: str = ""  # why a waypoint was withheld


def header(stamp, frame_id: str) -> Header:
    h = Header()
    h.stamp = stamp
    h.frame_id = frame_id
    return h


def actions_msg(actions) -> UInt8MultiArray:
    msg = UInt8MultiArray()
    msg.data = bytes(int(a) for a in actions)
    return msg


def decision_actions(decision: Decision) -> tuple[Action, ...]:
    """The action codes a decision publishes: its actions, [STOP] or [LOOK_DOWN]; none for goals/NONE."""
    if decision.kind == DecisionKind.STOP:
        return (Action.STOP,)
    if decision.kind == DecisionKind.LOOK_DOWN:
        return (Action.LOOK_DOWN,)
    if decision.kind == DecisionKind.ACTIONS:
        return tuple(decision.actions)
    return ()


def pixel_in_camera(pixel, decision: Decision, model_size: tuple[int, int], camera_size: tuple[int, int]):
    """The engine's pixel (model-input coordinates; camera coordinates after a look-down turn) in camera pixels."""
    if pixel is None:
        return None
    if decision.looked_down or model_size == camera_size:
        return float(pixel[0]), float(pixel[1])
    return pixel[0] * camera_size[0] / model_size[0], pixel[1] * camera_size[1] / model_size[1]


def waypoint_msg(position, yaw: float, hdr: Header) -> PoseStamped:
    msg = PoseStamped()
    msg.header = hdr
    msg.pose.position.x, msg.pose.position.y, msg.pose.position.z = (float(v) for v in position)
    x, y, z, w = yaw_to_quaternion(float(yaw))
    msg.pose.orientation.x, msg.pose.orientation.y, msg.pose.orientation.z, msg.pose.orientation.w = x, y, z, w
    return msg


def pixel_msg(pixel, hdr: Header, depth: float | None) -> PointStamped | None:
    if pixel is None or not all(math.isfinite(v) for v in pixel):
        return None
    msg = PointStamped()
    msg.header = hdr
    msg.point.x, msg.point.y = float(pixel[0]), float(pixel[1])
    msg.point.z = float(depth) if depth is not None and math.isfinite(depth) else 0.0
    return msg


def build_outputs(
    decision: Decision,
    image_header: Header,
    odom_frame: str,
    camera_origin: np.ndarray | None,
    model_size: tuple[int, int],
    camera_size: tuple[int, int],
    max_waypoint_distance: float,
) -> Outputs:
    """Messages for one decision, stamped with the image's stamp."""
    out = Outputs(raw_output=String(data=decision.raw_text or ""))
    codes = decision_actions(decision)
    if codes:
        out.actions = actions_msg(codes)
    pixel = pixel_in_camera(decision.pixel, decision, model_size, camera_size)
    out.pixel = pixel
    wp = decision.waypoint
    out.pixel_goal = pixel_msg(pixel, header(image_header.stamp, image_header.frame_id), wp.depth if wp else None)
    if decision.kind == DecisionKind.WAYPOINT and wp is not None:
        origin = camera_origin if camera_origin is not None else np.zeros(3)
        out.rejected = waypoint_problem(np.asarray(wp.position, dtype=float), float(wp.yaw), origin, max_waypoint_distance)
        if not out.rejected:
            out.waypoint = waypoint_msg(wp.position, wp.yaw, header(image_header.stamp, odom_frame))
    return out


def decision_json(decision: Decision, o: Outputs, image_header: Header, episode: int, waits: dict | None = None,
                  frames_received: int | None = None) -> String:
    """The whole decision as JSON on ``~/decision`` (machine-readable; the simulator bridge reads it).

    ``waypoint`` is what was published on ``~/waypoint`` (null if none or withheld). Where the frame's
    time went in the node: ``intake_s`` (image callback: conversion, history), ``queue_s`` (waiting for
    the model), ``step_s`` (the model step), ``post_s`` (step end to this message: outputs).
    ``frames_received``: color frames the node has received so far (a sender can count its lost frames).
    ``trace`` (with ``waits["trace"]``): the finer split (config/README.md), ``sent_unix`` this message's wall clock.
    """
    wp = o.waypoint
    data = {
        "stamp": {"sec": int(image_header.stamp.sec), "nanosec": int(image_header.stamp.nanosec)},
        "episode": episode,
        "kind": decision.kind.value,
        "actions": [int(a) for a in decision_actions(decision)],
        "pixel": [float(v) for v in o.pixel] if o.pixel is not None else None,
        "waypoint": None,
        "rejected": o.rejected,
        "reason": decision.reason,
        "raw_text": decision.raw_text,
        "looked_down": decision.looked_down,
        "path": decision.path,  # generation path that answered: fast | plain (while the fast path builds)
        "step_s": decision.timing.get("step"),
        **{k: (waits or {}).get(k) for k in ("intake_s", "queue_s")},
        "post_s": time.monotonic() - waits["step_done"] if waits and "step_done" in waits else None,
        "frames_received": frames_received,
    }
    if waits and "trace" in waits:  # the node's split of a frame's time (s); sent_unix: this message's wall clock
        step = decision.timing
        data["trace"] = waits["trace"] | {"gen_pre_s": step.get("preprocess"), "model_s": step.get("generate"),
                                          "sent_unix": time.time()}
    if wp is not None:
        q = wp.pose.orientation
        data["waypoint"] = {
            "frame_id": wp.header.frame_id,
            "position": [wp.pose.position.x, wp.pose.position.y, wp.pose.position.z],
            "yaw": math.atan2(2.0 * (q.w * q.z + q.x * q.y), 1.0 - 2.0 * (q.y * q.y + q.z * q.z)),
            "depth": float(decision.waypoint.depth) if decision.waypoint is not None else None,
        }
    return String(data=json.dumps(_finite(data)))


def _finite(v: Any) -> Any:
    """JSON-safe copy: non-finite floats become null."""
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, dict):
        return {k: _finite(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_finite(x) for x in v]
    return v


def draw_debug(rgb: np.ndarray, pixel, label: str) -> np.ndarray:
    """Copy of ``rgb`` with the pixel goal (a ring and cross) and a label drawn on it."""
    img = PILImage.fromarray(rgb)
    draw = ImageDraw.Draw(img)
    if pixel is not None:
        u, v = pixel
        r = max(4, min(img.size) // 40)
        draw.ellipse((u - r, v - r, u + r, v + r), outline=(255, 0, 0), width=2)
        draw.line((u - 2 * r, v, u + 2 * r, v), fill=(255, 0, 0), width=1)
        draw.line((u, v - 2 * r, u, v + 2 * r), fill=(255, 0, 0), width=1)
    if label:
        draw.text((4, 4), label[:60], fill=(255, 255, 0))
    return np.asarray(img)


def decision_label(decision: Decision) -> str:
    codes = decision_actions(decision)
    if codes:
        return " ".join(a.name for a in codes)
    return decision.kind.value


# ------------------------------------------------------------------ diagnostics
def diagnostic_array(stamp, name: str, hardware_id: str, level: int, message: str, values: dict[str, Any]) -> DiagnosticArray:
    status = DiagnosticStatus()
    status.level = level
    status.name, status.hardware_id, status.message = name, hardware_id, message
    status.values = [KeyValue(key=str(k), value=_fmt(v)) for k, v in values.items()]
    arr = DiagnosticArray()
    arr.header.stamp = stamp
    arr.status = [status]
    return arr


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.4g}" if math.isfinite(v) else "n/a"
    return str(v)


OK, WARN, ERROR = DiagnosticStatus.OK, DiagnosticStatus.WARN, DiagnosticStatus.ERROR


def level_value(level) -> int:
    return level[0] if isinstance(level, (bytes, bytearray)) else int(level)
