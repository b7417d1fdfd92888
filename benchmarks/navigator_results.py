"""Summaries of the navigator model's evaluations with 95% intervals, and its training curve.

    python benchmarks/navigator_results.py --held-out RUN_DIR --train-houses RUN_DIR \\
        --train-log internvla_s2_node/assets/navigator/train_log.jsonl --out benchmarks/results/navigator_2026-12-02

RUN_DIR is an ``internvla-s2-eval --out`` folder (one sub-folder of JSON lines per policy). SR and OS
intervals are Wilson score intervals; SPL, NE and nDTW intervals are mean +- 1.96 standard errors.
Decision kinds are read off each episode record: each followed waypoint is a pixel goal (two S2 calls:
"↓", then the look-down turn), a STOP end is one stop call, the other calls are action lists (or empty).
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib

Z = 1.96


def wilson(successes: float, n: int) -> tuple[float, float]:
    if n == 0:
        return (math.nan, math.nan)
    p = successes / n
    centre = (p + Z * Z / (2 * n)) / (1 + Z * Z / n)
    half = Z * math.sqrt(p * (1 - p) / n + Z * Z / (4 * n * n)) / (1 + Z * Z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def mean_ci(values: list[float]) -> tuple[float, float, float]:
    values = [v for v in values if math.isfinite(v)]
    n = len(values)
    if n == 0:
        return (math.nan, math.nan, math.nan)
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return (mean, max(0.0, mean - Z * sd / math.sqrt(n)), mean + Z * sd / math.sqrt(n))  # all these metrics are >= 0


def records(run_dir: pathlib.Path, policy: str) -> list[dict]:
    out = []
    for path in sorted((run_dir / policy).glob("*.jsonl")):
        out += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return out


def decision_mix(recs: list[dict]) -> dict:
    pixel = sum(len(r.get("waypoints") or []) for r in recs)
    stops = sum(1 for r in recs if r["reason"] == "stop")
    calls = sum(r["policy_calls"] for r in recs)
    # a pixel goal takes two calls: the "↓" answer and the look-down turn
    return {"policy_calls": calls, "look_down_then_pixel_goal": pixel, "stop": stops,
            "action_lists_and_other": calls - 2 * pixel - stops}


def summarize(recs: list[dict]) -> dict:
    n = len(recs)
    m = [r["metrics"] for r in recs]
    sr = sum(x["success"] for x in m)
    os_ = sum(x["oracle_success"] for x in m)
    out = {"episodes": n, "SR": sr / n if n else math.nan, "SR_ci95": wilson(sr, n),
           "OS": os_ / n if n else math.nan, "OS_ci95": wilson(os_, n)}
    for key, name in (("spl", "SPL"), ("distance_to_goal", "NE"), ("ndtw", "nDTW")):
        mean, lo, hi = mean_ci([x[key] if x[key] is not None else math.nan for x in m])
        out[name], out[f"{name}_ci95"] = mean, (lo, hi)
    out["steps_mean"] = sum(r["steps"] for r in recs) / n if n else math.nan
    latencies = sorted(x for r in recs for x in r.get("s2_latency_s") or [])
    if latencies:
        out["s2_latency_p50_s"] = latencies[len(latencies) // 2]
        out["decisions"] = decision_mix(recs)
    return out


def table(rows: dict[str, dict]) -> str:
    head = "| run | episodes | SR [95% CI] | SPL [95% CI] | NE m [95% CI] | OS [95% CI] | nDTW [95% CI] | steps |"
    lines = [head, "|---|---|---|---|---|---|---|---|"]

    def cell(s, key):
        lo, hi = s[f"{key}_ci95"]
        return f"{s[key]:.2f} [{lo:.2f}, {hi:.2f}]"

    for name, s in rows.items():
        cells = " | ".join(cell(s, k) for k in ("SR", "SPL", "NE", "OS", "nDTW"))
        lines.append(f"| {name} | {s['episodes']} | {cells} | {s['steps_mean']:.1f} |")
    return "\n".join(lines)


def plot_curve(log: pathlib.Path, out: pathlib.Path) -> list[dict]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    steps, losses = [r["step"] for r in rows], [r["loss"] for r in rows]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(steps, losses, lw=1)
    ax.set_yscale("log")
    ax.set_xlabel("optimizer step (batch 16)")
    ax.set_ylabel("answer-token cross-entropy")
    ax.set_title("navigator S2 training loss (logged every 10 steps)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    with open(out.with_suffix(".csv"), "w") as fh:
        fh.write("step,loss,lr,elapsed_s\n")
        for r in rows:
            fh.write(f"{r['step']},{r['loss']:.5f},{r['lr']:.3e},{r['elapsed_s']}\n")
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--held-out", type=pathlib.Path, required=True)
    p.add_argument("--train-houses", type=pathlib.Path)
    p.add_argument("--train-log", type=pathlib.Path)
    p.add_argument("--out", type=pathlib.Path, required=True, help="path prefix of the .md/.json/.png written")
    args = p.parse_args(argv)
    rows = {}
    for policy in ("s2", "oracle", "random"):
        recs = records(args.held_out, policy)
        if recs:
            rows[f"held-out houses: {policy}"] = summarize(recs)
    if args.train_houses:
        recs = records(args.train_houses, "s2")
        if recs:
            rows["training houses: s2"] = summarize(recs)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(rows, indent=2) + "\n")
    text = table(rows)
    if args.train_log:
        plot_curve(args.train_log, args.out.with_name(args.out.name + "_loss.png"))
    args.out.with_suffix(".md").write_text(text + "\n")
    print(text)
    for name, s in rows.items():
        if "decisions" in s:
            print(f"{name}: S2 p50 {s['s2_latency_p50_s']:.3f} s; decisions {s['decisions']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
