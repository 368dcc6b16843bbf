"""Dry run: lower and compile the full train step on abstract inputs, report its cost.

No data, no parameters in memory and no accelerator: the model is built with
`nnx.eval_shape`, the batch is ShapeDtypeStructs from the config (docs/architecture.md), and
the compiled executable's cost and memory analyses give FLOPs and peak memory per device for
the config's mesh (fake CPU devices stand in for the real ones).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import jax
import ml_collections
from absl import logging

from mim4d_jax.data.batch import abstract_batch, batch_sharding
from mim4d_jax.training import mesh as mesh_lib
from mim4d_jax.training import step as step_lib


def lower_step(
    config: ml_collections.ConfigDict,
    devices: Sequence[jax.Device] | None = None,
    model_factory: step_lib.ModelFactory | None = None,
    loss_fn: step_lib.LossFn | None = None,
    batch: dict | None = None,
) -> tuple[Any, step_lib.TrainFns, jax.sharding.Mesh]:
    """(lowered step, train fns, mesh): the trainer's own jitted step, lowered for the abstract
    state and `batch` (default: the abstract batch of the batch spec)."""
    mesh = mesh_lib.make_mesh(config.mesh, devices)
    with jax.set_mesh(mesh):
        fns = step_lib.make_train_fns(config, mesh, model_factory, loss_fn)
        if batch is None:
            batch = abstract_batch(config, batch_sharding(mesh))
        lowered = fns.train_step.lower(fns.abstract_state, batch)
    return lowered, fns, mesh


def compile_step(
    config: ml_collections.ConfigDict,
    devices: Sequence[jax.Device] | None = None,
    model_factory: step_lib.ModelFactory | None = None,
    loss_fn: step_lib.LossFn | None = None,
) -> tuple[Any, step_lib.TrainFns, jax.sharding.Mesh, float]:
    """(compiled step, train fns, mesh, compile seconds) for `config` on abstract inputs."""
    lowered, fns, mesh = lower_step(config, devices, model_factory, loss_fn)
    start = time.perf_counter()
    with jax.set_mesh(mesh):
        compiled = lowered.compile()
    return compiled, fns, mesh, time.perf_counter() - start


def step_flops(compiled: Any) -> float:
    """FLOPs of one step of the per-device (SPMD-partitioned) program; -1 if unknown."""
    analysis = compiled.cost_analysis()
    if isinstance(analysis, (list, tuple)):  # older jax returned one dict per program
        analysis = analysis[0] if analysis else {}
    return float((analysis or {}).get("flops", -1.0))


def peak_memory_bytes(compiled: Any) -> dict[str, int]:
    """Per-device memory of the compiled step: arguments + outputs - donated aliases + temps."""
    mem = compiled.memory_analysis()
    if mem is None:
        return {}
    parts = {
        "argument_bytes": int(mem.argument_size_in_bytes),
        "output_bytes": int(mem.output_size_in_bytes),
        "alias_bytes": int(mem.alias_size_in_bytes),
        "temp_bytes": int(mem.temp_size_in_bytes),
    }
    parts["peak_bytes"] = (
        parts["argument_bytes"] + parts["output_bytes"] - parts["alias_bytes"] + parts["temp_bytes"]
    )
    return parts


def run(
    config: ml_collections.ConfigDict,
    devices: Sequence[jax.Device] | None = None,
    model_factory: step_lib.ModelFactory | None = None,
    loss_fn: step_lib.LossFn | None = None,
) -> dict[str, Any]:
    """Compiles the step, logs a human summary and returns the report (the CLI's JSON line)."""
    compiled, fns, mesh, seconds = compile_step(config, devices, model_factory, loss_fn)
    flops = step_flops(compiled)
    memory = peak_memory_bytes(compiled)
    total_params = sum(fns.param_counts.values())
    num_devices = mesh.devices.size
    for name, count in fns.param_counts.items():
        logging.info("params %-20s %14s", name, f"{count:,}")
    logging.info("params %-20s %14s", "total", f"{total_params:,}")
    logging.info(
        "mesh %s, batch %d: %.3g FLOPs/step/device, peak %.2f GiB/device, compiled in %.1f s",
        dict(mesh.shape),
        config.batch_size,
        flops,
        memory.get("peak_bytes", 0) / 2**30,
        seconds,
    )
    return {
        "mesh": dict(mesh.shape),
        "batch_size": int(config.batch_size),
        "num_devices": int(num_devices),
        "param_counts": fns.param_counts,
        "total_params": total_params,
        "flops_per_step_per_device": flops,
        "flops_per_step": flops * num_devices if flops > 0 else flops,
        **{f"{k}_per_device": v for k, v in memory.items()},
        "compile_seconds": round(seconds, 2),
    }
