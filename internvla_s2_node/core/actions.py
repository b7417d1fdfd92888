"""Discrete navigation actions and their wire codes."""

from __future__ import annotations

import enum


class Action(enum.IntEnum):
    """Action codes as published on ``~/actions`` (and as upstream numbers them)."""

    STOP = 0
    FORWARD = 1
    LEFT = 2
    RIGHT = 3
    LOOK_UP = 4
    LOOK_DOWN = 5


# The symbols the model emits for each action.
ARROW_TO_ACTION: dict[str, Action] = {
    "\u2191": Action.FORWARD,  # ↑
    "\u2190": Action.LEFT,  # ←
    "\u2192": Action.RIGHT,  # →
    "\u2193": Action.LOOK_DOWN,  # ↓
}
ACTION_TO_ARROW: dict[Action, str] = {a: s for s, a in ARROW_TO_ACTION.items()}
STOP_TOKEN = "STOP"

# VLN-CE R2R action magnitudes.
FORWARD_STEP_M = 0.25
TURN_STEP_DEG = 15.0
LOOK_DOWN_DEG = 30.0


def actions_to_text(actions: list[Action] | tuple[Action, ...]) -> str:
    """The model's answer for a sequence of actions (inverse of parsing)."""
    if any(a == Action.STOP for a in actions):
        return STOP_TOKEN
    return "".join(ACTION_TO_ARROW[a] for a in actions)
