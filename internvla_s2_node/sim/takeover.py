"""DAgger recordings: a learner drives until it stops or runs long, then the oracle drives to the goal.

The learner (S2) visits the states its own mistakes lead to: a STOP far from the goal, a path past
it. Where it says STOP, or has taken ``budget`` x the shortest path's forward steps, the oracle
takes over from wherever it is and drives to the goal. ``expert`` marks the navigation steps the
oracle took, so a recording (``sim.recorder``) teaches only those, with the learner's steps in
their history: the frame where the learner said STOP teaches what to do there instead, and the
episode still ends with the oracle's STOP at the goal. A learner's STOP within ``accept_within`` of
the goal (geodesic; VLN-CE's success distance by default) is a right answer: it ends the episode and
teaches STOP there. Without it the oracle would walk on to its own stop radius, and every successful
STOP of the learner would be taught as a mistake (the first DAgger round did that, and stopped less).

``stop_within`` (off by default) makes the expert stop too: at a decision the learner is asked for
within that geodesic distance of the goal, the episode ends with the expert's STOP, whatever the
learner would say. The oracle walks on to its own stop radius (about 0.4 m), so on its paths every
frame between that radius and VLN-CE's 3 m teaches "go on", though STOP there is a success. From the
learner's own states the second DAgger round passed the goal and stopped elsewhere 21 times in 138
held-out episodes (``benchmarks/results/navigator_dagger_not_shipped_2026-12-03.md``): those states
are where an expert scored by SR says STOP.
"""

from __future__ import annotations

import math

from ..core.actions import Action
from .backend import SUCCESS_DISTANCE_M, Observation, SimBackend
from .episodes import Episode
from .loop import NAVIGATION_ACTIONS, to_plan
from .policies import OraclePolicy, Policy, PolicyOutput

DEFAULT_BUDGET = 2.0  # the learner's steps, in multiples of the shortest path's forward steps
# Why the oracle took over (``takeover_kind``): the learner's budget ran out, the expert stopped it near the
# goal (``stop_within``), its STOP near the goal was accepted, or it said STOP elsewhere.
BUDGET, EXPERT_STOP, ACCEPTED, LEARNER_STOP = "budget", "expert_stop", "accepted", "learner_stop"


class TakeoverPolicy(Policy):
    name = "dagger"

    def __init__(self, learner: Policy, oracle: OraclePolicy | None = None, budget: float = DEFAULT_BUDGET,
                 accept_within: float = SUCCESS_DISTANCE_M, stop_within: float = 0.0) -> None:
        if not budget > 0:
            raise ValueError(f"budget must be > 0, got {budget}")
        if not accept_within >= 0:
            raise ValueError(f"accept_within must be >= 0, got {accept_within}")
        if not 0 <= stop_within <= accept_within:
            raise ValueError(f"stop_within must be in [0, accept_within={accept_within}], got {stop_within}")
        self.accept_within = accept_within
        self.stop_within = stop_within
        self._backend: SimBackend | None = None
        self._goal = None
        self.learner = learner
        self.oracle = oracle or OraclePolicy()
        self.budget = budget
        self.expert: list[bool] = []  # per navigation step: taken by the oracle
        self.takeover_step: int | None = None  # navigation steps the learner took (None: it never handed over)
        self.takeover_kind = ""  # one of BUDGET, EXPERT_STOP, ACCEPTED, LEARNER_STOP once taken over
        self.takeover_reason = ""
        self.episode_latencies: list[float] = []
        self._max_learner_steps = 0

    def reset(self, episode: Episode, backend: SimBackend) -> None:
        self.expert = []
        self.takeover_step, self.takeover_kind, self.takeover_reason = None, "", ""
        self.oracle.reset(episode, backend)
        self.learner.reset(episode, backend)
        self.episode_latencies = getattr(self.learner, "episode_latencies", [])
        start, goal = backend.agent_position(), backend.snap_to_navigable(episode.goal_world)
        self._backend, self._goal = backend, goal
        shortest = backend.geodesic_distance(start, goal)
        if not math.isfinite(shortest):
            shortest = episode.geodesic_distance or 0.0
        self._max_learner_steps = max(1, math.ceil(self.budget * shortest / backend.config.forward_step_m))

    @property
    def taken_over(self) -> bool:
        return self.takeover_step is not None

    def observe(self, obs: Observation, action) -> None:
        if action in NAVIGATION_ACTIONS:
            self.expert.append(self.taken_over)
        if not self.taken_over and hasattr(self.learner, "observe"):
            self.learner.observe(obs, action)

    def act(self, observation: Observation) -> PolicyOutput:
        if not self.taken_over and len(self.expert) >= self._max_learner_steps:
            self._take_over(BUDGET, f"the learner took {len(self.expert)} steps (budget {self._max_learner_steps})")
        if not self.taken_over:
            if self.stop_within > 0 and (to_goal := self._to_goal()) <= self.stop_within:
                self._take_over(EXPERT_STOP, f"the learner was {to_goal:.2f} m from the goal: the expert stops")
                return [Action.STOP]
            output = self.learner.act(observation)
            if Action.STOP not in to_plan(output).actions:
                return output
            if (to_goal := self._to_goal()) <= self.accept_within:
                self._take_over(ACCEPTED, f"the learner said STOP {to_goal:.2f} m from the goal: accepted")
                return [Action.STOP]
            self._take_over(LEARNER_STOP, "the learner said STOP")
        return self.oracle.act(observation)

    def _to_goal(self) -> float:
        return self._backend.geodesic_distance(self._backend.agent_position(), self._goal)

    def _take_over(self, kind: str, reason: str) -> None:
        self.takeover_step, self.takeover_kind, self.takeover_reason = len(self.expert), kind, reason
