"""Evaluation runner: episodes of one shard x policies -> JSON lines, summaries, pictures.

The S2 policy talks to the S2 node over ROS 2 (``evaluation.s2_session``, imported only when
S2 is evaluated), or runs its engine in this process without ROS (``--s2-mode engine``,
``evaluation.engine_policy``); the oracle and random reference policies run through the same
episode loop without ROS. ``dagger`` is S2 until it stops or runs long, then the oracle
(``sim.takeover``): recorded, it is training data from S2's own mistakes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import pathlib
from typing import Iterator

from tqdm import tqdm

from ..sim.backend import AGENT_SETTINGS, DEFAULT_AGENT_SETTING, SUCCESS_DISTANCE_M, SimBackend, SimConfig
from ..sim.episodes import Episode, load_episodes, shard
from ..sim.loop import DEFAULT_MAX_STEPS, LoopConfig, run_episode
from ..sim.policies import OraclePolicy, Policy, RandomPolicy
from ..sim.takeover import DEFAULT_BUDGET, TakeoverPolicy
from ..sim.results import ResultsWriter, merge
from . import provenance

log = logging.getLogger(__name__)

POLICIES = ("s2", "oracle", "random", "dagger")
RECORDABLE = ("oracle", "dagger")
BACKENDS = ("mujoco", "habitat")
S2_MODES = ("inprocess", "process", "external", "engine")


@dataclasses.dataclass
class EvalConfig:
    out: pathlib.Path
    backend: str = "mujoco"
    episodes: str | None = None  # default: the bundled MuJoCo episodes
    scenes_dir: str | None = None
    policies: tuple[str, ...] = ("s2",)
    model: str = "tiny:qwen3_vl"
    params_file: str | None = None  # extra s2_node parameters (YAML) on top of config/sim.yaml
    max_steps: int = DEFAULT_MAX_STEPS
    limit: int | None = None  # first N episodes of the split
    rank: int = 0
    world_size: int = 1
    domain_id: int | None = None  # ROS_DOMAIN_ID for this shard (default: base + rank)
    s2_timeout_s: float = 120.0
    s2_mode: str = "inprocess"  # inprocess | process | external (see evaluation.s2_session.s2_policy_session)
    ros_args: tuple[str, ...] = ()  # --ros-args ... for the bridge (external mode)
    maps: bool = True
    seed: int = 0
    width: int = 640
    height: int = 480
    progress: bool = True
    record: str | None = None  # write oracle (or dagger) episodes as LeRobot training data here
    record_depth: bool = True  # with them the look-down depth images (the trainer does not read them)
    oracle_perturb: float = 0.0  # the oracle's detour probability per step (sim.policies.OraclePolicy perturb)
    upstream_loop: bool = False  # sim.loop.LoopConfig.upstream_evaluator: count the follower-stop step, repeat the frame
    dagger_budget: float = DEFAULT_BUDGET  # dagger: the learner's steps in shortest paths (sim.takeover)
    dagger_stop_within: float = 0.0  # dagger: the expert stops at a decision this close to the goal (m; 0: off)
    agent: str = DEFAULT_AGENT_SETTING  # sim.backend.AGENT_SETTINGS: "r2r" (1.5 m, r 0.1 m, camera 1.25 m) or "rxr"

    def __post_init__(self) -> None:
        self.out = pathlib.Path(self.out)
        self.policies = tuple(self.policies)
        problems = []
        if self.backend not in BACKENDS:
            problems.append(f"backend must be one of {BACKENDS}, got {self.backend!r}")
        bad = [p for p in self.policies if p not in POLICIES]
        if bad or not self.policies:
            problems.append(f"policies must be among {POLICIES}, got {list(self.policies)}")
        if self.backend == "habitat" and (not self.episodes or not self.scenes_dir):
            problems.append("the habitat backend needs --episodes (VLN-CE {split}.json.gz) and --scenes-dir")
        if self.max_steps < 1:
            problems.append(f"max_steps must be >= 1, got {self.max_steps}")
        if not 0 <= self.rank < self.world_size:
            problems.append(f"need 0 <= rank < world_size, got rank {self.rank} of {self.world_size}")
        if self.s2_mode not in S2_MODES:
            problems.append(f"s2_mode must be one of {S2_MODES}, got {self.s2_mode!r}")
        recorded = [p for p in self.policies if p in RECORDABLE]
        if self.record and len(recorded) != 1:
            problems.append(f"--record writes the episodes of one of {list(RECORDABLE)}: give exactly one of them to --policy")
        if not self.dagger_budget > 0:
            problems.append(f"dagger_budget must be > 0, got {self.dagger_budget}")
        if not 0.0 <= self.dagger_stop_within <= SUCCESS_DISTANCE_M:
            problems.append(f"dagger_stop_within must be in [0, {SUCCESS_DISTANCE_M}] m, got {self.dagger_stop_within}")
        if not 0.0 <= self.oracle_perturb < 1.0:
            problems.append(f"oracle_perturb must be in [0, 1), got {self.oracle_perturb}")
        elif self.oracle_perturb and "oracle" not in self.policies:
            problems.append("--oracle-perturb perturbs the oracle: add --policy oracle")
        if self.s2_timeout_s <= 0:
            problems.append("s2_timeout_s must be > 0")
        if self.agent not in AGENT_SETTINGS:
            problems.append(f"agent must be one of {sorted(AGENT_SETTINGS)}, got {self.agent!r}")
        if problems:
            raise ValueError("invalid evaluation config: " + "; ".join(problems))

    @property
    def sim_config(self) -> SimConfig:
        return SimConfig.for_agent(self.agent, width=self.width, height=self.height, seed=self.seed)

    def policy_dir(self, policy: str) -> pathlib.Path:
        return self.out / policy


def make_backend(cfg: EvalConfig) -> SimBackend:
    if cfg.backend == "habitat":
        from ..sim.habitat_backend import HabitatBackend

        return HabitatBackend(cfg.scenes_dir, cfg.sim_config)
    from ..sim.mujoco_backend import MujocoBackend

    return MujocoBackend(cfg.sim_config, cfg.scenes_dir)


def select_episodes(cfg: EvalConfig) -> list[Episode]:
    if cfg.episodes:
        path = cfg.episodes
    else:
        from ..sim.mujoco_backend import BUNDLED_EPISODES

        path = BUNDLED_EPISODES
    episodes = load_episodes(path)
    if cfg.limit is not None:
        episodes = episodes[: cfg.limit]
    return shard(episodes, cfg.rank, cfg.world_size)


@contextlib.contextmanager
def open_policy(name: str, cfg: EvalConfig) -> Iterator[Policy]:
    if name == "oracle":
        yield OraclePolicy(perturb=cfg.oracle_perturb, seed=cfg.seed)
    elif name == "random":
        yield RandomPolicy(seed=cfg.seed)
    elif name == "dagger":
        with open_s2(cfg) as s2:
            yield TakeoverPolicy(s2, OraclePolicy(seed=cfg.seed), cfg.dagger_budget, stop_within=cfg.dagger_stop_within)
    else:
        with open_s2(cfg) as s2:
            yield s2


@contextlib.contextmanager
def open_s2(cfg: EvalConfig) -> Iterator[Policy]:
    if cfg.s2_mode == "engine":
        from .engine_policy import s2_engine_session  # no ROS

        with s2_engine_session(cfg) as policy:
            yield policy
    else:
        from .s2_session import s2_policy_session  # rclpy only when S2 is evaluated over ROS

        with s2_policy_session(cfg) as policy:
            yield policy


def run_policy(cfg: EvalConfig, name: str, episodes: list[Episode], backend: SimBackend) -> dict:
    """Run (or resume) one policy over this shard's episodes; returns the merged summary."""
    run = provenance.claim(cfg.policy_dir(name), provenance.identity(cfg, name))
    writer = ResultsWriter(cfg.policy_dir(name), cfg.rank)
    todo = [e for e in episodes if str(e.episode_id) not in writer.done]
    if len(todo) < len(episodes):
        log.info("%s: %d of %d episodes already recorded, resuming", name, len(episodes) - len(todo), len(episodes))
    if todo:
        with open_policy(name, cfg) as policy:
            bar = tqdm(todo, desc=f"{name} rank {cfg.rank}", unit="ep", disable=not cfg.progress)
            for episode in bar:
                record = _run_one(cfg, name, episode, backend, policy)
                writer.append(record)
                bar.set_postfix(SR=f"{record['metrics']['success']:.0f}", NE=f"{record['metrics']['distance_to_goal']:.1f}")
    return {**merge(cfg.policy_dir(name)), "run": run}


