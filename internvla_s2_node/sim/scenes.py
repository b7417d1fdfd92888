"""Procedural multi-room indoor scenes: a seeded generator -> ``SceneSpec`` (JSON) -> MJCF + occupancy.

A house is an axis-aligned rectangle split (binary space partition) into 2-4 rooms. Walls
run on the room boundaries; a spanning tree of adjacent rooms (plus sometimes one extra
pair) gets 1 m doorways with a lintel above. Each room has a kind (living room, kitchen,
bedroom, study), its own floor texture and wall colour, and a few distinctly coloured
pieces of furniture placed against walls or in the middle, clear of the doorways.

Everything is in the world frame (z up, metres); the house spans [0, W] x [0, H].
The spec is the stored form (``assets/scenes/*.json``): MJCF and occupancy are derived
from it deterministically, so stored scenes do not change when the generator does.
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib
from typing import Iterator, Sequence

import numpy as np

from .navgrid import NavGrid

WALL_HEIGHT = 2.6
WALL_THICKNESS = 0.12
DOOR_WIDTH = 1.0
DOOR_HEIGHT = 2.1
DOOR_END_MARGIN = 0.4  # doorway edge to the nearest wall junction
DOOR_KEEPOUT_DEPTH = 1.2  # no furniture this far in front of a doorway (both sides)
DOOR_KEEPOUT_SIDE = 0.3
MIN_ROOM_SIZE = 3.0
SPLIT_RANGE = (0.4, 0.6)
EXTRA_DOOR_PROB = 0.35
FURNITURE_GAP = 0.5  # free space kept between pieces of furniture
CENTER_MARGIN = 1.0  # free space around furniture placed in the middle of a room
APPROACH_GAP = 0.45  # goal points: this far in front of the furniture
PLACEMENT_TRIES = 40
GRID_RESOLUTION = 0.05
GRID_MARGIN = 0.3
CEILING_THICKNESS = 0.05
GRID_ROUND = 0.1  # house sizes and splits are multiples of this

# Colour names used in instructions and their RGB.
PALETTE: dict[str, tuple[float, float, float]] = {
    "red": (0.80, 0.10, 0.10),
    "blue": (0.12, 0.28, 0.85),
    "green": (0.15, 0.62, 0.20),
    "yellow": (0.95, 0.82, 0.10),
    "orange": (0.95, 0.50, 0.08),
    "purple": (0.52, 0.22, 0.72),
    "pink": (0.95, 0.48, 0.70),
    "teal": (0.05, 0.58, 0.58),
    "black": (0.07, 0.07, 0.07),
    "white": (0.93, 0.93, 0.93),
    "brown": (0.45, 0.27, 0.11),
    "grey": (0.50, 0.50, 0.52),
}
WALL_COLOURS = [(0.93, 0.90, 0.80), (0.80, 0.88, 0.95), (0.84, 0.93, 0.82), (0.96, 0.86, 0.82), (0.90, 0.86, 0.95)]
FLOOR_STYLES: dict[str, tuple[tuple[float, float, float], tuple[float, float, float], float]] = {
    # kind -> (rgb1, rgb2, tile size m)
    "living room": ((0.62, 0.45, 0.28), (0.56, 0.39, 0.23), 0.5),
    "kitchen": ((0.90, 0.90, 0.88), (0.55, 0.57, 0.60), 0.4),
    "bedroom": ((0.70, 0.62, 0.52), (0.66, 0.58, 0.48), 1.0),
    "study": ((0.40, 0.27, 0.16), (0.34, 0.22, 0.12), 0.35),
}
ROOM_KINDS = ("living room", "kitchen", "bedroom", "study")


@dataclasses.dataclass(frozen=True)
class Category:
    width: float  # along the wall it stands against
    depth: float  # away from that wall
    height: float
    placement: str  # "wall" or "center"
    colours: tuple[str, ...]  # allowed colour names


CATEGORIES: dict[str, Category] = {
    "sofa": Category(2.0, 0.9, 0.85, "wall", ("red", "blue", "green", "orange", "purple", "grey", "teal", "yellow")),
    "armchair": Category(0.9, 0.9, 0.9, "wall", ("red", "blue", "yellow", "orange", "pink", "teal", "green")),
    "tv": Category(1.5, 0.45, 1.25, "wall", ("black",)),
    "coffee table": Category(1.0, 0.6, 0.45, "center", ("brown", "white", "black", "grey")),
    "dining table": Category(1.5, 0.9, 0.75, "center", ("brown", "white", "black", "yellow")),
    "plant": Category(0.6, 0.6, 1.25, "wall", ("green",)),
    "lamp": Category(0.45, 0.45, 1.65, "wall", ("yellow", "orange", "white", "pink", "red")),
    "fridge": Category(0.8, 0.75, 1.85, "wall", ("white", "grey", "red", "blue")),
    "counter": Category(1.8, 0.6, 0.9, "wall", ("white", "brown", "blue", "green", "grey")),
    "bed": Category(1.6, 2.1, 1.0, "wall", ("blue", "red", "purple", "pink", "green", "orange", "teal")),
    "wardrobe": Category(1.2, 0.6, 2.0, "wall", ("brown", "white", "grey", "purple", "blue")),
    "bookshelf": Category(1.0, 0.35, 1.9, "wall", ("brown", "white", "black", "red", "blue")),
    "desk": Category(1.2, 0.6, 0.75, "wall", ("brown", "white", "black", "grey")),
}
ROOM_FURNITURE: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    # kind -> (always, optional)
    "living room": (("sofa", "tv"), ("coffee table", "plant", "lamp", "armchair")),
    "kitchen": (("fridge", "counter"), ("dining table", "plant")),
    "bedroom": (("bed",), ("wardrobe", "lamp", "plant", "armchair")),
    "study": (("bookshelf", "desk"), ("plant", "lamp", "armchair")),
}
MAX_OPTIONAL = 2


# ---------------------------------------------------------------------------- spec types
@dataclasses.dataclass
class Room:
    name: str  # unique, e.g. "kitchen"
    kind: str
    bounds: tuple[float, float, float, float]  # x0, y0, x1, y1 on wall centre lines
    wall_rgb: tuple[float, float, float]

    @property
    def center(self) -> np.ndarray:
        x0, y0, x1, y1 = self.bounds
        return np.array([(x0 + x1) / 2, (y0 + y1) / 2])

    def interior(self, margin: float = WALL_THICKNESS / 2) -> tuple[float, float, float, float]:
        x0, y0, x1, y1 = self.bounds
        return (x0 + margin, y0 + margin, x1 - margin, y1 - margin)

    def contains(self, xy) -> bool:
        x0, y0, x1, y1 = self.bounds
        return x0 <= xy[0] <= x1 and y0 <= xy[1] <= y1


@dataclasses.dataclass
class Wall:
    """A wall centre line (axis-aligned): vertical if x0 == x1."""

    x0: float
    y0: float
    x1: float
    y1: float

    @property
    def vertical(self) -> bool:
        return abs(self.x0 - self.x1) < 1e-9


@dataclasses.dataclass
class Door:
    center: tuple[float, float]
    vertical: bool  # on a vertical wall (x = const): people pass along x
    width: float
    rooms: tuple[int, int]


@dataclasses.dataclass
class Furniture:
    name: str  # unique, e.g. "red sofa"
    category: str
    colour: str
    center: tuple[float, float]
    facing: float  # radians: direction the front faces (into the room)
    room: int

    @property
    def spec(self) -> Category:
        return CATEGORIES[self.category]

    def half_extents(self) -> tuple[float, float]:
        """Axis-aligned half sizes of the footprint (facing is a multiple of 90 deg)."""
        c = self.spec
        along_x = abs(math.cos(self.facing)) < 0.5  # facing +-y: width runs along x
        return (c.width / 2, c.depth / 2) if along_x else (c.depth / 2, c.width / 2)

    def footprint(self) -> tuple[float, float, float, float]:
        hx, hy = self.half_extents()
        return (self.center[0] - hx, self.center[1] - hy, self.center[0] + hx, self.center[1] + hy)

    def approach_point(self, gap: float = APPROACH_GAP) -> np.ndarray:
        """A floor point in front of the furniture (goal of episodes)."""
        reach = self.spec.depth / 2 + gap
        return np.array([self.center[0] + reach * math.cos(self.facing), self.center[1] + reach * math.sin(self.facing)])


@dataclasses.dataclass
class SceneSpec:
    name: str
    seed: int
    size: tuple[float, float]  # W, H
    rooms: list[Room]
    walls: list[Wall]
    doors: list[Door]
    furniture: list[Furniture]
    wall_height: float = WALL_HEIGHT
    wall_thickness: float = WALL_THICKNESS
    door_height: float = DOOR_HEIGHT

    def to_json(self) -> dict:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_json(cls, data: dict) -> "SceneSpec":
        try:
            return cls(
                name=str(data["name"]),
                seed=int(data["seed"]),
                size=tuple(data["size"]),
                rooms=[Room(r["name"], r["kind"], tuple(r["bounds"]), tuple(r["wall_rgb"])) for r in data["rooms"]],
                walls=[Wall(**w) for w in data["walls"]],
                doors=[Door(tuple(d["center"]), bool(d["vertical"]), float(d["width"]), tuple(d["rooms"])) for d in data["doors"]],
                furniture=[Furniture(f["name"], f["category"], f["colour"], tuple(f["center"]), float(f["facing"]), int(f["room"]))
                           for f in data["furniture"]],
                wall_height=float(data.get("wall_height", WALL_HEIGHT)),
                wall_thickness=float(data.get("wall_thickness", WALL_THICKNESS)),
                door_height=float(data.get("door_height", DOOR_HEIGHT)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"malformed scene spec {data.get('name', '?') if isinstance(data, dict) else '?'}: {exc!r}") from exc

    def save(self, path: str | pathlib.Path) -> pathlib.Path:
        path = pathlib.Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(), indent=1))
        return path

    @classmethod
    def load(cls, path: str | pathlib.Path) -> "SceneSpec":
        return cls.from_json(json.loads(pathlib.Path(path).read_text()))

    def room_at(self, xy) -> int | None:
        for i, room in enumerate(self.rooms):
            if room.contains(xy):
                return i
        return None

    def doors_on(self, wall: Wall) -> list[Door]:
        out = []
        for d in self.doors:
            if wall.vertical and d.vertical and abs(d.center[0] - wall.x0) < 1e-6 and \
                    min(wall.y0, wall.y1) <= d.center[1] <= max(wall.y0, wall.y1):
                out.append(d)
            elif not wall.vertical and not d.vertical and abs(d.center[1] - wall.y0) < 1e-6 and \
                    min(wall.x0, wall.x1) <= d.center[0] <= max(wall.x0, wall.x1):
                out.append(d)
        return out


# ---------------------------------------------------------------------------- geometry helpers
def _overlap(a0: float, a1: float, b0: float, b1: float) -> tuple[float, float]:
    return max(a0, b0), min(a1, b1)


def _boxes_overlap(a, b, gap: float = 0.0) -> bool:
    return a[0] - gap < b[2] and b[0] - gap < a[2] and a[1] - gap < b[3] and b[1] - gap < a[3]


def shared_wall(a: Room, b: Room) -> tuple[bool, float, float, float] | None:
    """(vertical, coordinate, lo, hi) of the boundary two rooms share, if any."""
    ax0, ay0, ax1, ay1 = a.bounds
    bx0, by0, bx1, by1 = b.bounds
    for coord_a, coord_b, vertical in ((ax1, bx0, True), (bx1, ax0, True), (ay1, by0, False), (by1, ay0, False)):
        if abs(coord_a - coord_b) < 1e-6:
            lo, hi = _overlap(ay0, ay1, by0, by1) if vertical else _overlap(ax0, ax1, bx0, bx1)
            if hi - lo > 1e-6:
                return vertical, coord_a, lo, hi
    return None


def _snap(value: float) -> float:
    return round(round(value / GRID_ROUND) * GRID_ROUND, 3)


# ---------------------------------------------------------------------------- generation
def _split_rooms(rng: np.random.Generator, size: tuple[float, float], n_rooms: int) -> tuple[list, list[Wall]]:
    rects = [(0.0, 0.0, size[0], size[1])]
    walls: list[Wall] = []
    while len(rects) < n_rooms:
        order = sorted(range(len(rects)), key=lambda i: -(rects[i][2] - rects[i][0]) * (rects[i][3] - rects[i][1]))
        for i in order:
            x0, y0, x1, y1 = rects[i]
            vertical = (x1 - x0) >= (y1 - y0)  # split the longer side with a vertical/horizontal wall
            lo, hi = (x0, x1) if vertical else (y0, y1)
            if hi - lo < 2 * MIN_ROOM_SIZE:
                continue
            cut = _snap(lo + (hi - lo) * rng.uniform(*SPLIT_RANGE))
            cut = min(max(cut, lo + MIN_ROOM_SIZE), hi - MIN_ROOM_SIZE)
            if vertical:
                rects[i:i + 1] = [(x0, y0, cut, y1), (cut, y0, x1, y1)]
                walls.append(Wall(cut, y0, cut, y1))
            else:
                rects[i:i + 1] = [(x0, y0, x1, cut), (x0, cut, x1, y1)]
                walls.append(Wall(x0, cut, x1, cut))
            break
        else:
            break  # nothing left to split
    w, h = size
    walls += [Wall(0, 0, w, 0), Wall(0, h, w, h), Wall(0, 0, 0, h), Wall(w, 0, w, h)]
    return rects, walls


def _place_doors(rng: np.random.Generator, rooms: list[Room]) -> list[Door]:
    candidates = []
    for i in range(len(rooms)):
        for j in range(i + 1, len(rooms)):
            shared = shared_wall(rooms[i], rooms[j])
            if shared and shared[3] - shared[2] >= DOOR_WIDTH + 2 * DOOR_END_MARGIN:
                candidates.append((i, j, shared))
    rng.shuffle(candidates)
    parent = list(range(len(rooms)))

    def find(k: int) -> int:
        while parent[k] != k:
            k = parent[k]
        return k

    chosen, spare = [], []
    for cand in candidates:  # random spanning tree (Kruskal) ...
        a, b = find(cand[0]), find(cand[1])
        if a != b:
            parent[a] = b
            chosen.append(cand)
        else:
            spare.append(cand)
    if spare and rng.random() < EXTRA_DOOR_PROB:  # ... and sometimes a loop
        chosen.append(spare[0])
    doors = []
    for i, j, (vertical, coord, lo, hi) in chosen:
        half = DOOR_WIDTH / 2
        along = _snap(rng.uniform(lo + DOOR_END_MARGIN + half, hi - DOOR_END_MARGIN - half))
        along = min(max(along, lo + DOOR_END_MARGIN + half), hi - DOOR_END_MARGIN - half)
        center = (coord, along) if vertical else (along, coord)
        doors.append(Door((round(center[0], 3), round(center[1], 3)), vertical, DOOR_WIDTH, (i, j)))
    return doors


def _door_keepouts(doors: Sequence[Door]) -> list[tuple[float, float, float, float]]:
    out = []
    for d in doors:
        half_w = d.width / 2 + DOOR_KEEPOUT_SIDE
        if d.vertical:
            out.append((d.center[0] - DOOR_KEEPOUT_DEPTH, d.center[1] - half_w, d.center[0] + DOOR_KEEPOUT_DEPTH, d.center[1] + half_w))
        else:
            out.append((d.center[0] - half_w, d.center[1] - DOOR_KEEPOUT_DEPTH, d.center[0] + half_w, d.center[1] + DOOR_KEEPOUT_DEPTH))
    return out


def _candidate_pose(rng: np.random.Generator, room: Room, cat: Category) -> tuple[tuple[float, float], float] | None:
    ix0, iy0, ix1, iy1 = room.interior()
    if cat.placement == "center":
        m = CENTER_MARGIN
        facing = float(rng.choice([0.0, math.pi / 2]))
        hx, hy = (cat.width / 2, cat.depth / 2) if abs(math.cos(facing)) < 0.5 else (cat.depth / 2, cat.width / 2)
        if ix1 - ix0 < 2 * (m + hx) or iy1 - iy0 < 2 * (m + hy):
            return None
        return (float(rng.uniform(ix0 + m + hx, ix1 - m - hx)), float(rng.uniform(iy0 + m + hy, iy1 - m - hy))), facing
    side = int(rng.integers(4))  # 0: wall at y0 (faces +y), 1: y1 (-y), 2: x0 (+x), 3: x1 (-x)
    facing = (math.pi / 2, -math.pi / 2, 0.0, math.pi)[side]
    half_w, half_d = cat.width / 2, cat.depth / 2
    if side < 2:
        if ix1 - ix0 < cat.width:
            return None
        x = float(rng.uniform(ix0 + half_w, ix1 - half_w))
        y = iy0 + half_d if side == 0 else iy1 - half_d
    else:
        if iy1 - iy0 < cat.width:
            return None
        y = float(rng.uniform(iy0 + half_w, iy1 - half_w))
        x = ix0 + half_d if side == 2 else ix1 - half_d
    return (round(x, 3), round(y, 3)), facing


def _furnish(rng: np.random.Generator, rooms: list[Room], doors: list[Door]) -> list[Furniture]:
    keepouts = _door_keepouts(doors)
    used_colours: set[str] = set()
    placed: list[Furniture] = []
    for ri, room in enumerate(rooms):
        always, optional = ROOM_FURNITURE[room.kind]
        extra = list(rng.permutation(optional))[: int(rng.integers(1, MAX_OPTIONAL + 1))]
        for category in list(always) + [str(c) for c in extra]:
            if any(f.category == category for f in placed):
                continue  # one of each category per house: names stay unambiguous
            cat = CATEGORIES[category]
            colours = [c for c in cat.colours if c not in used_colours] or list(cat.colours)
            colour = str(rng.choice(colours))
            for _ in range(PLACEMENT_TRIES):
                pose = _candidate_pose(rng, room, cat)
                if pose is None:
                    break
                item = Furniture(f"{colour} {category}", category, colour, pose[0], pose[1], ri)
                box = item.footprint()
                if any(_boxes_overlap(box, k) for k in keepouts):
                    continue
                if any(_boxes_overlap(box, f.footprint(), FURNITURE_GAP) for f in placed):
                    continue
                approach = item.approach_point()
                if not room.contains(approach):
                    continue
                placed.append(item)
                used_colours.add(colour)
                break
    return placed


def generate_scene(seed: int, n_rooms: int | None = None, name: str | None = None) -> SceneSpec:
    """A random house. Deterministic for a given seed; every piece of furniture can be
    reached (pieces whose approach point is cut off are dropped)."""
    rng = np.random.default_rng(seed)
    n_rooms = int(rng.integers(2, 5)) if n_rooms is None else n_rooms
    if not 1 <= n_rooms <= len(ROOM_KINDS):
        raise ValueError(f"n_rooms must be in [1, {len(ROOM_KINDS)}], got {n_rooms}")
    width = _snap(rng.uniform(6.5, 8.0) if n_rooms <= 2 else rng.uniform(8.0, 10.5))
    height = _snap(rng.uniform(5.0, 6.5) if n_rooms <= 2 else rng.uniform(6.0, 8.0))
    rects, walls = _split_rooms(rng, (width, height), n_rooms)
    order = sorted(range(len(rects)), key=lambda i: -(rects[i][2] - rects[i][0]) * (rects[i][3] - rects[i][1]))
    kinds = ["living room"] + [str(k) for k in rng.permutation(ROOM_KINDS[1:])]
    wall_colours = [WALL_COLOURS[int(i)] for i in rng.permutation(len(WALL_COLOURS))]
    rooms: list[Room] = [None] * len(rects)  # type: ignore[list-item]
    for rank, i in enumerate(order):
        rooms[i] = Room(kinds[rank], kinds[rank], tuple(float(v) for v in rects[i]), wall_colours[rank])
    doors = _place_doors(rng, rooms)
    spec = SceneSpec(name or f"house_{seed}", int(seed), (width, height), rooms, walls, doors, [])
    spec.furniture = _furnish(rng, rooms, doors)
    grid = scene_navgrid(spec, agent_radius=0.18)
    spec.furniture = [f for f in spec.furniture if grid.is_navigable(f.approach_point())]
    return spec


# ---------------------------------------------------------------------------- walls as boxes
@dataclasses.dataclass(frozen=True)
class Box:
    center: tuple[float, float, float]
    half: tuple[float, float, float]
    rgb: tuple[float, float, float]


def _wall_intervals(spec: SceneSpec, wall: Wall) -> Iterator[tuple[float, float, float, float]]:
    """(lo, hi, z0, z1) solid parts of a wall along its axis: full height outside the
    doorways, a lintel above them."""
    lo, hi = (min(wall.y0, wall.y1), max(wall.y0, wall.y1)) if wall.vertical else (min(wall.x0, wall.x1), max(wall.x0, wall.x1))
    half_t = spec.wall_thickness / 2
    lo, hi = lo - half_t, hi + half_t  # close the corners
    gaps = sorted(((d.center[1] if wall.vertical else d.center[0]) - d.width / 2,
                   (d.center[1] if wall.vertical else d.center[0]) + d.width / 2) for d in spec.doors_on(wall))
    cursor = lo
    for g0, g1 in gaps:
        if g0 > cursor:
            yield cursor, g0, 0.0, spec.wall_height
        yield g0, g1, spec.door_height, spec.wall_height
        cursor = g1
    if hi > cursor:
        yield cursor, hi, 0.0, spec.wall_height


def _side_rooms(spec: SceneSpec, wall: Wall, side: int, lo: float, hi: float) -> list[tuple[float, float, int | None]]:
    """Split [lo, hi] of one side (+1/-1 along the normal) of a wall by the room it faces."""
    probe = spec.wall_thickness
    cuts = {lo, hi}
    for room in spec.rooms:
        x0, y0, x1, y1 = room.bounds
        cuts.update((y0, y1) if wall.vertical else (x0, x1))
    cuts = sorted(c for c in cuts if lo <= c <= hi)
    out = []
    for a, b in zip(cuts[:-1], cuts[1:]):
        mid = (a + b) / 2
        point = (wall.x0 + side * probe, mid) if wall.vertical else (mid, wall.y0 + side * probe)
        out.append((a, b, spec.room_at(point)))
    return out


def wall_boxes(spec: SceneSpec) -> list[Box]:
    """Render boxes: every wall as two half-thickness slabs, each coloured by the room it faces."""
    boxes = []
    quarter = spec.wall_thickness / 4
    for wall in spec.walls:
        coord = wall.x0 if wall.vertical else wall.y0
        for lo, hi, z0, z1 in _wall_intervals(spec, wall):
            for side in (-1, 1):
                for a, b, room in _side_rooms(spec, wall, side, lo, hi):
                    rgb = spec.rooms[room].wall_rgb if room is not None else (0.6, 0.6, 0.6)
                    mid, half_len = (a + b) / 2, (b - a) / 2
                    off = coord + side * quarter
                    center = (off, mid, (z0 + z1) / 2) if wall.vertical else (mid, off, (z0 + z1) / 2)
                    half = (quarter, half_len, (z1 - z0) / 2) if wall.vertical else (half_len, quarter, (z1 - z0) / 2)
                    boxes.append(Box(center, half, rgb))
    return boxes


def obstacle_boxes(spec: SceneSpec) -> list[tuple[float, float, float, float]]:
    """Footprints (x0, y0, x1, y1) of everything that blocks the agent."""
    half_t = spec.wall_thickness / 2
    out = []
    for wall in spec.walls:
        coord = wall.x0 if wall.vertical else wall.y0
        for lo, hi, z0, _ in _wall_intervals(spec, wall):
            if z0 > 0.0:
                continue  # lintel
            out.append((coord - half_t, lo, coord + half_t, hi) if wall.vertical else (lo, coord - half_t, hi, coord + half_t))
    out += [f.footprint() for f in spec.furniture]
    return out


def scene_navgrid(spec: SceneSpec, agent_radius: float, resolution: float = GRID_RESOLUTION) -> NavGrid:
    """Navigable floor of the house (the component connected to the rooms; outside is blocked)."""
    w, h = spec.size
    origin = (-GRID_MARGIN, -GRID_MARGIN)
    cols = int(math.ceil((w + 2 * GRID_MARGIN) / resolution))
    rows = int(math.ceil((h + 2 * GRID_MARGIN) / resolution))
    xs = origin[0] + (np.arange(cols) + 0.5) * resolution
    ys = origin[1] + (np.arange(rows) + 0.5) * resolution
    half = resolution / 2
    obstacles = np.ones((rows, cols), dtype=bool)
    inside_x = (xs >= 0) & (xs <= w)
    inside_y = (ys >= 0) & (ys <= h)
    obstacles[np.ix_(inside_y, inside_x)] = False
    for x0, y0, x1, y1 in obstacle_boxes(spec):  # any overlap with a cell blocks it
        cx = (xs + half > x0) & (xs - half < x1)
        cy = (ys + half > y0) & (ys - half < y1)
        obstacles[np.ix_(cy, cx)] = True
    grid = NavGrid.from_obstacles(obstacles, origin, resolution, agent_radius)
    main = _largest_component(grid)
    return NavGrid(main, origin, resolution, 0.0, obstacles)


def _largest_component(grid: NavGrid) -> np.ndarray:
    remaining = grid.navigable.copy()
    best = np.zeros_like(remaining)
    while remaining.sum() > best.sum():
        r, c = np.argwhere(remaining)[0]
        comp = grid.reachable_from(grid.center_of(r, c))
        if comp.sum() > best.sum():
            best = comp
        remaining &= ~comp
    return best


# ---------------------------------------------------------------------------- MJCF
def _f(values) -> str:
    return " ".join(f"{float(v):.4g}" for v in values)


def _rgba(rgb, alpha: float = 1.0) -> str:
    return _f(list(rgb) + [alpha])


def _lighter(rgb, amount: float) -> tuple[float, float, float]:
    return tuple(min(1.0, c + (1.0 - c) * amount) for c in rgb)


def _darker(rgb, amount: float) -> tuple[float, float, float]:
    return tuple(c * (1.0 - amount) for c in rgb)


WOOD = (0.36, 0.22, 0.10)
METAL = (0.25, 0.25, 0.27)
SCREEN = (0.02, 0.02, 0.03)
LINEN = (0.97, 0.97, 0.95)
POT = (0.70, 0.35, 0.20)
FOLIAGE = (0.13, 0.50, 0.15)
BOOK_COLOURS = [PALETTE[c] for c in ("red", "blue", "yellow", "green", "white", "orange", "teal")]


def furniture_parts(item: Furniture) -> list[tuple[str, tuple, tuple, tuple]]:
    """(geom type, local centre (x along width, y toward the front, z), size, rgb) parts.

    Local frame: origin at the footprint centre on the floor; the back is at y = -depth/2."""
    c, rgb = item.spec, PALETTE[item.colour]
    w, d, h = c.width / 2, c.depth / 2, c.height
    cat = item.category
    parts: list[tuple[str, tuple, tuple, tuple]] = []
    box = lambda x, y, z, sx, sy, sz, col: parts.append(("box", (x, y, z), (sx, sy, sz), col))  # noqa: E731
    cyl = lambda x, y, z, r, hz, col: parts.append(("cylinder", (x, y, z), (r, hz), col))  # noqa: E731
    if cat in ("sofa", "armchair"):
        arm = 0.1
        box(0, 0.05, 0.22, w - 2 * arm, d - 0.05, 0.2, rgb)  # seat
        box(0, 0.05, 0.46, w - 2 * arm, d - 0.07, 0.05, _lighter(rgb, 0.25))  # cushions
        box(0, -d + 0.12, h / 2, w, 0.12, h / 2, _darker(rgb, 0.15))  # back
        for s in (-1, 1):
            box(s * (w - arm), 0, 0.31, arm, d, 0.31, _darker(rgb, 0.15))  # armrests
    elif cat == "tv":
        box(0, 0, 0.25, w, d, 0.25, METAL)  # cabinet
        box(0, -0.05, 0.88, w - 0.05, 0.03, 0.36, SCREEN)  # screen
        box(0, -0.09, 0.88, w, 0.02, 0.38, (0.15, 0.15, 0.15))  # bezel
    elif cat in ("coffee table", "dining table", "desk"):
        top = 0.03
        box(0, 0, h - top, w, d, top, rgb)
        for sx in (-1, 1):
            for sy in (-1, 1):
                box(sx * (w - 0.06), sy * (d - 0.06), (h - 2 * top) / 2, 0.03, 0.03, (h - 2 * top) / 2, _darker(rgb, 0.3))
        if cat == "desk":
            box(0, -d + 0.12, h + 0.22, 0.28, 0.02, 0.18, SCREEN)  # monitor
            box(0, -d + 0.16, h + 0.02, 0.08, 0.06, 0.02, METAL)
    elif cat == "plant":
        cyl(0, 0, 0.2, 0.2, 0.2, POT)
        parts.append(("sphere", (0, 0, 0.72), (0.33,), FOLIAGE))
        parts.append(("sphere", (0.12, 0.05, 1.0), (0.22,), _lighter(FOLIAGE, 0.15)))
        parts.append(("sphere", (-0.1, -0.06, 0.98), (0.2,), _darker(FOLIAGE, 0.15)))
    elif cat == "lamp":
        cyl(0, 0, 0.02, 0.18, 0.02, METAL)
        cyl(0, 0, 0.75, 0.02, 0.73, METAL)
        cyl(0, 0, 1.5, 0.2, 0.15, rgb)  # shade
    elif cat == "fridge":
        box(0, 0, h / 2, w, d, h / 2, rgb)
        box(0, d + 0.002, 1.25, w, 0.005, 0.008, _darker(rgb, 0.5))  # door split
        for z in (0.75, 1.5):
            box(w - 0.1, d + 0.03, z, 0.015, 0.03, 0.2, METAL)  # handles
    elif cat == "counter":
        box(0, 0, 0.43, w, d - 0.02, 0.43, rgb)
        box(0, 0, 0.885, w, d, 0.02, (0.12, 0.12, 0.12))  # worktop
        box(-w / 3, 0, 0.91, 0.25, 0.2, 0.01, METAL)  # sink
    elif cat == "bed":
        box(0, 0, 0.18, w, d, 0.18, WOOD)  # base
        box(0, 0.05, 0.45, w - 0.04, d - 0.08, 0.1, rgb)  # cover
        box(0, -d + 0.06, 0.55, w, 0.06, 0.55, _darker(WOOD, 0.2))  # headboard
        for s in (-1, 1):
            box(s * w / 2, -d + 0.35, 0.6, w / 2 - 0.08, 0.18, 0.06, LINEN)  # pillows
    elif cat == "wardrobe":
        box(0, 0, h / 2, w, d, h / 2, rgb)
        box(0, d + 0.002, h / 2, 0.008, 0.005, h / 2 - 0.05, _darker(rgb, 0.5))
        for s in (-1, 1):
            box(s * 0.07, d + 0.02, 1.05, 0.015, 0.02, 0.12, METAL)
    elif cat == "bookshelf":
        side = 0.03
        for s in (-1, 1):
            box(s * (w - side), 0, h / 2, side, d, h / 2, rgb)
        box(0, -d + 0.01, h / 2, w, 0.01, h / 2, _darker(rgb, 0.3))  # back panel
        levels = 5
        for k in range(levels + 1):
            box(0, 0, k * (h - side) / levels + side / 2, w - side, d, side / 2, rgb)
        for k in range(levels):
            z0 = k * (h - side) / levels + side
            x = -w + 2 * side
            i = 0
            while x < w - 2 * side - 0.05:
                bw = 0.03 + 0.02 * ((k + i) % 3)
                bh = 0.11 + 0.04 * ((k * 3 + i) % 3)
                box(x + bw, 0.02, z0 + bh, bw, d - 0.06, bh, BOOK_COLOURS[(k * 5 + i) % len(BOOK_COLOURS)])
                x += 2 * bw + 0.01
                i += 1
    else:  # pragma: no cover - every category is handled above
        box(0, 0, h / 2, w, d, h / 2, rgb)
    return parts


def scene_mjcf(spec: SceneSpec, width: int = 640, height: int = 480, fovy_deg: float = 63.0,
               camera_name: str = "agent") -> str:
    """MJCF of the house with a camera ``camera_name`` (posed at run time)."""
    w, h = spec.size
    extent = max(w, h)
    assets, geoms = [], []
    for i, room in enumerate(spec.rooms):
        rgb1, rgb2, tile = FLOOR_STYLES[room.kind]
        x0, y0, x1, y1 = room.bounds
        assets.append(f'<texture name="floor{i}" type="2d" builtin="checker" rgb1="{_f(rgb1)}" rgb2="{_f(rgb2)}" '
                      f'width="64" height="64"/>')
        assets.append(f'<material name="floor{i}" texture="floor{i}" texrepeat="{1 / (2 * tile):.4g} {1 / (2 * tile):.4g}" '
                      f'texuniform="true" specular="0.1" shininess="0.1"/>')
        geoms.append(f'<geom name="floor_{i}" type="plane" pos="{_f(((x0 + x1) / 2, (y0 + y1) / 2, 0))}" '
                     f'size="{_f(((x1 - x0) / 2, (y1 - y0) / 2, 0.1))}" material="floor{i}"/>')
    for k, b in enumerate(wall_boxes(spec)):
        geoms.append(f'<geom name="wall_{k}" type="box" pos="{_f(b.center)}" size="{_f(b.half)}" rgba="{_rgba(b.rgb)}" '
                     f'material="matte"/>')
    geoms.append(f'<geom name="ceiling" type="box" pos="{_f((w / 2, h / 2, spec.wall_height + CEILING_THICKNESS))}" '
                 f'size="{_f((w / 2 + 0.2, h / 2 + 0.2, CEILING_THICKNESS))}" rgba="0.96 0.96 0.94 1" material="ceiling"/>')
    for item in spec.furniture:
        cos_r, sin_r = math.cos(item.facing - math.pi / 2), math.sin(item.facing - math.pi / 2)
        slug = item.name.replace(" ", "_")
        for k, (kind, (lx, ly, lz), size, rgb) in enumerate(furniture_parts(item)):
            x = item.center[0] + cos_r * lx - sin_r * ly
            y = item.center[1] + sin_r * lx + cos_r * ly
            emission = ' material="glow"' if item.category == "lamp" and k == 2 else ' material="matte"'
            geoms.append(f'<geom name="{slug}_{k}" type="{kind}" pos="{_f((x, y, lz))}" size="{_f(size)}" '
                         f'euler="0 0 {item.facing - math.pi / 2:.5f}" rgba="{_rgba(rgb)}"{emission}/>')
    lights = [
        '<light name="sun1" directional="true" castshadow="false" dir="0.35 0.55 -1" diffuse="0.45 0.45 0.43" specular="0 0 0"/>',
        '<light name="sun2" directional="true" castshadow="false" dir="-0.5 -0.25 -1" diffuse="0.3 0.3 0.32" specular="0 0 0"/>',
    ]
    return f"""<mujoco model="{spec.name}">
  <compiler angle="radian"/>
  <statistic extent="{extent:.3g}" center="{_f((w / 2, h / 2, 1.0))}"/>
  <visual>
    <global offwidth="{width}" offheight="{height}"/>
    <headlight ambient="0.38 0.38 0.38" diffuse="0.32 0.32 0.32" specular="0 0 0"/>
    <map znear="{0.02 / extent:.5g}" zfar="{60.0 / extent:.5g}"/>
    <quality shadowsize="0"/>
  </visual>
  <asset>
    <material name="matte" specular="0.05" shininess="0.05"/>
    <material name="glow" emission="0.6" specular="0"/>
    <material name="ceiling" emission="0.35" specular="0"/>
    {chr(10).join('    ' + a for a in assets).strip()}
  </asset>
  <worldbody>
    {chr(10).join('    ' + l for l in lights).strip()}
    {chr(10).join('    ' + g for g in geoms).strip()}
    <camera name="{camera_name}" mode="fixed" pos="0 0 1" xyaxes="0 -1 0 0 0 1" fovy="{fovy_deg:.5g}"/>
  </worldbody>
</mujoco>
"""
