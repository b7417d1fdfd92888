"""The S2 engine as a policy of the episode loop, in this process and without ROS (``--s2-mode engine``).

What the S2 node does with a simulated frame, minus the transport: every level-camera frame goes
to the episode history (``engine.observe``), the frame asked about is stepped with its depth,
intrinsics and camera pose, and a waypoint the node would withhold (``max_waypoint_distance``)
is withheld here too. The node's parameters come from the same YAML files as for ``--s2-mode
inprocess`` (config/robot.yaml, config/sim.yaml, then ``--params-file``), so both modes run one
configuration. It serves machines without ROS (the GPU machine) and the DAgger recordings
(``sim.takeover``); ``tests/test_engine_policy.py`` checks it decides as the node does over DDS.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any, Iterator

import yaml

from ..core.config import EngineConfig
from ..core.engine import S2Engine
from ..core.geometry import waypoint_problem
from ..core.images import InvalidFrame
from ..core.types import Decision, DecisionKind, Frame
from ..ros import launch_util
from ..ros.share import config_file, sim_params_files
from ..sim.backend import Observation
from ..sim.loop import PolicyFailure
from ..sim.policies import Policy

NODE = "s2_node"
DEFAULTS = "robot.yaml"


class ParamsError(ValueError):
    """A params file this policy cannot use; the message names the file and the parameter."""


def _node_params(path) -> dict[str, Any]:
    try:
        return launch_util.node_parameters(path, NODE)
    except OSError as exc:
        raise ParamsError(f"{path}: cannot read it ({exc.strerror or exc})") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise ParamsError(f"{path}: not valid YAML" + (f" at line {mark.line + 1}" if mark else "")) from exc
    except ValueError as exc:
        raise ParamsError(str(exc)) from exc


def node_parameters(params_file: str | None, model: str) -> dict[str, Any]:
    """The S2 node's parameter values for a simulated evaluation: defaults, sim.yaml, ``params_file``, ``model``."""
    values = _node_params(config_file(DEFAULTS))
    for path in sim_params_files(params_file):
        given = _node_params(path)
        unknown = sorted(set(given) - set(values))
        if unknown:
            raise ParamsError(f"{path}: unknown s2_node parameter(s) {unknown}")
        values.update(given)
    values["model_path"] = model
    return values


def engine_config(params: dict[str, Any]) -> EngineConfig:
    return EngineConfig.from_params(params)  # not ros.params.engine_config: that module needs ROS


class S2EnginePolicy(Policy):
    """Answers the loop's ``act`` with ``engine.step`` on the observation (see the module's text)."""

    name = "s2"

    def __init__(self, engine: S2Engine, max_waypoint_distance: float) -> None:
        self.engine = engine
        self.max_waypoint_distance = max_waypoint_distance
        self.episode_latencies: list[float] = []
        self._observed: tuple[Observation, int] | None = None  # the observation last added to the history, its index

    def reset(self, episode, backend) -> None:
        self.episode_latencies = []
        self._observed = None
        try:
            self.engine.reset(episode.instruction)
        except ValueError as exc:
            raise PolicyFailure(f"episode {episode.episode_id}: {exc}") from exc

    def observe(self, obs: Observation, action) -> None:
        """Loop observer: every level-camera frame goes to the history, as the bridge publishes it."""
        if obs.level and obs.rgb is not None:
            self._observed = (obs, self.engine.observe(obs.rgb))

    def act(self, obs: Observation) -> Decision:
        if obs.rgb is None:
            raise PolicyFailure("the simulator renders no images (render is off)")
        index = self._observed[1] if self._observed is not None and self._observed[0] is obs else None
        frame = Frame(obs.rgb, obs.depth, obs.intrinsics, obs.t_world_optical, obs.stamp)
        try:
            decision = self.engine.step(frame, index)
        except InvalidFrame as exc:
            raise PolicyFailure(f"the engine rejected the frame: {exc}") from exc
        self.episode_latencies.append(decision.timing.get("step", 0.0))
        return self._withhold_far(decision, obs)

    def _withhold_far(self, decision: Decision, obs: Observation) -> Decision:
        wp = decision.waypoint
        if decision.kind != DecisionKind.WAYPOINT or wp is None:
            return decision
        why = waypoint_problem(wp.position, wp.yaw, obs.t_world_optical[:3, 3], self.max_waypoint_distance)
        if why:  # what the bridge makes of a waypoint the node withheld (sim_bridge.decision_from_json)
            return dataclasses.replace(decision, kind=DecisionKind.NONE, waypoint=None, reason=why)
        return decision


@contextlib.contextmanager
def s2_engine_session(cfg) -> Iterator[S2EnginePolicy]:
    """The S2 policy for ``EvalConfig`` ``cfg`` with the engine in this process (``cfg.s2_mode == "engine"``)."""
    params = node_parameters(cfg.params_file, cfg.model)
    engine = S2Engine(engine_config(params))
    try:
        yield S2EnginePolicy(engine, float(params["max_waypoint_distance"]))
    finally:
        engine.close()
