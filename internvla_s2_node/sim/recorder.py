"""Training data from simulated episodes: an ended episode, re-rendered pose by pose, in the
LeRobot VLN layout that ``internvla-s2-train`` reads (``train.recording.write_episode``).

Each navigation step ``i`` gives a front frame (level camera), a look-down frame (the episode
loop's look-down tilt) with its depth and camera pose, and the action taken there; pixel goals
are labelled from the poses the robot reached (``train.goals``). Only episodes that ended with
STOP are recorded (an oracle's always do).
"""

from __future__ import annotations

import pathlib

import numpy as np

from ..core.actions import LOOK_DOWN_DEG, Action
from .backend import SimBackend
from .episodes import Episode
from .loop import NAVIGATION_ACTIONS, EpisodeResult


class NotRecordable(ValueError):
    """The backend or the episode cannot be recorded; the message says why."""


def scene_folder(root: pathlib.Path, episode: Episode) -> pathlib.Path:
    return pathlib.Path(root) / pathlib.Path(str(episode.scene_id)).stem


def record_episode(backend: SimBackend, episode: Episode, result: EpisodeResult, root, index: int,
                   look_down_deg: float = LOOK_DOWN_DEG, depth: bool = True, expert=None) -> pathlib.Path:
    """Write ``result`` as episode ``index`` of the episode's scene folder under ``root``. ``depth=False``: no
    look-down depth images (the trainer reads RGB only; the RGB frames and labels are the same). ``expert``:
    one bool per navigation step, False where the policy injected a perturbation (``OraclePolicy.expert``)."""
    from ..train.goals import pixel_goals_from_poses
    from ..train.layout import CameraSetup
    from ..train.recording import write_episode

    place = getattr(backend, "place", None)
    if place is None:
        raise NotRecordable(f"{type(backend).__name__} cannot place the agent at a pose (no place()); recording needs a backend that can")
    actions = [a for a in result.actions if a in NAVIGATION_ACTIONS]
    if not actions or actions[-1] != Action.STOP:
        raise NotRecordable(f"episode {episode.episode_id} did not end with STOP ({result.reason.value})")
    if expert is not None and len(expert) != len(actions):
        raise NotRecordable(f"episode {episode.episode_id}: {len(expert)} expert flags for {len(actions)} navigation steps")
    front, down, depths, poses = [], [], [], []
    for position, yaw in zip(result.trajectory[: len(actions)], result.headings[: len(actions)]):
        front.append(place(position, yaw, 0.0, depth=False).rgb)
        obs = place(position, yaw, look_down_deg, depth=depth)
        down.append(obs.rgb)
        depths.append(obs.depth)
        poses.append(obs.t_world_optical)
    height, width = down[0].shape[:2]
    poses = np.stack(poses)
    goals, goal_ids = pixel_goals_from_poses(actions, result.trajectory[: len(actions)], poses, obs.intrinsics, (width, height),
                                             expert=expert)
    camera = CameraSetup(height_cm=round(backend.config.camera_height * 100), front_pitch=0, down_pitch=round(look_down_deg))
    return write_episode(scene_folder(root, episode), index, episode.instruction, front, down, [int(a) for a in actions],
                         poses, goals, goal_ids, camera=camera, depths_lookdown=depths if depth else None,
                         expert=expert)
