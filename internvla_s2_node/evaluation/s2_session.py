"""The S2 node as a policy of the episode loop: the ``sim_bridge`` node plus an S2 node, over ROS 2.

:func:`s2_policy_session` brings up the bridge (and the S2 node, unless it runs elsewhere) for
one evaluation; :class:`S2RosPolicy` answers the loop's ``act`` with the node's decision on the
frame. Frames taken at the level camera are published after every simulator step, so the node's
history holds every step as in training; the look-down frame is published only when the loop
asks for the decision on it.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys

import rclpy
from rclpy.signals import SignalHandlerOptions

from ..core.actions import Action
from ..core.types import Decision
from ..ros.executor import spinning
from ..ros.share import sim_params_files
from ..ros.sim_bridge import SimBridge
from ..sim.backend import Observation, SimConfig
from ..sim.loop import PolicyFailure
from ..sim.policies import Policy

DEFAULT_DOMAIN_ID = 42
STARTUP_TIMEOUT_S = 600.0  # loading a large checkpoint can take minutes


class S2RosPolicy(Policy):
    """The S2 node as a policy of the episode loop, through the bridge."""

    name = "s2"

    def __init__(self, bridge: SimBridge, timeout_s: float) -> None:
        self.bridge = bridge
        self.timeout_s = timeout_s
        self.episode_latencies: list[float] = []
        self._counts: list[tuple[int, int]] = []  # (frames published, frames the node received) at each decision
        # (the observation itself, its stamp): holding it keeps a new observation from reusing its id(),
        # which made a look-down frame pass for the level frame just freed and never reach the node
        self._published: tuple[Observation, int] | None = None
        self._failure = ""

    process = None  # the s2_node child process (s2_mode "process"), watched so a dead node fails fast

    def process_exit(self) -> str:
        """Why the S2 node cannot answer any more ('' while it may): its child process has exited."""
        proc = self.process
        if proc is not None and proc.poll() is not None:
            return f"the S2 node process exited with code {proc.returncode}"
        return ""

    def reset(self, episode, backend) -> None:
        self.episode_latencies = []
        self._counts = []
        self._published = None
        self._failure = self.process_exit()
        if self._failure:
            return
        try:
            self.bridge.start_episode(episode.instruction, self.timeout_s)
        except PolicyFailure as exc:
            self._failure = self.process_exit() or str(exc)  # raised from act(), inside the loop, so the episode is recorded

    def observe(self, obs: Observation, action: Action) -> None:
        """Loop observer: every level-camera frame goes to the node's history."""
        if obs.level and obs.rgb is not None:
            self._publish(obs)

    def _publish(self, obs: Observation) -> int:
        if self._published is None or self._published[0] is not obs:
            self._published = (obs, self.bridge.publish_observation(obs))
        return self._published[1]

    @property
    def episode_frames_lost(self) -> int | None:
        """Frames of this episode the node did not receive, between its first and last decision (None: <2 decisions)."""
        if len(self._counts) < 2:
            return None
        (sent0, got0), (sent1, got1) = self._counts[0], self._counts[-1]
        return max(0, (sent1 - sent0) - (got1 - got0))

    def act(self, obs: Observation) -> Decision:
        if self._failure:
            raise PolicyFailure(self._failure)
        if obs.rgb is None:
            raise PolicyFailure("the simulator renders no images (render is off)")
        decision = self.bridge.request_decision(self._publish(obs), self.timeout_s, abort=self.process_exit)
        self.episode_latencies.append(decision.timing.get("step", 0.0))
        if self.bridge.frames_received is not None:
            self._counts.append((self.bridge.frames_published, self.bridge.frames_received))
        return decision


# -------------------------------------------------------------------- sessions
def ros_arguments(cfg) -> list[str]:
    args = ["--ros-args"]
    for f in sim_params_files(cfg.params_file):
        args += ["--params-file", f]
    # The node projects pixel goals with camera_extrinsic.z: the simulated camera's height (sim.yaml has R2R's).
    camera_z = SimConfig.for_agent(cfg.agent).camera_height
    return args + ["-p", f"model_path:={cfg.model}", "-p", f"camera_extrinsic.z:={camera_z}"]


def shard_domain_id(cfg) -> int:
    if cfg.domain_id is not None:
        return cfg.domain_id
    return int(os.environ.get("ROS_DOMAIN_ID", DEFAULT_DOMAIN_ID)) + cfg.rank


def session_domain_id(cfg) -> int | None:
    """The ROS_DOMAIN_ID this session sets (None: the environment's, as every ROS 2 process: 0 when unset).

    ``--domain-id`` wins. A node started here (inprocess, process) shares the shard's own domain,
    ``$ROS_DOMAIN_ID`` (or 42) + rank, so shards never hear each other. An external node (sim.launch.py)
    is on the domain of its environment, so the bridge follows the same rule and never moves to 42.
    """
    if cfg.domain_id is not None or cfg.s2_mode != "external":
        return shard_domain_id(cfg)
    return None


class S2StartFailure(RuntimeError):
    """The S2 node did not come up; the message is the node's own reason where it gave one."""


def wait_for_node(bridge: SimBridge, process: subprocess.Popen | None) -> None:
    """Until the S2 node answers; S2StartFailure at once when its configure fails or its process exits."""

    def exited() -> str:
        if process is not None and process.poll() is not None:
            return f"the S2 node process exited with code {process.returncode}"
        return ""

    try:
        up = bridge.wait_for_s2(STARTUP_TIMEOUT_S, abort=exited)
    except PolicyFailure as exc:
        raise S2StartFailure(f"the S2 node did not start: {exc}; check --model and --params-file") from exc
    if not up:
        raise S2StartFailure(f"the S2 node did not come up within {STARTUP_TIMEOUT_S:.0f} s; "
                             "check that it runs (s2_node) on this ROS_DOMAIN_ID")


@contextlib.contextmanager
def s2_policy_session(cfg):
    """The S2 policy for ``EvalConfig`` ``cfg``: the bridge plus the S2 node.

    ``cfg.s2_mode``: ``inprocess`` (one executor), ``process`` (``s2_node`` as a child
    process) or ``external`` (a node started elsewhere, e.g. by sim.launch.py).
    """
    domain = session_domain_id(cfg)
    if domain is not None:
        os.environ["ROS_DOMAIN_ID"] = str(domain)
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    args = ros_arguments(cfg) if cfg.s2_mode != "external" else list(cfg.ros_args)
    # No rclpy signal handlers: Ctrl-C / SIGTERM reach this thread as KeyboardInterrupt (the CLI maps
    # SIGTERM), so the cleanup below runs with a valid context instead of failing inside rclpy.
    rclpy.init(args=["internvla-s2-eval", *args], signal_handler_options=SignalHandlerOptions.NO)
    nodes, process = [SimBridge()], None
    try:
        if cfg.s2_mode == "process":
            process = subprocess.Popen([sys.executable, "-m", "internvla_s2_node.ros.s2_node", *args])
        elif cfg.s2_mode == "inprocess":
            from ..ros.s2_node import S2Node

            nodes.append(S2Node())
        with spinning(nodes):
            wait_for_node(nodes[0], process)
            policy = S2RosPolicy(nodes[0], cfg.s2_timeout_s)
            policy.process = process
            yield policy
    finally:
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
        for node in nodes:
            if hasattr(node, "release"):
                node.release()
            node.destroy_node()
        rclpy.try_shutdown()
