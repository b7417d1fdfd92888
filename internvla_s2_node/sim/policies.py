"""Reference policies for the episode loop: oracle, random, scripted.

A policy has ``reset(episode, backend)`` and ``act(observation) -> output``, where output
is one of (see ``loop.py``): a sequence of ``Action``; a waypoint, i.e. a (3,) world point,
a ``core.geometry.Waypoint`` or a ``core.types.Decision`` (whose waypoint the loop then
follows with the backend's shortest-path follower); a LOOK_DOWN action asks for a
look-down observation before the next decision.
"""

from __future__ import annotations

import abc
import zlib
from typing import Any, Iterable, Sequence, Union

import numpy as np

from ..core.actions import Action
from ..core.geometry import Waypoint
from ..core.types import Decision
from .backend import Observation, SimBackend
from .episodes import Episode

PolicyOutput = Union[Sequence[Action], np.ndarray, Waypoint, Decision, None]

ORACLE_STOP_RADIUS_M = 0.5  # stop this close (geodesic) to the goal point
ORACLE_PASS_RADIUS_M = 1.0  # a reference point counts as visited this close
RANDOM_ACTION_PROBS = {Action.FORWARD: 0.68, Action.LEFT: 0.15, Action.RIGHT: 0.15, Action.STOP: 0.02}
RANDOM_MAX_CHUNK = 4
DETOUR_ACTIONS = (Action.LEFT, Action.RIGHT, Action.FORWARD)
DETOUR_MAX_STEPS = 3


class Policy(abc.ABC):
    name = "policy"

    @abc.abstractmethod
    def reset(self, episode: Episode, backend: SimBackend) -> None:
        """Start an episode (the backend has already been reset to it)."""

    @abc.abstractmethod
    def act(self, observation: Observation) -> PolicyOutput:
        """The next decision for ``observation``."""


class OraclePolicy(Policy):
    """Follows the episode's reference path with the backend's geodesic follower, then stops
    within ``stop_radius`` of the goal. Reference points are skipped once visited or once the
    agent is geodesically closer to the goal than they are (so it never turns back).

    ``perturb`` > 0 records recoveries (DART-style noise injection): before a step where the oracle
    would not stop, with this probability it first takes a detour of 1-3 equal random moves (LEFT,
    RIGHT or FORWARD), then goes on from wherever that left it. ``expert`` marks which steps were
    the oracle's own choice, so a recording teaches only those; the frames after a detour show
    the way back from a state the plain oracle never visits, as a trained policy's mistakes do."""

    name = "oracle"

    def __init__(self, stop_radius: float = ORACLE_STOP_RADIUS_M, pass_radius: float = ORACLE_PASS_RADIUS_M,
                 follow_reference: bool = True, perturb: float = 0.0, seed: int = 0):
        if not 0.0 <= perturb < 1.0:
            raise ValueError(f"perturb must be in [0, 1), got {perturb}")
        self.stop_radius = stop_radius
        self.pass_radius = pass_radius
        self.follow_reference = follow_reference
        self.perturb = perturb
        self.seed = seed
        self._backend: SimBackend | None = None
        self._goal = np.zeros(3)
        self._refs: list[np.ndarray] = []
        self._ref_to_goal: list[float] = []
        self._next = 0
        self._rng = np.random.default_rng(seed)
        self._detour: list[Action] = []
        self.expert: list[bool] = []  # per navigation step of the episode: the oracle's own choice (False: a detour step)

    def reset(self, episode: Episode, backend: SimBackend) -> None:
        self._backend = backend
        self._goal = backend.snap_to_navigable(episode.goal_world)
        refs = episode.reference_path_world[1:-1] if self.follow_reference else np.zeros((0, 3))
        self._refs = [backend.snap_to_navigable(p) for p in refs]
        self._ref_to_goal = [backend.geodesic_distance(p, self._goal) for p in self._refs]
        self._next = 0
        self._rng = np.random.default_rng([self.seed, zlib.crc32(str(episode.episode_id).encode())])
        self._detour = []
        self.expert = []

    def _advance(self, position: np.ndarray) -> None:
        to_goal = self._backend.geodesic_distance(position, self._goal)
        while self._next < len(self._refs) and (
            np.linalg.norm(position[:2] - self._refs[self._next][:2]) <= self.pass_radius
            or to_goal <= self._ref_to_goal[self._next]
        ):
            self._next += 1

    def act(self, observation: Observation) -> list[Action]:
        action = self._expert_action()
        if not self._detour and action != Action.STOP and self.perturb and self._rng.random() < self.perturb:
            self._detour = [DETOUR_ACTIONS[self._rng.integers(len(DETOUR_ACTIONS))]] * int(self._rng.integers(1, DETOUR_MAX_STEPS + 1))
        if self._detour:
            self.expert.append(False)
            return [self._detour.pop()]
        self.expert.append(True)
        return [action]

    def _expert_action(self) -> Action:
        position = self._backend.agent_position()
        self._advance(position)
        while self._next < len(self._refs):
            action = self._backend.shortest_path_action(self._refs[self._next], self.pass_radius)
            if action != Action.STOP:
                return action
            self._next += 1
        return self._backend.shortest_path_action(self._goal, self.stop_radius)


class RandomPolicy(Policy):
    """Seeded random chunks of FORWARD/LEFT/RIGHT with a small chance of STOP; the stream
    depends only on (seed, episode id)."""

    name = "random"

    def __init__(self, seed: int = 0, probs: dict[Action, float] | None = None, max_chunk: int = RANDOM_MAX_CHUNK):
        probs = dict(probs or RANDOM_ACTION_PROBS)
        total = sum(probs.values())
        if total <= 0 or any(p < 0 for p in probs.values()):
            raise ValueError(f"action probabilities must be >= 0 with a positive sum, got {probs}")
        if max_chunk < 1:
            raise ValueError(f"max_chunk must be >= 1, got {max_chunk}")
        self.seed = seed
        self.actions = list(probs)
        self.probs = np.array([probs[a] for a in self.actions]) / total
        self.max_chunk = max_chunk
        self._rng = np.random.default_rng(seed)

    def reset(self, episode: Episode, backend: SimBackend) -> None:
        self._rng = np.random.default_rng([self.seed, zlib.crc32(str(episode.episode_id).encode())])

    def act(self, observation: Observation) -> list[Action]:
        n = int(self._rng.integers(1, self.max_chunk + 1))
        picks = self._rng.choice(len(self.actions), size=n, p=self.probs)
        return [self.actions[int(i)] for i in picks]


class ScriptedPolicy(Policy):
    """Replays fixed outputs (then STOP); records the observations it was given."""

    name = "scripted"

    def __init__(self, outputs: Iterable[Any]):
        self.outputs = list(outputs)
        self.seen: list[Observation] = []
        self._i = 0

    def reset(self, episode: Episode, backend: SimBackend) -> None:
        self._i = 0
        self.seen = []

    def act(self, observation: Observation) -> PolicyOutput:
        self.seen.append(observation)
        if self._i >= len(self.outputs):
            return [Action.STOP]
        self._i += 1
        return self.outputs[self._i - 1]

