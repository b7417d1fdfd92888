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
    "You are an autonomous navigation assistant. Your task is to {instruction} "
    "Where should you go next to stay on track? Please output the next waypoint's "
    "coordinates in the image. Please output STOP when you have successfully completed the task."
)
HISTORY_PREFIX = " These are your historical observations: "

# How the instruction ends before "Where should you go next". Upstream's template has
# "<instruction>." and its two loops fill it differently:
# - "habitat_evaluator": internnav/habitat_extensions/vln/habitat_vln_evaluator.py:742-744
#   replaces "<instruction>." with instruction_text[:-1]: an R2R instruction's final period
#   and the template's are both gone ("... near the stairs Where should ...").
# - "one_period": internnav/agent/internvla_n1_agent_realworld.py:179 replaces it with the
#   instruction as given: one period for a period-terminated instruction ("... stairs. Where").
#   We give every instruction exactly one, as the template does (the training data,
#   internnav/dataset/internvla_n1_lerobot_dataset.py:1067, keeps the template's period).
PUNCTUATION_MODES: tuple[str, ...] = ("one_period", "habitat_evaluator")

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


def instruction_text(instruction: str, punctuation: str = "one_period") -> str:
    """The text that takes the place of ``<instruction>.`` in upstream's template.

    Where upstream's evaluator is plainly wrong we do not follow it, in either mode:
    ``[:-1]`` cuts the last letter of an instruction without a final period (``monitor`` ->
    ``monito``; we drop only a period), ``split_and_clean`` deletes newlines and so glues the
    words around them (we put a blank there), and an ``<image>`` inside the instruction makes
    more placeholders than images and crashes (``neutralize_markup``)."""
    if punctuation == "one_period":
        return clean_instruction(instruction) + "."
    if punctuation != "habitat_evaluator":
        raise ValueError(f"punctuation must be one of {PUNCTUATION_MODES}, got {punctuation!r}")
    # Other blanks are kept as given: the evaluator's text, token for token. Trailing blanks
    # go first, so the period they follow is the one dropped (upstream would cut a blank).
    text = re.sub(r"\s*\n\s*", " ", neutralize_markup(instruction)).rstrip()
    return text[:-1] if text.endswith(".") else text


def build_user_text(instruction: str, num_history: int, conjunction: str, punctuation: str = "one_period") -> str:
    """First user turn with ``<image>`` placeholders: history frames, then the current frame.

    With no history frame (step 0, or ``num_history: 0``) the history sentence is left out.
    Upstream's evaluator (habitat_vln_evaluator.py:749-753) leaves it out at step 0 only: with
    ``num_history: 0`` it says "These are your historical observations: ." and shows no image.
    That sentence introduces nothing, and no released checkpoint was trained or scored with 0."""
    text = PROMPT_TEMPLATE.format(instruction=instruction_text(instruction, punctuation))
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
