"""The simulator interface over habitat-sim (0.2.x - 0.3.x): VLN-CE R2R/RxR in MP3D scenes.

habitat_sim is imported lazily (constructor / ``import_habitat_sim``), so this module
imports anywhere; the error says how to get it. Written against habitat-sim's documented
Python API: ``SimulatorConfiguration``, ``agent.AgentConfiguration`` with ``ActionSpec`` /
``ActuationSpec`` (move_forward 0.25 m, turn_left/right 15 deg, look_up/down 15 deg with a
``constraint``), ``CameraSensorSpec`` colour + depth, ``pathfinder.find_path`` with
``ShortestPath``, ``pathfinder.snap_point``, ``Simulator.make_greedy_follower`` and
``Agent.set_state`` / ``Agent.act`` (all in habitat-sim 0.2.2's public API).

Snapping: habitat-sim's ``snap_point`` returns NaN when no navmesh polygon lies within its
search box (2 m across, src/esp/nav/PathFinder.cpp:94 @ v0.2.2) and may return a point on
a navmesh island on top of furniture. ``snap_to_navigable`` gives instead the nearest point
that the agent can reach (a finite geodesic from where it stands), searching rings on the
agent's floor when the point itself does not snap there.

Heights: the agent stands on the navmesh, which can lie above the floor mesh the episode
points were taken on. ``reset`` measures that offset at the start and places the agent on
the navmesh; ``to_agent_height`` moves the episode's points by it, so metrics compare the
trajectory with the goal and the reference path in the navmesh's height frame.

All inputs and outputs of the backend are in our z-up world frame; conversion to Habitat's
y-up frame happens only through ``coords.py``. Episode files stay in Habitat convention
and are handed to habitat-sim unchanged.
"""

from __future__ import annotations

import importlib
import math
import pathlib
from typing import Any

import numpy as np

from ..core.actions import Action
from .backend import Observation, SimBackend, SimConfig, make_observation, postprocess_depth
from .coords import habitat_quaternion_to_yaw, habitat_to_world, world_to_habitat, yaw_to_habitat_quaternion
from .episodes import Episode
from .navgrid import NavGrid

HABITAT_INSTALL_HELP = (
    "habitat_sim is not importable. The Habitat backend needs habitat-sim 0.2.x-0.3.x "
    "(e.g. `conda install -c conda-forge -c aihabitat habitat-sim=0.3 headless`), VLN-CE "
    "R2R/RxR episodes and the MP3D scenes (scene_id is resolved relative to scenes_dir). "
    "The MuJoCo backend (internvla_s2_node.sim.mujoco_backend) needs none of this."
)
RGB_UUID, DEPTH_UUID = "rgb", "depth"
AGENT_ID = 0
ACTION_KEYS: dict[Action, str] = {
    Action.FORWARD: "move_forward",
    Action.LEFT: "turn_left",
    Action.RIGHT: "turn_right",
    Action.LOOK_UP: "look_up",
    Action.LOOK_DOWN: "look_down",
}
TOPDOWN_RESOLUTION_M = 0.05
RGB_CHANNELS = 3
SNAP_RING_STEP_M = 0.25  # rings searched around a point that does not snap onto the agent's floor
SNAP_RING_MAX_M = 3.0
SNAP_RING_POINTS = 16
START_SNAP_XZ_TOLERANCE_M = 0.05  # the start snaps straight up/down onto the navmesh, or not at all


def import_habitat_sim():
    """``habitat_sim`` or an ImportError that says what to install."""
    try:
        return importlib.import_module("habitat_sim")
    except ImportError as exc:
        raise ImportError(HABITAT_INSTALL_HELP) from exc


def _camera_spec(hsim, uuid: str, sensor_type: Any, config: SimConfig):
    spec = hsim.CameraSensorSpec()
    spec.uuid = uuid
    spec.sensor_type = sensor_type
    spec.sensor_subtype = hsim.SensorSubType.PINHOLE
    spec.resolution = [config.height, config.width]
    spec.position = [0.0, config.camera_height, 0.0]
    spec.hfov = config.hfov_deg
    return spec


