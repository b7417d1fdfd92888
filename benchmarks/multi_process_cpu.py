"""Issue 7 without two GPUs: what two CPU processes show about the multi-process paths.

1. Training: `torchrun --nproc_per_node 2` (gloo) against one process on the same global batch,
   on samples recorded from the simulator's oracle (tiny random Qwen3-VL, small frames).
2. Sharded evaluation: the S2 policy (tiny checkpoint, over real DDS) as two shards running at
   the same time, each on its own ROS_DOMAIN_ID, merged; the merge must equal the union of the
   shards' records.

    .venv/bin/python benchmarks/multi_process_cpu.py [--steps 40]

Results: benchmarks/results/multi_process_cpu_<date>.{json,md}.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import platform
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from internvla_s2_node.core.tiny import default_tiny_checkpoint  # noqa: E402
from internvla_s2_node.sim import results  # noqa: E402

PY = sys.executable
TORCHRUN = str(pathlib.Path(PY).with_name("torchrun"))
ENV = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
           ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", ROS_LOCALHOST_ONLY="1", PYTHONPATH=str(REPO))
ENV.pop("WORLD_SIZE", None)
ENV.pop("RANK", None)


def run(cmd, **kw):
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=kw.pop("env", ENV), capture_output=True, text=True, **kw)
    if proc.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    return time.perf_counter() - t0


def record_data(tmp: pathlib.Path) -> pathlib.Path:
    rec = tmp / "recorded"
    run([PY, "-m", "internvla_s2_node.evaluation.cli", "--policy", "oracle", "--out", str(tmp / "rec_run"), "--record",
         str(rec), "--size", "160x120", "--no-maps", "--quiet"])
    return rec


def train(tmp: pathlib.Path, data: pathlib.Path, procs: int, steps: int) -> dict:
    out = tmp / f"train_{procs}proc"
    args = ["-m", "internvla_s2_node.train.cli", "--data", f"{data}@88,0,30", "--output-dir", str(out),
            "--model", str(default_tiny_checkpoint("qwen3_vl")), "--resize-w", "96", "--resize-h", "96",
            "--min-pixels", "1024", "--max-pixels", "9216", "--no-bf16", "--no-gradient-checkpointing", "--no-progress",
            "--num-workers", "0", "--device", "cpu", "--max-steps", str(steps), "--per-device-batch-size", str(4 // procs),
            "--learning-rate", "1e-3", "--vision-lr", "5e-4", "--warmup-ratio", "0", "--seed", "5", "--no-shuffle"]
    cmd = [PY, *args] if procs == 1 else [TORCHRUN, "--standalone", "--nproc_per_node", str(procs), *args]
    seconds = run(cmd)
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    return {"processes": procs, "global_batch": 4, "steps": len(log), "wall_s": round(seconds, 1),
            "steps_per_s": round(len(log) / seconds, 3), "losses": [round(r["loss"], 5) for r in log]}


def sharded_eval(tmp: pathlib.Path, limit: int) -> dict:
    out = tmp / "eval_2shards"
    model = str(default_tiny_checkpoint("qwen3_vl"))
    procs = []
    for rank in (0, 1):
        env = dict(ENV, RANK=str(rank), WORLD_SIZE="2", ROS_DOMAIN_ID=str(140 + rank))
        cmd = [PY, "-m", "internvla_s2_node.evaluation.cli", "--policy", "s2", "--model", model, "--out", str(out),
               "--limit", str(limit), "--size", "160x120", "--no-maps", "--quiet", "--max-steps", "20"]
        procs.append(subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
    for p in procs:
        _, err = p.communicate(timeout=900)
        if p.returncode != 0:
            raise SystemExit(err[-4000:])
    shards = {r: [json.loads(x) for x in results.shard_file(out / "s2", r).read_text().splitlines()] for r in (0, 1)}
    union = sorted(str(x["episode_id"]) for r in shards.values() for x in r)
    merged = results.merge(out / "s2")
    return {"shards": {r: sorted(str(x["episode_id"]) for x in recs) for r, recs in shards.items()},
            "domain_ids": [140, 141], "union": union, "merged_episodes": int(merged["episodes"]),
            "merge_equals_union": int(merged["episodes"]) == len(union) == len(set(union)) == limit,
            "merged_summary": merged}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--episodes", type=int, default=4)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = pathlib.Path(d)
        data = record_data(tmp)
        one, two = train(tmp, data, 1, args.steps), train(tmp, data, 2, args.steps)
        diffs = [abs(a - b) / max(abs(a), 1e-9) for a, b in zip(one["losses"], two["losses"])]
        report = {
            "date": datetime.date.today().isoformat(), "machine": f"{platform.node()} {os.cpu_count()} CPU cores, no GPU",
            "python": platform.python_version(),
            "training": {"one_process": one, "two_processes_gloo": two, "max_relative_loss_difference": max(diffs)},
            "sharded_evaluation": sharded_eval(tmp, args.episodes),
        }
    stem = REPO / "benchmarks" / "results" / f"multi_process_cpu_{report['date']}"
    stem.with_suffix(".json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    t = report["training"]
    md = [f"# Two CPU processes ({report['date']}, {report['machine']})", "",
          "| run | global batch | steps | wall (s) | steps/s | first loss | last loss |", "|---|---|---|---|---|---|---|"]
    for name, r in (("1 process", t["one_process"]), ("torchrun 2 x gloo", t["two_processes_gloo"])):
        md.append(f"| {name} | {r['global_batch']} | {r['steps']} | {r['wall_s']} | {r['steps_per_s']} | {r['losses'][0]} | {r['losses'][-1]} |")
    e = report["sharded_evaluation"]
    md += ["", f"Largest relative loss difference per step: {t['max_relative_loss_difference']:.2e}.", "",
           f"Sharded S2 evaluation: shard 0 {e['shards'][0]}, shard 1 {e['shards'][1]} (ROS_DOMAIN_ID 140/141, concurrent); "
           f"merged {e['merged_episodes']} episodes, equal to the union: {e['merge_equals_union']}."]
    stem.with_suffix(".md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
