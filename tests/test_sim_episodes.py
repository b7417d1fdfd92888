"""VLN-CE episode files, validation, sharding and the Habitat <-> world conversion."""

import gzip
import json
import math

import numpy as np
import pytest

from internvla_s2_node.sim import coords
from internvla_s2_node.sim.episodes import Episode, EpisodeFormatError, load_episodes, save_episodes, shard


def raw_episode(episode_id=7, **override):
    ep = {
        "episode_id": episode_id,
        "trajectory_id": 3,
        "scene_id": "mp3d/abc/abc.glb",
        "start_position": [1.0, 0.2, -2.0],
        "start_rotation": [0.0, math.sin(math.pi / 4), 0.0, math.cos(math.pi / 4)],
        "goals": [{"position": [3.0, 0.2, -5.0], "radius": 3.0}],
        "reference_path": [[1.0, 0.2, -2.0], [3.0, 0.2, -5.0]],
        "instruction": {"instruction_text": "Walk to the sofa.", "instruction_tokens": [1, 2]},
        "info": {"geodesic_distance": 3.6},
    }
    ep.update(override)
    return ep


def write(path, episodes):
    data = json.dumps({"episodes": episodes})
    if str(path).endswith(".gz"):
        with gzip.open(path, "wt") as f:
            f.write(data)
    else:
        path.write_text(data)
    return path


def test_habitat_world_conversion():
    # Habitat -z is forward (world +x), -x is left (world +y), +y is up (world +z)
    assert np.allclose(coords.habitat_to_world([0, 0, -1]), [1, 0, 0])
    assert np.allclose(coords.habitat_to_world([-1, 0, 0]), [0, 1, 0])
    assert np.allclose(coords.habitat_to_world([0, 1, 0]), [0, 0, 1])
    p = np.random.default_rng(0).normal(size=(5, 3))
    assert np.allclose(coords.world_to_habitat(coords.habitat_to_world(p)), p)
    assert np.isclose(np.linalg.det(coords.M_WORLD_HAB), 1.0)
    for yaw in (0.0, 0.7, -2.0, math.pi / 2):
        q = coords.yaw_to_habitat_quaternion(yaw)
        assert coords.habitat_quaternion_to_yaw(q) == pytest.approx(yaw)
    # a Habitat agent turned 90 deg left about +y looks along Habitat -x = world +y
    assert coords.habitat_quaternion_to_yaw([0, math.sin(math.pi / 4), 0, math.cos(math.pi / 4)]) == pytest.approx(math.pi / 2)


@pytest.mark.parametrize("name", ["val.json.gz", "val.json"])
def test_load_round_trip(tmp_path, name):
    path = write(tmp_path / name, [raw_episode(1), raw_episode(2, scene_id="mp3d/x/x.glb")])
    eps = load_episodes(path)
    assert [e.episode_id for e in eps] == [1, 2]
    ep = eps[0]
    assert ep.instruction == "Walk to the sofa."
    assert ep.geodesic_distance == 3.6 and ep.trajectory_id == 3
    assert np.allclose(ep.start_world, [2.0, -1.0, 0.2])
    assert ep.start_yaw == pytest.approx(math.pi / 2)
    assert np.allclose(ep.goal_world, [5.0, -3.0, 0.2])
    assert ep.reference_path_world.shape == (2, 3)
    out = save_episodes(tmp_path / ("copy_" + name), eps)
    again = load_episodes(out)
    assert again[1].scene_id == "mp3d/x/x.glb"
    assert np.allclose(again[0].start_position, ep.start_position)
    assert again[0].extra == {}  # known keys are not duplicated into extra


def test_from_world_stores_habitat_convention():
    ep = Episode.from_world(5, "house_0.json", [1, 2, 0], 0.5, [3, 4, 0], [[1, 2, 0], [3, 4, 0]], "go", geodesic_distance=2.8)
    assert np.allclose(ep.start_position, [-2, 0, -1])
    assert np.allclose(ep.start_world, [1, 2, 0]) and ep.start_yaw == pytest.approx(0.5)
    assert np.allclose(ep.goal_world, [3, 4, 0]) and ep.goals[0].radius == 3.0


@pytest.mark.parametrize(
    "override, field",
    [
        ({"start_position": [1.0, 2.0]}, "start_position"),
        ({"start_rotation": [0, 0, 0, 0]}, "start_rotation"),
        ({"goals": []}, "goals"),
        ({"goals": [{"position": [1, "a", 2]}]}, "goals[0].position"),
        ({"instruction": {"instruction_text": ""}}, "instruction.instruction_text"),
        ({"reference_path": [[0, 0, 0], [1, 2]]}, "reference_path[1]"),
        ({"info": {"geodesic_distance": -1}}, "info.geodesic_distance"),
        ({"scene_id": None}, "scene_id"),
    ],
)
def test_malformed_episode_names_the_episode_and_field(tmp_path, override, field):
    path = write(tmp_path / "bad.json", [raw_episode(1), raw_episode("ep-42", **override)])
    with pytest.raises(EpisodeFormatError) as err:
        load_episodes(path)
    msg = str(err.value)
    assert "'ep-42'" in msg and f"'{field}'" in msg and "index 1" in msg


def test_missing_field_duplicate_id_and_bad_file(tmp_path):
    raw = raw_episode(9)
    del raw["goals"]
    with pytest.raises(EpisodeFormatError, match=r"episode 9 .*'goals': missing"):
        load_episodes(write(tmp_path / "a.json", [raw]))
    with pytest.raises(EpisodeFormatError, match="duplicate"):
        load_episodes(write(tmp_path / "b.json", [raw_episode(1), raw_episode(1)]))
    (tmp_path / "c.json").write_text("{not json")
    with pytest.raises(EpisodeFormatError, match="cannot read"):
        load_episodes(tmp_path / "c.json")
    with pytest.raises(FileNotFoundError):
        load_episodes(tmp_path / "missing.json")


def test_shard_is_disjoint_and_covering():
    items = list(range(11))
    parts = [shard(items, r, 3) for r in range(3)]
    assert sorted(sum(parts, [])) == items
    assert parts[0] == [0, 3, 6, 9]
    with pytest.raises(ValueError):
        shard(items, 3, 3)
    with pytest.raises(ValueError):
        shard(items, 0, 0)
