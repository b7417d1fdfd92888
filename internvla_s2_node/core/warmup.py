"""The requests the fast path is built on in the background (``S2Engine.warmup_requests``), made by the
engine's own prompt builder, so that the compiles and graph captures an episode needs happen before it serves.

Without prefix reuse: one request per history length 0..num_history, each adding one new frame (prefill
graphs are keyed by the prompt's 64-token bucket). With prefix reuse a prefill graph is keyed by the kept
prefix too, which follows from what is unchanged since the last prompt, so the requests also replay that:

* the same history ramp (history length h keeps the h-1 frames of length h-1), once more per other
  bucket the conjunctions give at that length;
* with the history full, one request keeping k = num_history..0 leading history frames of the last
  request, per distinct bucket of the conjunctions (the conjunction follows the history: it changes the
  length, not the kept prefix);
* the look-down turn (the first turn kept whole) after a first turn of each history length, per
  distinct (kept, bucket) of the two turns' conjunctions, once a step has shown the camera frame's size.

The kept prefix starts with the instruction's text, so these requests use the episode's instruction.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
from PIL import Image

from . import prompt
from .config import EngineConfig

WARMUP_INSTRUCTION = "Walk past the sofa, go through the door on the left and stop next to the kitchen table"
BUCKET = 64  # fast_generation.settings.PREFILL_BUCKET (not imported: that package needs torch)
LOOK_DOWN_ANSWER = "↓"

Request = tuple[list[dict[str, Any]], list[Image.Image], list[Any]]


def _frames(n: int, size: tuple[int, int], seed: int) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)) for _ in range(n)]


class _Builder:
    """First and look-down turns as the engine makes them, and their lengths as the processor counts them."""

    def __init__(self, cfg: EngineConfig, instruction: str, processor=None) -> None:
        self.cfg, self.instruction, self.processor = cfg, instruction, processor
        size, n = (cfg.resize_w, cfg.resize_h), cfg.num_history + 1
        # Two sets of episode frames: a request keeps k frames of the last one where the sets alternate.
        self.a = list(zip(_frames(n, size, 0), [("warm-up", i) for i in range(n)]))
        self.b = list(zip(_frames(n, size, 1), [("warm-up", "b", i) for i in range(n)]))
        self._image_tokens: dict[tuple[int, int], int] = {}
        self.choices = prompt.CONJUNCTIONS if cfg.conjunction_mode == "random" else prompt.CONJUNCTIONS[:1]

    def first(self, frames, conjunction: str = prompt.CONJUNCTIONS[0]) -> Request:
        images, keys = (list(x) for x in zip(*frames))
        text = prompt.build_user_text(self.instruction, len(images) - 1, conjunction, self.cfg.prompt_punctuation)
        return [prompt.user_message(text, images)], images, keys

    def look_down(self, first: Request, image: Image.Image, conjunction: str) -> Request:
        messages, images, keys = first
        answer = prompt.assistant_message(LOOK_DOWN_ANSWER)
        turn = prompt.user_message(prompt.build_look_down_text(conjunction), [image])
        return messages + [answer, turn], images + [image], keys + [None]

    def length(self, request: Request) -> int:
        messages, images, _ = request
        text = self.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return len(self.processor.tokenizer(text)["input_ids"]) + sum(self._tokens_of(im.size) - 1 for im in images)

    def _tokens_of(self, size: tuple[int, int]) -> int:
        if size not in self._image_tokens:
            ip = self.processor.image_processor
            grid = ip(images=[Image.new("RGB", size)], return_tensors="pt")["image_grid_thw"][0]
            self._image_tokens[size] = int(grid.prod()) // int(getattr(ip, "merge_size", 2)) ** 2
        return self._image_tokens[size]

    def conjunctions(self, frames) -> list[str]:
        """One conjunction per distinct bucket of the first turn on ``frames``, the first conjunction's first."""
        by_bucket: dict[int, str] = {}
        for c in self.choices:
            by_bucket.setdefault(-(-self.length(self.first(frames, c)) // BUCKET), c)
        return list(by_bucket.values())


def warmup_requests(cfg: EngineConfig, processor=None, instruction: str | None = None,
                    camera_size: tuple[int, int] | None = None) -> list[Request]:
    """The build's requests (module docstring); ``processor`` (token counts) is needed for prefix reuse."""
    p = _Builder(cfg, instruction or WARMUP_INSTRUCTION, processor)
    ramp = [p.first(p.a[: h + 1]) for h in range(cfg.num_history + 1)]
    if not cfg.prefix_reuse:
        return ramp
    looks, c0 = (_look_downs(p, camera_size) if camera_size else {}), p.choices[0]
    # A ramp step's look-down turn goes right after it (the next step keeps the same prefix after it).
    out = [r for h, first in enumerate(ramp) for r in [first] + looks.get((h, c0), [])[:1]]
    out += _steady(p) + _ramp_buckets(p)
    for (h, c1), turns in looks.items():
        for turn in turns[c1 == c0 :]:
            out += [p.first(p.a[: h + 1], c1), turn]
    return out


def _steady(p: _Builder) -> list[Request]:
    """After the ramp's last request (all of set a): k = n..0 frames of set a, the rest of set b, per
    bucket; the next bucket's run starts from all of set b, so its sets swap."""
    n, out = p.cfg.num_history, []
    for i, conjunction in enumerate(p.conjunctions(p.a)):
        kept, rest = (p.a, p.b) if i % 2 == 0 else (p.b, p.a)
        out += [p.first(kept[:k] + rest[k:], conjunction) for k in range(n, -1, -1)]
    return out


def _ramp_buckets(p: _Builder) -> list[Request]:
    """The ramp step to history length h once more for each other bucket of its conjunctions."""
    out = []
    for h in range(1, p.cfg.num_history + 1):
        for conjunction in p.conjunctions(p.a[: h + 1])[1:]:
            out += [p.first(p.a[:h]), p.first(p.a[: h + 1], conjunction)]
    return out


def _look_downs(p: _Builder, camera_size: tuple[int, int]) -> dict[tuple[int, str], list[Request]]:
    """Look-down turns per (history length, first turn's conjunction), one per distinct (kept, bucket):
    kept is the first turn rounded down, so both conjunctions count."""
    image = _frames(1, camera_size, 2)[0]
    seen, out = set(), {}
    for h, c1 in itertools.product(range(p.cfg.num_history + 1), p.choices):
        first = p.first(p.a[: h + 1], c1)
        kept = p.length(first) // BUCKET
        for c2 in p.choices:
            turn = p.look_down(first, image, c2)
            key = (kept, -(-p.length(turn) // BUCKET))
            if key not in seen:
                seen.add(key)
                out.setdefault((h, c1), []).append(turn)
    return out
