"""Paths and column names of the LeRobot-format VLN data InternVLA-N1 was trained on.

One scene per folder::

    SCENE/meta/episodes.jsonl                      {"episode_index", "tasks", "length"} per line
    SCENE/meta/info.json                           fps, features, counts (written by recording.py)
    SCENE/data/chunk-000/episode_000007.parquet    one row per frame
    SCENE/videos/chunk-000/observation.images.rgb.125cm_0deg/episode_000007_12.jpg    front frame 12
    SCENE/videos/chunk-000/observation.images.rgb.125cm_30deg/episode_000007_12.jpg   look-down frame 12
    SCENE/videos/chunk-000/observation.images.depth.125cm_30deg/episode_000007_12.png (optional, uint16 mm)

Columns: ``action`` (int; row ``i`` holds the action that led to frame ``i``, row 0 is -1),
``pose.{setting}`` (4x4 camera pose), ``goal.{setting}`` ((column, row) of the pixel goal in the
look-down frame), ``relative_goal_frame_id.{setting}`` (frames until that goal is reached; -1: no
pixel goal, the next moves are turns). ``setting`` is ``{height}cm_{down_pitch}deg``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

CHUNK_SIZE = 1000
INSTRUCTION_SEP = "<INSTRUCTION_SEP>"
EPISODES_FILE = Path("meta") / "episodes.jsonl"
INFO_FILE = Path("meta") / "info.json"
TASKS_FILE = Path("meta") / "tasks.jsonl"
FRAME_EXTENSIONS = (".jpg", ".jpeg", ".png")
# Optional bool column of this project's recordings: row i is True where the action taken at frame i was the
# expert's own choice, False where the recorder injected a perturbation (sim.policies.OraclePolicy perturb).
# Unlike "action" it is not shifted. Upstream's data has no such column: every action is the expert's.
EXPERT_COLUMN = "expert"


@dataclasses.dataclass(frozen=True)
class CameraSetup:
    """Camera height and the pitch (degrees down) of the front and look-down views."""

    height_cm: int = 125
    front_pitch: int = 0
    down_pitch: int = 30

    @property
    def setting(self) -> str:
        return f"{self.height_cm}cm_{self.down_pitch}deg"

    def rgb_folder(self, look_down: bool) -> str:
        pitch = self.down_pitch if look_down else self.front_pitch
        return f"observation.images.rgb.{self.height_cm}cm_{pitch}deg"

    def depth_folder(self) -> str:
        return f"observation.images.depth.{self.height_cm}cm_{self.down_pitch}deg"

    def column(self, name: str) -> str:
        """``pose``, ``goal`` or ``relative_goal_frame_id`` for this setting."""
        return f"{name}.{self.setting}"


def chunk_name(episode_index: int) -> str:
    return f"chunk-{episode_index // CHUNK_SIZE:03d}"


def parquet_path(scene: Path, episode_index: int) -> Path:
    return Path(scene) / "data" / chunk_name(episode_index) / f"episode_{episode_index:06d}.parquet"


def frame_folder(scene: Path, episode_index: int, folder: str) -> Path:
    return Path(scene) / "videos" / chunk_name(episode_index) / folder


def frame_stem(episode_index: int, frame: int) -> str:
    return f"episode_{episode_index:06d}_{frame}"
