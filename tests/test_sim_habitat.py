"""Habitat backend without habitat-sim: configuration, conversions and calls against a fake module."""

import math
import sys
import types

import numpy as np
import pytest

from internvla_s2_node.core.actions import Action
from internvla_s2_node.sim import habitat_backend as hb
from internvla_s2_node.sim.backend import SimConfig
from internvla_s2_node.sim.coords import habitat_to_world, world_to_habitat
from internvla_s2_node.sim.episodes import Episode


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
