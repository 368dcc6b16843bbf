"""Procedural surface colours (albedo) and shading.

Every texture is a function of the hit point's world coordinates (and its primitive), so a
surface point has the same albedo in every camera; shading is Lambertian with a fixed sun, so it
does not depend on the viewer either. Only the sky depends on the view direction.
"""

import numpy as np

from data_prep.synth.world import (
    BLOCK,
    MAT_BUILDING,
    MAT_FOLIAGE,
    MAT_GROUND,
    MAT_POLE,
    MAT_TRUNK,
    MAT_VEHICLE,
    ROAD_HALF,
    SIDEWALK,
    Primitives,
)

SUN_3 = np.array([0.35, -0.45, 0.82]) / np.linalg.norm([0.35, -0.45, 0.82])
_AMBIENT = 0.5
_SKY_HORIZON, _SKY_ZENITH = np.array([0.78, 0.84, 0.92]), np.array([0.33, 0.52, 0.83])
_WINDOW = np.array([0.18, 0.22, 0.3])
_MARKING = np.array([0.92, 0.92, 0.88])


def hash_noise(*cells: np.ndarray) -> np.ndarray:
    """Deterministic pseudo-random value in [0, 1) per integer lattice cell."""
    weights = (12.9898, 78.233, 37.719)
    phase = sum(w * c for w, c in zip(weights, cells))
    return np.modf(np.abs(np.sin(phase) * 43758.5453))[0]


def _road_distance(v: np.ndarray) -> np.ndarray:
    """Distance to the nearest road centre line along one axis."""
    return np.abs((v + BLOCK / 2) % BLOCK - BLOCK / 2)


def _asphalt(x, y, dx, dy) -> np.ndarray:
    grey = 0.26 + 0.06 * hash_noise(np.floor(x * 2), np.floor(y * 2))
    grey += 0.03 * hash_noise(np.floor(x * 7), np.floor(y * 7))
    out_r3 = np.repeat(grey[:, None], 3, axis=1)
    marking = np.zeros(len(x), dtype=bool)
    for across, along, coord, across_coord in ((dx, dy, y, x), (dy, dx, x, y)):
        between = along > ROAD_HALF  # outside the intersection square
        marking |= between & (across < 0.12) & (coord % 6.0 < 3.0)  # dashed centre line
        marking |= between & (np.abs(across - (ROAD_HALF - 0.4)) < 0.1)  # solid edge lines
        crossing = (along > ROAD_HALF + 0.5) & (along < ROAD_HALF + 3.5) & (across < ROAD_HALF)
        marking |= crossing & (across_coord % 1.2 < 0.6)  # zebra stripes across the road
    out_r3[marking] = _MARKING
    return out_r3


def _ground(p_r3: np.ndarray) -> np.ndarray:
    """Asphalt with markings, a curb and 1 m sidewalk tiles, lawn inside the blocks."""
    x, y = p_r3[:, 0], p_r3[:, 1]
    dx, dy = _road_distance(x), _road_distance(y)  # dx: to a road running along y
    d = np.minimum(dx, dy)
    out_r3 = np.empty_like(p_r3)
    road = d < ROAD_HALF
    out_r3[road] = _asphalt(x[road], y[road], dx[road], dy[road])
    walk = ~road & (d < ROAD_HALF + SIDEWALK)
    xw, yw = x[walk], y[walk]
    tile = (np.floor(xw) + np.floor(yw)) % 2
    grey = (0.55 + 0.07 * tile + 0.06 * hash_noise(np.floor(xw), np.floor(yw)))[:, None]
    curb = (d[walk] < ROAD_HALF + 0.25)[:, None]
    out_r3[walk] = np.where(curb, 0.75, grey * np.array([1.0, 0.97, 0.92]))
    lawn = d >= ROAD_HALF + SIDEWALK
    grass = 0.75 + 0.5 * hash_noise(np.floor(x[lawn] * 1.5), np.floor(y[lawn] * 1.5))
    out_r3[lawn] = grass[:, None] * np.array([0.25, 0.42, 0.17])
    return out_r3


