"""Pure bounded controller behind ``action_executor`` (no rclpy).

Discrete actions (FORWARD 0.25 m, LEFT/RIGHT 15 deg by default) run one after the
other, either open-loop (constant speed for distance/speed seconds) or closed on
odometry (until the travelled distance/angle reaches the step). A waypoint (odometry
frame) is followed with turn-then-drive proportional control and needs odometry.
New commands replace the current plan; STOP, a step or waypoint timeout, and stale
odometry (while it is used) stop the robot. Speeds never exceed the limits.

A list's moves before its STOP are driven first, then the robot stops, as both upstream
loops do (InternNav habitat_vln_evaluator.py:826-828 executes the parsed list in order;
scripts/realworld/http_internvla_client.py:314-333 applies every move). Actions after a
STOP are not driven (the real-world client would: a STOP means stop here).
"""

from __future__ import annotations

import collections
import dataclasses
import math

from ..core.actions import Action

MIN_SPEED_FRACTION = 0.2  # closed-loop speed floor, as a fraction of the limit (avoids stalling)
GAIN = 2.0  # proportional gain (1/s) on remaining distance / angle


@dataclasses.dataclass
class ControllerConfig:
    max_linear_speed: float = 0.25
    max_angular_speed: float = 0.5
    forward_step_m: float = 0.25
    turn_step_deg: float = 15.0
    use_odometry: bool = True
    step_timeout_s: float = 5.0
    odom_timeout_s: float = 0.5
    waypoint_tolerance_m: float = 0.15
    waypoint_timeout_s: float = 30.0
    heading_tolerance_rad: float = 0.35

    @classmethod
    def from_params(cls, values: dict) -> "ControllerConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})


@dataclasses.dataclass(frozen=True)
class Pose2D:
    x: float
    y: float
    yaw: float


@dataclasses.dataclass(frozen=True)
class Command:
    linear: float = 0.0
    angular: float = 0.0
    status: str = "idle"  # idle | moving | waiting | done | stopped: <reason>

    @property
    def moving(self) -> bool:
        return self.linear != 0.0 or self.angular != 0.0


def wrap(angle: float) -> float:
    return math.atan2(math.sin(angle), math.cos(angle))


def clip(v: float, limit: float) -> float:
    return max(-limit, min(limit, v))


@dataclasses.dataclass
class _Step:
    action: Action
    started: float | None = None
    start_pose: Pose2D | None = None
    waiting_since: float | None = None


