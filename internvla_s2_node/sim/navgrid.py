"""Occupancy grid of the navigable floor: geodesic distances, paths, collisions, a greedy follower.

Grid layout: ``navigable[r, c]`` is True where the agent's *centre* may be (obstacles are
already inflated by the agent radius). Rows run along world +y, columns along world +x;
cell (r, c) covers ``[x0 + c*res, x0 + (c+1)*res) x [y0 + r*res, y0 + (r+1)*res)``.

Geodesic distances come from a 16-connected Dijkstra (moves of 1, sqrt2 and sqrt5 cells,
no corner cutting; at most 2.8 % longer than the true any-angle length), computed lazily
from the goal with vectorised delta-stepping (bucket width = the smallest move cost, so
every bucket is final once popped) and cached per goal cell. When two points see each
other on the grid the straight-line length is used instead, which is exact.
"""

from __future__ import annotations

import collections
import math

import numpy as np

from ..core.actions import Action
from .coords import wrap_angle

SQRT2, SQRT5 = math.sqrt(2.0), math.sqrt(5.0)
PAD = 2  # non-navigable border, so neighbour lookups never leave the array
LOS_SAMPLES_PER_CELL = 3  # line-of-sight samples per cell length
SUBSTEPS_PER_CELL = 2  # collision checks per cell length while moving
LOOKAHEAD_M = 2.0  # greedy follower: how far along the path to aim
FIELD_CACHE_SIZE = 16
HEADING_TOLERANCE_FRACTION = 0.5  # go forward when the target is within half a turn step


