"""The text the released S2 checkpoints were trained on, as chat messages.

Upstream builds one string with ``<image>`` placeholders, then splits it on them
and drops newlines and surrounding blanks from the text pieces. We do the same so
the rendered chat template is token-for-token what the checkpoints saw.
"""

from __future__ import annotations

import random
import re
from typing import Any

IMAGE_TOKEN = "<image>"

PROMPT_TEMPLATE = (
    "You are an autonomous navigation assistant. Your task is to {instruction}. "
    "Where should you go next to stay on track? Please output the next waypoint's "
    "coordinates in the image. Please output STOP when you have successfully completed the task."
)
HISTORY_PREFIX = " These are your historical observations: "

CONJUNCTIONS: tuple[str, ...] = (
    "you can see ",
    "in front of you is ",
    "there is ",
    "you can spot ",
    "you are toward the ",
    "ahead of you is ",
    "in your sight is ",
)


class ConjunctionPicker:
    """Seedable choice of the phrase that introduces the current frame.

    ``mode="random"`` draws as upstream's evaluator does (reproducible per seed and
    episode); ``mode="first"`` always uses ``"you can see "`` as its robot server does.
    """

    def __init__(self, seed: int = 0, mode: str = "random") -> None:
        if mode not in ("random", "first"):
            raise ValueError(f"conjunction mode must be 'random' or 'first', got {mode!r}")
        self._seed = seed
        self._mode = mode
        self._rng = random.Random(seed)

    def reset(self) -> None:
        self._rng = random.Random(self._seed)

    def pick(self) -> str:
        if self._mode == "first":
            return CONJUNCTIONS[0]
        return self._rng.choice(CONJUNCTIONS)


def neutralize_markup(text: str) -> str:
    """An instruction is only text: no ``<image>`` placeholder and no chat-template special token survives.

    ``<image>`` would add an image slot (every step of the episode failing); ``<|im_end|>`` or
    ``<|image_pad|>`` would be parsed as special tokens by the tokenizer (a forged turn, image-token
    mismatches). They become plain words: ``<image>`` -> `` image ``, ``<|im_end|>`` -> ``< im_end >``.
    Each replacement removes a ``<``/``|`` character, so the loop ends, with none of the three left.
    """
    while True:
        new = text.replace(IMAGE_TOKEN, " image ").replace("<|", "< ").replace("|>", " >")
        if new == text:
            return text
        text = new


def clean_instruction(instruction: str) -> str:
    """Collapse whitespace, neutralize markup and drop a trailing period: the template supplies its own."""
    return " ".join(neutralize_markup(instruction).split()).rstrip(".").strip()


def build_user_text(instruction: str, num_history: int, conjunction: str) -> str:
    """First user turn with ``<image>`` placeholders: history frames, then the current frame."""
    text = PROMPT_TEMPLATE.format(instruction=clean_instruction(instruction))
    if num_history > 0:
        text += HISTORY_PREFIX + (IMAGE_TOKEN + "\n") * num_history + "."
    return text + " " + conjunction + IMAGE_TOKEN + "."


def build_look_down_text(conjunction: str) -> str:
    """Follow-up user turn carrying the look-down frame after the model answered ``↓``."""
    return " " + conjunction + IMAGE_TOKEN + "."


def split_placeholders(text: str) -> list[str]:
    """Split on ``<image>``, keeping the token; text pieces lose newlines and outer blanks."""
    parts: list[str] = []
    for piece in re.split(f"({re.escape(IMAGE_TOKEN)})", text):
        if piece == IMAGE_TOKEN:
            parts.append(piece)
        else:
            clean = piece.replace("\n", "").strip()
            if clean:
                parts.append(clean)
    return parts


def to_content(text: str, images: list[Any]) -> list[dict[str, Any]]:
    """Chat-message content for ``text`` with its placeholders bound to ``images`` in order."""
    parts = split_placeholders(text)
    n_slots = parts.count(IMAGE_TOKEN)
    if n_slots != len(images):
        raise ValueError(f"prompt has {n_slots} image placeholders but {len(images)} images were given")
    content: list[dict[str, Any]] = []
    image_iter = iter(images)
    for part in parts:
        if part == IMAGE_TOKEN:
            content.append({"type": "image", "image": next(image_iter)})
        else:
            content.append({"type": "text", "text": part})
    return content


def user_message(text: str, images: list[Any]) -> dict[str, Any]:
    return {"role": "user", "content": to_content(text, images)}


def assistant_message(text: str) -> dict[str, Any]:
    return {"role": "assistant", "content": [{"type": "text", "text": text}]}
