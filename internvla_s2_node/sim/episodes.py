"""VLN-CE episodes: loading, validation, saving and sharding.

File format (``{split}.json.gz`` or plain ``.json``), as VLN-CE R2R/RxR ship it::

    {"episodes": [{"episode_id": 1, "trajectory_id": 4, "scene_id": "mp3d/X/X.glb",
                   "start_position": [x, y, z], "start_rotation": [x, y, z, w],
                   "goals": [{"position": [x, y, z], "radius": 3.0}],
                   "reference_path": [[x, y, z], ...],
                   "instruction": {"instruction_text": "...", ...},
                   "info": {"geodesic_distance": 9.9}}, ...]}

Positions and rotations in the files are in Habitat's y-up convention (the MuJoCo
episodes too). ``Episode`` keeps them as stored; its ``*_world`` properties give them in
our z-up world frame through ``coords.py``.
"""

from __future__ import annotations

import dataclasses
import gzip
import io
import json
import math
import pathlib
from typing import Any, Iterable, Sequence

import numpy as np

from .coords import habitat_quaternion_to_yaw, habitat_to_world, world_to_habitat, yaw_to_habitat_quaternion


class EpisodeFormatError(ValueError):
    """A malformed episode file; the message names the episode and the field."""


@dataclasses.dataclass(frozen=True)
class Goal:
    position: np.ndarray  # (3,) Habitat convention
    radius: float | None = None


@dataclasses.dataclass(frozen=True)
class Episode:
    """One VLN-CE episode; array fields are in Habitat convention (y up)."""

    episode_id: int | str
    scene_id: str
    start_position: np.ndarray  # (3,)
    start_rotation: np.ndarray  # (4,) quaternion [x, y, z, w]
    goals: tuple[Goal, ...]
    reference_path: np.ndarray  # (N, 3), N may be 0
    instruction: str
    geodesic_distance: float | None = None  # info.geodesic_distance
    trajectory_id: int | str | None = None
    extra: dict = dataclasses.field(default_factory=dict, compare=False)  # unknown keys, kept for saving

    # --- world-frame views (x forward, y left, z up) ---
    @property
    def start_world(self) -> np.ndarray:
        return habitat_to_world(self.start_position)

    @property
    def start_yaw(self) -> float:
        return habitat_quaternion_to_yaw(self.start_rotation)

    @property
    def goal_world(self) -> np.ndarray:
        return habitat_to_world(self.goals[0].position)

    @property
    def reference_path_world(self) -> np.ndarray:
        return habitat_to_world(self.reference_path).reshape(-1, 3)

    @classmethod
    def from_world(
        cls,
        episode_id: int | str,
        scene_id: str,
        start: Sequence[float],
        start_yaw: float,
        goal: Sequence[float],
        reference_path: Iterable[Sequence[float]],
        instruction: str,
        goal_radius: float = 3.0,
        geodesic_distance: float | None = None,
        trajectory_id: int | str | None = None,
    ) -> "Episode":
        """Build an episode from world-frame values (stored in Habitat convention)."""
        ref = np.asarray(list(reference_path), dtype=float).reshape(-1, 3)
        return cls(
            episode_id=episode_id,
            scene_id=scene_id,
            start_position=world_to_habitat(np.asarray(start, dtype=float)),
            start_rotation=np.asarray(yaw_to_habitat_quaternion(start_yaw)),
            goals=(Goal(world_to_habitat(np.asarray(goal, dtype=float)), goal_radius),),
            reference_path=world_to_habitat(ref).reshape(-1, 3),
            instruction=instruction,
            geodesic_distance=geodesic_distance,
            trajectory_id=trajectory_id,
        )

    def to_json(self) -> dict:
        out = dict(self.extra)
        out.update(
            {
                "episode_id": self.episode_id,
                "scene_id": self.scene_id,
                "start_position": _round_list(self.start_position),
                "start_rotation": _round_list(self.start_rotation),
                "goals": [{"position": _round_list(g.position), "radius": g.radius} for g in self.goals],
                "reference_path": [_round_list(p) for p in self.reference_path],
                "instruction": {"instruction_text": self.instruction},
                "info": {"geodesic_distance": self.geodesic_distance},
            }
        )
        if self.trajectory_id is not None:
            out["trajectory_id"] = self.trajectory_id
        return out


def _round_list(values, digits: int = 5) -> list[float]:
    return [round(float(v), digits) + 0.0 for v in np.asarray(values).ravel()]


# ---------------------------------------------------------------- parsing with validation
class _Checker:
    def __init__(self, source: str, index: int, raw: Any):
        self.source = source
        self.index = index
        self.id = raw.get("episode_id", "?") if isinstance(raw, dict) else "?"

    def fail(self, field: str, why: str) -> EpisodeFormatError:
        return EpisodeFormatError(f"{self.source}: episode {self.id!r} (index {self.index}): field '{field}': {why}")

    def vector(self, value: Any, field: str, size: int) -> np.ndarray:
        if not isinstance(value, (list, tuple)) or len(value) != size:
            raise self.fail(field, f"expected a list of {size} numbers, got {_short(value)}")
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            raise self.fail(field, f"expected numbers, got {_short(value)}")
        arr = np.asarray(value, dtype=float)
        if not np.all(np.isfinite(arr)):
            raise self.fail(field, f"non-finite value in {_short(value)}")
        return arr


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


_KNOWN_KEYS = {"episode_id", "scene_id", "start_position", "start_rotation", "goals", "reference_path",
               "instruction", "info", "trajectory_id"}


