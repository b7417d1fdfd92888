"""The one episode loop: policy decisions -> simulator steps -> VLN-CE metrics.

Each decision of the policy is executed before it is asked again, as upstream InternNav's
Habitat evaluator does (internnav/habitat_extensions/vln/habitat_vln_evaluator.py, system-2
loop, lines 703-885):

- actions run in order until STOP or the step budget; LOOK_UP tilts the camera one step;
- a waypoint (world point) is snapped to the floor and followed with the backend's greedy
  geodesic follower for at most ``waypoint_max_steps`` actions, or until the follower
  says STOP there (upstream's ShortestPathFollower(0.25), MAX_STEPS 8); a waypoint already
  reached gives one ``stuck_action`` (upstream turns LEFT, :812-819) so the agent cannot
  dead-lock;
- ``↓`` (LOOK_DOWN) tilts the camera by ``look_down_deg`` (2 x 15 deg, :877-880). In a list
  with moves, the moves after it run with the camera tilted, without asking again (see
  ``core.parsing.parse_output`` for a final ``↓`` after moves). A decision of only ``↓``
  asks the policy again with the tilted observation (:731-739), and a ``↓`` answered then
  tilts further and asks again, as long as the camera can tilt (the backend's
  ``max_tilt_deg``). The camera is tilted back up before a waypoint is followed
  (:801-802) and at the latest once the decision has run;
- an empty decision (nothing parseable, a pixel goal without depth) is ``empty_action``
  (upstream: STOP).

The step budget counts navigation actions (FORWARD/LEFT/RIGHT/STOP), like upstream's
``step_id``; camera tilts are recorded but not counted.

``LoopConfig.upstream_evaluator`` reproduces one more behaviour of upstream's evaluator:
when the follower stops (STOP after moving, or ``waypoint_max_steps`` used up) it counts a
step without moving, and the same frame is observed again, so it repeats in the S2 node's
history (:834-848: ``step_id += 1; continue`` with no ``env.step``; the next iteration
appends the same observation to ``rgb_list``). It is off by default: the repeated frame and
the step that moves nothing are artifacts of upstream's loop, not of the task. Upstream's
other loop-level behaviour is not reproduced: after a look-down turn answered with actions
its camera stays tilted (there is no look-up on that path), so later frames enter the
history tilted, and first-turn pixel goals are projected at 30 deg whatever the tilt (:718)
and followed after a 30 deg look-up even from a level camera (:801-802). Those tilted
history frames are not what the checkpoints were trained on, and the pixel goals are only
right by chance; the project keeps its level history.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import time
from typing import Callable

import numpy as np

from ..core.actions import LOOK_DOWN_DEG, Action
from ..core.geometry import Waypoint
from ..core.types import Decision, DecisionKind
from .backend import SUCCESS_DISTANCE_M, Observation, SimBackend
from .episodes import Episode
from .metrics import EpisodeMetrics, compute_metrics, densify
from .policies import Policy, PolicyOutput

NAVIGATION_ACTIONS = frozenset({Action.STOP, Action.FORWARD, Action.LEFT, Action.RIGHT})
CAMERA_ACTIONS = frozenset({Action.LOOK_UP, Action.LOOK_DOWN})
DEFAULT_MAX_STEPS = 500
WAYPOINT_MAX_STEPS = 8  # upstream MAX_STEPS
MAX_IDLE_DECISIONS = 10  # decisions in a row without a navigation step end the episode
WAYPOINT_SIZE = 3

Observer = Callable[[Observation, "Action | None"], None]  # action None: a counted step that moved nothing


class EndReason(str, enum.Enum):
    STOP = "stop"  # the policy called STOP
    MAX_STEPS = "max_steps"
    IDLE = "idle"  # the policy kept deciding nothing that moves
    POLICY_FAILURE = "policy_failure"  # the policy raised PolicyFailure (e.g. the S2 node stopped answering)


class PolicyFailure(RuntimeError):
    """Raised by a policy that cannot decide (e.g. a timed-out remote node); ends the episode as failed."""


@dataclasses.dataclass(frozen=True)
class LoopConfig:
    waypoint_max_steps: int = WAYPOINT_MAX_STEPS
    waypoint_radius: float | None = None  # follower stop radius; None: backend default (0.25 m)
    look_down_deg: float = LOOK_DOWN_DEG
    stuck_action: Action = Action.LEFT
    empty_action: Action = Action.STOP
    max_idle_decisions: int = MAX_IDLE_DECISIONS
    success_distance: float = SUCCESS_DISTANCE_M
    upstream_evaluator: bool = False  # count a step and repeat the frame when the follower stops (module doc)

    def __post_init__(self) -> None:
        if self.waypoint_max_steps < 1:
            raise ValueError(f"waypoint_max_steps must be >= 1, got {self.waypoint_max_steps}")
        if self.look_down_deg < 0:
            raise ValueError(f"look_down_deg must be >= 0, got {self.look_down_deg}")
        if self.max_idle_decisions < 1:
            raise ValueError(f"max_idle_decisions must be >= 1, got {self.max_idle_decisions}")
        if self.stuck_action not in NAVIGATION_ACTIONS or self.empty_action not in NAVIGATION_ACTIONS:
            raise ValueError("stuck_action and empty_action must be navigation actions")


@dataclasses.dataclass
class Plan:
    """A policy decision in the loop's terms: actions, or a waypoint to follow."""

    actions: list[Action] = dataclasses.field(default_factory=list)
    waypoint: np.ndarray | None = None


