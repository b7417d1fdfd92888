"""Episodes for the procedural houses: start, goal furniture, reference path, landmark instruction.

Instructions describe the route by doorways, rooms and furniture, e.g. "Turn around and
walk through the doorway on your left into the kitchen, pass the white counter, then
stop in front of the red fridge." Reference paths are the string-pulled grid paths with
viewpoint-like points at most ``REFERENCE_SPACING_M`` apart. Episodes are stored in the
VLN-CE format (Habitat convention) like R2R.

Regenerate the bundled assets with ``python -m internvla_s2_node.sim.episode_gen``.
"""

from __future__ import annotations

import argparse
import math
import pathlib
from typing import Sequence

import numpy as np

from .backend import DEFAULT_AGENT_RADIUS_M, SUCCESS_DISTANCE_M
from .coords import wrap_angle
from .episodes import Episode, save_episodes
from .metrics import densify
from .navgrid import NavGrid
from .scenes import Furniture, SceneSpec, generate_scene, scene_navgrid

MIN_GEODESIC_M = 4.0
MAX_GEODESIC_M = 8.0
REFERENCE_SPACING_M = 2.0
ROUTE_SAMPLE_M = 0.1
AHEAD_DEG = 35.0  # |bearing| below: ahead; above BEHIND_DEG: behind
BEHIND_DEG = 145.0
PASS_DISTANCE_M = 1.3  # furniture this close to the route is "passed"
START_TRIES = 400
# (name in the files, seed, rooms, episodes) of the bundled houses
BUNDLED_HOUSES = (("house_a", 101, 2, 2), ("house_b", 102, 3, 3), ("house_c", 103, 4, 3))
BUNDLED_SPLIT = "mujoco_val"
# The navigator model's houses (scripts/train_navigator.py): training seeds from TRAIN_FIRST_SEED, the
# held-out split (shipped in assets/) from VAL_FIRST_SEED; the script keeps the two ranges apart.
TRAIN_FIRST_SEED, VAL_FIRST_SEED = 10000, 900000
VAL_SPLIT, VAL_SCENE_PREFIX = "mujoco_val_unseen", "val_unseen/"


def _bearing_word(bearing: float) -> str:
    deg = abs(math.degrees(bearing))
    if deg <= AHEAD_DEG:
        return "ahead"
    if deg >= BEHIND_DEG:
        return "behind you"
    return "on your left" if bearing > 0 else "on your right"


def _heading(a, b) -> float:
    return math.atan2(b[1] - a[1], b[0] - a[0])


def _route_rooms(spec: SceneSpec, path: np.ndarray) -> tuple[list[int], list[int]]:
    """Rooms the path visits in order, and the sample index where each is entered."""
    samples = densify(path[:, :2], ROUTE_SAMPLE_M)
    rooms, entered = [], []
    for k, p in enumerate(samples):
        room = spec.room_at(p)
        if room is not None and (not rooms or rooms[-1] != room):
            rooms.append(room)
            entered.append(k)
    return rooms, entered


def _passed(spec: SceneSpec, samples: np.ndarray, room: int, exclude: Furniture) -> Furniture | None:
    best, best_d = None, PASS_DISTANCE_M
    for item in spec.furniture:
        if item.room != room or item.name == exclude.name:
            continue
        x0, y0, x1, y1 = item.footprint()
        dx = np.maximum(np.maximum(x0 - samples[:, 0], samples[:, 0] - x1), 0.0)
        dy = np.maximum(np.maximum(y0 - samples[:, 1], samples[:, 1] - y1), 0.0)
        d = float(np.min(np.hypot(dx, dy)))
        if d < best_d:
            best, best_d = item, d
    return best


def describe_route(spec: SceneSpec, path: np.ndarray, start_yaw: float, goal: Furniture) -> str:
    """A landmark instruction for ``path`` (world (N, 2|3)) from heading ``start_yaw`` to ``goal``."""
    samples = densify(path[:, :2], ROUTE_SAMPLE_M)
    rooms, entered = _route_rooms(spec, path)
    clauses: list[str] = []
    heading = start_yaw
    first_turn = _bearing_word(wrap_angle(_heading(samples[0], samples[min(len(samples) - 1, 5)]) - start_yaw))
    for i in range(1, len(rooms)):
        door_at = samples[entered[i]]
        before = samples[max(0, entered[i] - 1)]
        seg_from = samples[entered[i - 1]] if i > 1 else samples[0]
        passed = _passed(spec, samples[entered[i - 1]:entered[i]], rooms[i - 1], goal)
        where = _bearing_word(wrap_angle(_heading(seg_from, door_at) - heading))
        room = spec.rooms[rooms[i]].name
        if i == 1:
            if where == "behind you":
                clauses.append(f"turn around and walk through the doorway into the {room}")
            else:
                clauses.append(f"walk through the doorway {where} into the {room}")
            if passed is not None:
                clauses[-1] = clauses[-1].replace("walk through", f"walk past the {passed.name} and through", 1)
        else:
            lead = f"pass the {passed.name} and " if passed is not None else ""
            clauses.append(f"{lead}take the doorway {where} into the {room}")
        heading = _heading(before, door_at)
    final_room = rooms[-1] if rooms else goal.room
    start_final = entered[-1] if rooms else 0
    passed = _passed(spec, samples[start_final:], final_room, goal)
    if not clauses:
        opener = {"ahead": "walk forward", "behind you": "turn around", "on your left": "turn left",
                  "on your right": "turn right"}[first_turn]
        clauses.append(opener)
    if passed is not None:
        clauses.append(f"walk past the {passed.name}")
    clauses.append(f"stop in front of the {goal.name}")
    text = ", ".join(clauses[:-1]) + ", then " + clauses[-1] if len(clauses) > 1 else clauses[0]
    return text[0].upper() + text[1:] + "."


