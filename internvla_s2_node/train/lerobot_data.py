"""Read LeRobot-format VLN episodes (layout.py) into validated in-memory records.

Malformed data gives a :class:`DataError` that names the file and the episode. The scan
either raises it (``on_error="raise"``) or skips the episode and counts it in a
:class:`ScanReport` (``on_error="skip"``).
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from . import layout
from .layout import CameraSetup


class DataError(ValueError):
    """Malformed training data; the message names the file and the episode."""


@dataclasses.dataclass(frozen=True)
class DataSource:
    """A folder of scenes (or one scene) recorded with one camera setup."""

    path: Path
    camera: CameraSetup = CameraSetup()

    @classmethod
    def parse(cls, spec: str, default: CameraSetup = CameraSetup()) -> "DataSource":
        """``PATH`` or ``PATH@HEIGHT,FRONT_PITCH,DOWN_PITCH`` (e.g. ``traj_data/r2r@125,0,30``)."""
        path, _, setup = spec.rpartition("@") if "@" in spec else (spec, "", "")
        if not setup:
            return cls(Path(path), default)
        try:
            height, front, down = (int(v) for v in setup.split(","))
        except ValueError as exc:
            raise ValueError(f"data spec {spec!r}: expected PATH@HEIGHT_CM,FRONT_PITCH,DOWN_PITCH") from exc
        return cls(Path(path), CameraSetup(height, front, down))


@dataclasses.dataclass(frozen=True)
class Episode:
    """One trajectory; ``actions[i]`` is the action taken at frame ``i`` (the last is STOP)."""

    scene: Path
    index: int
    instructions: tuple[str, ...]
    actions: np.ndarray  # (L,) int64
    goal_frames: np.ndarray  # (L,) int64, -1: no pixel goal at this frame
    goals: np.ndarray  # (L, 2) int64 (column, row) in the look-down frame
    camera: CameraSetup
    front_ext: str
    down_ext: str
    expert: np.ndarray | None = None  # (L,) bool: the action at frame i was the expert's (layout.EXPERT_COLUMN); None: all

    @property
    def length(self) -> int:
        return len(self.actions)

    def frame_path(self, frame: int, look_down: bool) -> Path:
        if not 0 <= frame < self.length:
            raise DataError(f"episode {self.index} of {self.scene}: frame {frame} out of range (length {self.length})")
        folder = layout.frame_folder(self.scene, self.index, self.camera.rgb_folder(look_down))
        return folder / (layout.frame_stem(self.index, frame) + (self.down_ext if look_down else self.front_ext))


@dataclasses.dataclass
class ScanReport:
    scenes: int = 0
    episodes: int = 0
    skipped: list[str] = dataclasses.field(default_factory=list)
    too_short: int = 0

    def summary(self) -> str:
        text = f"{self.episodes} episodes from {self.scenes} scenes; {len(self.skipped)} skipped as malformed"
        if self.too_short:
            text += f", {self.too_short} shorter than 4 frames left out"
        return text

    def to_json(self) -> dict:
        return {"scenes": self.scenes, "episodes": self.episodes, "too_short": self.too_short, "skipped": self.skipped}


def find_scenes(root: Path) -> list[Path]:
    """``root`` itself if it is a scene, else its sub-folders that are scenes (sorted)."""
    root = Path(root)
    if (root / layout.EPISODES_FILE).is_file():
        return [root]
    if not root.is_dir():
        raise DataError(f"data folder {root} does not exist")
    scenes = sorted(p for p in root.iterdir() if (p / layout.EPISODES_FILE).is_file())
    if not scenes:
        raise DataError(f"no scene under {root}: expected {layout.EPISODES_FILE} in it or in its sub-folders")
    return scenes


def read_episode_meta(scene: Path) -> list[dict]:
    path = Path(scene) / layout.EPISODES_FILE
    entries = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            entries.append({"episode_index": int(entry["episode_index"]), "tasks": list(entry["tasks"]), "length": int(entry["length"])})
        except (ValueError, KeyError, TypeError) as exc:
            raise DataError(f"{path} line {number}: not an episode entry ({exc})") from exc
    return entries


def instructions_of(meta: dict) -> tuple[str, ...]:
    tasks = meta["tasks"]
    joined = tasks[0] if tasks else ""
    return tuple(t.strip() for t in str(joined).split(layout.INSTRUCTION_SEP) if t.strip())


class FrameIndex:
    """Which frame files exist, one directory listing per (chunk, camera) folder."""

    def __init__(self) -> None:
        self._listings: dict[Path, set[str]] = {}

    def names(self, folder: Path) -> set[str]:
        if folder not in self._listings:
            self._listings[folder] = set(os.listdir(folder)) if folder.is_dir() else set()
        return self._listings[folder]

    def extension(self, scene: Path, episode: int, folder_name: str, length: int) -> str:
        """The file extension of this episode's frames; DataError if any of 0..length-1 is missing."""
        folder = layout.frame_folder(scene, episode, folder_name)
        names = self.names(folder)
        for ext in layout.FRAME_EXTENSIONS:
            if layout.frame_stem(episode, 0) + ext in names:
                missing = [i for i in range(length) if layout.frame_stem(episode, i) + ext not in names]
                if missing:
                    raise DataError(
                        f"episode {episode} of {scene}: {len(missing)} of {length} frames missing in {folder} "
                        f"(first: {layout.frame_stem(episode, missing[0]) + ext})"
                    )
                return ext
        raise DataError(f"episode {episode} of {scene}: no frames in {folder} (looked for {layout.frame_stem(episode, 0)}.jpg/.png)")


