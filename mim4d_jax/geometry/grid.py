"""The voxel grid shared by the lift, the renderer and the ego-motion warp.

Convention (docs/architecture.md): voxel (k, j, i) = (z, y, x) has its CENTRE at
`(x0 + (i + 0.5) vx, y0 + (j + 0.5) vy, z0 + (k + 0.5) vz)`; the continuous index of a metric
point is `i = (p_x - x0) / vx - 0.5`, so integer indices land exactly on centres.
"""

import dataclasses
from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True)
class VoxelGrid:
    """Axis-aligned grid over `pc_range = (x0, y0, z0, x1, y1, z1)`, `voxel_size = (vx, vy, vz)`.

    Hashable (tuples only), so it can be a static jit argument.
    """

    pc_range: tuple[float, float, float, float, float, float]
    voxel_size: tuple[float, float, float]

    @classmethod
    def from_config(cls, pc_range: Sequence[float], voxel_size: Sequence[float]) -> "VoxelGrid":
        if len(pc_range) != 6 or len(voxel_size) != 3:
            raise ValueError(
                f"pc_range needs 6 values and voxel_size 3, got {pc_range}, {voxel_size}"
            )
        grid = cls(tuple(float(v) for v in pc_range), tuple(float(v) for v in voxel_size))
        _ = grid.shape_zyx  # validate divisibility now, not at first use
        return grid

    @property
    def lower_xyz(self) -> tuple[float, float, float]:
        return self.pc_range[:3]

    @property
    def shape_xyz(self) -> tuple[int, int, int]:
        sizes = []
        for axis in range(3):
            extent = (self.pc_range[axis + 3] - self.pc_range[axis]) / self.voxel_size[axis]
            count = int(round(extent))
            # A range that is not a whole number of voxels would make centres ambiguous.
            if count <= 0 or abs(extent - count) > 1e-4:
                raise ValueError(
                    f"pc_range {self.pc_range} is not a positive whole number of voxels "
                    f"{self.voxel_size} along axis {'xyz'[axis]}"
                )
            sizes.append(count)
        return sizes[0], sizes[1], sizes[2]

    @property
    def shape_zyx(self) -> tuple[int, int, int]:
        nx, ny, nz = self.shape_xyz
        return nz, ny, nx

    @property
    def scene_scale(self) -> float:
        """Renderer normalisation `1 / max(|pc_range|)`."""
        return 1.0 / max(abs(v) for v in self.pc_range)

    def centres_zyx3(self) -> np.ndarray:
        """(Z, Y, X, 3) float32 metric centres; the last axis is (x, y, z) in metres."""
        nz, ny, nx = self.shape_zyx
        x0, y0, z0 = self.lower_xyz
        vx, vy, vz = self.voxel_size
        xs = x0 + (np.arange(nx, dtype=np.float64) + 0.5) * vx
        ys = y0 + (np.arange(ny, dtype=np.float64) + 0.5) * vy
        zs = z0 + (np.arange(nz, dtype=np.float64) + 0.5) * vz
        zz, yy, xx = np.meshgrid(zs, ys, xs, indexing="ij")
        return np.stack([xx, yy, zz], axis=-1).astype(np.float32)

    def metric_to_index(self, p_xyz: jnp.ndarray) -> jnp.ndarray:
        """Metric points (..., 3) as (x, y, z) -> continuous indices (..., 3) as (i, j, k),
        i.e. still x-first; reverse the last axis to index a (Z, Y, X) volume."""
        lower = jnp.asarray(self.lower_xyz, dtype=jnp.float32)
        size = jnp.asarray(self.voxel_size, dtype=jnp.float32)
        return (p_xyz - lower) / size - 0.5
