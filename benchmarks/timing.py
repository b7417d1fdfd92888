"""Statistics the benchmark scripts share: percentiles, and timing a host-side call."""

from __future__ import annotations

import time

import numpy as np


def pct(values, q: float) -> float | None:
    """The ``q`` quantile (0..1, linear interpolation) of ``values``; None when there are none."""
    return float(np.quantile(values, q)) if len(values) else None


def time_calls(fn, reps: int) -> dict:
    """Milliseconds per call of ``fn`` over ``reps`` calls after one untimed call: p50, p90, min, max."""
    fn()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t0) * 1e3)
    return {"p50": round(pct(ts, 0.5), 3), "p90": round(pct(ts, 0.9), 3), "min": round(min(ts), 3), "max": round(max(ts), 3)}


def write_json_md(out: str | None, stem: str, payload: dict, text: str) -> None:
    """Print ``text``; with ``out``, write ``payload`` to ``out/stem.json`` and ``text`` to ``out/stem.md``."""
    import json
    import pathlib

    print(text)
    if out:
        folder = pathlib.Path(out)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{stem}.json").write_text(json.dumps(payload, indent=1))
        (folder / f"{stem}.md").write_text(text)
        print("wrote", folder / f"{stem}.json")
