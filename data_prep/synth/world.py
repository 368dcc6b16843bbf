"""Procedural driving world of one scene: a grid city, the ego route and the vehicles.

Roads run along x = i * BLOCK and y = j * BLOCK (global metres). The world is translated by a
multiple of BLOCK so that every coordinate of interest is positive (the nuScenes map raster has
its origin at global (0, 0)) while the road grid stays where the ground texture expects it.
Everything that is not ground is a primitive: an oriented box (buildings, vehicles), a vertical
cylinder (poles, trunks) or a sphere (tree crowns).
"""

import dataclasses

import numpy as np

BLOCK = 60.0  # distance between parallel road centre lines
ROAD_HALF = 7.0  # half width of the asphalt
SIDEWALK = 4.0  # sidewalk band outside the asphalt
LANE_OFFSET = 1.75  # lane centre to the right of the road centre line
TURN_RADIUS = 8.0
EGO_SPEED = 7.0  # m/s
ACTIVE_RADIUS = 80.0  # primitives farther than this from the ego are not in the scene

KIND_BOX, KIND_CYLINDER, KIND_SPHERE = 0, 1, 2
MAT_GROUND, MAT_BUILDING, MAT_VEHICLE, MAT_POLE, MAT_TRUNK, MAT_FOLIAGE = range(6)
_DIRS = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])  # CCW order
_CAR_COLOURS = np.array(
    [
        [0.9, 0.9, 0.88],
        [0.08, 0.08, 0.1],
        [0.6, 0.62, 0.65],
        [0.7, 0.1, 0.1],
        [0.1, 0.25, 0.6],
        [0.1, 0.4, 0.2],
        [0.85, 0.7, 0.1],
        [0.45, 0.3, 0.2],
    ]
)
_FACADE_COLOURS = np.array(
    [
        [0.75, 0.68, 0.55],
        [0.6, 0.35, 0.3],
        [0.8, 0.8, 0.78],
        [0.5, 0.55, 0.6],
        [0.7, 0.55, 0.4],
        [0.45, 0.45, 0.5],
        [0.85, 0.75, 0.6],
    ]
)


@dataclasses.dataclass(frozen=True)
class Primitives:
    """Struct of arrays; `ident_p` is the primitive's id in its world (stable over time)."""

    kind_p: np.ndarray
    center_p3: np.ndarray  # box/sphere centre; cylinder (x, y, mid height)
    half_p3: np.ndarray  # box half extents in its own frame; cylinder (r, r, half height)
    yaw_p: np.ndarray
    material_p: np.ndarray
    colour_p3: np.ndarray
    ident_p: np.ndarray

    def __len__(self) -> int:
        return len(self.kind_p)

    def select(self, keep_p: np.ndarray) -> "Primitives":
        return Primitives(*(getattr(self, f.name)[keep_p] for f in dataclasses.fields(self)))

    @staticmethod
    def concat(parts: list["Primitives"]) -> "Primitives":
        return Primitives(
            *(
                np.concatenate([getattr(p, f.name) for p in parts])
                for f in dataclasses.fields(Primitives)
            )
        )


@dataclasses.dataclass(frozen=True)
class Vehicles:
    """Parked and moving vehicles; position at time t is `center0_v3 + t * velocity_v3`."""

    center0_v3: np.ndarray
    velocity_v3: np.ndarray
    half_v3: np.ndarray
    yaw_v: np.ndarray
    colour_v3: np.ndarray
    is_truck_v: np.ndarray
    ident_v: np.ndarray

    @property
    def moving_v(self) -> np.ndarray:
        return np.linalg.norm(self.velocity_v3, axis=1) > 0

    def centers_at(self, t: float) -> np.ndarray:
        return self.center0_v3 + t * self.velocity_v3


@dataclasses.dataclass(frozen=True)
class World:
    route_s_n: np.ndarray  # arc length of the dense route samples
    route_xy_n2: np.ndarray
    route_yaw_n: np.ndarray
    static: Primitives
    vehicles: Vehicles
    extent_xy: tuple[float, float]  # map size in metres, from global (0, 0)

    def ego_pose(self, t: float) -> tuple[np.ndarray, float]:
        """Ego (x, y) and yaw t seconds after the scene start (constant speed on the route)."""
        s = EGO_SPEED * t
        xy_2 = np.array([np.interp(s, self.route_s_n, self.route_xy_n2[:, k]) for k in range(2)])
        return xy_2, float(np.interp(s, self.route_s_n, self.route_yaw_n))

    def primitives_at(self, t: float) -> Primitives:
        """Everything within ACTIVE_RADIUS of the ego at time t, vehicles moved to time t."""
        veh = self.vehicles
        moving = Primitives(
            kind_p=np.full(len(veh.yaw_v), KIND_BOX),
            center_p3=veh.centers_at(t),
            half_p3=veh.half_v3,
            yaw_p=veh.yaw_v,
            material_p=np.full(len(veh.yaw_v), MAT_VEHICLE),
            colour_p3=veh.colour_v3,
            ident_p=veh.ident_v,
        )
        everything = Primitives.concat([self.static, moving])
        ego_xy_2, _ = self.ego_pose(t)
        near_p = np.linalg.norm(everything.center_p3[:, :2] - ego_xy_2, axis=1) < ACTIVE_RADIUS
        return everything.select(near_p)