def parse_episode(raw: Any, index: int = 0, source: str = "<episodes>") -> Episode:
    """Validate one raw episode dict and build an ``Episode``."""
    if not isinstance(raw, dict):
        raise EpisodeFormatError(f"{source}: episode at index {index}: expected an object, got {type(raw).__name__}")
    c = _Checker(source, index, raw)
    for key in ("episode_id", "scene_id", "start_position", "start_rotation", "goals", "instruction"):
        if key not in raw:
            raise c.fail(key, "missing")
    episode_id = raw["episode_id"]
    if isinstance(episode_id, bool) or not isinstance(episode_id, (int, str)) or episode_id == "":
        raise c.fail("episode_id", f"expected an integer or a non-empty string, got {_short(episode_id)}")
    scene_id = raw["scene_id"]
    if not isinstance(scene_id, str) or not scene_id.strip():
        raise c.fail("scene_id", f"expected a non-empty string, got {_short(scene_id)}")
    start = c.vector(raw["start_position"], "start_position", 3)
    rotation = c.vector(raw["start_rotation"], "start_rotation", 4)
    if np.linalg.norm(rotation) < 1e-6:
        raise c.fail("start_rotation", "quaternion has zero norm")
    goals_raw = raw["goals"]
    if not isinstance(goals_raw, list) or not goals_raw:
        raise c.fail("goals", f"expected a non-empty list, got {_short(goals_raw)}")
    goals = []
    for i, g in enumerate(goals_raw):
        if not isinstance(g, dict) or "position" not in g:
            raise c.fail(f"goals[{i}]", f"expected an object with 'position', got {_short(g)}")
        radius = g.get("radius")
        if radius is not None and (isinstance(radius, bool) or not isinstance(radius, (int, float))
                                   or not math.isfinite(radius) or radius < 0):
            raise c.fail(f"goals[{i}].radius", f"expected a number >= 0 or null, got {_short(radius)}")
        goals.append(Goal(c.vector(g["position"], f"goals[{i}].position", 3), None if radius is None else float(radius)))
    ref_raw = raw.get("reference_path", [])
    if not isinstance(ref_raw, list):
        raise c.fail("reference_path", f"expected a list of [x, y, z], got {_short(ref_raw)}")
    ref = np.array([c.vector(p, f"reference_path[{i}]", 3) for i, p in enumerate(ref_raw)], dtype=float).reshape(-1, 3)
    instr = raw["instruction"]
    text = instr.get("instruction_text") if isinstance(instr, dict) else None
    if not isinstance(text, str) or not text.strip():
        raise c.fail("instruction.instruction_text", f"expected a non-empty string, got {_short(instr)}")
    info = raw.get("info") or {}
    if not isinstance(info, dict):
        raise c.fail("info", f"expected an object, got {_short(info)}")
    geo = info.get("geodesic_distance")
    if geo is not None and (isinstance(geo, bool) or not isinstance(geo, (int, float)) or not math.isfinite(geo) or geo < 0):
        raise c.fail("info.geodesic_distance", f"expected a number >= 0, got {_short(geo)}")
    extra = {k: v for k, v in raw.items() if k not in _KNOWN_KEYS}
    return Episode(
        episode_id=episode_id,
        scene_id=scene_id,
        start_position=start,
        start_rotation=rotation,
        goals=tuple(goals),
        reference_path=ref,
        instruction=text.strip(),
        geodesic_distance=None if geo is None else float(geo),
        trajectory_id=raw.get("trajectory_id"),
        extra=extra,
    )


def _read_json(path: pathlib.Path) -> Any:
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EpisodeFormatError(f"{path}: cannot read episodes: {exc}") from exc


def load_episodes(path: str | pathlib.Path) -> list[Episode]:
    """All episodes of a VLN-CE file (``.json`` or ``.json.gz``), validated."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"episode file not found: {path}")
    data = _read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("episodes"), list):
        raise EpisodeFormatError(f"{path}: expected an object with an 'episodes' list")
    episodes = [parse_episode(raw, i, str(path)) for i, raw in enumerate(data["episodes"])]
    seen: set = set()
    for i, ep in enumerate(episodes):
        if ep.episode_id in seen:
            raise EpisodeFormatError(f"{path}: episode {ep.episode_id!r} (index {i}): field 'episode_id': duplicate id")
        seen.add(ep.episode_id)
    return episodes


def save_episodes(path: str | pathlib.Path, episodes: Sequence[Episode]) -> pathlib.Path:
    """Write episodes in VLN-CE format; ``.gz`` files are written reproducibly (mtime 0)."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps({"episodes": [ep.to_json() for ep in episodes]}, indent=1)
    if path.name.endswith(".gz"):
        buf = io.BytesIO()
        with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0) as gz:
            gz.write(text.encode("utf-8"))
        path.write_bytes(buf.getvalue())
    else:
        path.write_text(text, encoding="utf-8")
    return path


def shard(episodes: Sequence[Episode], rank: int, world_size: int) -> list[Episode]:
    """Episodes for worker ``rank`` of ``world_size`` (round robin, disjoint, covering)."""
    if isinstance(world_size, bool) or not isinstance(world_size, int) or world_size < 1:
        raise ValueError(f"world_size must be a positive integer, got {world_size!r}")
    if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < world_size:
        raise ValueError(f"rank must be an integer in [0, {world_size}), got {rank!r}")
    return list(episodes[rank::world_size])