class Controller:
    def __init__(self, cfg: ControllerConfig | None = None) -> None:
        self.cfg = cfg or ControllerConfig()
        self._steps: collections.deque[_Step] = collections.deque()
        self._goal: tuple[float, float, float] | None = None  # x, y, started
        self._stop_after = False  # the plan ended with STOP: stop once its moves are done
        self.last_stop_reason = ""

    @property
    def busy(self) -> bool:
        return bool(self._steps) or self._goal is not None

    def stop(self, reason: str = "stop") -> Command:
        self._steps.clear()
        self._goal = None
        self._stop_after = False
        self.last_stop_reason = reason
        return Command(status=f"stopped: {reason}")

    def set_actions(self, codes) -> str:
        """Replace the plan with ``codes``; returns '' or why it was stopped/ignored.

        Moves up to the first STOP are driven, then the robot stops; a lone STOP stops it now."""
        self._steps.clear()
        self._goal = None
        self._stop_after = False
        for code in codes:
            try:
                action = Action(int(code))
            except ValueError:
                return self.stop(f"unknown action code {code}").status
            if action == Action.STOP:
                if not self._steps:
                    return self.stop("STOP action").status
                self._stop_after = True
                break
            if action in (Action.FORWARD, Action.LEFT, Action.RIGHT):
                self._steps.append(_Step(action))
            # LOOK_UP / LOOK_DOWN move the camera, not the base: nothing to drive
            # (the real-world client skips code 5 too: http_internvla_client.py:314-333).
        return ""

    def set_waypoint(self, x: float, y: float, now: float) -> str:
        if not (math.isfinite(x) and math.isfinite(y)):
            return "waypoint is not finite"
        if not self.cfg.use_odometry:
            return "waypoints need odometry (use_odometry is false)"
        self._steps.clear()
        self._stop_after = False
        self._goal = (x, y, now)
        return ""

    def update(self, now: float, pose: Pose2D | None, pose_age: float | None) -> Command:
        """Velocity command for ``now``."""
        if self._goal is not None:
            return self._follow(now, pose, pose_age)
        if not self._steps:
            return Command()
        return self._run_step(now, pose, pose_age)

    def _odom_ok(self, pose, pose_age) -> bool:
        return pose is not None and pose_age is not None and pose_age <= self.cfg.odom_timeout_s

    def _run_step(self, now: float, pose, pose_age) -> Command:
        cfg = self.cfg
        step = self._steps[0]
        closed = cfg.use_odometry
        if closed and not self._odom_ok(pose, pose_age):
            step.waiting_since = now if step.waiting_since is None else step.waiting_since
            if now - step.waiting_since > cfg.step_timeout_s:
                return self.stop("no fresh odometry")
            return Command(status="waiting: no fresh odometry")
        if step.started is None:
            step.started, step.start_pose = now, pose
        if now - step.started > cfg.step_timeout_s:
            return self.stop(f"{step.action.name} step timed out")
        remaining = self._remaining(step, now, pose)
        if remaining <= 0.0:
            self._steps.popleft()
            if self._steps:
                return self.update(now, pose, pose_age)
            return self.stop("STOP action") if self._stop_after else Command(status="done")
        return self._step_command(step.action, remaining)

    def _target(self, action: Action) -> float:
        return self.cfg.forward_step_m if action == Action.FORWARD else math.radians(self.cfg.turn_step_deg)

    def _limit(self, action: Action) -> float:
        return self.cfg.max_linear_speed if action == Action.FORWARD else self.cfg.max_angular_speed

    def _remaining(self, step: _Step, now: float, pose) -> float:
        """Distance (m) or angle (rad) still to go; open-loop: from elapsed time at full speed."""
        target = self._target(step.action)
        if not self.cfg.use_odometry:
            return target - (now - step.started) * self._limit(step.action)
        s0 = step.start_pose
        if step.action == Action.FORWARD:
            return target - math.hypot(pose.x - s0.x, pose.y - s0.y)
        return target - abs(wrap(pose.yaw - s0.yaw))

    def _step_command(self, action: Action, remaining: float) -> Command:
        limit = self._limit(action)
        speed = limit if not self.cfg.use_odometry else max(MIN_SPEED_FRACTION * limit, min(limit, GAIN * remaining))
        if action == Action.FORWARD:
            return Command(linear=speed, status="moving")
        return Command(angular=speed if action == Action.LEFT else -speed, status="moving")

    def _follow(self, now: float, pose, pose_age) -> Command:
        cfg = self.cfg
        gx, gy, started = self._goal
        if now - started > cfg.waypoint_timeout_s:
            return self.stop("waypoint timed out")
        if not self._odom_ok(pose, pose_age):
            return Command(status="waiting: no fresh odometry")
        dx, dy = gx - pose.x, gy - pose.y
        dist = math.hypot(dx, dy)
        if dist <= cfg.waypoint_tolerance_m:
            self._goal = None
            return Command(status="done")
        err = wrap(math.atan2(dy, dx) - pose.yaw)
        w = clip(GAIN * err, cfg.max_angular_speed)
        if abs(err) > cfg.heading_tolerance_rad:
            return Command(angular=w, status="moving")
        v = min(cfg.max_linear_speed, GAIN * dist) * max(0.0, math.cos(err))
        return Command(linear=v, angular=w, status="moving")
