"""The simulator interface shared by the MuJoCo and habitat-sim backends.

Everything crossing this interface is in our world frame (REP 103: x forward, y left,
z up; positions of the agent are on the floor, z = floor height). Backends convert
from their native frames internally (see ``coords.py`` for Habitat).

The action set and magnitudes are those of the VLN-CE R2R setting: FORWARD 0.25 m
(sliding along walls on collision), LEFT/RIGHT 15 deg, LOOK_UP/LOOK_DOWN tilt the
camera by 15 deg within +-``max_tilt_deg``, STOP does not move.
"""

from __future__ import annotations

import abc
import dataclasses
import math
from typing import TYPE_CHECKING

import numpy as np

from ..core.actions import FORWARD_STEP_M, TURN_STEP_DEG, Action
from ..core.geometry import camera_extrinsic, intrinsics_from_hfov, planar_pose

if TYPE_CHECKING:  # pragma: no cover
    from .episodes import Episode
    from .navgrid import NavGrid

SimAction = Action  # the backends take the policy's action codes as they are

TILT_STEP_DEG = 15.0  # habitat-sim look_up / look_down amount in VLN-CE
MAX_TILT_DEG = 60.0
R2R_WIDTH, R2R_HEIGHT, R2R_HFOV_DEG = 640, 480, 79.0
R2R_MIN_DEPTH, R2R_MAX_DEPTH = 0.0, 10.0
# Agent settings. R2R (the default) keeps habitat-lab's defaults, as upstream's vln_r2r.yaml and
# VLN-CE's R2R configs do; RxR is VLN-CE's RxR setting. tests/test_agent_settings.py cites both.
R2R_AGENT_HEIGHT_M, R2R_AGENT_RADIUS_M, R2R_CAMERA_HEIGHT_M = 1.5, 0.1, 1.25
RXR_AGENT_HEIGHT_M, RXR_AGENT_RADIUS_M, RXR_CAMERA_HEIGHT_M = 0.88, 0.18, 0.88
DEFAULT_AGENT_RADIUS_M = R2R_AGENT_RADIUS_M
SUCCESS_DISTANCE_M = 3.0  # VLN-CE success / oracle-success threshold
FOLLOWER_GOAL_RADIUS_M = 0.25  # upstream ShortestPathFollower(sim, 0.25, False)
STEP_PERIOD_S = 0.2  # simulated seconds per action; only used for observation stamps
LEVEL_TOLERANCE_DEG = 1e-6  # a camera pitch this close to 0 is level


@dataclasses.dataclass(frozen=True)
class AgentSetting:
    """Agent body and camera mount: height and radius of the agent cylinder, camera height (m)."""

    agent_height: float
    agent_radius: float
    camera_height: float


AGENT_SETTINGS = {
    "r2r": AgentSetting(R2R_AGENT_HEIGHT_M, R2R_AGENT_RADIUS_M, R2R_CAMERA_HEIGHT_M),
    "rxr": AgentSetting(RXR_AGENT_HEIGHT_M, RXR_AGENT_RADIUS_M, RXR_CAMERA_HEIGHT_M),
}
DEFAULT_AGENT_SETTING = "r2r"