def build_configuration(hsim, config: SimConfig, scene_path: str, scene_dataset_config: str | None = None,
                        gpu_device_id: int = 0):
    """A ``habitat_sim.Configuration`` for the VLN-CE R2R setting (sizes from ``config``)."""
    sim_cfg = hsim.SimulatorConfiguration()
    sim_cfg.scene_id = str(scene_path)
    if scene_dataset_config:
        sim_cfg.scene_dataset_config_file = str(scene_dataset_config)
    sim_cfg.gpu_device_id = gpu_device_id
    sim_cfg.random_seed = config.seed
    sim_cfg.allow_sliding = True
    sim_cfg.enable_physics = False

    agent_cfg = hsim.agent.AgentConfiguration()
    agent_cfg.height = config.agent_height
    agent_cfg.radius = config.agent_radius
    agent_cfg.sensor_specifications = [
        _camera_spec(hsim, RGB_UUID, hsim.SensorType.COLOR, config),
        _camera_spec(hsim, DEPTH_UUID, hsim.SensorType.DEPTH, config),
    ]
    act, spec = hsim.agent.ActuationSpec, hsim.agent.ActionSpec
    agent_cfg.action_space = {
        "move_forward": spec("move_forward", act(amount=config.forward_step_m)),
        "turn_left": spec("turn_left", act(amount=config.turn_step_deg)),
        "turn_right": spec("turn_right", act(amount=config.turn_step_deg)),
        "look_up": spec("look_up", act(amount=config.tilt_step_deg, constraint=config.max_tilt_deg)),
        "look_down": spec("look_down", act(amount=config.tilt_step_deg, constraint=config.max_tilt_deg)),
    }
    return hsim.Configuration(sim_cfg, [agent_cfg])


def quaternion_coeffs(q: Any) -> np.ndarray:
    """[x, y, z, w] of a numpy-quaternion, a magnum Quaternion or a 4-sequence [x, y, z, w]."""
    if all(hasattr(q, k) for k in ("x", "y", "z", "w")):
        return np.array([q.x, q.y, q.z, q.w], dtype=float)
    if hasattr(q, "vector") and hasattr(q, "scalar"):
        v = q.vector
        return np.array([v[0], v[1], v[2], q.scalar], dtype=float)
    arr = np.asarray(q, dtype=float).ravel()
    if arr.shape != (4,):
        raise ValueError(f"cannot read a quaternion from {q!r}")
    return arr


def topdown_to_navgrid(topdown: np.ndarray, lower_bound, resolution: float) -> NavGrid:
    """Habitat's ``pathfinder.get_topdown_view`` (rows along +z, columns along +x, origin at
    the lower navmesh bound) as a world-frame ``NavGrid`` (rows along +y, columns along +x).

    World x = -z_hab and world y = -x_hab, so both axes flip and swap:
    ``grid[r, c] = topdown[rows - 1 - c, cols - 1 - r]``."""
    topdown = np.asarray(topdown, dtype=bool)
    rows, cols = topdown.shape
    x_min, floor, z_min = (float(v) for v in np.asarray(lower_bound, dtype=float)[:3])
    navigable = topdown[::-1, ::-1].T
    origin = (-(z_min + rows * resolution), -(x_min + cols * resolution))
    return NavGrid(navigable, origin, resolution, floor_z=floor)


