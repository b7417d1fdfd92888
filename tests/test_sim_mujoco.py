"""MuJoCo backend: procedural scenes, kinematics, collisions and rendering (small images)."""

import json
import math

import numpy as np
import pytest

from internvla_s2_node.core.actions import Action
from internvla_s2_node.core.geometry import intrinsics_from_hfov, pixel_to_camera
from internvla_s2_node.sim.backend import SimConfig
from internvla_s2_node.sim.mujoco_backend import BUNDLED_SCENES_DIR, MujocoBackend
from internvla_s2_node.sim.scenes import Room, SceneSpec, Wall, generate_scene, scene_mjcf, scene_navgrid

W, H = 160, 120


def box_room():
    """One empty 4 m x 3 m room: wall faces at x = 0.06, 3.94 and y = 0.06, 2.94."""
    walls = [Wall(0, 0, 4, 0), Wall(0, 3, 4, 3), Wall(0, 0, 0, 3), Wall(4, 0, 4, 3)]
    return SceneSpec("box", 0, (4.0, 3.0), [Room("living room", "living room", (0, 0, 4, 3), (0.9, 0.85, 0.7))], walls, [], [])


@pytest.fixture(scope="module")
def box_backend():
    backend = MujocoBackend(SimConfig(width=W, height=H))
    backend.load_scene(box_room())
    yield backend
    backend.close()


def test_generator_is_deterministic_and_bundled_scenes_are_sound():
    a, b = generate_scene(7, n_rooms=3), generate_scene(7, n_rooms=3)
    assert json.dumps(a.to_json()) == json.dumps(b.to_json())
    assert len(a.rooms) == 3 and len(a.doors) >= 2
    specs = [SceneSpec.load(p) for p in sorted(BUNDLED_SCENES_DIR.glob("*.json"))]
    assert len(specs) >= 3
    for spec in specs:
        grid = scene_navgrid(spec, 0.18)
        names = [f.name for f in spec.furniture]
        assert len(names) == len(set(names)) >= 4
        assert len({f.colour for f in spec.furniture}) >= 4  # distinctly coloured
        assert all(grid.is_navigable(f.approach_point()) for f in spec.furniture)
        centres = [grid.snap(np.append(r.center, 0.0)) for r in spec.rooms]
        assert all(math.isfinite(grid.geodesic_distance(centres[0], c)) for c in centres)  # doorways connect
        assert "<camera name=\"agent\"" in scene_mjcf(spec)


def test_render_is_non_trivial_metric_and_view_dependent():
    backend = MujocoBackend(SimConfig(width=W, height=H))
    backend.load_scene("house_c.json")
    # The largest room: from its centre the 1.25 m camera sees floor and furniture below the walls.
    room = max(backend.spec.rooms, key=lambda r: (r.bounds[2] - r.bounds[0]) * (r.bounds[3] - r.bounds[1]))
    views = [backend.place(np.append(room.center, 0.0), yaw) for yaw in (0.0, math.pi / 2, math.pi)]
    for obs in views:
        assert obs.rgb.shape == (H, W, 3) and obs.rgb.dtype == np.uint8
        assert obs.rgb.std() > 20 and obs.rgb.mean() > 40  # lit, not black
        assert obs.depth.shape == (H, W) and obs.depth.dtype == np.float32
        assert obs.depth.min() >= 0.0 and obs.depth.max() <= 10.0
        assert (obs.depth > 0).mean() > 0.99  # closed house: everything returns
        assert np.allclose(obs.intrinsics, intrinsics_from_hfov(W, H, 79.0))
    diffs = [np.abs(views[i].rgb.astype(int) - views[j].rgb.astype(int)).mean() for i, j in ((0, 1), (1, 2), (0, 2))]
    assert min(diffs) > 10
    backend.close()


