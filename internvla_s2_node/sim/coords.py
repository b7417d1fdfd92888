"""The one place where Habitat coordinates meet ours.

Our world frame (and the robot base frame) follow REP 103: x forward, y left, z up.
Habitat (and the VLN-CE episode files) use a y-up frame: x right, y up, and an agent
with identity rotation looks along -z. So, for positions::

    x_world = -z_hab      y_world = -x_hab      z_world = y_hab
    x_hab   = -y_world    y_hab   = z_world     z_hab   = -x_world

i.e. ``p_world = M_WORLD_HAB @ p_hab``. ``M_WORLD_HAB`` is a proper rotation (det +1), so
Habitat's agent frame (forward -z, left -x, up +y) maps onto our base frame (forward x,
left y, up z) and a Habitat rotation ``R_hab`` becomes ``M R_hab M^T``. A rotation by
``theta`` about Habitat's up axis (+y) is a yaw of ``theta`` about our z: turning left
is positive in both. Quaternions are stored ``[x, y, z, w]`` as in the episode files.

The MuJoCo episodes are stored in Habitat convention too, so one loader serves both.
"""

from __future__ import annotations

import math

import numpy as np

from ..core.geometry import quaternion_to_matrix

M_WORLD_HAB = np.array([[0.0, 0.0, -1.0], [-1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
M_HAB_WORLD = M_WORLD_HAB.T


def habitat_to_world(points) -> np.ndarray:
    """Positions (..., 3) in Habitat coordinates -> our z-up world frame."""
    return np.asarray(points, dtype=float) @ M_WORLD_HAB.T


def world_to_habitat(points) -> np.ndarray:
    """Positions (..., 3) in our world frame -> Habitat coordinates."""
    return np.asarray(points, dtype=float) @ M_HAB_WORLD.T


def habitat_rotation_to_world(r_hab: np.ndarray) -> np.ndarray:
    """A 3x3 rotation expressed in Habitat axes -> the same rotation in world axes."""
    return M_WORLD_HAB @ np.asarray(r_hab, dtype=float) @ M_HAB_WORLD


def habitat_quaternion_to_yaw(q_xyzw) -> float:
    """Heading (rad, about world z, 0 = world +x) of a Habitat agent rotation ``[x, y, z, w]``."""
    r_world = habitat_rotation_to_world(quaternion_to_matrix(*[float(v) for v in q_xyzw]))
    return math.atan2(r_world[1, 0], r_world[0, 0])


def yaw_to_habitat_quaternion(yaw: float) -> list[float]:
    """``[x, y, z, w]`` of the Habitat rotation about +y that gives heading ``yaw``."""
    return [0.0, math.sin(yaw / 2.0), 0.0, math.cos(yaw / 2.0)]


def wrap_angle(angle: float) -> float:
    """Angle in (-pi, pi]."""
    wrapped = math.atan2(math.sin(angle), math.cos(angle))
    return math.pi if wrapped == -math.pi else wrapped