class HabitatBackend(SimBackend):
    """VLN-CE episodes in habitat-sim; positions in and out are world-frame (z up)."""

    def __init__(self, scenes_dir: str | pathlib.Path, config: SimConfig | None = None,
                 scene_dataset_config: str | None = None, gpu_device_id: int = 0):
        self.hsim = import_habitat_sim()
        self._quat_from_coeffs = importlib.import_module("habitat_sim.utils.common").quat_from_coeffs
        self._follower_error = importlib.import_module("habitat_sim.errors").GreedyFollowerError
        self.config = config or SimConfig()
        self.scenes_dir = pathlib.Path(scenes_dir)
        self.scene_dataset_config = scene_dataset_config
        self.gpu_device_id = gpu_device_id
        self._sim = None
        self._scene_path: str | None = None
        self._followers: dict[float, Any] = {}
        self._pitch_deg = 0.0
        self._step = 0
        self._height_offset = 0.0  # navmesh height minus the episode's start height

    # ------------------------------------------------------------------ scenes
    def resolve_scene(self, scene_id: str) -> pathlib.Path:
        path = pathlib.Path(scene_id)
        path = path if path.is_absolute() else self.scenes_dir / path
        if not path.is_file():
            raise FileNotFoundError(f"scene {scene_id!r} not found at {path} (scenes_dir={self.scenes_dir})")
        return path

    def _load(self, scene_id: str) -> None:
        path = str(self.resolve_scene(scene_id))
        if path == self._scene_path and self._sim is not None:
            return
        if self._sim is not None:
            self._sim.close()
            self._sim = None
        cfg = build_configuration(self.hsim, self.config, path, self.scene_dataset_config, self.gpu_device_id)
        self._sim = self.hsim.Simulator(cfg)
        self._scene_path = path
        self._followers = {}

    @property
    def sim(self):
        if self._sim is None:
            raise RuntimeError("no scene loaded: call reset() first")
        return self._sim

    def _agent(self):
        return self.sim.get_agent(AGENT_ID)

    # ------------------------------------------------------------------ interface
    def reset(self, episode: Episode) -> Observation:
        self._load(episode.scene_id)
        start = np.asarray(episode.start_position, dtype=float)
        self._height_offset = self._navmesh_height(start) - start[1]
        self._set_agent(start + [0.0, self._height_offset, 0.0], np.asarray(episode.start_rotation, dtype=float))
        self._step = 0
        return self._observe(self.sim.get_sensor_observations() if self.config.render else None, False)

    def _navmesh_height(self, p_hab: np.ndarray) -> float:
        """Habitat y of the navmesh straight below/above ``p_hab`` (its own y if there is none)."""
        snapped = np.asarray(self.sim.pathfinder.snap_point(p_hab.astype(np.float32)), dtype=float)
        if np.all(np.isfinite(snapped)) and np.hypot(*(snapped - p_hab)[[0, 2]]) <= START_SNAP_XZ_TOLERANCE_M:
            return float(snapped[1])
        return float(p_hab[1])

    def _set_agent(self, p_hab: np.ndarray, q_xyzw: np.ndarray) -> None:
        state = self.hsim.agent.AgentState()
        state.position = np.asarray(p_hab, dtype=np.float32)
        state.rotation = self._quat_from_coeffs(np.asarray(q_xyzw, dtype=float))
        self._agent().set_state(state, reset_sensors=True)
        self._pitch_deg = 0.0

    def place(self, position, yaw: float, pitch_deg: float = 0.0, depth: bool = True) -> Observation:
        """Put the agent at ``position`` (world, on the navmesh) with heading ``yaw`` and the camera
        tilted by ``pitch_deg`` in tilt steps (``Agent.set_state``, then look_down/look_up). ``depth`` is
        accepted for the recorder; Habitat renders its sensors together, so depth comes along."""
        self._set_agent(world_to_habitat(np.asarray(position, dtype=float)[:3]), yaw_to_habitat_quaternion(float(yaw)))
        cfg = self.config
        target = float(np.clip(pitch_deg, -cfg.max_tilt_deg, cfg.max_tilt_deg))
        key = "look_down" if target > 0 else "look_up"
        for _ in range(int(round(abs(target) / cfg.tilt_step_deg))):
            self._agent().act(key)
            self._pitch_deg += math.copysign(cfg.tilt_step_deg, target)
        self._step = 0
        return self._observe(self.sim.get_sensor_observations() if cfg.render else None, False)

    def to_agent_height(self, points) -> np.ndarray:
        """Episode points (world) moved by the navmesh offset measured at ``reset``."""
        pts = np.array(points, dtype=float)
        if pts.size:
            pts[..., 2] += self._height_offset  # world z = Habitat y
        return pts

    def step(self, action: Action) -> Observation:
        action = Action(action)
        raw, collided = None, False
        if action == Action.STOP:
            raw = self.sim.get_sensor_observations() if self.config.render else None
        elif self.config.render:
            raw = self.sim.step(ACTION_KEYS[action])
            collided = bool(raw.get("collided", False))
        else:
            collided = bool(self._agent().act(ACTION_KEYS[action]))
        if action in (Action.LOOK_UP, Action.LOOK_DOWN):
            sign = 1.0 if action == Action.LOOK_DOWN else -1.0
            cfg = self.config
            self._pitch_deg = float(np.clip(self._pitch_deg + sign * cfg.tilt_step_deg, -cfg.max_tilt_deg, cfg.max_tilt_deg))
        self._step += 1
        return self._observe(raw, collided)

    def _observe(self, raw: dict | None, collided: bool) -> Observation:
        rgb = depth = None
        if raw is not None:
            rgb = np.ascontiguousarray(np.asarray(raw[RGB_UUID])[..., :RGB_CHANNELS], dtype=np.uint8)
            d = np.asarray(raw[DEPTH_UUID], dtype=np.float32)
            depth = postprocess_depth(d.reshape(d.shape[:2]), self.config.min_depth, self.config.max_depth)
        return make_observation(self.config, self.agent_position(), self.agent_yaw(), self._pitch_deg, self._step,
                                rgb, depth, collided)

    def agent_position(self) -> np.ndarray:
        return habitat_to_world(np.asarray(self._agent().get_state().position, dtype=float))

    def agent_yaw(self) -> float:
        return habitat_quaternion_to_yaw(quaternion_coeffs(self._agent().get_state().rotation))

    @property
    def camera_pitch_deg(self) -> float:
        return self._pitch_deg

    def _path(self, a, b):
        path = self.hsim.ShortestPath()
        path.requested_start = world_to_habitat(np.asarray(a, dtype=float)[:3]).astype(np.float32)
        path.requested_end = world_to_habitat(np.asarray(b, dtype=float)[:3]).astype(np.float32)
        found = self.sim.pathfinder.find_path(path)
        return path, bool(found)

    def geodesic_distance(self, a, b) -> float:
        path, found = self._path(a, b)
        d = float(path.geodesic_distance) if found else math.inf
        return d if math.isfinite(d) else math.inf

    def shortest_path(self, a, b) -> np.ndarray:
        path, found = self._path(a, b)
        if not found:
            return np.zeros((0, 3))
        return habitat_to_world(np.asarray([np.asarray(p, dtype=float) for p in path.points])).reshape(-1, 3)

    def shortest_path_action(self, goal, radius: float | None = None) -> Action:
        radius = self.config.follower_goal_radius if radius is None else float(radius)
        follower = self._followers.get(radius)
        if follower is None:
            follower = self.sim.make_greedy_follower(
                AGENT_ID, radius, stop_key=Action.STOP, forward_key=Action.FORWARD,
                left_key=Action.LEFT, right_key=Action.RIGHT,
            )
            self._followers[radius] = follower
        try:
            action = follower.next_action_along(world_to_habitat(np.asarray(goal, dtype=float)[:3]).astype(np.float32))
        except self._follower_error:
            return Action.STOP  # as habitat-lab's ShortestPathFollower(stop_on_error=True)
        return Action.STOP if action is None else Action(action)

    def snap_to_navigable(self, point) -> np.ndarray:
        """The reachable navigable point nearest to ``point``: its snap if the agent can walk there,
        else the nearest reachable one on the agent's floor (rings up to SNAP_RING_MAX_M), else where
        the agent stands. Never NaN, never an island on top of furniture."""
        p = world_to_habitat(np.asarray(point, dtype=float)[:3])
        here = np.asarray(self._agent().get_state().position, dtype=float)
        on_floor = np.array([p[0], here[1], p[2]])
        for candidate in (p, on_floor):
            snapped = self._reachable_snap(candidate, here)
            if snapped is not None:
                return habitat_to_world(snapped)
        for radius in np.arange(SNAP_RING_STEP_M, SNAP_RING_MAX_M + 1e-9, SNAP_RING_STEP_M):
            angles = np.linspace(0.0, 2.0 * math.pi, SNAP_RING_POINTS, endpoint=False)
            ring = on_floor + radius * np.stack([np.cos(angles), np.zeros_like(angles), np.sin(angles)], axis=1)
            found = [s for s in (self._reachable_snap(c, here) for c in ring) if s is not None]
            if found:
                return habitat_to_world(min(found, key=lambda s: np.hypot(*(s - p)[[0, 2]])))
        return habitat_to_world(here)

    def _reachable_snap(self, p_hab: np.ndarray, here: np.ndarray) -> np.ndarray | None:
        snapped = np.asarray(self.sim.pathfinder.snap_point(p_hab.astype(np.float32)), dtype=float)
        if not np.all(np.isfinite(snapped)):
            return None  # the real pathfinder's answer far from the navmesh
        path = self.hsim.ShortestPath()
        path.requested_start, path.requested_end = here.astype(np.float32), snapped.astype(np.float32)
        found = self.sim.pathfinder.find_path(path)
        return snapped if found and math.isfinite(float(path.geodesic_distance)) else None

    def navigation_grid(self, resolution: float = TOPDOWN_RESOLUTION_M) -> NavGrid:
        """Top-down navigability at the agent's floor (for plots)."""
        floor = float(np.asarray(self._agent().get_state().position, dtype=float)[1])
        topdown = self.sim.pathfinder.get_topdown_view(resolution, floor)
        lower, _ = self.sim.pathfinder.get_bounds()
        lower = np.asarray(lower, dtype=float).copy()
        lower[1] = floor
        return topdown_to_navgrid(topdown, lower, resolution)

    def close(self) -> None:
        if self._sim is not None:
            self._sim.close()
            self._sim = None
            self._scene_path = None
