"""The requests the fast path is built on in the background (``S2Engine.warmup_requests``), made by the
engine's own prompt builder, so that the compiles and graph captures an episode needs happen before it serves.

One request per history length 0..num_history, each adding one new frame, with the episode's instruction,
and once a step has shown the camera frame's size a look-down turn after the full history (its vision graphs;
the longest prompt). Prefill graphs are keyed by the prompt's 64-token bucket (with prefix reuse, after a kept
prefix, by the prefilled rows' bucket alone: the kept length is device data), so ``FastGenerator.warm_up``
captures them for every bucket up to the longest prompt's (plus a margin for longer instructions) without a
request per prompt length: any instruction's episodes are covered.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

from . import prompt
from .config import EngineConfig

WARMUP_INSTRUCTION = "Walk past the sofa, go through the door on the left and stop next to the kitchen table"
LOOK_DOWN_ANSWER = "↓"

Request = tuple[list[dict[str, Any]], list[Image.Image], list[Any]]


def _frames(n: int, size: tuple[int, int], seed: int) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)) for _ in range(n)]


def _first(cfg: EngineConfig, instruction: str, images: list[Image.Image]) -> Request:
    text = prompt.build_user_text(instruction, len(images) - 1, prompt.CONJUNCTIONS[0], cfg.prompt_punctuation)
    return [prompt.user_message(text, images)], images, [("warm-up", i) for i in range(len(images))]


def _look_down(first: Request, image: Image.Image) -> Request:
    messages, images, keys = first
    turn = prompt.user_message(prompt.build_look_down_text(prompt.CONJUNCTIONS[0]), [image])
    return messages + [prompt.assistant_message(LOOK_DOWN_ANSWER), turn], images + [image], keys + [None]


def warmup_requests(cfg: EngineConfig, instruction: str | None = None, camera_size: tuple[int, int] | None = None) -> list[Request]:
    """The build's requests (module docstring)."""
    frames = _frames(cfg.num_history + 1, (cfg.resize_w, cfg.resize_h), 0)
    ramp = [_first(cfg, instruction or WARMUP_INSTRUCTION, frames[: h + 1]) for h in range(cfg.num_history + 1)]
    if camera_size is None:
        return ramp
    return ramp + [_look_down(ramp[-1], _frames(1, camera_size, 2)[0])]
