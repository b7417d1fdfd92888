"""One pure function that turns the model's text into a decision."""

from __future__ import annotations

import dataclasses
import enum
import re

from .actions import ARROW_TO_ACTION, STOP_TOKEN, Action

LOOK_DOWN_IN_LIST = ("skip", "execute")
MAX_ACTIONS = 128  # upstream generates up to 128 new tokens, one or more per action

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


def parse_output(text: object, image_size: tuple[int, int] | None = None, max_actions: int = MAX_ACTIONS,
                 look_down_in_list: str = "skip") -> ParsedOutput:
    """Map the model's answer to a decision; never raises.

    * Digits mean a pixel goal: the first two integers are (column, row), the order
      upstream's ``pixel_to_gps`` projection consumes them in. ``image_size`` is
      (width, height); a pixel outside it is no decision.
    * Otherwise ``STOP`` and the arrows ``↑ ← → ↓`` form an action sequence of at most
      ``max_actions``, cut after the first STOP. An answer of only ``↓`` (once or more) asks
      to look down and ask again. A ``↓`` among other actions depends on ``look_down_in_list``:

      - ``skip`` (upstream's robot): it is dropped and the moves around it are kept. The
        server looks down only for exactly ``[5]`` (scripts/realworld/http_internvla_server.py:59)
        and the client drives every other code but 5 (http_internvla_client.py:314-333).
      - ``execute`` (upstream's Habitat evaluator, habitat_vln_evaluator.py:823-828, 877-880):
        it stays in the list, to be executed in order (the camera tilts and the next moves
        run tilted, without asking again). After moves, a final ``↓`` is executed the same
        way. Upstream asks again there (:731-739), but its moves have emptied the
        conversation (:884), so that turn has no first user turn and one image more than
        placeholders (:735, :776); that cannot be what the model was meant to see.
    """
    if not isinstance(text, str):
        return ParsedOutput(OutputKind.NONE, reason=f"model output is {type(text).__name__}, not text")
    text = text.strip()
    if not text:
        return ParsedOutput(OutputKind.NONE, reason="empty model output")
    if any(ch.isdigit() for ch in text):
        return _parse_pixel(text, image_size)
    return _parse_actions(text, max_actions, look_down_in_list)


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


def _parse_actions(text: str, max_actions: int, look_down_in_list: str) -> ParsedOutput:
    symbols = [Action.STOP if sym == STOP_TOKEN else ARROW_TO_ACTION[sym] for sym in _ACTION_RE.findall(text)]
    if symbols and all(a == Action.LOOK_DOWN for a in symbols):
        symbols = symbols[:1]  # a look-down request: one, whatever the repetition
    elif look_down_in_list == "skip":
        symbols = [a for a in symbols if a != Action.LOOK_DOWN]
    actions: list[Action] = []
    for action in symbols:
        actions.append(action)
        if action == Action.STOP or len(actions) >= max_actions:
            break
    if not actions:
        return ParsedOutput(OutputKind.NONE, reason=f"no action or coordinates in {text[:80]!r}")
    if actions == [Action.STOP]:
        return ParsedOutput(OutputKind.STOP, actions=(Action.STOP,))
    if actions == [Action.LOOK_DOWN]:
        return ParsedOutput(OutputKind.LOOK_DOWN, actions=(Action.LOOK_DOWN,))
    return ParsedOutput(OutputKind.ACTIONS, actions=tuple(actions))
