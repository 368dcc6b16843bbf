r"""Train-step time and model FLOP utilisation (MFU) of the full config.

  python benchmarks/step_bench.py [--config configs/mim4d_vs01.py] [--steps 10] [--config.k=v]

On an accelerator it runs the given config (default: the full vs0.1 config, one sample per
device) and reports MFU = cost-analysis FLOPs per device per step / step time / peak bf16
dense FLOP/s of the device. On a CPU it runs configs/mim4d_tiny.py and reports no MFU.
The last line printed is a JSON object.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags, logging
from ml_collections import config_flags

from mim4d_jax.data.batch import abstract_batch, batch_sharding
from mim4d_jax.training import dry_run

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "config file (default: by platform)", lock_config=True
)
_STEPS = flags.DEFINE_integer("steps", 10, "timed steps (after two warm-up steps)")

# Peak dense bf16 FLOP/s per device (vendor data sheets, no sparsity), by device_kind substring.
PEAK_BF16_FLOPS = (
    ("H200", 989e12),
    ("H100 PCIe", 756e12),
    ("H100", 989e12),  # SXM / HBM3
    ("A100", 312e12),
    ("TPU v5p", 459e12),
    ("TPU v5 lite", 197e12),
    ("TPU v4", 275e12),
)


def peak_flops(device: jax.Device) -> float | None:
    kind = device.device_kind
    return next((peak for name, peak in PEAK_BF16_FLOPS if name in kind), None)


def random_batch(config, sharding: jax.sharding.NamedSharding) -> dict[str, jax.Array]:
    """A batch with valid value ranges (unit ray directions, exact-count masks, targets [0, 1])."""
    rng = np.random.default_rng(0)
    shapes = abstract_batch(config)
    batch = {k: rng.normal(size=s.shape).astype(s.dtype) for k, s in shapes.items()}
    batch["patch_keep"] = (
        rng.uniform(size=shapes["patch_keep"].shape) > config.data.mask_ratio
    ).astype(np.float32)
    batch["target_frames"] = np.tile(np.array([0, 1], np.int32), (config.batch_size, 1))
    batch["ray_dir"] /= np.linalg.norm(batch["ray_dir"], axis=-1, keepdims=True)
    batch["ray_rgb"] = rng.uniform(size=shapes["ray_rgb"].shape).astype(np.float32)
    batch["ray_depth"] = rng.uniform(3.0, 40.0, size=shapes["ray_depth"].shape).astype(np.float32)
    batch["temporal_valid"] = np.ones(shapes["temporal_valid"].shape, np.float32)
    eye = np.eye(4, dtype=np.float32)
    batch["lidar2img"] = np.broadcast_to(eye, shapes["lidar2img"].shape).copy()
    batch["vol2ref"] = np.broadcast_to(eye, shapes["vol2ref"].shape).copy()
    return {
        k: jax.make_array_from_callback(v.shape, sharding, lambda i, v=v: v[i])
        for k, v in batch.items()
    }


def main(argv: Sequence[str]) -> None:
    del argv
    device = jax.devices()[0]
    on_cpu = device.platform == "cpu"
    config = _CONFIG.value
    if config is None:
        from mim4d_jax.training.config_files import load_config

        config = load_config("configs/mim4d_tiny.py" if on_cpu else "configs/mim4d_vs01.py")
        if not on_cpu:
            config.unlock()
            config.batch_size = jax.device_count()  # one sample per device, like the reference
            config.lock()

    compiled, fns, mesh, compile_s = dry_run.compile_step(config)
    flops = dry_run.step_flops(compiled)
    with jax.set_mesh(mesh):
        state = fns.init_state(*fns.init_params())
        batch = random_batch(config, batch_sharding(mesh))
        for _ in range(2):  # warm-up: first-call dispatch and allocator growth
            state, metrics = compiled(state, batch)
        jax.block_until_ready(metrics)
        start = time.perf_counter()
        for _ in range(_STEPS.value):
            state, metrics = compiled(state, batch)
        jax.block_until_ready(metrics)
        step_s = (time.perf_counter() - start) / _STEPS.value

    peak = None if on_cpu else peak_flops(device)
    report = {
        "device": device.device_kind,
        "num_devices": jax.device_count(),
        "mesh": dict(mesh.shape),
        "batch_size": int(config.batch_size),
        "step_seconds": step_s,
        "steps_per_second": 1.0 / step_s,
        "flops_per_step_per_device": flops,
        "achieved_flops_per_device": flops / step_s if flops > 0 else None,
        "peak_bf16_flops_per_device": peak,
        "mfu": flops / step_s / peak if peak and flops > 0 else None,
        "compile_seconds": compile_s,
        "peak_memory_bytes_per_device": dry_run.peak_memory_bytes(compiled).get("peak_bytes"),
        "loss": float(jnp.asarray(metrics["loss"])),
    }
    logging.info("step %.4f s, MFU %s", step_s, report["mfu"])
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    app.run(main)
