"""Training samples along a trajectory, as the released S2 was trained, and their chat messages.

Every ``sample_step`` frames ``t`` of an episode (the last frame only teaches STOP):

* a pixel goal exists at ``t`` (``goal_frames[t] >= min_goal_frames``): the model answers
  ``↓``, the look-down frame follows as a second user turn, and the model answers
  ``"{column} {row}"``;
* no pixel goal and the next action is a turn: the answer is the next turn arrows (at most
  ``num_future_steps``, cut at the first forward step);
* otherwise (moving forward to a goal too near to name) no sample.

In a recording with injected perturbations (``Episode.expert``), a frame teaches only when every
action its answer is read from was the expert's: the moves up to its pixel goal (the recorder ends a
forward run where a detour starts, ``train.goals``), or its turns and the action that ended them.
Frames after a detour still teach (the way back), with the detour in their history; the first
expert frame after one always does, on or off the ``sample_step`` grid: it is the state the
detour (or, in a DAgger recording, the learner's mistake, ``sim.takeover``) led to.

Plus a ``STOP`` sample at the last frame, repeated ``stop_repeat`` times (``pixel_goal_repeat`` and
``turn_repeat`` repeat the other kinds: levers on the mix, not upstream's). The prompt text comes
from core.prompt, so it is the text the engine builds at inference.
"""

from __future__ import annotations

import dataclasses
import enum
import random
from typing import Any

from PIL import Image

from ..core import prompt
from ..core.actions import ACTION_TO_ARROW, STOP_TOKEN, Action
from ..core.history import history_indices
from .lerobot_data import Episode

TURN_ACTIONS = (Action.LEFT, Action.RIGHT)


class SampleKind(enum.Enum):
    PIXEL_GOAL = "pixel_goal"
    TURNS = "turns"
    STOP = "stop"


@dataclasses.dataclass(frozen=True)
class SampleOptions:
    sample_step: int = 4
    num_future_steps: int = 4
    num_history: int = 8
    min_goal_frames: int = 3
    stop_repeat: int = 5
    pixel_goal_only: bool = False
    pixel_goal_repeat: int = 1
    turn_repeat: int = 1

    def repeat(self, kind: SampleKind) -> int:
        return {SampleKind.PIXEL_GOAL: self.pixel_goal_repeat, SampleKind.TURNS: self.turn_repeat}.get(kind, 1)


@dataclasses.dataclass(frozen=True)
class SampleSpec:
    episode: int  # index into the episode list
    instruction: str
    frame: int
    kind: SampleKind
    answers: tuple[str, ...]  # one per assistant turn

    @property
    def pixel(self) -> tuple[int, int] | None:
        if self.kind != SampleKind.PIXEL_GOAL:
            return None
        column, row = self.answers[-1].split()
        return int(column), int(row)


def arrows(actions: list[int]) -> str:
    return "".join(STOP_TOKEN if a == Action.STOP else ACTION_TO_ARROW[Action(a)] for a in actions)


def next_turns(actions, t: int, num_future_steps: int) -> list[int]:
    """The turns starting at ``t``, at most ``num_future_steps``, cut at a non-turn (a STOP is kept)."""
    out: list[int] = []
    for a in actions[t : min(len(actions), t + num_future_steps)]:
        if a == Action.STOP:
            out.append(int(a))
            break
        if a not in TURN_ACTIONS:
            break
        out.append(int(a))
    return out


def frame_sample(episode: Episode, t: int, opts: SampleOptions) -> tuple[SampleKind, tuple[str, ...]] | None:
    """The answer taught at frame ``t`` (not the final frame), or None when the frame teaches nothing."""
    k = int(episode.goal_frames[t])
    if k != -1:
        if k < opts.min_goal_frames or not _expert_labels(episode, t, k):
            return None
        column, row = (int(v) for v in episode.goals[t])
        return SampleKind.PIXEL_GOAL, (ACTION_TO_ARROW[Action.LOOK_DOWN], f"{column} {row}")
    if opts.pixel_goal_only or episode.actions[t] == Action.FORWARD:
        return None
    turns = next_turns(episode.actions, t, opts.num_future_steps)
    # the turns read, and the action that cut them (a detour step there would have cut them short)
    if not turns or not _expert_labels(episode, t, min(len(turns) + 1, opts.num_future_steps)):
        return None
    return SampleKind.TURNS, (arrows(turns),)


def _expert_labels(episode: Episode, t: int, span: int) -> bool:
    """Whether the actions at frames t .. t+span-1 were all the expert's (always, without an expert column)."""
    return episode.expert is None or bool(episode.expert[t : t + span].all())


def recovery_frames(episode: Episode) -> list[int]:
    """The frames (not the last) whose action is the expert's after one that was not."""
    if episode.expert is None:
        return []
    expert = [bool(e) for e in episode.expert]
    return [t for t in range(1, episode.length - 1) if expert[t] and not expert[t - 1]]


def episode_samples(episode: Episode, episode_id: int, opts: SampleOptions) -> list[SampleSpec]:
    length = episode.length
    out: list[SampleSpec] = []
    frames = sorted(set(range(0, length - 1, opts.sample_step)) | set(recovery_frames(episode)))
    for instruction in episode.instructions:
        for t in frames:
            answer = frame_sample(episode, t, opts)
            if answer is not None:
                out.extend([SampleSpec(episode_id, instruction, t, answer[0], answer[1])] * opts.repeat(answer[0]))
        if not opts.pixel_goal_only and _expert_labels(episode, length - 1, 1):
            stop = SampleSpec(episode_id, instruction, length - 1, SampleKind.STOP, (STOP_TOKEN,))
            out.extend([stop] * opts.stop_repeat)
    return out


def build_samples(episodes: list[Episode], opts: SampleOptions) -> list[SampleSpec]:
    return [s for i, ep in enumerate(episodes) for s in episode_samples(ep, i, opts)]


def history_of(spec: SampleSpec, num_history: int) -> list[int]:
    """Frames shown as history: upstream's linspace over the frames before this one."""
    return history_indices(spec.frame, num_history)


def build_messages(
    spec: SampleSpec, history: list[Image.Image], current: Image.Image, look_down: Image.Image | None, rng: random.Random
) -> list[dict[str, Any]]:
    """The conversation of one sample, answers included (images bound in prompt order)."""
    conjunction = rng.choice(prompt.CONJUNCTIONS)
    text = prompt.build_user_text(spec.instruction, len(history), conjunction)
    messages = [prompt.user_message(text, [*history, current]), prompt.assistant_message(spec.answers[0])]
    if spec.kind == SampleKind.PIXEL_GOAL:
        if look_down is None:
            raise ValueError("a pixel-goal sample needs its look-down frame")
        follow_up = prompt.build_look_down_text(rng.choice(prompt.CONJUNCTIONS))
        messages += [prompt.user_message(follow_up, [look_down]), prompt.assistant_message(spec.answers[1])]
    return messages