def _building(p_r3, n_r3, base_r3) -> np.ndarray:
    # Buildings are axis aligned: the facade's horizontal coordinate is y on x-facing walls.
    u = np.where(np.abs(n_r3[:, 0]) > 0.5, p_r3[:, 1], p_r3[:, 0])
    z = p_r3[:, 2]
    storey, bay = np.floor(z / 3.2), np.floor(u / 2.8)
    window = (z % 3.2 > 0.9) & (z % 3.2 < 2.4) & (u % 2.8 > 0.6) & (u % 2.8 < 2.2)
    wall_r3 = base_r3 * (0.88 + 0.24 * hash_noise(np.floor(u), np.floor(z)))[:, None]
    glass_r3 = _WINDOW * (0.7 + 0.8 * hash_noise(storey, bay))[:, None]
    out_r3 = np.where(window[:, None], glass_r3, wall_r3)
    roof = n_r3[:, 2] > 0.5
    roof_noise = hash_noise(np.floor(p_r3[roof, 0]), np.floor(p_r3[roof, 1]))
    out_r3[roof] = 0.4 * (0.8 + 0.4 * roof_noise)[:, None]
    return out_r3


def _vehicle(p_r3, n_r3, index_r, prims: Primitives) -> np.ndarray:
    center_r3, half_r3 = prims.center_p3[index_r], prims.half_p3[index_r]
    yaw_r = prims.yaw_p[index_r]
    rel_z = (p_r3[:, 2] - (center_r3[:, 2] - half_r3[:, 2])) / (2 * half_r3[:, 2])
    along = (
        np.cos(yaw_r) * (p_r3[:, 0] - center_r3[:, 0])
        + np.sin(yaw_r) * (p_r3[:, 1] - center_r3[:, 1])
    ) / half_r3[:, 0]
    side = n_r3[:, 2] < 0.5
    glass = side & (rel_z > 0.58) & (rel_z < 0.92) & (np.abs(along) < 0.75)
    tyre = side & (rel_z < 0.28)
    out_r3 = prims.colour_p3[index_r]
    out_r3[glass] = _WINDOW * 0.8
    out_r3[tyre] = 0.07
    return out_r3


def albedo(
    p_r3: np.ndarray, n_r3: np.ndarray, index_r: np.ndarray, prims: Primitives
) -> np.ndarray:
    """Surface colour in [0, 1] at hit points; index_r is the hit primitive (< 0: ground)."""
    out_r3 = np.empty_like(p_r3)
    material_r = np.full(len(index_r), MAT_GROUND)
    on_prim = index_r >= 0
    material_r[on_prim] = prims.material_p[index_r[on_prim]]
    colour = lambda m: prims.colour_p3[index_r[m]]
    for material, fn in (
        (MAT_GROUND, lambda m: _ground(p_r3[m])),
        (MAT_BUILDING, lambda m: _building(p_r3[m], n_r3[m], colour(m))),
        (MAT_VEHICLE, lambda m: _vehicle(p_r3[m], n_r3[m], index_r[m], prims)),
        # Blotches of a material-specific size for bark, leaves and metal.
        (MAT_TRUNK, lambda m: _blotches(p_r3[m], colour(m), 5.0)),
        (MAT_FOLIAGE, lambda m: _blotches(p_r3[m], colour(m), 1.6)),
        (MAT_POLE, lambda m: _blotches(p_r3[m], colour(m), 3.0)),
    ):
        m = material_r == material
        if m.any():
            out_r3[m] = fn(m)
    return out_r3


def _blotches(p_r3: np.ndarray, colour_r3: np.ndarray, cells_per_m: float) -> np.ndarray:
    return colour_r3 * (0.6 + 0.8 * hash_noise(*np.floor(p_r3 * cells_per_m).T))[:, None]


def shade(albedo_r3: np.ndarray, n_r3: np.ndarray) -> np.ndarray:
    """Lambertian shading with ambient light; view independent."""
    diffuse_r = np.clip(n_r3 @ SUN_3, 0.0, None)
    return np.clip(albedo_r3 * (_AMBIENT + (1.0 - _AMBIENT) * diffuse_r)[:, None], 0.0, 1.0)


def sky(dirs_r3: np.ndarray) -> np.ndarray:
    """Sky gradient from the horizon to the zenith by the ray's elevation."""
    up_r = np.clip(dirs_r3[:, 2] / np.linalg.norm(dirs_r3, axis=1), 0.0, 1.0) ** 0.6
    return _SKY_HORIZON + up_r[:, None] * (_SKY_ZENITH - _SKY_HORIZON)