def _random_start(rng: np.random.Generator, grid: NavGrid) -> np.ndarray:
    rows, cols = np.nonzero(grid.navigable)
    k = int(rng.integers(len(rows)))
    return np.append(grid.center_of(rows[k], cols[k]), grid.floor_z)


def generate_episodes(
    spec: SceneSpec,
    scene_id: str,
    count: int,
    seed: int = 0,
    first_id: int = 0,
    agent_radius: float = DEFAULT_AGENT_RADIUS_M,
    min_geodesic: float = MIN_GEODESIC_M,
    max_geodesic: float = MAX_GEODESIC_M,
) -> list[Episode]:
    """``count`` episodes in ``spec``, each to a different goal furniture when possible,
    preferring goals in another room than the start."""
    rng = np.random.default_rng(seed)
    grid = scene_navgrid(spec, agent_radius)
    goals = list(rng.permutation(len(spec.furniture)))
    episodes: list[Episode] = []
    for gi in goals:
        if len(episodes) == count:
            break
        item = spec.furniture[int(gi)]
        goal = grid.snap(item.approach_point())
        for _ in range(START_TRIES):
            start = _random_start(rng, grid)
            if spec.room_at(start) == item.room:
                continue
            geo = grid.geodesic_distance(start, goal)
            if min_geodesic <= geo <= max_geodesic:
                break
        else:
            continue
        yaw = float(rng.uniform(-math.pi, math.pi))
        path = grid.shortest_path(start, goal)
        episodes.append(
            Episode.from_world(
                episode_id=first_id + len(episodes),
                scene_id=scene_id,
                start=start,
                start_yaw=round(yaw, 4),
                goal=goal,
                reference_path=densify(path, REFERENCE_SPACING_M),
                instruction=describe_route(spec, path, yaw, item),
                goal_radius=SUCCESS_DISTANCE_M,
                geodesic_distance=round(geo, 4),
                trajectory_id=first_id + len(episodes),
            )
        )
    return episodes


def build_bundled_assets(assets_dir: str | pathlib.Path, houses: Sequence = BUNDLED_HOUSES) -> list[Episode]:
    """Generate the bundled scenes (JSON specs) and their episodes (VLN-CE json.gz)."""
    assets_dir = pathlib.Path(assets_dir)
    episodes: list[Episode] = []
    for name, seed, n_rooms, count in houses:
        spec = generate_scene(seed, n_rooms=n_rooms, name=name)
        spec.save(assets_dir / "scenes" / f"{name}.json")
        episodes += generate_episodes(spec, f"{name}.json", count, seed=seed, first_id=len(episodes))
    save_episodes(assets_dir / "episodes" / f"{BUNDLED_SPLIT}.json.gz", episodes)
    return episodes


def house_rooms(seed: int) -> int:
    """The number of rooms of house ``seed`` in a split: 2 to 4, drawn from the seed."""
    return int(np.random.default_rng([seed, 7]).integers(2, 5))


def build_split(out_dir: str | pathlib.Path, split: str, seeds: Sequence[int], episodes_per_house: int,
                scene_prefix: str = "") -> list[Episode]:
    """Houses ``seeds`` (one procedural house each, 2-4 rooms) and up to ``episodes_per_house`` episodes in
    each: scenes as ``out_dir/scenes/{scene_prefix}house_{seed}.json``, episodes as
    ``out_dir/episodes/{split}.json.gz`` with scene ids relative to ``out_dir/scenes``."""
    out_dir = pathlib.Path(out_dir)
    episodes: list[Episode] = []
    for seed in seeds:
        name = f"house_{seed}"
        spec = generate_scene(int(seed), n_rooms=house_rooms(int(seed)), name=name)
        scene_id = f"{scene_prefix}{name}.json"
        spec.save(out_dir / "scenes" / scene_id)
        episodes += generate_episodes(spec, scene_id, episodes_per_house, seed=int(seed), first_id=len(episodes))
    save_episodes(out_dir / "episodes" / f"{split}.json.gz", episodes)
    return episodes


def main(argv: Sequence[str] | None = None) -> int:
    from .mujoco_backend import ASSETS_DIR

    parser = argparse.ArgumentParser(
        description="Regenerate the bundled MuJoCo scenes and VLN-CE episodes, or (with --split) write a split "
        "of many procedural houses, one per seed.")
    parser.add_argument("--assets-dir", default=str(ASSETS_DIR), help="output folder (scenes/ and episodes/)")
    parser.add_argument("--split", help="write this split instead of the bundled assets")
    parser.add_argument("--first-seed", type=int, default=0, help="houses are seeds first-seed .. first-seed + houses - 1")
    parser.add_argument("--houses", type=int, default=10)
    parser.add_argument("--episodes-per-house", type=int, default=6)
    parser.add_argument("--scene-prefix", default="", help="folder of the scenes inside scenes/, e.g. val_unseen/")
    args = parser.parse_args(argv)
    if args.split:
        seeds = range(args.first_seed, args.first_seed + args.houses)
        episodes = build_split(args.assets_dir, args.split, seeds, args.episodes_per_house, args.scene_prefix)
        print(f"{args.split}: {len(episodes)} episodes in {args.houses} houses (seeds {seeds.start}-{seeds.stop - 1})")
        return 0
    for ep in build_bundled_assets(args.assets_dir):
        print(f"{ep.episode_id:>3} {ep.scene_id:<14} {ep.geodesic_distance:5.2f} m  {ep.instruction}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