def _moves() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(dr, dc) of the 16 moves, their costs (cells), and two cells each must keep free."""
    moves, costs, inter = [], [], []
    for dr in (-2, -1, 0, 1, 2):
        for dc in (-2, -1, 0, 1, 2):
            if (dr, dc) == (0, 0) or (abs(dr) == 2 and abs(dc) != 1) or (abs(dc) == 2 and abs(dr) != 1):
                continue
            moves.append((dr, dc))
            costs.append(math.hypot(dr, dc))
            if abs(dr) + abs(dc) == 1:
                inter.append(((0, 0), (0, 0)))
            elif abs(dr) == 1 and abs(dc) == 1:
                inter.append(((dr, 0), (0, dc)))
            elif abs(dc) == 2:
                inter.append(((0, dc // 2), (dr, dc // 2)))
            else:
                inter.append(((dr // 2, 0), (dr // 2, dc)))
    return np.array(moves), np.array(costs), np.array(inter)


_MOVES, _COSTS, _INTER = _moves()


class _Wavefront:
    """Lazy Dijkstra from one source cell over a padded flat grid (distances in cells)."""

    def __init__(self, free: np.ndarray, width: int, source: int):
        self.free = free
        self.dist = np.full(free.size, np.inf)
        self.settled = np.zeros(free.size, dtype=bool)
        self.seen = np.zeros(free.size, dtype=bool)
        self.dist[source] = 0.0
        self.seen[source] = True
        self.open = np.array([source], dtype=np.int64)
        self.off = _MOVES[:, 0] * width + _MOVES[:, 1]
        self.i1 = _INTER[:, 0, 0] * width + _INTER[:, 0, 1]
        self.i2 = _INTER[:, 1, 0] * width + _INTER[:, 1, 1]

    def expand(self, target: int | None = None) -> None:
        """Settle cells in distance order until ``target`` is settled (or all, if None)."""
        while self.open.size and not (target is not None and self.settled[target]):
            d = self.dist[self.open]
            in_bucket = d < d.min() + 1.0  # min move cost is 1 cell: these are final
            front = self.open[in_bucket]
            self.open = self.open[~in_bucket]
            self.settled[front] = True
            nb = front[:, None] + self.off[None, :]
            ok = (self.free[nb] & self.free[front[:, None] + self.i1[None, :]]
                  & self.free[front[:, None] + self.i2[None, :]] & ~self.settled[nb])
            nd = (self.dist[front][:, None] + _COSTS[None, :])[ok]
            nb = nb[ok]
            better = nd < self.dist[nb]
            nb, nd = nb[better], nd[better]
            if nb.size == 0:
                continue
            np.minimum.at(self.dist, nb, nd)
            new = np.unique(nb[~self.seen[nb]])
            self.seen[new] = True
            self.open = np.concatenate([self.open, new])

    def distance(self, cell: int) -> float:
        self.expand(cell)
        return float(self.dist[cell]) if self.settled[cell] else math.inf


class NavGrid:
    """Navigable-floor grid in the world frame with geodesic queries and kinematic moves."""

    def __init__(self, navigable: np.ndarray, origin, resolution: float, floor_z: float = 0.0,
                 obstacles: np.ndarray | None = None):
        navigable = np.asarray(navigable, dtype=bool)
        if navigable.ndim != 2 or min(navigable.shape) < 1:
            raise ValueError(f"navigable must be a non-empty 2-D array, got shape {navigable.shape}")
        if not resolution > 0:
            raise ValueError(f"resolution must be > 0, got {resolution}")
        self.navigable = navigable
        self.obstacles = obstacles if obstacles is not None else ~navigable
        self.origin = np.asarray(origin, dtype=float)[:2]
        self.resolution = float(resolution)
        self.floor_z = float(floor_z)
        rows, cols = navigable.shape
        self._width = cols + 2 * PAD
        padded = np.zeros((rows + 2 * PAD, self._width), dtype=bool)
        padded[PAD:-PAD, PAD:-PAD] = navigable
        self._free = padded.ravel()
        r, c = np.nonzero(navigable)
        self._free_rc = np.stack([r, c], axis=1)
        self._free_xy = self.center_of(r, c)
        self._fields: collections.OrderedDict[int, _Wavefront] = collections.OrderedDict()

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_obstacles(cls, obstacles: np.ndarray, origin, resolution: float, agent_radius: float,
                       floor_z: float = 0.0) -> "NavGrid":
        """Navigable = no obstacle cell closer than ``agent_radius`` to the cell centre."""
        obstacles = np.asarray(obstacles, dtype=bool)
        reach = int(math.ceil(agent_radius / resolution + 0.5))
        blocked = obstacles.copy()
        rows, cols = obstacles.shape
        for dr in range(-reach, reach + 1):
            for dc in range(-reach, reach + 1):
                gap = math.hypot(max(abs(dr) - 0.5, 0.0), max(abs(dc) - 0.5, 0.0)) * resolution
                if (dr, dc) == (0, 0) or gap >= agent_radius:
                    continue
                src = obstacles[max(0, dr):rows + min(0, dr), max(0, dc):cols + min(0, dc)]
                blocked[max(0, -dr):rows + min(0, -dr), max(0, -dc):cols + min(0, -dc)] |= src
        return cls(~blocked, origin, resolution, floor_z, obstacles)

    # ------------------------------------------------------------------ cells and points
    @property
    def shape(self) -> tuple[int, int]:
        return self.navigable.shape

    @property
    def extent(self) -> tuple[float, float, float, float]:
        """(x_min, x_max, y_min, y_max) for plotting."""
        rows, cols = self.shape
        x0, y0 = self.origin
        return (x0, x0 + cols * self.resolution, y0, y0 + rows * self.resolution)

    def cell_of(self, xy) -> tuple[np.ndarray, np.ndarray]:
        xy = np.asarray(xy, dtype=float)
        col = np.floor((xy[..., 0] - self.origin[0]) / self.resolution).astype(np.int64)
        row = np.floor((xy[..., 1] - self.origin[1]) / self.resolution).astype(np.int64)
        return row, col

    def center_of(self, row, col) -> np.ndarray:
        row, col = np.asarray(row), np.asarray(col)
        return np.stack([self.origin[0] + (col + 0.5) * self.resolution,
                         self.origin[1] + (row + 0.5) * self.resolution], axis=-1)

    def _flat(self, row, col):
        return (row + PAD) * self._width + (col + PAD)

    def navigable_mask(self, points) -> np.ndarray:
        """Vectorised: which (..., 2|3) points are navigable."""
        row, col = self.cell_of(np.asarray(points, dtype=float)[..., :2])
        rows, cols = self.shape
        inside = (row >= 0) & (row < rows) & (col >= 0) & (col < cols)
        out = np.zeros(row.shape, dtype=bool)
        out[inside] = self.navigable[row[inside], col[inside]]
        return out

    def is_navigable(self, point) -> bool:
        x, y = float(point[0]), float(point[1])
        col = math.floor((x - self.origin[0]) / self.resolution)
        row = math.floor((y - self.origin[1]) / self.resolution)
        rows, cols = self.shape
        return 0 <= row < rows and 0 <= col < cols and bool(self.navigable[row, col])

    def _point3(self, xy) -> np.ndarray:
        return np.array([float(xy[0]), float(xy[1]), self.floor_z])

    def snap(self, point) -> np.ndarray:
        """The nearest navigable point (the point itself if navigable); (3,) at floor height."""
        if self.is_navigable(point):
            return self._point3(point)
        if len(self._free_xy) == 0:
            raise ValueError("the grid has no navigable cell")
        d2 = np.sum((self._free_xy - np.asarray(point, dtype=float)[:2]) ** 2, axis=1)
        return self._point3(self._free_xy[int(np.argmin(d2))])

    def line_of_sight(self, a, b) -> bool:
        """True when the straight segment a-b stays on navigable cells."""
        a, b = np.asarray(a, dtype=float)[:2], np.asarray(b, dtype=float)[:2]
        n = max(2, int(math.ceil(np.linalg.norm(b - a) / self.resolution * LOS_SAMPLES_PER_CELL)) + 1)
        t = np.linspace(0.0, 1.0, n)[:, None]
        return bool(np.all(self.navigable_mask(a + t * (b - a))))

    # ------------------------------------------------------------------ geodesics
    def _wavefront(self, goal_xy) -> tuple[_Wavefront, int]:
        row, col = self.cell_of(goal_xy)
        key = int(self._flat(row, col))
        front = self._fields.get(key)
        if front is None:
            front = _Wavefront(self._free, self._width, key)
            self._fields[key] = front
            if len(self._fields) > FIELD_CACHE_SIZE:
                self._fields.popitem(last=False)
        else:
            self._fields.move_to_end(key)
        return front, key

    def distance_field(self, goal) -> np.ndarray:
        """Geodesic distance (m) from every cell to ``goal`` (snapped); inf where unreachable."""
        front, _ = self._wavefront(self.snap(goal)[:2])
        front.expand()
        rows, cols = self.shape
        field = front.dist.reshape(rows + 2 * PAD, self._width)[PAD:-PAD, PAD:-PAD]
        return field * self.resolution

    def geodesic_distance(self, a, b) -> float:
        """Shortest navigable path length between a and b (both snapped); inf if unreachable."""
        a2, b2 = self.snap(a)[:2], self.snap(b)[:2]
        if self.line_of_sight(a2, b2):
            return float(np.linalg.norm(a2 - b2))
        front, _ = self._wavefront(b2)
        row, col = self.cell_of(a2)
        return front.distance(int(self._flat(row, col))) * self.resolution

    def _descend(self, front: _Wavefront, start: int, max_cells: float = math.inf) -> list[int]:
        """Cells from ``start`` down the distance field toward its source."""
        path, travelled, cur = [start], 0.0, start
        while front.dist[cur] > 0.0 and travelled < max_cells:
            nb = cur + front.off
            ok = self._free[nb] & self._free[cur + front.i1] & self._free[cur + front.i2]
            vals = np.where(ok, front.dist[nb] + _COSTS, np.inf)
            k = int(np.argmin(vals))
            if not np.isfinite(vals[k]) or front.dist[nb[k]] >= front.dist[cur]:
                break
            cur = int(nb[k])
            travelled += float(_COSTS[k])
            path.append(cur)
        return path

    def _flat_to_xy(self, flat: list[int]) -> np.ndarray:
        flat = np.asarray(flat)
        return self.center_of(flat // self._width - PAD, flat % self._width - PAD)

    def _string_pull(self, pts: np.ndarray) -> np.ndarray:
        out, anchor, n = [pts[0]], 0, len(pts)
        while anchor < n - 1:
            j = anchor + 1
            while j + 1 < n and self.line_of_sight(pts[anchor], pts[j + 1]):
                j += 1
            out.append(pts[j])
            anchor = j
        return np.array(out)

    def shortest_path(self, a, b) -> np.ndarray:
        """(N, 3) polyline (string-pulled) from a to b, both snapped; empty if unreachable."""
        a2, b2 = self.snap(a)[:2], self.snap(b)[:2]
        if self.line_of_sight(a2, b2):
            pts = np.array([a2, b2])
        else:
            front, _ = self._wavefront(b2)
            start = int(self._flat(*self.cell_of(a2)))
            if not math.isfinite(front.distance(start)):
                return np.zeros((0, 3))
            pts = self._flat_to_xy(self._descend(front, start))
            pts = self._string_pull(np.vstack([a2, pts[1:-1], b2]) if len(pts) > 2 else np.array([a2, b2]))
        return np.column_stack([pts, np.full(len(pts), self.floor_z)])

    def reachable_from(self, point) -> np.ndarray:
        """Boolean mask of the cells connected to ``point``."""
        return np.isfinite(self.distance_field(point))

    # ------------------------------------------------------------------ motion
    def move(self, position, yaw: float, distance: float) -> tuple[np.ndarray, bool]:
        """Move ``distance`` along ``yaw`` from ``position``; on contact slide along the
        blocking wall (keep the free axis component). Returns (new position (3,), collided)."""
        x, y = float(position[0]), float(position[1])
        n = max(1, int(math.ceil(abs(distance) / self.resolution * SUBSTEPS_PER_CELL)))
        sx, sy = distance * math.cos(yaw) / n, distance * math.sin(yaw) / n
        collided = False
        for _ in range(n):
            if self.is_navigable((x + sx, y + sy)):
                x, y = x + sx, y + sy
                continue
            collided = True
            slides = ((sx, 0.0), (0.0, sy)) if abs(sx) >= abs(sy) else ((0.0, sy), (sx, 0.0))
            for dx, dy in slides:
                if (dx or dy) and self.is_navigable((x + dx, y + dy)):
                    x, y = x + dx, y + dy
                    break
            else:
                break
        return np.array([x, y, float(position[2]) if len(position) > 2 else self.floor_z]), collided

    def lookahead_point(self, position, goal, lookahead: float = LOOKAHEAD_M) -> np.ndarray | None:
        """The farthest point of the shortest path to ``goal`` within ``lookahead`` metres that
        the agent sees in a straight line; None if the goal is unreachable."""
        p, g = self.snap(position)[:2], self.snap(goal)[:2]
        if self.line_of_sight(p, g):
            return g
        front, _ = self._wavefront(g)
        start = int(self._flat(*self.cell_of(p)))
        if not math.isfinite(front.distance(start)):
            return None
        cells = self._descend(front, start, lookahead / self.resolution)
        pts = self._flat_to_xy(cells[1:] or cells)
        for q in pts[::-1]:
            if self.line_of_sight(p, q):
                return q
        return pts[0]

    def next_action(self, position, yaw: float, goal, radius: float, forward_step: float,
                    turn_step_deg: float) -> Action:
        """Greedy geodesic follower: STOP within ``radius`` (geodesic) or if unreachable,
        FORWARD when the look-ahead point is within half a turn step of the heading,
        else turn toward it."""
        distance = self.geodesic_distance(position, goal)
        if not math.isfinite(distance) or distance <= radius:
            return Action.STOP
        target = self.lookahead_point(position, goal)
        if target is None:
            return Action.STOP
        p = np.asarray(position, dtype=float)[:2]
        bearing = wrap_angle(math.atan2(target[1] - p[1], target[0] - p[0]) - yaw)
        if abs(bearing) <= math.radians(turn_step_deg) * HEADING_TOLERANCE_FRACTION + 1e-9:
            return Action.FORWARD
        return Action.LEFT if bearing > 0 else Action.RIGHT
