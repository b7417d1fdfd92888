"""Summaries of the navigator model's evaluations with 95% intervals, and its training curve.

    python benchmarks/navigator_results.py --held-out RUN_DIR --train-houses RUN_DIR \\
        --train-log internvla_s2_node/assets/navigator/train_log.jsonl --out benchmarks/results/navigator_2026-12-02
    python benchmarks/navigator_results.py --held-out RUN_DIR --curve 684=R1_DIR 1215=R2_DIR ... --train-log ... --out ...

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
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from internvla_s2_node.sim.results import decision_counts  # noqa: E402

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
    """The S2 decisions by kind as the evaluation summary counts them (sim.results.decision_counts)."""
    counts = decision_counts(recs)
    return {"policy_calls": int(counts["s2_decisions"]), "look_down_then_pixel_goal": int(counts["s2_pixel_goals"]),
            "stop": int(counts["s2_stops"]), "action_lists_and_other": int(counts["s2_action_lists"])}


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


def paired(a: list[dict], b: list[dict]) -> dict:
    """Success of two runs on the same episodes: counts and the exact two-sided McNemar p (binomial on the
    episodes only one of them solved)."""
    sa = {str(r["episode_id"]): r["metrics"]["success"] >= 0.5 for r in a}
    sb = {str(r["episode_id"]): r["metrics"]["success"] >= 0.5 for r in b}
    common = sorted(set(sa) & set(sb))
    only_a = sum(sa[e] and not sb[e] for e in common)
    only_b = sum(sb[e] and not sa[e] for e in common)
    n, k = only_a + only_b, min(only_a, only_b)
    p = min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2**n) if n else 1.0
    return {"episodes": len(common), "both": sum(sa[e] and sb[e] for e in common), "only_this": only_a,
            "only_other": only_b, "mcnemar_p": p}


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


def plot_curve(log: pathlib.Path, out: pathlib.Path, curve: dict[int, dict] | None = None) -> list[dict]:
    """Loss over optimizer steps (``global_step`` where the log spans several training rounds, with the
    round boundaries marked) and, from ``curve``, held-out SR with its 95% interval at those steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    steps, losses = [r.get("global_step", r["step"]) for r in rows], [r["loss"] for r in rows]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(steps, losses, lw=1, label="training loss")
    for prev, row, step in zip(rows, rows[1:], steps[1:]):
        if row.get("round", 1) != prev.get("round", 1):
            ax.axvline(step, color="grey", lw=0.8, ls=":")
    ax.set_yscale("log")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("answer-token cross-entropy")
    ax.set_title("navigator S2 training (loss logged every 10 steps)")
    ax.grid(alpha=0.3)
    if curve:
        sr_ax = ax.twinx()
        xs = sorted(curve)
        sr = [curve[x]["SR"] for x in xs]
        err = [[curve[x]["SR"] - curve[x]["SR_ci95"][0] for x in xs], [curve[x]["SR_ci95"][1] - curve[x]["SR"] for x in xs]]
        episodes = "/".join(sorted({str(curve[x]["episodes"]) for x in xs}))
        sr_ax.errorbar(xs, sr, yerr=err, fmt="o-", color="tab:red", capsize=3, label=f"held-out SR, {episodes} episodes (95% CI)")
        sr_ax.set_ylabel("held-out SR", color="tab:red")
        sr_ax.set_ylim(0, 1)
        sr_ax.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    with open(out.with_suffix(".csv"), "w") as fh:
        fh.write("round,step,loss,lr,elapsed_s\n")
        for r, step in zip(rows, steps):
            fh.write(f"{r.get('round', 1)},{step},{r['loss']:.5f},{r['lr']:.3e},{r['elapsed_s']}\n")
    return rows


def _curve_point(text: str) -> tuple[int, pathlib.Path]:
    step, _, run_dir = text.partition("=")
    if not step.isdigit() or not run_dir:
        raise argparse.ArgumentTypeError(f"{text!r} is not STEP=RUN_DIR")
    return int(step), pathlib.Path(run_dir)


def _labelled_run(text: str) -> tuple[str, pathlib.Path]:
    label, sep, path = text.partition("=")
    if not sep or not label:
        raise argparse.ArgumentTypeError(f"expected LABEL=RUN_DIR, got {text!r}")
    return label, pathlib.Path(path)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--held-out", type=pathlib.Path, required=True)
    p.add_argument("--name", default="held-out houses", help="what the --held-out run's episodes are (the rows' label)")
    p.add_argument("--train-houses", type=pathlib.Path)
    p.add_argument("--train-log", type=pathlib.Path)
    p.add_argument("--curve", type=_curve_point, nargs="+", default=[],
                   help="STEP=RUN_DIR: the S2 held-out run of the checkpoint after that many steps (the SR curve)")
    p.add_argument("--compare", type=_labelled_run, nargs="+", default=[],
                   help="LABEL=RUN_DIR: another model's S2 run on the same held-out episodes, paired with this one")
    p.add_argument("--compare-train", type=_labelled_run, nargs="+", default=[],
                   help="LABEL=RUN_DIR: another model's S2 run on the same training-house episodes, paired")
    p.add_argument("--out", type=pathlib.Path, required=True, help="path prefix of the .md/.json/.png written")
    args = p.parse_args(argv)
    rows = {}
    for policy in ("s2", "oracle", "random"):
        recs = records(args.held_out, policy)
        if recs:
            rows[f"{args.name}: {policy}"] = summarize(recs)
    if args.train_houses:
        recs = records(args.train_houses, "s2")
        if recs:
            rows["training houses: s2"] = summarize(recs)
    curve = {step: summarize(records(run_dir, "s2")) for step, run_dir in args.curve}
    for step, s in sorted(curve.items()):
        rows[f"{args.name}: s2 after {step} steps ({s['episodes']} episodes)"] = s
    pairs = {f"{args.name}: s2 vs {label}": paired(records(args.held_out, "s2"), records(d, "s2")) for label, d in args.compare}
    if args.train_houses:
        pairs.update({f"training houses: s2 vs {label}": paired(records(args.train_houses, "s2"), records(d, "s2"))
                      for label, d in args.compare_train})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps({**rows, **({"paired": pairs} if pairs else {})}, indent=2) + "\n")
    text = table(rows)
    if pairs:
        text += "\n\n| paired (same episodes) | episodes | both succeed | only this model | only the other | exact McNemar p |\n|---|---|---|---|---|---|\n"
        text += "\n".join(f"| {k} | {v['episodes']} | {v['both']} | {v['only_this']} | {v['only_other']} | {v['mcnemar_p']:.3f} |"
                           for k, v in pairs.items())
    if args.train_log:
        plot_curve(args.train_log, args.out.with_name(args.out.name + "_loss.png"), curve)
    args.out.with_suffix(".md").write_text(text + "\n")
    print(text)
    for name, s in rows.items():
        if "decisions" in s:
            print(f"{name}: S2 p50 {s['s2_latency_p50_s']:.3f} s; decisions {s['decisions']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
