"""``internvla-s2-eval``: simulated VLN evaluation of the S2 node (and reference policies).

    internvla-s2-eval --policy s2 oracle random --out runs/eval            # bundled MuJoCo houses
    internvla-s2-eval --backend habitat --episodes data/R2R_VLNCE_v1-3_preprocessed/val_unseen/val_unseen.json.gz \\
        --scenes-dir data/scene_datasets --model /ckpt/InternVLA-N1-System2 --out runs/r2r
    torchrun --nproc_per_node 8 -m internvla_s2_node.evaluation.cli ...    # one shard per GPU
    internvla-s2-eval merge --out runs/r2r --policy s2                       # summary of all shards
    internvla-s2-eval --s2-mode external --out runs/sim [--ros-args ...]    # S2 node started elsewhere
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys

from ..sim.metrics import NE_DROPPED, SPL_ZEROED
from ..sim.results import merge
from .runner import BACKENDS, POLICIES, S2_MODES, EvalConfig, env_shard, evaluate, plot_results

TABLE_COLUMNS = (("success", "SR"), ("spl", "SPL"), ("distance_to_goal", "NE (m)"), ("oracle_success", "OS"),
                 ("ndtw", "nDTW"), ("steps", "steps"), ("s2_latency_p50_s", "S2 p50 (s)"))


def split_ros_args(argv=None) -> tuple[list[str], list[str]]:
    """(this program's arguments, the ``--ros-args ...`` tail for the bridge node)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    split = argv.index("--ros-args") if "--ros-args" in argv else len(argv)
    return argv[:split], argv[split:]


def parse_args(argv=None, ros_args=()) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="internvla-s2-eval", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", nargs="?", choices=("run", "merge"), default="run")
    p.add_argument("--out", required=True, help="results directory")
    p.add_argument("--backend", choices=BACKENDS, default="mujoco")
    p.add_argument("--episodes", help="VLN-CE episode file (.json or .json.gz); default: bundled MuJoCo episodes")
    p.add_argument("--scenes-dir", help="scene directory (habitat: the scene_datasets root)")
    p.add_argument("--policy", nargs="+", choices=POLICIES, default=["s2"])
    p.add_argument("--model", default="tiny:qwen3_vl", help="S2 checkpoint directory or tiny:<arch> (default %(default)s)")
    p.add_argument("--params-file", help="extra s2_node parameters (YAML), e.g. config/qwen25vl_internvla_n1_s2.yaml")
    p.add_argument("--max-steps", type=int, default=500)
    p.add_argument("--limit", type=int, help="only the first N episodes")
    p.add_argument("--rank", type=int, help="shard index (default: $RANK or $SLURM_PROCID, else 0)")
    p.add_argument("--world-size", type=int, help="number of shards (default: $WORLD_SIZE or $SLURM_NTASKS, else 1)")
    p.add_argument("--domain-id", type=int, help="ROS_DOMAIN_ID of this shard (default: $ROS_DOMAIN_ID (or 42) + rank)")
    p.add_argument("--s2-timeout", type=float, default=120.0, help="seconds to wait for one S2 decision")
    p.add_argument("--s2-mode", choices=S2_MODES, default="inprocess",
                   help="S2 node in this process, as a child process, or started elsewhere (default %(default)s)")
    p.add_argument("--record", help="also write the oracle's episodes as LeRobot training data under this folder")
    p.add_argument("--upstream-loop", action="store_true",
                   help="reproduce upstream's evaluator loop: when the waypoint follower stops, count a step and "
                        "decide on the same frame again (README 'What the model sees and says')")
    p.add_argument("--no-maps", action="store_true", help="skip the per-episode top-down maps")
    p.add_argument("--size", default="640x480", help="camera WxH (default VLN-CE R2R %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.epilog = "--ros-args ... (last): ROS arguments of the sim_bridge node, with --s2-mode external only"
    args = p.parse_args(argv)
    if ros_args and args.s2_mode != "external":
        p.error("--ros-args applies to --s2-mode external only (other modes start their own nodes)")
    return args


def config_from_args(args: argparse.Namespace, ros_args=()) -> EvalConfig:
    env_rank, env_world = env_shard()
    width, height = (int(v) for v in args.size.lower().split("x"))
    return EvalConfig(
        out=args.out, backend=args.backend, episodes=args.episodes, scenes_dir=args.scenes_dir,
        policies=tuple(args.policy), model=args.model, params_file=args.params_file, max_steps=args.max_steps,
        limit=args.limit, rank=env_rank if args.rank is None else args.rank,
        world_size=env_world if args.world_size is None else args.world_size, domain_id=args.domain_id,
        s2_timeout_s=args.s2_timeout, s2_mode=args.s2_mode, ros_args=tuple(ros_args), maps=not args.no_maps, seed=args.seed,
        width=width, height=height, progress=not args.quiet, record=args.record, upstream_loop=args.upstream_loop,
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
    return "\n".join(rows + _aggregation_notes(summaries))


def _aggregation_notes(summaries: dict[str, dict]) -> list[str]:
    """How many episodes upstream's aggregation rules touched (sim.metrics.summarize)."""
    notes = []
    for name, s in summaries.items():
        zeroed, dropped = int(s.get(SPL_ZEROED) or 0), int(s.get(NE_DROPPED) or 0)
        if zeroed or dropped:
            notes.append(f"\n{name}: {zeroed} episode(s) with non-finite SPL counted as 0, "
                         f"{dropped} with non-finite NE left out of NE (as upstream's evaluator)")
    return notes


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    argv, ros_args = split_ros_args(argv)
    args = parse_args(argv, ros_args)
    cfg = config_from_args(args, ros_args)
    if args.command == "merge":
        summaries = {p: merge(cfg.policy_dir(p)) for p in cfg.policies if cfg.policy_dir(p).is_dir()}
        if not summaries:
            raise SystemExit(f"internvla-s2-eval merge: no results under {cfg.out} for {list(cfg.policies)}")
        plot_results(cfg.out, summaries)
    else:
        summaries = evaluate(cfg)
    table = format_table(summaries)
    (cfg.out / "summary.md").write_text(table + "\n")
    (cfg.out / "summary.json").write_text(json.dumps(summaries, indent=2, default=str) + "\n")
    print(table)
    print(f"\nresults: {cfg.out}/summary.json   plot: {cfg.out}/results.png   maps: {cfg.out}/<policy>/maps/")
    if "s2" in summaries and cfg.model.startswith("tiny:"):
        print("note: tiny:* checkpoints have random weights; their S2 numbers are not navigation quality.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