def _route_corners(rng: np.random.Generator, length: float) -> tuple[np.ndarray, np.ndarray]:
    """Centre-line vertices (start, intersections..., end) and heading indices per leg."""
    heading = 1  # +y
    start_gap = rng.uniform(12.0, 30.0)
    points = [np.array([0.0, -start_gap])]
    headings = [heading]
    node, travelled = np.zeros(2), start_gap
    first = True
    while travelled < length + BLOCK:
        points.append(node.copy())
        # The first intersection always turns so that even a short scene has a curve.
        turn = rng.choice([-1, 1]) if first else rng.choice([-1, 0, 1], p=[0.3, 0.4, 0.3])
        first = False
        heading = (heading + turn) % 4
        headings.append(heading)
        node = node + BLOCK * _DIRS[heading]
        travelled += BLOCK
    points.append(node)
    return np.array(points), np.array(headings)


def _dense_route(points_k2: np.ndarray, headings_l: np.ndarray) -> tuple[np.ndarray, ...]:
    """Lane-centre route through the corners, 90-degree turns rounded with TURN_RADIUS arcs."""
    right = lambda d: np.array([d[1], -d[0]])
    xy, yaw = [], []
    start = points_k2[0] + LANE_OFFSET * right(_DIRS[headings_l[0]])
    for k in range(1, len(points_k2)):
        d_in = _DIRS[headings_l[k - 1]]
        last = k == len(points_k2) - 1
        if not last and headings_l[k] == headings_l[k - 1]:
            continue
        if last:
            end = points_k2[k] + LANE_OFFSET * right(d_in)
        else:
            d_out = _DIRS[headings_l[k]]
            corner = points_k2[k] + LANE_OFFSET * (right(d_in) + right(d_out))
            end = corner - TURN_RADIUS * d_in
        n_line = max(2, int(np.linalg.norm(end - start) / 0.5))
        frac_m = np.linspace(0.0, 1.0, n_line, endpoint=False)[:, None]
        xy.append(start + frac_m * (end - start))
        yaw.append(np.full(n_line, np.arctan2(d_in[1], d_in[0])))
        if last:
            xy.append(end[None])
            yaw.append(yaw[-1][-1:])
            break
        sign = np.sign(d_in[0] * d_out[1] - d_in[1] * d_out[0])  # +1 left turn (CCW)
        centre = corner - TURN_RADIUS * d_in + TURN_RADIUS * d_out
        a0 = np.arctan2(-d_out[1], -d_out[0])
        angle_m = a0 + sign * np.linspace(0.0, np.pi / 2, 64, endpoint=False)
        xy.append(centre + TURN_RADIUS * np.stack([np.cos(angle_m), np.sin(angle_m)], axis=1))
        yaw.append(angle_m + sign * np.pi / 2)
        start = corner + TURN_RADIUS * d_out
    xy_n2 = np.concatenate(xy)
    s_n = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(xy_n2, axis=0), axis=1))])
    return s_n, xy_n2, np.unwrap(np.concatenate(yaw))


def _prims(kind: int, material: int, rows: list[tuple], ident0: int) -> Primitives:
    """rows: (cx, cy, cz, hx, hy, hz, yaw, r, g, b)."""
    a = np.array(rows, dtype=np.float64).reshape(-1, 10)
    n = len(a)
    return Primitives(
        np.full(n, kind),
        a[:, 0:3],
        a[:, 3:6],
        a[:, 6],
        np.full(n, material),
        a[:, 7:10],
        ident0 + np.arange(n),
    )


def _near_intersection(along: float, margin: float) -> bool:
    return abs((along + BLOCK / 2) % BLOCK - BLOCK / 2) < margin


def _place(axis: int, line: float, offset: float, along: float, z: float) -> list[float]:
    """Point `offset` metres across road `line` (running along the other axis) at `along`."""
    p = [0.0, 0.0, z]
    p[axis], p[1 - axis] = line + offset, along
    return p