def test_depth_and_pose_agree_with_the_pinhole_model(box_backend):
    obs = box_backend.place([1.0, 1.5, 0.0], 0.0)  # 2.94 m from the wall: the 30 deg look-down ray meets the floor first
    cy, cx = H // 2, W // 2
    assert obs.depth[cy, cx] == pytest.approx(2.94, abs=0.02)
    t = obs.t_world_optical
    for v in range(cy - 20, cy + 21, 10):
        for u in range(cx - 40, cx + 41, 20):
            p = t @ np.append(pixel_to_camera(u, v, float(obs.depth[v, u]), obs.intrinsics), 1.0)
            assert p[0] == pytest.approx(3.94, abs=0.03)  # every back-projected pixel lies on the wall
    box_backend.step(Action.LOOK_DOWN)
    down = box_backend.step(Action.LOOK_DOWN)
    assert down.camera_pitch_deg == 30.0
    assert down.t_world_optical[2, 2] < 0  # optical axis points down
    assert down.depth[cy, cx] == pytest.approx(1.25 / math.sin(math.radians(30)), abs=0.03)  # floor, camera at R2R's 1.25 m
    p = down.t_world_optical @ np.append(pixel_to_camera(cx, cy, float(down.depth[cy, cx]), down.intrinsics), 1.0)
    assert p[2] == pytest.approx(0.0, abs=0.02)


def test_actions_and_wall_sliding(box_backend):
    cfg = box_backend.config
    obs = box_backend.place([1.0, 1.5, 0.0], 0.0)
    obs = box_backend.step(Action.FORWARD)
    assert np.allclose(obs.position, [1.25, 1.5, 0.0]) and not obs.collided
    obs = box_backend.step(Action.LEFT)
    assert obs.yaw == pytest.approx(math.radians(15))
    obs = box_backend.step(Action.RIGHT)
    obs = box_backend.step(Action.STOP)
    assert np.allclose(obs.position, [1.25, 1.5, 0.0]) and obs.yaw == pytest.approx(0.0) and obs.step == 4
    for _ in range(6):
        obs = box_backend.step(Action.LOOK_UP)
    assert obs.camera_pitch_deg == -cfg.max_tilt_deg
    box_backend.config = SimConfig(width=W, height=H, render=False)  # no images needed below
    try:
        box_backend.place([3.0, 1.0, 0.0], math.radians(20))
        limit = 4.0 - 0.06 - cfg.agent_radius
        ys, collided = [], False
        for _ in range(10):
            obs = box_backend.step(Action.FORWARD)
            assert obs.rgb is None and obs.position[0] <= limit + 1e-9
            collided |= obs.collided
            ys.append(obs.position[1])
        assert collided and ys[-1] == pytest.approx(1.0 + 10 * 0.25 * math.sin(math.radians(20)))  # kept sliding along +y
    finally:
        box_backend.config = cfg


def test_scene_id_resolution_and_errors(tmp_path):
    backend = MujocoBackend(SimConfig(render=False), scenes_dir=tmp_path)
    box_room().save(tmp_path / "box.json")
    assert backend.load_scene("box").name == "box"
    with pytest.raises(FileNotFoundError, match="nope"):
        backend.load_scene("nope.json")
    with pytest.raises(RuntimeError):
        MujocoBackend().step(Action.FORWARD)


def test_snap_puts_points_above_furniture_or_off_the_map_on_the_nearest_reachable_floor_point():
    """Both backends snap to the nearest navigable floor point (issue 12; the Habitat backend's stand-in
    test is in test_sim_habitat.py): a pixel goal on furniture or beyond a wall is followed toward there."""
    spec = SceneSpec.load(sorted(BUNDLED_SCENES_DIR.glob("*.json"))[0])
    backend = MujocoBackend(SimConfig(render=False))
    try:
        backend.load_scene(spec)
        grid = backend.grid
        start = grid.snap(np.append(spec.rooms[0].center, 0.0))
        backend.place(start, 0.0)
        for xy in [spec.furniture[0].center, (-5.0, -5.0)]:
            point = np.array([*xy, 0.8])  # on a table top / far outside the house
            snapped = backend.snap_to_navigable(point)
            assert snapped[2] == grid.floor_z and grid.is_navigable(snapped)
            nearest = np.min(np.linalg.norm(grid._free_xy - point[:2], axis=1))
            assert np.linalg.norm(snapped[:2] - point[:2]) == pytest.approx(nearest)
            assert math.isfinite(backend.geodesic_distance(start, snapped))
    finally:
        backend.close()