def load_episode(scene: Path, meta: dict, camera: CameraSetup, frames: FrameIndex) -> Episode:
    """Read and validate one episode; raises DataError naming the file and episode."""
    index = meta["episode_index"]
    path = layout.parquet_path(scene, index)
    where = f"episode {index} ({path})"
    if not path.is_file():
        raise DataError(f"{where}: parquet file missing")
    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several types for broken files
        raise DataError(f"{where}: unreadable parquet ({exc})") from exc
    actions, goal_frames, goals = _columns(table, camera, where)
    if len(actions) != meta["length"]:
        raise DataError(f"{where}: meta/episodes.jsonl says length {meta['length']} but the parquet has {len(actions)} rows")
    _check_goal_frames(goal_frames, goals, where)
    instructions = instructions_of(meta)
    if not instructions:
        raise DataError(f"{where}: no instruction in meta/episodes.jsonl tasks")
    front_ext = frames.extension(scene, index, camera.rgb_folder(False), len(actions))
    down_ext = frames.extension(scene, index, camera.rgb_folder(True), len(actions))
    # Stored row i is the action that led to frame i; the action taken at frame i is row i+1.
    taken = np.concatenate([actions[1:], [0]]).astype(np.int64)
    expert = _expert(table, len(actions), where)
    return Episode(Path(scene), index, instructions, taken, goal_frames, goals, camera, front_ext, down_ext, expert)


def _expert(table, length: int, where: str) -> np.ndarray | None:
    if layout.EXPERT_COLUMN not in table.column_names:
        return None
    values = table.column(layout.EXPERT_COLUMN).to_pylist()
    if len(values) != length or any(v not in (True, False) for v in values):
        raise DataError(f"{where}: column {layout.EXPERT_COLUMN!r} must hold one bool per row")
    return np.asarray(values, dtype=bool)


def _columns(table, camera: CameraSetup, where: str):
    needed = ["action", camera.column("goal"), camera.column("relative_goal_frame_id")]
    missing = [c for c in needed if c not in table.column_names]
    if missing:
        raise DataError(f"{where}: missing columns {missing} (camera setting {camera.setting}; has {table.column_names})")
    try:
        actions = np.asarray(table.column("action").to_pylist(), dtype=np.int64).reshape(-1)
        goal_frames = np.asarray(table.column(needed[2]).to_pylist(), dtype=np.int64).reshape(-1)
        goals = np.asarray([g if g is not None else [-1, -1] for g in table.column(needed[1]).to_pylist()], dtype=np.int64)
    except (ValueError, TypeError) as exc:
        raise DataError(f"{where}: bad column values ({exc})") from exc
    if goals.shape != (len(actions), 2):
        raise DataError(f"{where}: {needed[1]} must hold two integers per row, got shape {goals.shape}")
    return actions, goal_frames, goals


def _check_goal_frames(goal_frames: np.ndarray, goals: np.ndarray, where: str) -> None:
    length = len(goal_frames)
    for i in np.flatnonzero(goal_frames != -1):
        k = int(goal_frames[i])
        if k < 0 or i + k >= length:
            raise DataError(f"{where}: relative_goal_frame_id {k} at frame {i} is out of range (episode has {length} frames)")
        if (goals[i] < 0).any():
            raise DataError(f"{where}: negative pixel goal {goals[i].tolist()} at frame {i}")


def scan(sources: list[DataSource], on_error: str = "skip", min_length: int = 4) -> tuple[list[Episode], ScanReport]:
    """All episodes of ``sources``; malformed ones raise or are skipped and counted."""
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    episodes: list[Episode] = []
    report = ScanReport()
    for source in sources:
        for scene in find_scenes(source.path):
            report.scenes += 1
            frames = FrameIndex()
            for meta in _scene_meta(scene, on_error, report):
                try:
                    episode = load_episode(scene, meta, source.camera, frames)
                except DataError as exc:
                    if on_error == "raise":
                        raise
                    report.skipped.append(str(exc))
                    continue
                if episode.length < min_length:
                    report.too_short += 1
                    continue
                episodes.append(episode)
    report.episodes = len(episodes)
    return episodes, report


def _scene_meta(scene: Path, on_error: str, report: ScanReport) -> list[dict]:
    try:
        return read_episode_meta(scene)
    except DataError as exc:
        if on_error == "raise":
            raise
        report.skipped.append(str(exc))
        return []