def _street_furniture(rng, lo_2, hi_2) -> tuple[list, list, list, list]:
    """Trees (trunk + crown), poles and parked-car slots along every road in [lo, hi]."""
    trunks, crowns, poles, parked = [], [], [], []
    for axis in (0, 1):  # axis 0: roads along y at x = i * BLOCK; axis 1: along x
        for line in np.arange(np.ceil(lo_2[axis] / BLOCK), hi_2[axis] / BLOCK + 1) * BLOCK:
            for side in (-1.0, 1.0):
                # Right-hand traffic: the lane on this side drives this way (parked cars too).
                yaw = side * np.pi / 2 if axis == 0 else (0.0 if side < 0 else np.pi)
                last_parked = -np.inf
                for along in np.arange(lo_2[1 - axis], hi_2[1 - axis], 3.5):
                    if _near_intersection(along, ROAD_HALF + SIDEWALK + 1.0):
                        continue
                    along = along + rng.uniform(-0.5, 0.5)
                    u = rng.uniform()
                    if u < 0.09:
                        r, trunk_h = rng.uniform(1.4, 2.3), rng.uniform(2.2, 3.2)
                        offset = side * (ROAD_HALF + 2.6)
                        trunks.append(
                            [
                                *_place(axis, line, offset, along, trunk_h / 2),
                                0.2,
                                0.2,
                                trunk_h / 2,
                                0.0,
                                0.35,
                                0.24,
                                0.14,
                            ]
                        )
                        green = rng.uniform(0.7, 1.2) * np.array([0.2, 0.45, 0.15])
                        crowns.append(
                            [
                                *_place(axis, line, offset, along, trunk_h + 0.7 * r),
                                r,
                                r,
                                r,
                                0.0,
                                *green,
                            ]
                        )
                    elif u < 0.13:
                        h = rng.uniform(5.0, 8.0)
                        poles.append(
                            [
                                *_place(axis, line, side * (ROAD_HALF + 0.5), along, h / 2),
                                0.12,
                                0.12,
                                h / 2,
                                0.0,
                                0.5,
                                0.5,
                                0.52,
                            ]
                        )
                    if (
                        rng.uniform() < 0.25
                        and along - last_parked > 9.0  # trucks are 8 m
                        and not _near_intersection(along, ROAD_HALF + 8.0)
                    ):
                        last_parked = along
                        curb = side * (ROAD_HALF - 1.3)
                        parked.append((_place(axis, line, curb, along, 0.0), yaw))
    return trunks, crowns, poles, parked


def _buildings(rng, lo_2, hi_2) -> tuple[list, list, list]:
    """Buildings on 2x2 lots per block; empty lots become small parks with trees."""
    boxes, trunks, crowns = [], [], []
    inner = ROAD_HALF + SIDEWALK + 1.0
    lot = (BLOCK - 2 * inner) / 2
    for bx in np.arange(np.floor(lo_2[0] / BLOCK), hi_2[0] / BLOCK):
        for by in np.arange(np.floor(lo_2[1] / BLOCK), hi_2[1] / BLOCK):
            for lx in range(2):
                for ly in range(2):
                    x0 = bx * BLOCK + inner + lx * lot
                    y0 = by * BLOCK + inner + ly * lot
                    if rng.uniform() < 0.15:
                        for _ in range(rng.integers(1, 4)):
                            cx, cy = x0 + rng.uniform(3, lot - 3), y0 + rng.uniform(3, lot - 3)
                            r = rng.uniform(1.8, 3.0)
                            trunks.append([cx, cy, 1.5, 0.25, 0.25, 1.5, 0.0, 0.3, 0.22, 0.12])
                            crowns.append([cx, cy, 3.0 + 0.8 * r, r, r, r, 0.0, 0.15, 0.4, 0.12])
                        continue
                    s0, s1 = rng.uniform(0.3, 3.0, 2), rng.uniform(0.3, 3.0, 2)
                    h = rng.uniform(4.0, 26.0)
                    colour = _FACADE_COLOURS[rng.integers(len(_FACADE_COLOURS))]
                    colour = np.clip(colour * rng.uniform(0.85, 1.15, 3), 0, 1)
                    sx, sy = lot - s0[0] - s1[0], lot - s0[1] - s1[1]
                    boxes.append(
                        [
                            x0 + s0[0] + sx / 2,
                            y0 + s0[1] + sy / 2,
                            h / 2,
                            sx / 2,
                            sy / 2,
                            h / 2,
                            0.0,
                            *colour,
                        ]
                    )
    return boxes, trunks, crowns


