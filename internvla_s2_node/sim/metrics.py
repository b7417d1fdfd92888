"""Per-episode VLN metrics as the VLN-CE Habitat evaluator defines them (pure functions).

- success (SR): the agent called STOP and its distance to the goal is < 3.0 m (strict, as
  habitat-lab's ``Success``: ``distance_to_target < self._success_distance``).
- SPL: success * shortest / max(shortest, path_length); shortest = geodesic start->goal.
- NE (``distance_to_goal``): distance from the final position to the goal.
- OS (``oracle_success``): some position of the trajectory (start included) was closer than
  3.0 m (strict, as InternNav's and VLN-CE's ``OracleSuccess``: ``d < 3.0``).
- nDTW: exp(-DTW(trajectory, reference) / (len(reference) * 3.0)), euclidean point distances,
  consecutive duplicate positions dropped (VLN-CE records a location only when it changes);
  sDTW = success * nDTW.
- path_length: sum of euclidean steps between consecutive positions.

Distances to the goal go through ``distance_fn`` (the backend's geodesic distance in an
evaluation; euclidean by default, e.g. in tests).

``summarize`` aggregates as InternNav's ``HabitatVLNEvaluator.calc_metrics`` does: a
non-finite SPL counts as 0 (``torch.nan_to_num``) and a non-finite NE is left out of the NE
mean (``torch.isfinite``); the summary says how many episodes each rule touched.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from .backend import SUCCESS_DISTANCE_M

DistanceFn = Callable[[np.ndarray, np.ndarray], float]
SUMMARY_KEYS = ("success", "spl", "oracle_success", "distance_to_goal", "ndtw", "sdtw", "path_length", "steps")


def euclidean(a, b) -> float:
    return float(np.linalg.norm(np.asarray(a, dtype=float) - np.asarray(b, dtype=float)))


@dataclasses.dataclass(frozen=True)
class EpisodeMetrics:
    success: float
    spl: float
    oracle_success: float
    distance_to_goal: float  # NE
    ndtw: float
    sdtw: float
    path_length: float
    steps: int
    shortest_path_length: float

    def to_dict(self) -> dict[str, float]:
        return dataclasses.asdict(self)


def _positions(trajectory) -> np.ndarray:
    pts = np.asarray(trajectory, dtype=float)
    if pts.ndim != 2 or pts.shape[0] == 0 or pts.shape[1] not in (2, 3):
        raise ValueError(f"trajectory must be a non-empty (N, 2|3) array, got shape {pts.shape}")
    return pts


def path_length(trajectory) -> float:
    pts = _positions(trajectory)
    return float(np.sum(np.linalg.norm(np.diff(pts, axis=0), axis=1)))


def dedupe(trajectory) -> np.ndarray:
    """Drop positions equal to their predecessor."""
    pts = _positions(trajectory)
    keep = np.ones(len(pts), dtype=bool)
    keep[1:] = np.any(np.abs(np.diff(pts, axis=0)) > 0.0, axis=1)
    return pts[keep]


def densify(points: np.ndarray, spacing: float) -> np.ndarray:
    """Insert points so consecutive ones are at most ``spacing`` apart (endpoints kept)."""
    pts = np.asarray(points, dtype=float)
    if len(pts) < 2:
        return pts.copy()
    out = [pts[0]]
    for a, b in zip(pts[:-1], pts[1:]):
        n = max(1, int(math.ceil(np.linalg.norm(b - a) / spacing - 1e-9)))
        out += [a + (b - a) * k / n for k in range(1, n + 1)]
    return np.array(out)


def dtw(a, b) -> float:
    """Dynamic time warping distance with euclidean point costs (exact, O(len(a) len(b)))."""
    a, b = _positions(a), _positions(b)
    cost = np.linalg.norm(a[:, None, :] - b[None, :, :], axis=2)
    prev = np.cumsum(cost[0])  # first row: only moves along b
    for i in range(1, len(a)):
        best_from_above = np.minimum(prev, np.concatenate([[np.inf], prev[:-1]]))  # D[i-1, j], D[i-1, j-1]
        # D[i, j] = c[i, j] + min(D[i, j-1], m[j]) -> D[i, j] = C[j] + min_{k<=j}(m[k] - C[k-1])
        csum = np.cumsum(cost[i])
        shifted = np.concatenate([[0.0], csum[:-1]])
        prev = csum + np.minimum.accumulate(best_from_above - shifted)
    return float(prev[-1])


def ndtw(trajectory, reference, success_distance: float = SUCCESS_DISTANCE_M) -> float:
    """Normalised DTW in (0, 1]; NaN without a reference path."""
    ref = np.asarray(reference, dtype=float)
    if ref.size == 0:
        return math.nan
    ref = ref.reshape(len(ref), -1)
    return float(math.exp(-dtw(dedupe(trajectory), ref) / (len(ref) * success_distance)))


def compute_metrics(
    trajectory,
    goal,
    reference_path,
    called_stop: bool,
    shortest_path_length: float,
    distance_fn: DistanceFn = euclidean,
    success_distance: float = SUCCESS_DISTANCE_M,
    steps: int | None = None,
) -> EpisodeMetrics:
    """All metrics of one episode from its trajectory (positions, start first)."""
    pts = _positions(trajectory)
    goal = np.asarray(goal, dtype=float)
    unique = dedupe(pts)
    distances = np.array([distance_fn(p, goal) for p in unique])
    final = float(distances[-1])
    success = 1.0 if called_stop and final < success_distance else 0.0
    length = path_length(pts)
    if shortest_path_length <= 0.0 and length <= 0.0:
        spl = success
    else:
        spl = success * shortest_path_length / max(shortest_path_length, length)
    score = ndtw(pts, reference_path, success_distance)
    return EpisodeMetrics(
        success=success,
        spl=float(spl),
        oracle_success=1.0 if bool(np.any(distances < success_distance)) else 0.0,
        distance_to_goal=final,
        ndtw=score,
        sdtw=success * score if not math.isnan(score) else math.nan,
        path_length=length,
        steps=int(len(pts) - 1 if steps is None else steps),
        shortest_path_length=float(shortest_path_length),
    )


def _as_metrics_dict(item: Any) -> Mapping[str, Any]:
    if isinstance(item, EpisodeMetrics):
        return item.to_dict()
    metrics = getattr(item, "metrics", None)  # an EpisodeResult
    if isinstance(metrics, EpisodeMetrics):
        return metrics.to_dict()
    if isinstance(item, Mapping):
        return item
    raise TypeError(f"cannot summarise {type(item).__name__}")


SPL_ZEROED = "spl_nonfinite_as_zero"  # episodes whose non-finite SPL counted as 0
NE_DROPPED = "distance_to_goal_nonfinite_dropped"  # episodes left out of the NE mean


def _value(row: Mapping[str, Any], key: str) -> float | None:
    v = row.get(key)
    return None if v is None else float(v)


def summarize(results: Iterable[Any], keys: Sequence[str] = SUMMARY_KEYS) -> dict[str, float]:
    """Mean of each metric over episodes (EpisodeMetrics, EpisodeResult or dicts).

    As upstream's evaluator: a non-finite or missing SPL is 0 and a non-finite or missing NE
    is left out of the NE mean (the counts are ``spl_nonfinite_as_zero`` and
    ``distance_to_goal_nonfinite_dropped``). Other NaN values (e.g. nDTW without a reference)
    are left out of their mean. ``episodes``: count."""
    rows = [_as_metrics_dict(r) for r in results]
    out: dict[str, float] = {"episodes": float(len(rows)), SPL_ZEROED: 0.0, NE_DROPPED: 0.0}
    for key in keys:
        values = [_value(r, key) for r in rows if key in r]
        if key == "spl":
            out[SPL_ZEROED] = float(sum(v is None or not math.isfinite(v) for v in values))
            values = [v if v is not None and math.isfinite(v) else 0.0 for v in values]
        elif key == "distance_to_goal":
            out[NE_DROPPED] = float(sum(v is None or not math.isfinite(v) for v in values))
            values = [v for v in values if v is not None and math.isfinite(v)]
        else:
            values = [v for v in values if v is not None and not math.isnan(v)]
        out[key] = float(np.mean(values)) if values else math.nan
    return out