def _run_one(cfg: EvalConfig, name: str, episode: Episode, backend: SimBackend, policy: Policy) -> dict:
    result = run_episode(backend, episode, policy, max_steps=cfg.max_steps, observer=getattr(policy, "observe", None),
                         config=LoopConfig(upstream_evaluator=cfg.upstream_loop))
    record = {"policy": name, "rank": cfg.rank, **result.to_json()}
    latencies = getattr(policy, "episode_latencies", None)
    if latencies is not None:
        record["s2_latency_s"] = [round(x, 5) for x in latencies]
    if hasattr(policy, "episode_frames_lost"):
        record["s2_frames_lost"] = policy.episode_frames_lost  # frames the S2 node never received
    if isinstance(policy, TakeoverPolicy):
        record["takeover_step"], record["takeover_kind"] = policy.takeover_step, policy.takeover_kind
        record["takeover_reason"] = policy.takeover_reason
    if cfg.record and name in RECORDABLE:
        from ..sim.recorder import NotRecordable, record_episode

        try:
            record["recording"] = str(record_episode(backend, episode, result, cfg.record, _episode_index(episode),
                                                          depth=cfg.record_depth,
                                                          expert=_expert(cfg, name, policy)))
        except NotRecordable as exc:  # e.g. an episode that ran out of steps: its result is still kept
            log.warning("episode %s not recorded: %s", episode.episode_id, exc)
            record["recording"] = None
            record["recording_skipped"] = str(exc)
    publish = getattr(getattr(policy, "bridge", None), "publish_result", None)
    if publish is not None:
        publish(record)
    if cfg.maps:
        from ..sim.viz import episode_title, plot_episode

        png = cfg.policy_dir(name) / "maps" / f"episode_{episode.episode_id}.png"
        plot_episode(png, result, backend.navigation_grid(), episode, title=f"{name} {episode_title(result, episode)}")
        record["map"] = str(png)
    return record


