"""Multi-process start-up, the device mesh and the shardings derived from it.

The mesh has three axes, always in this order: `data` (pure data parallel), `fsdp` (data
parallel with parameters sharded) and `tensor` (parameter dims sharded, activations
replicated over it). Batches are split over ('data', 'fsdp'); parameters follow their
logical axis names through `config.sharding_rules`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence

import jax
from absl import logging
from flax import nnx
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

MESH_AXES = ("data", "fsdp", "tensor")


def multiprocess_launch_detected() -> bool:
    """True when the environment says this process is one of several (SLURM or a TPU pod).

    `jax.distributed.initialize()` raises on a plain single host, so it is only called when
    a launcher set these variables (or the user passed explicit coordinator flags).
    """
    if int(os.environ.get("SLURM_NTASKS", "1")) > 1:
        return True
    hosts = os.environ.get("TPU_WORKER_HOSTNAMES", "")
    return len([h for h in hosts.split(",") if h]) > 1


def maybe_initialize_distributed(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
) -> bool:
    """Joins the JAX cluster when launched as several processes; returns whether it did."""
    if coordinator_address:
        jax.distributed.initialize(
            coordinator_address=coordinator_address,
            num_processes=num_processes,
            process_id=process_id,
        )
    elif multiprocess_launch_detected():
        jax.distributed.initialize()  # auto-detects SLURM / TPU pod settings
    else:
        return False
    logging.info(
        "distributed: process %d of %d, %d local / %d global devices",
        jax.process_index(),
        jax.process_count(),
        jax.local_device_count(),
        jax.device_count(),
    )
    return True


def resolve_mesh_shape(axis_sizes: Mapping[str, int], num_devices: int) -> tuple[int, ...]:
    """Replaces at most one -1 by the remaining devices; the product must be `num_devices`."""
    unknown = [name for name in MESH_AXES if axis_sizes[name] == -1]
    if len(unknown) > 1:
        raise ValueError(f"mesh: at most one axis may be -1, got {dict(axis_sizes)}")
    known = math.prod(axis_sizes[name] for name in MESH_AXES if axis_sizes[name] != -1)
    if unknown:
        if known <= 0 or num_devices % known:
            raise ValueError(f"mesh {dict(axis_sizes)} does not divide {num_devices} devices")
        sizes = {**axis_sizes, unknown[0]: num_devices // known}
    else:
        sizes = dict(axis_sizes)
    shape = tuple(int(sizes[name]) for name in MESH_AXES)
    if math.prod(shape) != num_devices:
        raise ValueError(
            f"mesh {dict(zip(MESH_AXES, shape, strict=True))} needs {math.prod(shape)} devices, "
            f"have {num_devices}"
        )
    return shape


def make_mesh(axis_sizes: Mapping[str, int], devices: Sequence[jax.Device] | None = None) -> Mesh:
    """The (data, fsdp, tensor) mesh over `devices` (default: all global devices)."""
    devices = list(devices) if devices is not None else jax.devices()
    shape = resolve_mesh_shape(axis_sizes, len(devices))
    # Auto axes: the compiler propagates shardings (explicit mode would demand annotations
    # on every ambiguous matmul of the model).
    return jax.make_mesh(
        shape, MESH_AXES, axis_types=(AxisType.Auto,) * len(MESH_AXES), devices=devices
    )


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def _fit(spec: PartitionSpec, shape: tuple[int, ...], mesh: Mesh) -> PartitionSpec:
    """Makes a logical spec valid for `shape`: a dim stays replicated when its mesh axes do
    not divide it (e.g. the 3 RGB input channels of the stem over fsdp=2) or were already
    used by an earlier dim (a square (embed, embed) kernel maps fsdp twice)."""
    entries, used = [], set()
    for dim, entry in zip(shape, tuple(spec) + (None,) * (len(shape) - len(spec))):
        axes = (entry,) if isinstance(entry, str) else tuple(entry or ())
        ways = math.prod(mesh.shape[a] for a in axes)
        ok = bool(axes) and dim % ways == 0 and not used.intersection(axes)
        entries.append(entry if ok else None)
        used.update(axes if ok else ())
    return PartitionSpec(*entries)


def state_shardings(state: nnx.State, mesh: Mesh, rules: Sequence[tuple]) -> nnx.State:
    """NamedShardings for an (abstract) NNX state from its logical-axis metadata and `rules`."""
    with nnx.logical_axis_rules(tuple(rules)):
        specs = nnx.get_partition_spec(state)
    is_spec = lambda x: isinstance(x, PartitionSpec) or x is None  # noqa: E731
    return jax.tree.map(
        lambda spec, leaf: NamedSharding(mesh, _fit(spec or PartitionSpec(), leaf.shape, mesh)),
        specs,
        state,
        is_leaf=is_spec,
    )
