"""Typed inputs and outputs of the S2 engine."""

from __future__ import annotations

import dataclasses
import enum

import numpy as np

from .actions import Action
from .geometry import Waypoint


@dataclasses.dataclass
class Frame:
    """One camera observation.

    ``rgb``: HxWx3 uint8. ``depth``: HxW float32 metres (any resolution; ``intrinsics``
    must describe the depth image). ``t_odom_optical``: 4x4 camera pose (optical frame)
    in the odometry frame at the image time. ``stamp``: seconds, carried through.
    """

    rgb: np.ndarray
    depth: np.ndarray | None = None
    intrinsics: np.ndarray | None = None
    t_odom_optical: np.ndarray | None = None
    stamp: float | None = None


class DecisionKind(enum.Enum):
    ACTIONS = "actions"  # a sequence of discrete actions
    WAYPOINT = "waypoint"  # a pixel goal projected to 3-D
    PIXEL_GOAL = "pixel_goal"  # a pixel goal that could not be projected (see reason)
    LOOK_DOWN = "look_down"  # the caller must supply a look-down frame next (command mode)
    STOP = "stop"
    NONE = "none"  # no usable decision (see reason)


@dataclasses.dataclass
class Decision:
    kind: DecisionKind
    actions: tuple[Action, ...] = ()
    pixel: tuple[int, int] | None = None  # (column, row) in the frame the goal refers to
    waypoint: Waypoint | None = None
    raw_text: str = ""
    reason: str = ""
    stamp: float | None = None
    looked_down: bool = False  # the answer came from a look-down turn
    path: str = ""  # which generation path answered: 'fast' or 'plain' (engine.S2Engine.path)
    timing: dict[str, float] = dataclasses.field(default_factory=dict)  # seconds

    def to_json(self) -> dict:
        out = {
            "kind": self.kind.value,
            "actions": [a.name for a in self.actions],
            "action_codes": [int(a) for a in self.actions],
            "pixel": list(self.pixel) if self.pixel else None,
            "waypoint": None,
            "raw_text": self.raw_text,
            "reason": self.reason,
            "stamp": self.stamp,
            "looked_down": self.looked_down,
            "path": self.path,
            "timing_ms": {k: round(v * 1e3, 3) for k, v in self.timing.items()},
        }
        if self.waypoint is not None:
            out["waypoint"] = {
                "position": [float(x) for x in self.waypoint.position],
                "yaw": float(self.waypoint.yaw),
                "depth": float(self.waypoint.depth),
            }
        return out
