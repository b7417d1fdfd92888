"""Habitat backend without habitat-sim: configuration, conversions and calls against a fake module.

habitat-sim cannot be installed here: every test runs against stand-ins (FakeSimulator,
NavmeshStandIn) written to habitat-sim 0.2.2's public Python API and documented behaviour."""

import math
import sys
import types

import numpy as np
import pytest

from internvla_s2_node.core.actions import Action
from internvla_s2_node.sim import habitat_backend as hb
from internvla_s2_node.sim.backend import SimConfig
from internvla_s2_node.sim.coords import habitat_to_world, world_to_habitat
from internvla_s2_node.sim.episodes import Episode, Goal
from internvla_s2_node.sim.loop import run_episode
from internvla_s2_node.sim.policies import ScriptedPolicy


class Attrs:
    def __init__(self, *args, **kwargs):
        self.args = args
        self.__dict__.update(kwargs)


class FakeQuat:  # numpy-quaternion style attributes
    def __init__(self, coeffs):
        self.x, self.y, self.z, self.w = (float(v) for v in coeffs)


class FakeAgent:
    def __init__(self, log):
        self.log = log
        self.state = Attrs(position=np.zeros(3, dtype=np.float32), rotation=FakeQuat([0, 0, 0, 1]))

    def get_state(self):
        return self.state

    def set_state(self, state, reset_sensors=True):
        self.log.append(("set_state", reset_sensors))
        self.state = state

    def act(self, key):
        self.log.append(("act", key))
        if key == "move_forward":  # Habitat forward is -z in the agent frame (identity rotation here)
            self.state.position = self.state.position + np.array([0, 0, -0.25], dtype=np.float32)
        return key == "turn_left"


class FakePathfinder:
    def find_path(self, path):
        a, b = np.asarray(path.requested_start), np.asarray(path.requested_end)
        if b[0] > 50:  # "another island"
            path.geodesic_distance = math.inf
            return False
        path.geodesic_distance = float(np.linalg.norm(a - b))
        path.points = [a, b]
        return True

    def snap_point(self, p):
        return np.array([p[0], 0.0, p[2]], dtype=np.float32)

    def get_topdown_view(self, mpp, height):
        view = np.zeros((4, 6), dtype=bool)  # rows along z, columns along x
        view[1, 4] = True
        return view

    def get_bounds(self):
        return np.array([-1.0, 0.0, 2.0]), np.array([2.0, 3.0, 4.0])


class FakeSimulator:
    instances = []

    def __init__(self, cfg):
        self.cfg = cfg
        self.log = []
        self.agent = FakeAgent(self.log)
        self.pathfinder = FakePathfinder()
        self.closed = False
        FakeSimulator.instances.append(self)

    def get_agent(self, agent_id):
        return self.agent

    def _obs(self):
        h, w = self.cfg.agents[0].sensor_specifications[0].resolution
        depth = np.full((h, w), 4.0, dtype=np.float32)
        depth[0, 0], depth[0, 1] = 0.0, 25.0  # no return; beyond range
        return {"rgb": np.full((h, w, 4), 9, dtype=np.uint8), "depth": depth}

    def get_sensor_observations(self):
        return self._obs()

    def step(self, key):
        collided = self.agent.act(key)
        return {**self._obs(), "collided": collided}

    def make_greedy_follower(self, agent_id, goal_radius, **keys):
        sim = self

        class Follower:
            def next_action_along(self, goal):
                sim.log.append(("follow", np.asarray(goal).copy(), goal_radius))
                if goal[0] > 50:
                    raise GreedyFollowerError()
                close = np.linalg.norm(np.asarray(goal) - sim.agent.state.position) <= goal_radius
                return keys["stop_key"] if close else keys["forward_key"]

        return Follower()

    def close(self):
        self.closed = True


class GreedyFollowerError(Exception):
    pass


