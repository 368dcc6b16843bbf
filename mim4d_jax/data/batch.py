"""The one batch spec: keys, shapes and dtypes of a global batch (table in
docs/architecture.md), and its sharding. The input pipeline, `abstract_batch` (dry run,
ahead-of-time compilation, benchmarks) and the test fixtures all read it from here."""

from __future__ import annotations

import jax
import ml_collections
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from mim4d_jax.data import pairs

# Mesh axes the leading (batch) dim is split over; the rest of every array is replicated.
BATCH_AXES = ("data", "fsdp")
NUM_TARGETS = 2  # rendered target frames per sample: [0, k]


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading dim split over the mesh's batch axes (those it has), the rest replicated."""
    axes = tuple(a for a in BATCH_AXES if a in mesh.axis_names)
    return NamedSharding(mesh, PartitionSpec(axes))


def example_spec(config: ml_collections.ConfigDict) -> dict[str, tuple[tuple[int, ...], type]]:
    """{key: (shape without the batch dim, dtype)} of one example after device normalisation."""
    d = config.data
    n, t = len(d.cameras), int(d.frames)
    wp, hp = (int(v) for v in d.pad_size)
    p = int(d.mask_patch)
    rays = n * int(d.num_rays)
    spec = {
        "images": ((n, t, hp, wp, 3), np.float32),
        "patch_keep": ((n, t, hp // p, wp // p), np.float32),
        "lidar2img": ((n, t, 4, 4), np.float32),
        "vol2ref": ((t, 4, 4), np.float32),
        "target_frames": ((NUM_TARGETS,), np.int32),
        "ray_origin": ((NUM_TARGETS, rays, 3), np.float32),
        "ray_dir": ((NUM_TARGETS, rays, 3), np.float32),
        "ray_rgb": ((NUM_TARGETS, rays, 3), np.float32),
        "ray_depth": ((NUM_TARGETS, rays), np.float32),
        "temporal_valid": ((), np.float32),
    }
    if d.get("bev_targets", False):
        spec["bev_target"] = (tuple(int(v) for v in d.bev_hw), np.float32)
    # View / point pairs of the objectives whose weight is > 0 (none by default).
    spec.update(pairs.pair_spec(config))
    return spec


def abstract_batch(
    config: ml_collections.ConfigDict,
    sharding: NamedSharding | None = None,
    batch_size: int | None = None,
) -> dict[str, jax.ShapeDtypeStruct]:
    """ShapeDtypeStructs of one global batch of `batch_size` (default `config.batch_size`)."""
    b = int(config.batch_size if batch_size is None else batch_size)
    return {
        key: jax.ShapeDtypeStruct((b, *shape), dtype, sharding=sharding)
        for key, (shape, dtype) in example_spec(config).items()
    }