@dataclasses.dataclass
class EpisodeResult:
    episode_id: int | str
    scene_id: str
    instruction: str
    trajectory: np.ndarray  # (N, 3) world positions: start, then after every navigation step
    headings: list[float]
    actions: list[Action]  # every executed action, camera tilts included
    waypoints: list[np.ndarray]  # followed waypoints (world, snapped)
    metrics: EpisodeMetrics
    reason: EndReason
    steps: int  # navigation steps
    policy_calls: int
    collisions: int
    elapsed_s: float
    failure: str = ""

    def to_json(self) -> dict:
        return {
            "failure": self.failure,
            "episode_id": self.episode_id,
            "scene_id": self.scene_id,
            "instruction": self.instruction,
            "reason": self.reason.value,
            "steps": self.steps,
            "policy_calls": self.policy_calls,
            "collisions": self.collisions,
            "elapsed_s": round(self.elapsed_s, 4),
            "metrics": self.metrics.to_dict(),
            "actions": [int(a) for a in self.actions],
            "trajectory": np.round(self.trajectory, 4).tolist(),
            "waypoints": [np.round(w, 4).tolist() for w in self.waypoints],
        }


def to_plan(output: PolicyOutput, empty_action: Action = Action.STOP) -> Plan:
    """Normalise a policy output (see ``policies.py``) into a ``Plan``."""
    if isinstance(output, Decision):
        if output.kind == DecisionKind.WAYPOINT and output.waypoint is not None:
            return Plan(waypoint=np.asarray(output.waypoint.position, dtype=float))
        output = {DecisionKind.ACTIONS: list(output.actions), DecisionKind.STOP: [Action.STOP],
                  DecisionKind.LOOK_DOWN: [Action.LOOK_DOWN]}.get(output.kind, [])
    if isinstance(output, Waypoint):
        return Plan(waypoint=np.asarray(output.position, dtype=float))
    if isinstance(output, np.ndarray) and output.dtype.kind == "f" and output.shape == (WAYPOINT_SIZE,):
        if not np.all(np.isfinite(output)):
            raise ValueError(f"waypoint is not finite: {output}")
        return Plan(waypoint=output.astype(float))
    actions = [Action(int(a)) for a in (output if output is not None else [])]
    return Plan(actions=actions or [empty_action])