@pytest.fixture
def fake_habitat(monkeypatch):
    hsim = types.ModuleType("habitat_sim")
    agent = types.ModuleType("habitat_sim.agent")
    utils = types.ModuleType("habitat_sim.utils")
    common = types.ModuleType("habitat_sim.utils.common")
    errors = types.ModuleType("habitat_sim.errors")
    for name in ("SimulatorConfiguration", "CameraSensorSpec", "ShortestPath"):
        setattr(hsim, name, type(name, (Attrs,), {}))
    hsim.Configuration = lambda sim_cfg, agents: Attrs(sim_cfg=sim_cfg, agents=agents)
    hsim.SensorType = types.SimpleNamespace(COLOR="COLOR", DEPTH="DEPTH")
    hsim.SensorSubType = types.SimpleNamespace(PINHOLE="PINHOLE")
    hsim.Simulator = FakeSimulator
    agent.AgentConfiguration = type("AgentConfiguration", (Attrs,), {})
    agent.AgentState = type("AgentState", (Attrs,), {})
    agent.ActionSpec = lambda name, actuation: Attrs(name=name, actuation=actuation)
    agent.ActuationSpec = lambda amount, constraint=None: Attrs(amount=amount, constraint=constraint)
    common.quat_from_coeffs = FakeQuat
    errors.GreedyFollowerError = GreedyFollowerError
    hsim.agent, hsim.utils, hsim.errors, utils.common = agent, utils, errors, common
    for name, mod in (("habitat_sim", hsim), ("habitat_sim.agent", agent), ("habitat_sim.utils", utils),
                      ("habitat_sim.utils.common", common), ("habitat_sim.errors", errors)):
        monkeypatch.setitem(sys.modules, name, mod)
    FakeSimulator.instances.clear()
    return hsim


def episode(scene="mp3d/abc/abc.glb"):
    yaw = math.pi / 2  # facing world +y = Habitat -x
    return Episode(1, scene, np.array([1.0, 0.0, 2.0]), np.array([0, math.sin(yaw / 2), 0, math.cos(yaw / 2)]),
                   (), np.zeros((0, 3)), "go")


def test_missing_habitat_sim_gives_a_clear_import_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "habitat_sim", None)
    with pytest.raises(ImportError, match="habitat-sim 0.2.x-0.3.x"):
        hb.HabitatBackend("/nonexistent")


def test_configuration_matches_the_r2r_setting(fake_habitat):
    cfg = hb.build_configuration(fake_habitat, SimConfig(), "/scenes/x.glb", "/d/mp3d.scene_dataset_config.json")
    sim_cfg, (agent_cfg,) = cfg.sim_cfg, cfg.agents
    assert sim_cfg.scene_id == "/scenes/x.glb" and sim_cfg.allow_sliding is True
    assert sim_cfg.scene_dataset_config_file.endswith("mp3d.scene_dataset_config.json")
    rgb, depth = agent_cfg.sensor_specifications
    assert (rgb.uuid, rgb.sensor_type, depth.uuid, depth.sensor_type) == ("rgb", "COLOR", "depth", "DEPTH")
    # Agent 1.5 m tall, radius 0.1 m, camera at 1.25 m: habitat-lab's defaults, which upstream's R2R config
    # keeps (InternNav scripts/eval/configs/vln_r2r.yaml @7a5c624 lines 6 and 20-32 set the rgbd_agent's
    # sensor sizes only; habitat-lab habitat/config/default_structured_configs.py @0fb6f43 line 1544
    # `position ... [0.0, 1.25, 0.0]`, lines 1727-1728 `height: float = 1.5`, `radius: float = 0.1`).
    assert (agent_cfg.height, agent_cfg.radius) == (1.5, 0.1)
    for s in (rgb, depth):
        assert s.resolution == [480, 640] and s.hfov == 79.0 and s.position == [0.0, 1.25, 0.0]
        assert s.sensor_subtype == "PINHOLE"
    space = agent_cfg.action_space
    assert set(space) == {"move_forward", "turn_left", "turn_right", "look_up", "look_down"}
    assert space["move_forward"].actuation.amount == 0.25
    assert space["turn_left"].actuation.amount == space["turn_right"].actuation.amount == 15.0
    assert space["look_down"].actuation.amount == 15.0 and space["look_down"].actuation.constraint == 60.0
    assert all(spec.name == key for key, spec in space.items())