def _expert(cfg: EvalConfig, name: str, policy: Policy) -> list[bool] | None:
    """Which recorded steps teach: all of a plain oracle's (None), the oracle's own ones otherwise."""
    return policy.expert if name == "dagger" or cfg.oracle_perturb else None


def _episode_index(episode: Episode) -> int:
    """A stable integer index for the recording (the episode id where it is one)."""
    try:
        return int(episode.episode_id)
    except (TypeError, ValueError):
        import zlib

        return zlib.crc32(str(episode.episode_id).encode()) & 0x7FFFFFFF


def evaluate(cfg: EvalConfig) -> dict[str, dict]:
    """All requested policies on this shard; summaries merged over every shard written so far."""
    episodes = select_episodes(cfg)
    summaries = {}
    with make_backend(cfg) as backend:
        for name in cfg.policies:
            summaries[name] = run_policy(cfg, name, episodes, backend)
    if cfg.maps and cfg.rank == 0:
        plot_results(cfg.out, summaries)
    return summaries


def plot_results(out: pathlib.Path, summaries: dict[str, dict]) -> pathlib.Path:
    from ..sim.viz import plot_summaries

    notes = {name: note for name, s in summaries.items() if (note := provenance.random_weights_note(s.get("run")))}
    return plot_summaries(out / "results.png", summaries, notes=notes)


def merge_results(cfg: EvalConfig) -> dict[str, dict]:
    """Summaries of every policy folder under ``cfg.out`` (all shards), with what produced each."""
    return {p: {**merge(cfg.policy_dir(p)), "run": provenance.read_run(cfg.policy_dir(p))}
            for p in cfg.policies if cfg.policy_dir(p).is_dir()}


def env_shard() -> tuple[int, int]:
    """(rank, world_size) from torchrun's or Slurm's environment, else (0, 1)."""
    for rank_key, size_key in (("RANK", "WORLD_SIZE"), ("SLURM_PROCID", "SLURM_NTASKS")):
        if rank_key in os.environ and size_key in os.environ:
            return int(os.environ[rank_key]), int(os.environ[size_key])
    return 0, 1