class _Run:
    """Mutable state of one episode run; each method does one thing."""

    def __init__(self, backend: SimBackend, policy: Policy, max_steps: int, cfg: LoopConfig,
                 observer: Observer | None):
        self.backend, self.policy, self.max_steps, self.cfg, self.observer = backend, policy, max_steps, cfg, observer
        self.obs: Observation | None = None
        self.trajectory: list[np.ndarray] = []
        self.headings: list[float] = []
        self.actions: list[Action] = []
        self.waypoints: list[np.ndarray] = []
        self.steps = self.policy_calls = self.collisions = self.idle = 0
        self.called_stop = False
        self.failure = ""

    @property
    def done(self) -> bool:
        return bool(self.failure) or self.called_stop or self.steps >= self.max_steps or self.idle >= self.cfg.max_idle_decisions

    def record_pose(self) -> None:
        self.trajectory.append(self.backend.agent_position())
        self.headings.append(self.backend.agent_yaw())

    def step(self, action: Action) -> None:
        self.obs = self.backend.step(action)
        self.actions.append(action)
        self.collisions += int(self.obs.collided)
        if action in NAVIGATION_ACTIONS:
            self.steps += 1
            self.record_pose()
        self.called_stop |= action == Action.STOP
        if self.observer is not None:
            self.observer(self.obs, action)

    def ask(self) -> Plan:
        self.policy_calls += 1
        return to_plan(self.policy.act(self.obs), self.cfg.empty_action)

    def tilt_to(self, pitch_deg: float) -> None:
        """Tilt the camera in backend-sized steps until it is at ``pitch_deg`` (or cannot move)."""
        step = self.backend.config.tilt_step_deg
        for _ in range(int(math.ceil(abs(pitch_deg - self.backend.camera_pitch_deg) / step - 1e-6))):
            before = self.backend.camera_pitch_deg
            self.step(Action.LOOK_DOWN if pitch_deg > before else Action.LOOK_UP)
            if self.backend.camera_pitch_deg == before:
                break

    def tilt_down(self) -> bool:
        """One look-down (``look_down_deg``); False if the camera cannot tilt further."""
        before = self.backend.camera_pitch_deg
        self.tilt_to(before + self.cfg.look_down_deg)
        return self.backend.camera_pitch_deg != before

    def follow(self, waypoint: np.ndarray) -> None:
        target = self.backend.snap_to_navigable(waypoint)
        self.waypoints.append(target)
        for k in range(self.cfg.waypoint_max_steps):
            if self.done:
                return
            action = self.backend.shortest_path_action(target, self.cfg.waypoint_radius)
            if action == Action.STOP:
                if k == 0:
                    self.step(self.cfg.stuck_action)
                    return
                break
            self.step(action)
        if self.cfg.upstream_evaluator and not self.done:
            self.count_step_without_moving()

    def count_step_without_moving(self) -> None:
        """Upstream's evaluator when its follower stops: ``step_id += 1`` and the same frame again."""
        self.steps += 1
        self.record_pose()
        if self.observer is not None:
            self.obs = dataclasses.replace(self.obs)  # a new observation of the same frame
            self.observer(self.obs, None)

    def execute(self, plan: Plan, level: float) -> None:
        if plan.waypoint is not None:
            self.tilt_to(level)  # upstream looks up again before following the pixel goal
            self.follow(plan.waypoint)
            return
        tilted = True
        for action in plan.actions:
            if self.done:
                return
            if action == Action.LOOK_DOWN:
                tilted = self.tilt_down()
            else:
                self.step(action)
        if tilted and all(a == Action.LOOK_DOWN for a in plan.actions):
            self.execute(self.ask(), level)  # the look-down turn (bounded by the tilt limit)

    def decide_and_execute(self) -> None:
        steps_before = self.steps
        level = self.backend.camera_pitch_deg
        self.execute(self.ask(), level)
        self.tilt_to(level)
        self.idle = 0 if self.steps > steps_before else self.idle + 1

    def end_reason(self) -> EndReason:
        if self.failure:
            return EndReason.POLICY_FAILURE
        if self.called_stop:
            return EndReason.STOP
        return EndReason.MAX_STEPS if self.steps >= self.max_steps else EndReason.IDLE


def _reference(episode: Episode, spacing: float) -> np.ndarray:
    """The nDTW reference: the reference path resampled at the forward step (VLN-CE scores
    against its dense ground-truth locations, which follow the path step by step)."""
    ref = episode.reference_path_world
    return densify(ref, spacing) if len(ref) >= 2 else ref


def _shortest(backend: SimBackend, episode: Episode, start: np.ndarray, goal: np.ndarray) -> float:
    d = backend.geodesic_distance(start, goal)
    if not math.isfinite(d) and episode.geodesic_distance is not None:
        d = episode.geodesic_distance
    return d


def run_episode(
    backend: SimBackend,
    episode: Episode,
    policy: Policy,
    max_steps: int = DEFAULT_MAX_STEPS,
    config: LoopConfig | None = None,
    observer: Observer | None = None,
) -> EpisodeResult:
    """Run ``policy`` on ``episode`` until it stops, runs out of steps or idles."""
    if max_steps < 1:
        raise ValueError(f"max_steps must be >= 1, got {max_steps}")
    cfg = config or LoopConfig()
    started = time.perf_counter()
    run = _Run(backend, policy, max_steps, cfg, observer)
    run.obs = backend.reset(episode)
    run.record_pose()
    goal = backend.to_agent_height(episode.goal_world)
    shortest = _shortest(backend, episode, run.trajectory[0], goal)
    policy.reset(episode, backend)
    while not run.done:
        try:
            run.decide_and_execute()
        except PolicyFailure as exc:
            run.failure = str(exc) or type(exc).__name__
    metrics = compute_metrics(
        np.array(run.trajectory), goal, backend.to_agent_height(_reference(episode, backend.config.forward_step_m)),
        run.called_stop, shortest,
        distance_fn=backend.geodesic_distance, success_distance=cfg.success_distance, steps=run.steps,
    )
    return EpisodeResult(
        episode_id=episode.episode_id, scene_id=episode.scene_id, instruction=episode.instruction,
        trajectory=np.array(run.trajectory), headings=run.headings, actions=run.actions, waypoints=run.waypoints,
        metrics=metrics, reason=run.end_reason(), steps=run.steps, policy_calls=run.policy_calls,
        collisions=run.collisions, elapsed_s=time.perf_counter() - started, failure=run.failure,
    )