def test_rxr_agent_setting_is_a_named_option(fake_habitat):
    # VLN-CE's RxR setting (agent and camera 0.88 m, radius 0.18 m), kept for RxR episodes.
    cfg = hb.build_configuration(fake_habitat, SimConfig.for_agent("rxr"), "/scenes/x.glb")
    (agent_cfg,) = cfg.agents
    assert (agent_cfg.height, agent_cfg.radius) == (0.88, 0.18)
    assert all(s.position == [0.0, 0.88, 0.0] for s in agent_cfg.sensor_specifications)


def test_backend_converts_frames_and_tracks_pitch(fake_habitat, tmp_path):
    scene = tmp_path / "mp3d" / "abc" / "abc.glb"
    scene.parent.mkdir(parents=True)
    scene.write_bytes(b"")
    backend = hb.HabitatBackend(tmp_path, SimConfig(width=8, height=6))
    obs = backend.reset(episode())
    sim = FakeSimulator.instances[-1]
    assert sim.cfg.sim_cfg.scene_id == str(scene)
    assert ("set_state", True) in sim.log
    assert np.allclose(obs.position, habitat_to_world([1.0, 0.0, 2.0]))  # world (-2, -1, 0)
    assert obs.yaw == pytest.approx(math.pi / 2)
    assert obs.rgb.shape == (6, 8, 3) and obs.rgb.dtype == np.uint8
    assert obs.depth[0, 0] == 0.0 and obs.depth[0, 1] == 10.0 and obs.depth[1, 1] == 4.0
    obs = backend.step(Action.LOOK_DOWN)
    obs = backend.step(Action.LOOK_DOWN)
    assert obs.camera_pitch_deg == 30.0 and sim.log.count(("act", "look_down")) == 2
    for _ in range(5):
        obs = backend.step(Action.LOOK_DOWN)
    assert obs.camera_pitch_deg == 60.0  # constraint
    assert backend.step(Action.LEFT).collided is True
    n_acts = sum(1 for e in sim.log if e[0] == "act")
    backend.step(Action.STOP)
    assert sum(1 for e in sim.log if e[0] == "act") == n_acts  # STOP does not step the simulator
    assert backend.geodesic_distance([0, 0, 0], [3, 4, 0]) == pytest.approx(5.0)
    assert math.isinf(backend.geodesic_distance([0, 0, 0], [0, -60, 0]))  # Habitat x = 60: unreachable
    assert np.allclose(backend.snap_to_navigable([1.0, 2.0, 0.7]), [1.0, 2.0, 0.0])
    path = backend.shortest_path([0, 0, 0], [3, 4, 0])
    assert np.allclose(path, [[0, 0, 0], [3, 4, 0]])


def test_follower_uses_habitat_goal_and_maps_actions(fake_habitat, tmp_path):
    (tmp_path / "s.glb").write_bytes(b"")
    backend = hb.HabitatBackend(tmp_path, SimConfig(render=False))
    backend.reset(episode("s.glb"))
    sim = FakeSimulator.instances[-1]
    here = backend.agent_position()
    assert backend.shortest_path_action(here + [5, 0, 0]) == Action.FORWARD
    assert np.allclose(sim.log[-1][1], world_to_habitat(here + [5, 0, 0]))
    assert sim.log[-1][2] == 0.25
    assert backend.shortest_path_action(here, radius=0.5) == Action.STOP
    assert backend.shortest_path_action([0, -60, 0]) == Action.STOP  # follower error -> STOP
    obs = backend.step(Action.FORWARD)
    assert obs.rgb is None and obs.depth is None  # rendering off
    backend.close()
    assert sim.closed


def test_topdown_view_maps_to_the_world_grid():
    view = np.zeros((4, 6), dtype=bool)
    view[1, 4] = True  # Habitat cell: x = -1 + 4.5 * 0.5, z = 2 + 1.5 * 0.5
    grid = hb.topdown_to_navgrid(view, [-1.0, 0.3, 2.0], 0.5)
    assert grid.shape == (6, 4)
    centre = habitat_to_world([-1 + 4.5 * 0.5, 0.3, 2 + 1.5 * 0.5])
    assert grid.is_navigable(centre)
    assert grid.navigable.sum() == 1 and grid.floor_z == 0.3
    assert not grid.is_navigable(centre + [0.5, 0, 0]) and not grid.is_navigable(centre + [0, 0.5, 0])