def _vehicle_rows(rng, parked: list, moving: list) -> Vehicles:
    """Vehicle arrays from (position, yaw[, speed]) slots; about one in eight is a truck."""
    rows = []
    for (p, yaw), speed in [(s, 0.0) for s in parked] + moving:
        truck = rng.uniform() < 0.12
        half = (
            [4.0, 1.25, 1.6]
            if truck
            else [rng.uniform(2.1, 2.5), rng.uniform(0.9, 1.0), rng.uniform(0.75, 0.95)]
        )
        colour = _CAR_COLOURS[rng.integers(len(_CAR_COLOURS))] * rng.uniform(0.9, 1.1)
        rows.append([p[0], p[1], half[2], *half, yaw, speed, *np.clip(colour, 0, 1), float(truck)])
    a = np.array(rows, dtype=np.float64).reshape(-1, 12)
    velocity = np.stack([a[:, 7] * np.cos(a[:, 6]), a[:, 7] * np.sin(a[:, 6]), 0 * a[:, 7]], axis=1)
    return Vehicles(
        a[:, 0:3], velocity, a[:, 3:6], a[:, 6], a[:, 8:11], a[:, 11] > 0, np.arange(len(a))
    )


def _moving_slots(rng, ego_xy_m2: np.ndarray, duration: float, lo_2, hi_2, count: int) -> list:
    """Vehicles driving straight along lane centres (oncoming and crossing traffic too);
    rejected if they would ever overlap the ego (within 7 m along and 2.6 m across them)."""
    slots = []
    times_m = np.linspace(0.0, duration, len(ego_xy_m2))
    for _ in range(count * 20):
        if len(slots) == count:
            break
        axis = rng.integers(2)
        heading = rng.integers(2) * 2 + (1 - axis)  # roads along y drive +-y, along x drive +-x
        d = _DIRS[heading]
        line = BLOCK * rng.integers(np.ceil(lo_2[axis] / BLOCK), np.floor(hi_2[axis] / BLOCK) + 1)
        p = np.zeros(2)
        p[axis] = line + LANE_OFFSET * (d[1] if axis == 0 else -d[0])
        p[1 - axis] = rng.uniform(lo_2[1 - axis], hi_2[1 - axis])
        speed = rng.uniform(4.0, 9.0)
        rel_m2 = ego_xy_m2 - (p + times_m[:, None] * speed * d)
        along_m, across_m = rel_m2 @ d, rel_m2 @ np.array([-d[1], d[0]])
        if np.any((np.abs(along_m) < 7.0) & (np.abs(across_m) < 2.6)):
            continue
        slots.append(((p, np.arctan2(d[1], d[0])), speed))
    return slots


def build_world(seed: int, duration: float, moving_vehicles: int = 8) -> World:
    """The world of one scene lasting `duration` seconds, fully determined by `seed`."""
    rng = np.random.default_rng(seed)
    corners_k2, headings_l = _route_corners(rng, EGO_SPEED * duration + 5.0)
    s_n, xy_n2, yaw_n = _dense_route(corners_k2, headings_l)
    s_n = s_n[s_n <= EGO_SPEED * duration + 5.0]
    xy_n2, yaw_n = xy_n2[: len(s_n)], yaw_n[: len(s_n)]
    margin = ACTIVE_RADIUS + 20.0
    shift = BLOCK * np.ceil((margin - xy_n2.min(axis=0)) / BLOCK)  # keeps the road grid aligned
    xy_n2 = xy_n2 + shift
    lo_2, hi_2 = xy_n2.min(axis=0) - margin, xy_n2.max(axis=0) + margin
    trunks, crowns, poles, parked = _street_furniture(rng, lo_2, hi_2)
    boxes, park_trunks, park_crowns = _buildings(rng, lo_2, hi_2)
    times_m = np.linspace(0.0, duration, max(2, int(duration * 10)))
    ego_xy_m2 = np.stack([np.interp(EGO_SPEED * times_m, s_n, xy_n2[:, k]) for k in range(2)], 1)
    # Traffic starts within 40 m of the route so that most of it is in view.
    moving = _moving_slots(
        rng,
        ego_xy_m2,
        duration,
        xy_n2.min(axis=0) - 40.0,
        xy_n2.max(axis=0) + 40.0,
        moving_vehicles,
    )
    vehicles = _vehicle_rows(rng, parked, moving)
    # Vehicle idents are 0..V-1, the rest follow: a hit's ident names the annotated vehicle.
    parts, ident = [], len(vehicles.yaw_v)
    for kind, material, rows in [
        (KIND_BOX, MAT_BUILDING, boxes),
        (KIND_CYLINDER, MAT_TRUNK, trunks + park_trunks),
        (KIND_SPHERE, MAT_FOLIAGE, crowns + park_crowns),
        (KIND_CYLINDER, MAT_POLE, poles),
    ]:
        parts.append(_prims(kind, material, rows, ident))
        ident += len(rows)
    extent = (float(hi_2[0]), float(hi_2[1]))  # lo_2 >= 0: the map starts at global (0, 0)
    return World(s_n, xy_n2, yaw_n, Primitives.concat(parts), vehicles, extent)
