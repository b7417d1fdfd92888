"""The simulator interface over MuJoCo: procedural houses rendered with ``mujoco.Renderer``.

The agent is kinematic: its pose lives here, collisions and geodesics come from the
scene's occupancy grid (``navgrid.NavGrid``, obstacles inflated by the agent radius,
sliding along walls), and the only thing MuJoCo does is render the RGB-D camera at the
agent pose with the current tilt. Depth is MuJoCo's linearised z-depth (metres), with
far-plane pixels reported as 0 (no return) like Habitat.

Scenes are ``SceneSpec`` JSON files; an episode's ``scene_id`` is resolved relative to
``scenes_dir`` (default: the bundled ``assets/scenes``).

Threading: the renderer owns an OpenGL (EGL/OSMesa) context created on first render (``gl.py``
picks the platform when MUJOCO_GL is unset on a headless machine);
call ``reset``/``step``/``render`` from one thread (e.g. the ROS bridge's executor thread).
"""

from __future__ import annotations

import math
import pathlib

import numpy as np

from ..core.actions import Action
from ..core.geometry import R_BODY_OPTICAL, rotation_rpy
from .backend import Observation, SimBackend, SimConfig, make_observation, postprocess_depth
from .coords import wrap_angle
from .episodes import Episode
from .gl import import_mujoco
from .scenes import GRID_RESOLUTION, SceneSpec, scene_mjcf, scene_navgrid

ASSETS_DIR = pathlib.Path(__file__).resolve().parent / "assets"
BUNDLED_SCENES_DIR = ASSETS_DIR / "scenes"
BUNDLED_EPISODES = ASSETS_DIR / "episodes" / "mujoco_val.json.gz"
CAMERA_NAME = "agent"
FAR_PLANE_FRACTION = 0.99  # depth beyond this fraction of zfar counts as "no return"
# Optical frame (x right, y down, z forward) -> MuJoCo camera frame (x right, y up, looks along -z).
R_OPTICAL_MJCAM = np.diag([1.0, -1.0, -1.0])