# ------------------------------------------------------------------ snapping, heights, recording
NAVMESH_Y = 0.1  # the navmesh floor lies 0.1 m above the floor mesh the episode points are on
TABLE = (2.0, 3.0, 0.85)  # a table top [2, 3] x [2, 3] (Habitat x, z) at y 0.85: its own navmesh island


def _nearest_on_floor(p):
    x, z = float(np.clip(p[0], 0.0, 6.0)), float(np.clip(p[2], 0.0, 6.0))
    lo, hi, _ = TABLE
    if lo < x < hi and lo < z < hi:  # the floor has a hole under the table: push to its nearest edge
        x, z = min(((lo, z), (hi, z), (x, lo), (x, hi)), key=lambda c: math.hypot(c[0] - x, c[1] - z))
    return np.array([x, NAVMESH_Y, z])


def _nearest_on_table(p):
    lo, hi, y = TABLE
    return np.array([float(np.clip(p[0], lo, hi)), y, float(np.clip(p[2], lo, hi))])


class NavmeshStandIn:
    """Behaves like habitat-sim 0.2.2's PathFinder (src/esp/nav/PathFinder.cpp @ v0.2.2): snap_point
    projects to the nearest polygon within a box of half-extents (2, 4, 2) (:94) and returns NaN when
    there is none (:1283); find_path snaps both ends and finds a path only within one island. Islands:
    a 6 x 6 m floor and a table top above a hole in it."""

    def _project(self, p):
        p = np.asarray(p, dtype=float)
        options = [(_nearest_on_floor(p), "floor"), (_nearest_on_table(p), "table")]
        inside = [(q, n) for q, n in options if np.all(np.abs(q - p) <= [2.0, 4.0, 2.0])]
        if not inside:
            return np.full(3, np.nan), None
        return min(inside, key=lambda o: np.linalg.norm(o[0] - p))

    def snap_point(self, p):
        return self._project(p)[0].astype(np.float32)

    def find_path(self, path):
        (a, ia), (b, ib) = self._project(path.requested_start), self._project(path.requested_end)
        path.geodesic_distance = float(np.linalg.norm(a - b)) if ia is not None and ia == ib else math.inf
        path.points = [a, b]
        return math.isfinite(path.geodesic_distance)


class NavmeshAgent(FakeAgent):
    def act(self, key):  # real habitat-sim moves the agent along the navmesh (try_step): on it afterwards
        collided = super().act(key)
        self.state.position = np.array([*self.state.position[:1], NAVMESH_Y, self.state.position[2]], np.float32)
        return collided


@pytest.fixture
def navmesh_backend(fake_habitat, tmp_path):
    (tmp_path / "s.glb").write_bytes(b"")

    class Sim(FakeSimulator):
        def __init__(self, cfg):
            super().__init__(cfg)
            self.pathfinder = NavmeshStandIn()
            self.agent = NavmeshAgent(self.log)

    fake_habitat.Simulator = Sim
    backend = hb.HabitatBackend(tmp_path, SimConfig(width=8, height=6))
    yield backend
    backend.close()


def floor_episode(reference=((1.0, 0.0, 4.0), (1.0, 0.0, 3.5))):
    reference = np.array(reference)
    return Episode(7, "s.glb", reference[0], np.array([0.0, 0.0, 0.0, 1.0]), (Goal(reference[-1], 3.0),), reference, "go")


