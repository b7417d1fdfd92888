"""How the navigator's episodes end: success, or which failure. An S2 failure is one of
``stop_never_near`` (said STOP without ever having been within the success radius), ``stop_after_near``
(was within it, went on, and stopped outside), ``max_steps_never_near`` / ``max_steps_after_near``; and
``stop_before_moving`` counts the STOPs said before the robot had moved at all.

    python benchmarks/navigator_failures.py LABEL=RUN_DIR [LABEL=RUN_DIR ...] [--paired-with LABEL] --out PREFIX

RUN_DIR is an ``internvla-s2-eval --out`` folder; its ``s2`` episodes are read. With ``--paired-with``,
every other run is also compared on the episodes both ran (``navigator_results.paired``: solved by only
this one, by only the reference, and the exact McNemar p).
Writes PREFIX.json and PREFIX.md.
"""

from __future__ import annotations

import argparse
import collections
import json
import pathlib
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from benchmarks.navigator_results import _labelled_run, paired, records, wilson  # noqa: E402

KINDS = ("success", "stop_never_near", "stop_after_near", "max_steps_never_near", "max_steps_after_near", "other")


def ending(rec: dict) -> str:
    m = rec["metrics"]
    if m["success"] > 0:
        return "success"
    near = "after_near" if m["oracle_success"] > 0 else "never_near"
    if rec["reason"] in ("stop", "max_steps"):
        return f"{rec['reason']}_{near}"
    return "other"


def summary(recs: list[dict]) -> dict:
    n = len(recs)
    ends = [ending(r) for r in recs]
    kinds = collections.Counter(ends)
    stops_far = [r for r, e in zip(recs, ends) if e.startswith("stop_")]
    return {
        "episodes": n,
        "sr": kinds["success"] / n,
        "sr_ci": wilson(kinds["success"], n),
        "os": sum(r["metrics"]["oracle_success"] > 0 for r in recs) / n,
        "endings": {k: kinds[k] for k in KINDS},
        "stop_before_moving": sum(r["metrics"]["path_length"] == 0 for r in stops_far),
        "far_stop_distance_m_median": _median([r["metrics"]["distance_to_goal"] for r in stops_far]),
        "mean_steps": sum(r["steps"] for r in recs) / n,
    }


def _median(values: list[float]) -> float | None:
    values = sorted(values)
    return values[len(values) // 2] if values else None


def markdown(runs: dict) -> str:
    head = "| run | episodes | SR [95% CI] | OS | " + " | ".join(KINDS[1:-1]) + " | STOP before moving | median distance of far STOPs (m) | steps |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for label, s in runs.items():
        lo, hi = s["sr_ci"]
        cells = [label, str(s["episodes"]), f"{s['sr']:.2f} [{lo:.2f}, {hi:.2f}]", f"{s['os']:.2f}"]
        cells += [str(s["endings"][k]) for k in KINDS[1:-1]]
        d = s["far_stop_distance_m_median"]
        cells += [str(s["stop_before_moving"]), "-" if d is None else f"{d:.1f}", f"{s['mean_steps']:.1f}"]
        if "paired" in s:
            p = s["paired"]
            cells[0] += f" (paired: {p['only_this']} only this, {p['only_other']} only the reference, of {p['episodes']}, p = {p['mcnemar_p']:.2g})"
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", type=_labelled_run, metavar="LABEL=RUN_DIR")
    ap.add_argument("--paired-with", help="the LABEL the others are compared with, episode by episode")
    ap.add_argument("--out", required=True, help="output prefix (PREFIX.json, PREFIX.md)")
    args = ap.parse_args(argv)
    loaded = {}
    for label, path in args.runs:
        recs = records(path, "s2")
        if not recs:
            ap.error(f"no s2 episodes under {path}/s2; check the folder")
        loaded[label] = recs
    if args.paired_with and args.paired_with not in loaded:
        ap.error(f"--paired-with {args.paired_with!r} is not one of the labels {list(loaded)}")
    runs = {}
    for label, recs in loaded.items():
        runs[label] = summary(recs)
        if args.paired_with and label != args.paired_with:
            runs[label]["paired"] = paired(recs, loaded[args.paired_with])
    pathlib.Path(args.out + ".json").write_text(json.dumps(runs, indent=2) + "\n")
    pathlib.Path(args.out + ".md").write_text(markdown(runs))
    print(markdown(runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