class MujocoBackend(SimBackend):
    """Kinematic agent in a procedural house, rendered by MuJoCo (EGL/OSMesa headless)."""

    def __init__(self, config: SimConfig | None = None, scenes_dir: str | pathlib.Path | None = None,
                 grid_resolution: float = GRID_RESOLUTION):
        self.config = config or SimConfig()
        self.scenes_dir = pathlib.Path(scenes_dir) if scenes_dir is not None else BUNDLED_SCENES_DIR
        self.grid_resolution = grid_resolution
        self.spec: SceneSpec | None = None
        self.grid = None
        self._scene_key: str | None = None
        self._model = self._data = self._renderer = None
        self._cam_id = -1
        self._position = np.zeros(3)
        self._yaw = 0.0
        self._pitch_deg = 0.0
        self._step = 0

    # ------------------------------------------------------------------ scenes
    def resolve_scene(self, scene_id: str) -> pathlib.Path:
        path = pathlib.Path(scene_id)
        candidates = [path] if path.is_absolute() else [self.scenes_dir / path, self.scenes_dir / f"{path}.json"]
        for c in candidates:
            if c.is_file():
                return c
        raise FileNotFoundError(f"scene {scene_id!r} not found (looked for {', '.join(map(str, candidates))})")

    def load_scene(self, scene: SceneSpec | str | pathlib.Path) -> SceneSpec:
        """Make ``scene`` current (a spec, or a scene id / path); no-op if it already is."""
        if isinstance(scene, SceneSpec):
            key, spec = f"spec:{id(scene)}", scene
        else:
            path = self.resolve_scene(str(scene))
            key = str(path)
            if key == self._scene_key:
                return self.spec
            spec = SceneSpec.load(path)
        if key == self._scene_key:
            return self.spec
        self._release_renderer()
        self.spec, self._scene_key = spec, key
        self.grid = scene_navgrid(spec, self.config.agent_radius, self.grid_resolution)
        self._model = self._data = None
        return spec

    def _ensure_model(self) -> None:
        if self._model is not None:
            return
        mujoco = import_mujoco()  # lazy: metric-only runs need no OpenGL

        cfg = self.config
        xml = scene_mjcf(self.spec, cfg.width, cfg.height, cfg.vfov_deg, CAMERA_NAME)
        self._model = mujoco.MjModel.from_xml_string(xml)
        self._data = mujoco.MjData(self._model)
        self._cam_id = mujoco.mj_name2id(self._model, mujoco.mjtObj.mjOBJ_CAMERA, CAMERA_NAME)

    def _release_renderer(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    # ------------------------------------------------------------------ interface
    def reset(self, episode: Episode) -> Observation:
        self.load_scene(episode.scene_id)
        return self.place(episode.start_world, episode.start_yaw)

    def place(self, position, yaw: float, pitch_deg: float = 0.0, depth: bool = True) -> Observation:
        """Put the agent at ``position`` (snapped to the floor) with heading ``yaw``; ``depth=False``: no depth image
        (one render pass instead of two; the RGB image is the same)."""
        if self.grid is None:
            raise RuntimeError("no scene loaded: call reset() or load_scene() first")
        self._position = self.grid.snap(position)
        self._yaw = wrap_angle(float(yaw))
        self._pitch_deg = float(np.clip(pitch_deg, -self.config.max_tilt_deg, self.config.max_tilt_deg))
        self._step = 0
        return self._observe(False, depth)

    def step(self, action: Action) -> Observation:
        if self.grid is None:
            raise RuntimeError("step() before reset()")
        action = Action(action)
        cfg, collided = self.config, False
        if action == Action.FORWARD:
            self._position, collided = self.grid.move(self._position, self._yaw, cfg.forward_step_m)
        elif action in (Action.LEFT, Action.RIGHT):
            sign = 1.0 if action == Action.LEFT else -1.0
            self._yaw = wrap_angle(self._yaw + sign * math.radians(cfg.turn_step_deg))
        elif action in (Action.LOOK_UP, Action.LOOK_DOWN):
            sign = 1.0 if action == Action.LOOK_DOWN else -1.0
            self._pitch_deg = float(np.clip(self._pitch_deg + sign * cfg.tilt_step_deg, -cfg.max_tilt_deg, cfg.max_tilt_deg))
        self._step += 1
        return self._observe(collided)

    def agent_position(self) -> np.ndarray:
        return self._position.copy()

    def agent_yaw(self) -> float:
        return self._yaw

    @property
    def camera_pitch_deg(self) -> float:
        return self._pitch_deg

    def geodesic_distance(self, a, b) -> float:
        return self.grid.geodesic_distance(a, b)

    def shortest_path(self, a, b) -> np.ndarray:
        return self.grid.shortest_path(a, b)

    def shortest_path_action(self, goal, radius: float | None = None) -> Action:
        cfg = self.config
        radius = cfg.follower_goal_radius if radius is None else radius
        return self.grid.next_action(self._position, self._yaw, goal, radius, cfg.forward_step_m, cfg.turn_step_deg)

    def snap_to_navigable(self, point) -> np.ndarray:
        return self.grid.snap(point)

    def navigation_grid(self):
        return self.grid

    def close(self) -> None:
        self._release_renderer()
        self._model = self._data = None

    # ------------------------------------------------------------------ rendering
    def _observe(self, collided: bool, with_depth: bool = True) -> Observation:
        rgb = depth = None
        if self.config.render:
            rgb, depth = self.render(with_depth)
        return make_observation(self.config, self._position, self._yaw, self._pitch_deg, self._step, rgb, depth, collided)

    def camera_pose(self) -> tuple[np.ndarray, np.ndarray]:
        """World position and rotation (optical frame) of the camera."""
        r_world_base = rotation_rpy(0.0, 0.0, self._yaw)
        r_world_optical = r_world_base @ rotation_rpy(0.0, math.radians(self._pitch_deg), 0.0) @ R_BODY_OPTICAL
        position = self._position + np.array([0.0, 0.0, self.config.camera_height])
        return position, r_world_optical

    def render(self, depth: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
        """RGB (HxWx3 uint8) and depth (HxW float32 m, None with ``depth=False``) at the current agent pose."""
        mujoco = import_mujoco()

        self._ensure_model()
        if self._renderer is None:
            self._renderer = mujoco.Renderer(self._model, self.config.height, self.config.width)
        position, r_world_optical = self.camera_pose()
        quat = np.zeros(4)
        mujoco.mju_mat2Quat(quat, (r_world_optical @ R_OPTICAL_MJCAM).ravel())
        self._model.cam_pos[self._cam_id] = position
        self._model.cam_quat[self._cam_id] = quat
        mujoco.mj_kinematics(self._model, self._data)
        mujoco.mj_camlight(self._model, self._data)
        renderer = self._renderer
        renderer.update_scene(self._data, camera=self._cam_id)
        rgb = renderer.render().copy()
        if not depth:
            return rgb, None
        renderer.enable_depth_rendering()
        try:
            renderer.update_scene(self._data, camera=self._cam_id)
            raw = renderer.render().copy()
        finally:
            renderer.disable_depth_rendering()
        zfar = self._model.vis.map.zfar * self._model.stat.extent
        raw[raw >= FAR_PLANE_FRACTION * zfar] = 0.0
        return rgb, postprocess_depth(raw, self.config.min_depth, self.config.max_depth)