def test_snap_of_a_point_off_the_navmesh_is_the_nearest_floor_point_not_nan(navmesh_backend):
    """habitat-sim's snap_point gives NaN 2 m beyond the navmesh (PathFinder.cpp:94, :1283); upstream's
    evaluator snaps only that way (InternNav habitat_vln_evaluator.py:808-809). We search for the nearest
    reachable floor point instead."""
    backend = navmesh_backend
    backend.reset(floor_episode())
    far = habitat_to_world([8.5, 0.0, 3.0])  # 2.5 m beyond the floor's edge x = 6
    assert np.all(np.isnan(backend.sim.pathfinder.snap_point(world_to_habitat(far))))
    snapped = world_to_habitat(backend.snap_to_navigable(far))
    assert np.allclose(snapped, [6.0, NAVMESH_Y, 3.0], atol=1e-6)


def test_snap_of_a_point_above_furniture_is_on_the_floor_and_the_loop_walks_to_it(navmesh_backend):
    """A pixel goal on a table: the real snap_point returns the table top, an island the agent cannot
    reach, so the follower says STOP at once and the loop turns LEFT as if stuck. Snapped to the nearest
    reachable floor point, the loop walks toward it."""
    backend = navmesh_backend
    backend.reset(floor_episode())
    above = habitat_to_world([2.5, 0.9, 2.6])
    assert backend.sim.pathfinder.snap_point(world_to_habitat(above))[1] == pytest.approx(TABLE[2])
    snapped = world_to_habitat(backend.snap_to_navigable(above))
    assert snapped[1] == pytest.approx(NAVMESH_Y) and math.hypot(snapped[0] - 2.5, snapped[2] - 2.6) == pytest.approx(0.4)
    r = run_episode(backend, floor_episode(), ScriptedPolicy([above, [Action.STOP]]))
    assert np.allclose(world_to_habitat(r.waypoints[0]), snapped) and r.actions[0] == Action.FORWARD


def test_metrics_compare_in_the_navmesh_height_frame(navmesh_backend):
    """The agent stands on the navmesh (0.1 m above the floor here) while the episode's start, goal and
    reference path are at floor height: the start is placed on the navmesh and the episode points are
    moved by the same offset, so a walk along the reference path has nDTW 1 and no vertical path length."""
    backend = navmesh_backend
    ep = floor_episode()
    obs = backend.reset(ep)
    assert obs.position[2] == pytest.approx(NAVMESH_Y)
    assert np.allclose(backend.to_agent_height(ep.goal_world), ep.goal_world + [0.0, 0.0, NAVMESH_Y])
    r = run_episode(backend, ep, ScriptedPolicy([[Action.FORWARD, Action.FORWARD, Action.STOP]]))
    assert r.metrics.path_length == pytest.approx(0.5)
    assert r.metrics.ndtw == pytest.approx(1.0) and r.metrics.distance_to_goal == pytest.approx(0.0, abs=1e-6)


def test_oracle_episode_records_from_habitat_with_set_state(navmesh_backend, tmp_path):
    """--record with --backend habitat: the recorder re-renders every pose through Agent.set_state and
    look_down (habitat-sim 0.2.2 public API) instead of failing after the first episode."""
    from internvla_s2_node.sim.recorder import record_episode
    from internvla_s2_node.train.lerobot_data import DataSource, scan
    from internvla_s2_node.train.layout import CameraSetup

    backend = navmesh_backend
    ep = floor_episode(((1.0, 0.0, 4.0), (1.0, 0.0, 3.0)))
    r = run_episode(backend, ep, ScriptedPolicy([[Action.FORWARD] * 4 + [Action.STOP]]))
    log = backend.sim.log
    log.clear()
    path = record_episode(backend, ep, r, tmp_path / "rec", 7)
    assert path.is_file()
    assert sum(1 for e in log if e[0] == "set_state") == 2 * 5  # front + look-down view of each of 5 steps
    assert log.count(("act", "look_down")) == 2 * 5  # 30 deg in two 15 deg steps
    obs = backend.place(r.trajectory[1], r.headings[1], 30.0)
    assert obs.camera_pitch_deg == 30.0 and np.allclose(obs.position, r.trajectory[1])
    episodes, report = scan([DataSource(tmp_path / "rec", CameraSetup(125, 0, 30))], on_error="raise")
    assert report.episodes == 1 and episodes[0].length == 5 and episodes[0].actions[-1] == 0
