"""One pure function that turns the model's text into a decision."""

from __future__ import annotations

import dataclasses
import enum
import re

from .actions import ARROW_TO_ACTION, STOP_TOKEN, Action

_ACTION_RE = re.compile("|".join(re.escape(s) for s in (STOP_TOKEN, *ARROW_TO_ACTION)))
_INT_RE = re.compile(r"-?\d+")


class OutputKind(enum.Enum):
    ACTIONS = "actions"
    PIXEL_GOAL = "pixel_goal"
    LOOK_DOWN = "look_down"
    STOP = "stop"
    NONE = "none"


@dataclasses.dataclass(frozen=True)
class ParsedOutput:
    kind: OutputKind
    actions: tuple[Action, ...] = ()
    pixel: tuple[int, int] | None = None  # (column, row)
    reason: str = ""


def parse_output(text: object, image_size: tuple[int, int] | None = None, max_actions: int = 16) -> ParsedOutput:
    """Map the model's answer to a decision; never raises.

    * Digits mean a pixel goal: the first two integers are (column, row), the order
      upstream's ``pixel_to_gps`` projection consumes them in. ``image_size`` is
      (width, height); a pixel outside it is no decision.
    * Otherwise ``STOP`` and the arrows ``↑ ← → ↓`` form an action sequence, cut at
      the first STOP (kept) and before any ``↓`` that is not the first symbol. A
      leading ``↓`` asks to look down and ask again.
    """
    if not isinstance(text, str):
        return ParsedOutput(OutputKind.NONE, reason=f"model output is {type(text).__name__}, not text")
    text = text.strip()
    if not text:
        return ParsedOutput(OutputKind.NONE, reason="empty model output")
    if any(ch.isdigit() for ch in text):
        return _parse_pixel(text, image_size)
    return _parse_actions(text, max_actions)


def _parse_pixel(text: str, image_size: tuple[int, int] | None) -> ParsedOutput:
    try:
        numbers = [int(n) for n in _INT_RE.findall(text)]
    except ValueError:  # digits outside ASCII, e.g. '٣'
        numbers = []
    if len(numbers) < 2:
        return ParsedOutput(OutputKind.NONE, reason=f"expected two pixel coordinates, found {len(numbers)} in {text[:80]!r}")
    u, v = numbers[0], numbers[1]
    if image_size is not None:
        width, height = image_size
        if not (0 <= u < width and 0 <= v < height):
            return ParsedOutput(OutputKind.NONE, reason=f"pixel ({u}, {v}) outside the {width}x{height} image")
    elif u < 0 or v < 0:
        return ParsedOutput(OutputKind.NONE, reason=f"negative pixel ({u}, {v})")
    return ParsedOutput(OutputKind.PIXEL_GOAL, pixel=(u, v))


def _parse_actions(text: str, max_actions: int) -> ParsedOutput:
    actions: list[Action] = []
    for symbol in _ACTION_RE.findall(text):
        action = Action.STOP if symbol == STOP_TOKEN else ARROW_TO_ACTION[symbol]
        if action == Action.LOOK_DOWN and actions:
            break
        actions.append(action)
        if action in (Action.STOP, Action.LOOK_DOWN) or len(actions) >= max_actions:
            break
    if not actions:
        return ParsedOutput(OutputKind.NONE, reason=f"no action or coordinates in {text[:80]!r}")
    if actions == [Action.STOP]:
        return ParsedOutput(OutputKind.STOP, actions=(Action.STOP,))
    if actions == [Action.LOOK_DOWN]:
        return ParsedOutput(OutputKind.LOOK_DOWN, actions=(Action.LOOK_DOWN,))
    return ParsedOutput(OutputKind.ACTIONS, actions=tuple(actions))
