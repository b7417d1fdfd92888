"""Write one episode in the LeRobot VLN layout (see layout.py) so it can be trained on.

The simulator bridge calls :func:`write_episode` for oracle episodes; users can do the same
with their own scenes. One process should write to a scene folder at a time (a lock file
serialises updates of ``meta/episodes.jsonl`` between processes on one machine).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from ..core.actions import Action
from ..core.images import as_rgb
from . import layout
from .layout import CameraSetup

IMAGE_FORMATS = {"jpg": ("JPEG", ".jpg"), "png": ("PNG", ".png")}


def write_episode(
    root,
    episode_index: int,
    instruction: str | Sequence[str],
    frames_rgb: Sequence[np.ndarray],
    frames_lookdown_rgb: Sequence[np.ndarray],
    actions: Sequence[int],
    poses: np.ndarray | None = None,
    goals: np.ndarray | None = None,
    goal_frame_ids: Sequence[int] | None = None,
    *,
    camera: CameraSetup = CameraSetup(),
    depths_lookdown: Sequence[np.ndarray] | None = None,
    expert: Sequence[bool] | None = None,
    fps: float = 10.0,
    image_format: str = "jpg",
    jpeg_quality: int = 95,
) -> Path:
    """Write episode ``episode_index`` of the scene folder ``root``; returns its parquet path.

    ``actions[i]`` is the action taken at frame ``i`` (core.actions.Action codes); the last
    one must be STOP. ``poses``: (L, 4, 4) look-down camera poses in the world (optional).
    ``goals``: (L, 2) (column, row) of the next waypoint in look-down frame ``i``;
    ``goal_frame_ids[i]``: frames from ``i`` until that waypoint is reached, -1 where there is
    no pixel goal (the next moves are turns). Both ``None``: no pixel goals in this episode.
    ``depths_lookdown``: optional (H, W) float metres, stored as uint16 millimetres PNG.
    ``instruction``: one text, or several for the same path. ``expert``: optional (L,) bools, False
    where the action at frame ``i`` was an injected perturbation (``layout.EXPERT_COLUMN``).
    """
    root = Path(root)
    length = len(frames_rgb)
    instructions = _instructions(instruction)
    front = [as_rgb(f) for f in frames_rgb]
    down = [as_rgb(f) for f in frames_lookdown_rgb]
    acts = _actions(actions, length)
    goal_ids, goal_px = _goals(goals, goal_frame_ids, length, down)
    _check_lengths(length, down, poses, depths_lookdown)
    if expert is not None and len(expert) != length:
        raise ValueError(f"{len(expert)} expert flags for {length} frames: need one per frame")
    if image_format not in IMAGE_FORMATS:
        raise ValueError(f"image_format must be one of {sorted(IMAGE_FORMATS)}, got {image_format!r}")
    _write_frames(root, episode_index, camera.rgb_folder(False), front, image_format, jpeg_quality)
    _write_frames(root, episode_index, camera.rgb_folder(True), down, image_format, jpeg_quality)
    if depths_lookdown is not None:
        _write_depths(root, episode_index, camera.depth_folder(), depths_lookdown)
    path = _write_parquet(root, episode_index, camera, acts, poses, goal_px, goal_ids, fps, expert)
    _update_meta(root, episode_index, instructions, length, fps, camera)
    return path


def _instructions(instruction) -> list[str]:
    items = [instruction] if isinstance(instruction, str) else list(instruction)
    items = [" ".join(str(t).split()) for t in items]
    if not items or not all(items):
        raise ValueError("every episode needs at least one non-empty instruction")
    if any(layout.INSTRUCTION_SEP in t for t in items):
        raise ValueError(f"instructions may not contain {layout.INSTRUCTION_SEP}")
    return items


def _actions(actions, length: int) -> np.ndarray:
    acts = np.asarray(actions, dtype=np.int64).reshape(-1)
    if len(acts) != length:
        raise ValueError(f"{len(acts)} actions for {length} frames: need one action per frame")
    valid = {int(a) for a in Action}
    bad = sorted({int(a) for a in acts} - valid)
    if bad:
        raise ValueError(f"unknown action codes {bad}; use core.actions.Action values")
    if length == 0 or acts[-1] != Action.STOP:
        raise ValueError("the last action of an episode must be STOP (0)")
    # Row i of the column is the action that led to frame i (upstream's convention).
    return np.concatenate([[-1], acts[:-1]]).astype(np.int64)


def _goals(goals, goal_frame_ids, length: int, down: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    if goals is None and goal_frame_ids is None:
        return np.full(length, -1, np.int64), np.zeros((length, 2), np.int64)
    if goals is None or goal_frame_ids is None:
        raise ValueError("give both goals and goal_frame_ids, or neither")
    ids = np.asarray(goal_frame_ids, dtype=np.int64).reshape(-1)
    px = np.asarray(goals).reshape(-1, 2)
    if len(ids) != length or len(px) != length:
        raise ValueError(f"goals ({len(px)}) and goal_frame_ids ({len(ids)}) need one entry per frame ({length})")
    px = np.rint(px).astype(np.int64)
    for i in np.flatnonzero(ids != -1):
        if ids[i] <= 0 or i + ids[i] >= length:
            raise ValueError(f"goal_frame_ids[{i}] = {ids[i]} points outside the episode ({length} frames)")
        h, w = down[i].shape[:2]
        if not (0 <= px[i, 0] < w and 0 <= px[i, 1] < h):
            raise ValueError(f"goal {tuple(px[i])} of frame {i} is outside the {w}x{h} look-down frame")
    return ids, px


def _check_lengths(length: int, down, poses, depths) -> None:
    if length == 0:
        raise ValueError("an episode needs at least one frame")
    if len(down) != length:
        raise ValueError(f"{len(down)} look-down frames for {length} front frames")
    if poses is not None and np.asarray(poses).shape != (length, 4, 4):
        raise ValueError(f"poses must have shape ({length}, 4, 4), got {np.asarray(poses).shape}")
    if depths is not None and len(depths) != length:
        raise ValueError(f"{len(depths)} depth frames for {length} frames")


def _write_frames(root: Path, episode: int, folder: str, frames, image_format: str, quality: int) -> None:
    out = layout.frame_folder(root, episode, folder)
    out.mkdir(parents=True, exist_ok=True)
    pil_format, ext = IMAGE_FORMATS[image_format]
    options = {"quality": quality} if pil_format == "JPEG" else {}
    for i, frame in enumerate(frames):
        Image.fromarray(frame).save(out / (layout.frame_stem(episode, i) + ext), pil_format, **options)


def _write_depths(root: Path, episode: int, folder: str, depths) -> None:
    out = layout.frame_folder(root, episode, folder)
    out.mkdir(parents=True, exist_ok=True)
    for i, depth in enumerate(depths):
        mm = np.clip(np.nan_to_num(np.asarray(depth, dtype=np.float64) * 1000.0), 0, 65535).astype(np.uint16)
        Image.fromarray(mm).save(out / (layout.frame_stem(episode, i) + ".png"))


def _write_parquet(root: Path, episode: int, camera: CameraSetup, acts, poses, goal_px, goal_ids, fps: float,
                   expert=None) -> Path:
    length = len(acts)
    columns = {
        "episode_index": pa.array(np.full(length, episode, np.int64)),
        "frame_index": pa.array(np.arange(length, dtype=np.int64)),
        "timestamp": pa.array((np.arange(length) / fps).astype(np.float32)),
        "action": pa.array(acts),
        camera.column("goal"): pa.array(goal_px.tolist(), type=pa.list_(pa.int64())),
        camera.column("relative_goal_frame_id"): pa.array(goal_ids),
    }
    if expert is not None:
        columns[layout.EXPERT_COLUMN] = pa.array(np.asarray(expert, dtype=bool))
    if poses is not None:
        columns[camera.column("pose")] = pa.array(np.asarray(poses, np.float64).tolist(), type=pa.list_(pa.list_(pa.float64())))
    path = layout.parquet_path(root, episode)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".parquet.tmp")
    pq.write_table(pa.table(columns), tmp)
    os.replace(tmp, path)
    return path


@contextlib.contextmanager
def _locked(root: Path):
    (root / "meta").mkdir(parents=True, exist_ok=True)
    with open(root / "meta" / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _update_meta(root: Path, episode: int, instructions: list[str], length: int, fps: float, camera: CameraSetup) -> None:
    with _locked(root):
        path = root / layout.EPISODES_FILE
        entries = {}
        if path.exists():
            for line in path.read_text().splitlines():
                if line.strip():
                    entry = json.loads(line)
                    entries[int(entry["episode_index"])] = entry
        entries[episode] = {"episode_index": episode, "tasks": [layout.INSTRUCTION_SEP.join(instructions)], "length": length}
        _write_text(path, "".join(json.dumps(entries[k]) + "\n" for k in sorted(entries)))
        _write_info(root, entries, fps, camera)


def _write_info(root: Path, entries: dict, fps: float, camera: CameraSetup) -> None:
    info = {
        "codebase_version": "v2.1",
        "fps": fps,
        "chunks_size": layout.CHUNK_SIZE,
        "total_episodes": len(entries),
        "total_frames": sum(int(e["length"]) for e in entries.values()),
        "data_path": "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet",
        "frames_path": "videos/chunk-{episode_chunk:03d}/{camera}/episode_{episode_index:06d}_{frame_index}.jpg",
        "features": {
            "action": {"dtype": "int64", "shape": [1]},
            camera.column("pose"): {"dtype": "float64", "shape": [4, 4]},
            camera.column("goal"): {"dtype": "int64", "shape": [2], "names": ["column", "row"]},
            camera.column("relative_goal_frame_id"): {"dtype": "int64", "shape": [1]},
            camera.rgb_folder(False): {"dtype": "image"},
            camera.rgb_folder(True): {"dtype": "image"},
        },
    }
    _write_text(root / layout.INFO_FILE, json.dumps(info, indent=2) + "\n")


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