@dataclasses.dataclass(frozen=True)
class SimConfig:
    """Sensor and agent settings (defaults: VLN-CE R2R)."""

    width: int = R2R_WIDTH
    height: int = R2R_HEIGHT
    hfov_deg: float = R2R_HFOV_DEG
    min_depth: float = R2R_MIN_DEPTH
    max_depth: float = R2R_MAX_DEPTH
    camera_height: float = R2R_CAMERA_HEIGHT_M
    agent_radius: float = R2R_AGENT_RADIUS_M
    agent_height: float = R2R_AGENT_HEIGHT_M
    forward_step_m: float = FORWARD_STEP_M
    turn_step_deg: float = TURN_STEP_DEG
    tilt_step_deg: float = TILT_STEP_DEG
    max_tilt_deg: float = MAX_TILT_DEG
    follower_goal_radius: float = FOLLOWER_GOAL_RADIUS_M
    step_period_s: float = STEP_PERIOD_S
    render: bool = True  # False: observations carry no images (fast metric-only runs)
    seed: int = 0

    def __post_init__(self) -> None:
        def bad(field: str, why: str) -> ValueError:
            return ValueError(f"SimConfig.{field} = {getattr(self, field)!r}: {why}")

        for name in ("width", "height"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 2:
                raise bad(name, "must be an integer >= 2")
        floats = ("hfov_deg", "min_depth", "max_depth", "camera_height", "agent_radius", "agent_height", "forward_step_m",
                  "turn_step_deg", "tilt_step_deg", "max_tilt_deg", "follower_goal_radius", "step_period_s")
        for name in floats:
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
                raise bad(name, "must be a finite number")
        if not 0.0 < self.hfov_deg < 180.0:
            raise bad("hfov_deg", "must be in (0, 180)")
        if self.min_depth < 0.0:
            raise bad("min_depth", "must be >= 0")
        if self.max_depth <= self.min_depth:
            raise bad("max_depth", f"must be > min_depth ({self.min_depth})")
        for name in ("camera_height", "agent_radius", "agent_height", "forward_step_m", "turn_step_deg", "tilt_step_deg",
                     "follower_goal_radius", "step_period_s"):
            if getattr(self, name) <= 0.0:
                raise bad(name, "must be > 0")
        if not 0.0 <= self.max_tilt_deg < 90.0:
            raise bad("max_tilt_deg", "must be in [0, 90)")

    @classmethod
    def for_agent(cls, setting: str = DEFAULT_AGENT_SETTING, **kwargs) -> "SimConfig":
        """A config with the named agent setting (``AGENT_SETTINGS``: "r2r" or "rxr")."""
        if setting not in AGENT_SETTINGS:
            raise ValueError(f"unknown agent setting {setting!r}; expected one of {sorted(AGENT_SETTINGS)}")
        return cls(**dataclasses.asdict(AGENT_SETTINGS[setting]), **kwargs)

    @property
    def intrinsics(self) -> np.ndarray:
        return intrinsics_from_hfov(self.width, self.height, self.hfov_deg)

    @property
    def vfov_deg(self) -> float:
        """Vertical field of view for square pixels."""
        half = math.atan(math.tan(math.radians(self.hfov_deg) / 2.0) * self.height / self.width)
        return math.degrees(2.0 * half)


@dataclasses.dataclass
class Observation:
    """One observation after ``reset`` or ``step``.

    ``rgb`` HxWx3 uint8 and ``depth`` HxW float32 metres (z-depth, 0 = no return, valid
    values clipped to [min_depth, max_depth]) are None when rendering is off.
    ``t_world_base``: 4x4 planar pose of the agent base (z = floor height).
    ``t_base_optical``: 4x4 camera extrinsic (optical frame: x right, y down, z forward)
    including the current tilt; ``camera_pitch_deg`` > 0 looks down.
    """

    rgb: np.ndarray | None
    depth: np.ndarray | None
    intrinsics: np.ndarray
    t_world_base: np.ndarray
    t_base_optical: np.ndarray
    camera_pitch_deg: float
    step: int
    stamp: float
    collided: bool = False

    @property
    def level(self) -> bool:
        """Taken at the level camera: a frame of the episode history (a look-down frame is not)."""
        return abs(self.camera_pitch_deg) <= LEVEL_TOLERANCE_DEG

    @property
    def t_world_optical(self) -> np.ndarray:
        return self.t_world_base @ self.t_base_optical

    @property
    def position(self) -> np.ndarray:
        return self.t_world_base[:3, 3].copy()

    @property
    def yaw(self) -> float:
        return math.atan2(self.t_world_base[1, 0], self.t_world_base[0, 0])


def postprocess_depth(raw: np.ndarray, min_depth: float, max_depth: float) -> np.ndarray:
    """Metric z-depth as Habitat's depth sensor gives it: no return (<= 0, non-finite) -> 0,
    everything else clipped to [min_depth, max_depth]; float32."""
    raw = np.asarray(raw, dtype=np.float32)
    valid = np.isfinite(raw) & (raw > 0.0)
    out = np.zeros(raw.shape, dtype=np.float32)
    out[valid] = np.clip(raw[valid], min_depth, max_depth)
    return out


def make_observation(
    config: SimConfig,
    position: np.ndarray,
    yaw: float,
    pitch_deg: float,
    step: int,
    rgb: np.ndarray | None = None,
    depth: np.ndarray | None = None,
    collided: bool = False,
) -> Observation:
    """Assemble an ``Observation`` from the agent state (world frame) and images."""
    t_world_base = planar_pose(float(position[0]), float(position[1]), yaw, float(position[2]))
    t_base_optical = camera_extrinsic(0.0, 0.0, config.camera_height, 0.0, math.radians(pitch_deg), 0.0)
    return Observation(
        rgb=rgb,
        depth=depth,
        intrinsics=config.intrinsics,
        t_world_base=t_world_base,
        t_base_optical=t_base_optical,
        camera_pitch_deg=float(pitch_deg),
        step=step,
        stamp=step * config.step_period_s,
        collided=collided,
    )


class SimBackend(abc.ABC):
    """A VLN-CE-style simulator. Positions are world-frame (3,) arrays (z = floor height)."""

    config: SimConfig

    @abc.abstractmethod
    def reset(self, episode: "Episode") -> Observation:
        """Load the episode's scene if needed, place the agent at the start, camera level."""

    @abc.abstractmethod
    def step(self, action: Action) -> Observation:
        """Apply one action (see the module docstring) and observe."""

    @abc.abstractmethod
    def agent_position(self) -> np.ndarray:
        """(3,) agent base position in the world frame."""

    @abc.abstractmethod
    def agent_yaw(self) -> float:
        """Heading in radians about world z (0 = +x, counter-clockwise)."""

    @abc.abstractmethod
    def geodesic_distance(self, a, b) -> float:
        """Shortest navigable path length between two world points; inf if unreachable."""

    @abc.abstractmethod
    def shortest_path_action(self, goal, radius: float | None = None) -> Action:
        """Greedy geodesic follower: FORWARD/LEFT/RIGHT toward ``goal``, STOP once within
        ``radius`` (default ``config.follower_goal_radius``) or when no path exists."""

    @abc.abstractmethod
    def snap_to_navigable(self, point) -> np.ndarray:
        """The navigable point nearest to ``point`` (world frame)."""

    def to_agent_height(self, points) -> np.ndarray:
        """Episode points (world) in the height frame the agent moves in (the navmesh's in Habitat);
        metrics compare the trajectory with the goal and reference path in it. Default: unchanged."""
        return np.array(points, dtype=float)

    def shortest_path(self, a, b) -> np.ndarray:
        """(N, 3) polyline of the shortest path (empty if unreachable). Optional."""
        raise NotImplementedError

    def navigation_grid(self) -> "NavGrid | None":
        """Top-down navigability grid of the current scene for plots (None if unavailable)."""
        return None

    @property
    def camera_pitch_deg(self) -> float:
        """Current camera tilt, > 0 looks down."""
        return 0.0

    def close(self) -> None:
        """Release renderers / simulators."""

    def __enter__(self) -> "SimBackend":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
