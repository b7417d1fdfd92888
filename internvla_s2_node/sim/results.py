"""Episode results on disk: one JSON line per episode, resumable, shard-aware, mergeable.

Layout under ``out/<policy>/``: ``episodes.rank<R>.jsonl`` (one per shard), ``maps/``
(top-down maps), ``summary.json``. A line is appended and fsync'ed once its episode has
ended, so a run killed at any moment loses at most the episode in flight; a torn last
line is cut off when the file is reopened. A restarted run skips every episode id found
in any shard file of that policy, so re-sharding never duplicates an episode.
"""

from __future__ import annotations

import json
import math
import os
import pathlib
from typing import Iterable

from .metrics import summarize

SHARD_GLOB = "episodes.rank*.jsonl"


def shard_file(policy_dir: pathlib.Path, rank: int) -> pathlib.Path:
    return policy_dir / f"episodes.rank{rank}.jsonl"


def _clean(obj):
    """JSON without NaN/inf (written as null)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


def _truncate_torn_tail(path: pathlib.Path) -> None:
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with open(path, "r+b") as f:
            f.truncate(data.rfind(b"\n") + 1)


def read_records(policy_dir: pathlib.Path) -> list[dict]:
    """All complete records of all shards, in file order; a torn or invalid line is skipped."""
    records = []
    for path in sorted(policy_dir.glob(SHARD_GLOB)):
        for line in path.read_text().splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records


class ResultsWriter:
    """Appends one record per finished episode to this shard's file."""

    def __init__(self, policy_dir: pathlib.Path, rank: int) -> None:
        self.policy_dir = policy_dir
        policy_dir.mkdir(parents=True, exist_ok=True)
        self.path = shard_file(policy_dir, rank)
        if self.path.exists():
            _truncate_torn_tail(self.path)
        self.done = {str(r["episode_id"]) for r in read_records(policy_dir)}

    def append(self, record: dict) -> None:
        key = str(record["episode_id"])
        if key in self.done:
            raise ValueError(f"episode {key} is already recorded in {self.policy_dir}")
        line = json.dumps(_clean(record), separators=(",", ":")) + "\n"
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())
        self.done.add(key)


def merge(policy_dir: pathlib.Path) -> dict:
    """Summary over every shard of one policy; one record per episode id (a duplicate is an error)."""
    records = read_records(policy_dir)
    by_id: dict[str, dict] = {}
    for record in records:
        key = str(record["episode_id"])
        if key in by_id:
            raise ValueError(f"episode {key} appears twice in {policy_dir}")
        by_id[key] = record
    summary = summarize([{k: (math.nan if v is None else v) for k, v in r["metrics"].items()} for r in by_id.values()])
    summary.update(_latency_summary(by_id.values()))
    summary.update(decision_counts(by_id.values()))
    (policy_dir / "summary.json").write_text(json.dumps(_clean(summary), indent=2, sort_keys=True) + "\n")
    return summary


def decision_counts(records: Iterable[dict]) -> dict[str, float]:
    """The S2 node's decisions by kind, read off the episode records: each followed waypoint is a pixel
    goal (two calls: the "↓" answer, then the look-down turn), an episode ended by STOP is one stop call,
    and the remaining calls are action lists (or answers that moved nothing)."""
    records = [r for r in records if "s2_latency_s" in r]
    if not records:
        return {}
    calls = sum(r.get("policy_calls", 0) for r in records)
    pixel_goals = sum(len(r.get("waypoints") or []) for r in records)
    stops = sum(1 for r in records if r.get("reason") == "stop")
    return {"s2_decisions": float(calls), "s2_pixel_goals": float(pixel_goals), "s2_stops": float(stops),
            "s2_action_lists": float(max(0, calls - 2 * pixel_goals - stops))}


def _latency_summary(records: Iterable[dict]) -> dict[str, float]:
    latencies = sorted(x for r in records for x in r.get("s2_latency_s", []) if x is not None)
    if not latencies:
        return {}
    pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))]  # noqa: E731
    return {"s2_latency_p50_s": pick(0.5), "s2_latency_p90_s": pick(0.9), "s2_calls": float(len(latencies))}
