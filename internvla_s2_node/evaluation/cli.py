"""``internvla-s2-eval``: simulated VLN evaluation of the S2 node (and reference policies).

    internvla-s2-eval --policy s2 oracle random --out runs/eval            # bundled MuJoCo houses
    internvla-s2-eval --backend habitat --episodes data/R2R_VLNCE_v1-3_preprocessed/val_unseen/val_unseen.json.gz \\
        --scenes-dir data/scene_datasets --model /ckpt/InternVLA-N1-System2 --out runs/r2r
    torchrun --nproc_per_node 8 -m internvla_s2_node.evaluation.cli ...    # one shard per GPU
    internvla-s2-eval merge --out runs/r2r --policy s2                       # summary of all shards
    internvla-s2-eval --s2-mode external --out runs/sim [--ros-args ...]    # S2 node started elsewhere
    internvla-s2-eval --policy dagger --s2-mode engine --model M --record runs/dagger/data --out runs/dagger
                                                   # S2 until it stops, then the oracle: training data (DAgger)
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import pathlib
import sys

from ..cli.errors import ArgumentParser, CliError, UsageError, guarded, terminate_like_ctrl_c
from ..sim.metrics import NE_DROPPED, SPL_ZEROED
from ..sim.takeover import DEFAULT_BUDGET
from . import provenance
from .runner import BACKENDS, POLICIES, S2_MODES, EvalConfig, env_shard, evaluate, merge_results, plot_results

PROG = "internvla-s2-eval"

TABLE_COLUMNS = (("success", "SR"), ("spl", "SPL"), ("distance_to_goal", "NE (m)"), ("oracle_success", "OS"),
                 ("ndtw", "nDTW"), ("steps", "steps"), ("s2_latency_p50_s", "S2 p50 (s)"))


def split_ros_args(argv=None) -> tuple[list[str], list[str]]:
    """(this program's arguments, the ``--ros-args ...`` tail for the bridge node)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    split = argv.index("--ros-args") if "--ros-args" in argv else len(argv)
    return argv[:split], argv[split:]


def _size(text: str) -> tuple[int, int]:
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(v.isdigit() and int(v) >= 16 for v in parts):
        raise argparse.ArgumentTypeError(f"{text!r} is not WIDTHxHEIGHT; use e.g. 640x480 (each side >= 16)")
    return int(parts[0]), int(parts[1])


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def parse_args(argv=None, ros_args=()) -> argparse.Namespace:
    p = ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", nargs="?", choices=("run", "merge"), default="run")
    p.add_argument("--out", required=True, help="results directory")
    p.add_argument("--backend", choices=BACKENDS, default="mujoco")
    p.add_argument("--episodes", help="VLN-CE episode file (.json or .json.gz); default: bundled MuJoCo episodes")
    p.add_argument("--scenes-dir", help="scene directory (habitat: the scene_datasets root)")
    p.add_argument("--policy", nargs="+", choices=POLICIES, default=["s2"])
    p.add_argument("--model", default="tiny:qwen3_vl", help="S2 checkpoint directory or tiny:<arch> (default %(default)s)")
    p.add_argument("--params-file", help="extra s2_node parameters (YAML), e.g. config/qwen25vl_internvla_n1_s2.yaml")
    p.add_argument("--max-steps", type=_positive_int, default=500, help="steps per episode (default %(default)s)")
    p.add_argument("--limit", type=_positive_int, help="only the first N episodes")
    p.add_argument("--rank", type=int, help="shard index (default: $RANK or $SLURM_PROCID, else 0)")
    p.add_argument("--world-size", type=int, help="number of shards (default: $WORLD_SIZE or $SLURM_NTASKS, else 1)")
    p.add_argument("--domain-id", type=int, help="ROS_DOMAIN_ID of this shard (default: $ROS_DOMAIN_ID (or 42) + rank; with "
                        "--s2-mode external $ROS_DOMAIN_ID as set, 0 when unset, as for the S2 node)")
    p.add_argument("--s2-timeout", type=_positive_float, default=120.0, help="seconds to wait for one S2 decision (default %(default)s)")
    p.add_argument("--s2-mode", choices=S2_MODES, default="inprocess",
                   help="S2 node in this process, as a child process, or started elsewhere; engine: S2's engine in this "
                        "process without ROS (the same parameter files) (default %(default)s)")
    p.add_argument("--record", help="also write the oracle's (or dagger's) episodes as LeRobot training data under this folder")
    p.add_argument("--no-record-depth", dest="record_depth", action="store_false",
                   help="record without the look-down depth images (internvla-s2-train reads RGB only; the RGB frames are the same)")
    p.add_argument("--oracle-perturb", type=float, default=0.0, metavar="P",
                   help="the oracle takes a random 1-3 step detour before a step with probability P, then recovers; "
                        "with --record, only its own steps teach (recovery data; default 0: no detours)")
    p.add_argument("--dagger-budget", type=_positive_float, default=DEFAULT_BUDGET, metavar="X",
                   help="--policy dagger: S2 drives until it says STOP or has taken X times the shortest path's forward "
                        "steps, then the oracle drives to the goal (a STOP within 3 m of the goal ends the episode); "
                        "recorded, only the oracle's steps and an accepted STOP teach (default %(default)s)")
    p.add_argument("--dagger-stop-within", type=float, default=0.0, metavar="M",
                   help="--policy dagger: at a decision S2 is asked for within M m (geodesic) of the goal, the expert "
                        "says STOP and the episode ends (an expert scored by SR; sim.takeover). Default 0: off")
    p.add_argument("--upstream-loop", action="store_true",
                   help="reproduce upstream's evaluator loop: when the waypoint follower stops, count a step and "
                        "decide on the same frame again (README 'What the model sees and says')")
    p.add_argument("--no-maps", action="store_true", help="skip the per-episode top-down maps")
    p.add_argument("--agent", choices=("r2r", "rxr"), default="r2r",
                   help="agent and camera: r2r (1.5 m tall, radius 0.1 m, camera 1.25 m; default) or rxr (0.88 m, 0.18 m, 0.88 m)")
    p.add_argument("--size", type=_size, default="640x480", help="camera WxH (default VLN-CE R2R %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.epilog = "--ros-args ... (last): ROS arguments of the sim_bridge node, with --s2-mode external only"
    args = p.parse_args(argv)
    if ros_args and args.s2_mode != "external":
        p.error("--ros-args applies to --s2-mode external only (other modes start their own nodes)")
    return args


def config_from_args(args: argparse.Namespace, ros_args=()) -> EvalConfig:
    env_rank, env_world = env_shard()
    width, height = args.size
    return EvalConfig(
        out=args.out, backend=args.backend, episodes=args.episodes, scenes_dir=args.scenes_dir,
        policies=tuple(args.policy), model=args.model, params_file=args.params_file, max_steps=args.max_steps,
        limit=args.limit, rank=env_rank if args.rank is None else args.rank,
        world_size=env_world if args.world_size is None else args.world_size, domain_id=args.domain_id,
        s2_timeout_s=args.s2_timeout, s2_mode=args.s2_mode, ros_args=tuple(ros_args), maps=not args.no_maps, seed=args.seed,
        width=width, height=height, progress=not args.quiet, record=args.record, record_depth=args.record_depth, upstream_loop=args.upstream_loop,
        agent=args.agent, oracle_perturb=args.oracle_perturb, dagger_budget=args.dagger_budget,
        dagger_stop_within=args.dagger_stop_within,
    )


def format_table(summaries: dict[str, dict]) -> str:
    """Markdown table, one row per policy."""
    head = "| policy | episodes | " + " | ".join(label for _, label in TABLE_COLUMNS) + " |"
    rows = [head, "|" + "---|" * (len(TABLE_COLUMNS) + 2)]
    for name, s in summaries.items():
        cells = []
        for key, _ in TABLE_COLUMNS:
            v = s.get(key)
            cells.append("-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.2f}")
        rows.append(f"| {name} | {int(s.get('episodes', 0))} | " + " | ".join(cells) + " |")
    return "\n".join(rows + _aggregation_notes(summaries) + _decision_notes(summaries))


def _decision_notes(summaries: dict[str, dict]) -> list[str]:
    """The S2 node's decisions by kind (sim.results), under the table."""
    notes = []
    for name, s in summaries.items():
        if s.get("s2_decisions"):
            notes.append(f"\n{name}: {int(s['s2_decisions'])} S2 calls: {int(s['s2_pixel_goals'])} pixel goals (each a ↓ call and "
                         f"a look-down turn), {int(s['s2_stops'])} STOPs, {int(s['s2_action_lists'])} action lists or other")
    return notes


def _aggregation_notes(summaries: dict[str, dict]) -> list[str]:
    """How many episodes upstream's aggregation rules touched (sim.metrics.summarize)."""
    notes = []
    for name, s in summaries.items():
        zeroed, dropped = int(s.get(SPL_ZEROED) or 0), int(s.get(NE_DROPPED) or 0)
        if zeroed or dropped:
            notes.append(f"\n{name}: {zeroed} episode(s) with non-finite SPL counted as 0, "
                         f"{dropped} with non-finite NE left out of NE (as upstream's evaluator)")
    return notes


def check_inputs(cfg: EvalConfig) -> None:
    """Everything the user named, checked before anything starts (UsageError, one line)."""
    if cfg.episodes and not pathlib.Path(cfg.episodes).expanduser().is_file():
        raise UsageError(f"--episodes {cfg.episodes}: no such file; pass a VLN-CE episode file (.json or .json.gz)")
    if {"s2", "dagger"} & set(cfg.policies) and cfg.s2_mode != "external":
        from ..core.backbone import CheckpointError
        from ..core.model_ref import check_model_ref

        try:
            check_model_ref(cfg.model)
        except CheckpointError as exc:
            raise UsageError(f"--model {exc}") from exc
        if cfg.s2_mode == "engine":
            check_engine_params(cfg)
        elif cfg.params_file:
            check_s2_params_file(cfg.params_file)
    for policy in cfg.policies:
        try:
            provenance.check(cfg.policy_dir(policy), provenance.identity(cfg, policy))
        except provenance.StaleResults as exc:
            raise UsageError(str(exc)) from exc


def check_s2_params_file(path: str) -> None:
    """The file parses, and every s2_node value it sets has the declared type, range or choice."""
    from ..ros import params
    from ..ros.launch_util import node_parameters
    from ..ros.node_cli import check_params_file

    check_params_file(path)
    specs = params.specs_by_name(params.S2_SPECS)
    for name, value in node_parameters(path, "s2_node").items():
        spec = specs.get(name)
        if spec is None:
            logging.getLogger(PROG).warning("%s: %s", path, params.unknown_parameters([name], params.S2_SPECS)[0])
            continue
        try:
            problem = params.check_value(spec, params.coerce_override(spec, value))
        except ValueError as exc:
            problem = str(exc)
        if problem:
            raise UsageError(f"--params-file {path}: {problem}; fix it there (config/robot.yaml lists every parameter)")


def check_engine_params(cfg: EvalConfig) -> None:
    """--s2-mode engine (no ROS): the parameter files read as the engine reads them, and the engine's config valid."""
    from .engine_policy import ParamsError, engine_config, node_parameters

    try:
        engine_config(node_parameters(cfg.params_file, cfg.model))
    except ParamsError as exc:  # names its file
        raise UsageError(f"{exc}; fix it there (config/robot.yaml lists every parameter)") from exc
    except ValueError as exc:
        raise UsageError(f"--params-file {cfg.params_file}: {exc}; fix it there (config/robot.yaml lists every parameter)") from exc


def run_note(summaries: dict[str, dict]) -> str:
    note = provenance.random_weights_note(summaries.get("s2", {}).get("run"))
    return f"note: the s2 row comes from {note}; its numbers are not navigation quality." if note else ""


@guarded(PROG)
def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    terminate_like_ctrl_c()
    argv, ros_args = split_ros_args(argv)
    args = parse_args(argv, ros_args)
    try:
        cfg = config_from_args(args, ros_args)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    if args.command == "merge":
        summaries = merge_results(cfg)
        if not summaries:
            raise CliError(f"merge: no results under {cfg.out} for {list(cfg.policies)}; check --out and --policy")
        plot_results(cfg.out, summaries)
    else:
        check_inputs(cfg)
        summaries = evaluate(cfg)
    table = format_table(summaries)
    (cfg.out / "summary.md").write_text(table + "\n")
    (cfg.out / "summary.json").write_text(json.dumps(summaries, indent=2, default=str) + "\n")
    print(table)
    print(f"\nresults: {cfg.out}/summary.json   plot: {cfg.out}/results.png   maps: {cfg.out}/<policy>/maps/")
    note = run_note(summaries)
    if note:
        print(note)
    if args.command == "run":
        failed = failed_episodes(cfg)
        if failed:
            raise CliError(failed)
    return 0


def failed_episodes(cfg: EvalConfig) -> str:
    """'' when no recorded episode failed; else how many failed, the first reason and where to look."""
    from ..sim.results import read_records

    parts, first = [], ""
    for policy in cfg.policies:
        records = read_records(cfg.policy_dir(policy))
        failures = [r["failure"] for r in records if r.get("failure")]
        if failures:
            parts.append(f"{len(failures)} of {len(records)} {policy} episodes failed")
            first = first or failures[0]
    if not parts:
        return ""
    return (", ".join(parts) + f" (first: {first}); the results are written, each episode's 'failure' in "
            f"{cfg.out}/<policy>/episodes.rank*.jsonl says why")


if __name__ == "__main__":
    sys.exit(main())
