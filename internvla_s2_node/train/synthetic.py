"""Small synthetic scenes in the training layout: for tests and dry runs of the training pipeline.

Frames are flat colours with a moving square (distinct per episode and frame), actions follow
a fixed forward/turn pattern, and each frame before a forward run gets a pixel goal that
names the end of that run.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..core.actions import Action
from .layout import CameraSetup
from .recording import write_episode

F, L, R, S = Action.FORWARD, Action.LEFT, Action.RIGHT, Action.STOP
PATTERN = (F, F, F, F, F, L, L, L, F, F, F, F, F, R, R, F, F, F, F, F)
INSTRUCTIONS = (
    "walk past the red chair and stop at the door",
    "go down the hallway and wait by the stairs",
    "turn left at the kitchen and stop near the fridge",
    "exit the bedroom and stop in front of the sofa",
    "walk to the window and turn right",
    "go straight to the table and stop",
)


def episode_actions(length: int, offset: int = 0) -> list[int]:
    acts = [int(PATTERN[(i + offset) % len(PATTERN)]) for i in range(length - 1)]
    return acts + [int(S)]


def goals_for(actions: list[int], look_down_size: tuple[int, int], rng: np.random.Generator):
    """Pixel goal and frames-until-reached for every frame that starts or continues a forward run."""
    length = len(actions)
    ids = np.full(length, -1, np.int64)
    px = np.zeros((length, 2), np.int64)
    w, h = look_down_size
    for i in range(length):
        if actions[i] != F:
            continue
        j = i
        while j < length - 1 and actions[j] == F:
            j += 1
        ids[i] = j - i
        px[i] = (rng.integers(0, w), rng.integers(0, h))
    return px, ids


def frame(size: tuple[int, int], colour, t: int, square: int = 8) -> np.ndarray:
    w, h = size
    img = np.empty((h, w, 3), np.uint8)
    img[:] = (np.asarray(colour, np.int64) + 23 * t) % 256  # the scene changes as the robot moves
    x = (5 * t) % max(1, w - square)
    y = (3 * t) % max(1, h - square)
    img[y : y + square, x : x + square] = 255 - img[0, 0]
    return img


def write_synthetic_scene(
    root,
    num_episodes: int = 2,
    length: int = 12,
    seed: int = 0,
    frame_size: tuple[int, int] = (64, 64),
    look_down_size: tuple[int, int] = (96, 72),
    camera: CameraSetup = CameraSetup(),
    first_episode: int = 0,
) -> Path:
    rng = np.random.default_rng(seed)
    root = Path(root)
    for n in range(num_episodes):
        episode = first_episode + n
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        actions = episode_actions(length, offset=3 * episode)
        goals, goal_ids = goals_for(actions, look_down_size, rng)
        front = [frame(frame_size, colour, t) for t in range(length)]
        down = [frame(look_down_size, colour[::-1], t) for t in range(length)]
        poses = np.tile(np.eye(4), (length, 1, 1))
        poses[:, 0, 3] = np.arange(length) * 0.25
        write_episode(
            root, episode, INSTRUCTIONS[episode % len(INSTRUCTIONS)], front, down, actions, poses, goals, goal_ids, camera=camera, image_format="png"
        )
    return root
