r"""The accelerator benchmark suite: every figure a GPU host should measure, in one run.

  bash benchmarks/device_suite.sh [--smoke] [--out DIR]          (the one command)
  python -m benchmarks.device_suite [--smoke] [--out DIR] [--only SECTION ...]

Each section runs in its own process with its own time limit (an out-of-memory error or a hang
in one cannot take the others down, and PyTorch gets the device to itself; `--smoke` runs all
but PyTorch's in one process, `--isolate` forces processes), writes `<out>/<section>.json`,
and the parent merges them into `<out>/summary.json`, printed as the last line. Sections:

  matmul    the measured bf16 matmul peak of this device (a chain of big square matmuls)
  step      the train step of `make_train_fns` at 1, 2, 4 samples per device (until out of
            memory): compile time, step time (median), samples/s, peak memory, MFU; then a
            jax.profiler trace of a few steps at 1 sample per device and its top ops
  renderer  rays/s of `Renderer.render_rays`, forward and forward+backward, on one volume
  backbone  backbone + FPN forward+backward in JAX (masked as in training, and unmasked)
  torch     the same backbone + FPN in PyTorch eager with fp16 autocast (interop/torch_ref)

Inputs are synthetic with the exact shapes of the batch spec (`mim4d_jax.data.batch`) and
valid value ranges. MFU = analytic matmul/conv FLOPs of the step (benchmarks/flops.py:
forward + backward, no recomputation) / step time / the measured matmul peak of the same run
(also given against the vendor's data-sheet peak). `--smoke` runs the same code on a CPU with
configs/mim4d_tiny.py:test and small sizes; compilation dominates it (about a minute per
compiled step variant on a busy 2-core CPU).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

# In the order they run: the step (the MFU figure) right after the peak it is measured
# against, so a run cut short still has the headline numbers.
SECTIONS = ("matmul", "step", "renderer", "backbone", "torch")
FULL_CONFIG = "configs/mim4d_vs01.py"
SMOKE_CONFIG = "configs/mim4d_tiny.py:test"
# Wall-clock shares per section (seconds), start-up included. The full run's add up to its
# 470 s budget (a GPU session has 8 minutes for the suite); time a section leaves unused
# passes on to the next, and the step section skips larger batches when its share runs out.
FULL_TIMEOUTS = {"matmul": 45, "step": 240, "renderer": 60, "backbone": 75, "torch": 50}
SMOKE_TIMEOUTS = {"matmul": 120, "step": 1200, "renderer": 300, "backbone": 300, "torch": 300}


# ---------------------------------------------------------------------------------------------
# Shared helpers (run inside a section process).


def load(smoke: bool):
    from mim4d_jax.training.config_files import load_config

    # init.backbone only matters to the trainer's start-up; benchmarks use random weights.
    return load_config(SMOKE_CONFIG if smoke else FULL_CONFIG, ["init.backbone=none"])


def timed(fn: Callable[[], Any], steps: int, warmup: int, sync: Callable[[Any], Any]) -> dict:
    """Median and spread of `steps` timed calls after `warmup` calls; `sync` blocks on a
    result so each call is timed to completion."""
    for _ in range(warmup):
        sync(fn())
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        sync(fn())
        times.append(time.perf_counter() - start)
    return {
        "median_s": statistics.median(times),
        "min_s": min(times),
        "max_s": max(times),
        "runs": steps,
    }


def is_oom(err: BaseException) -> bool:
    text = f"{type(err).__name__} {err}"
    return any(s in text for s in ("RESOURCE_EXHAUSTED", "Out of memory", "out of memory", "OOM"))


def device_info() -> dict:
    import jax

    dev = jax.devices()[0]
    return {
        "platform": dev.platform,
        "device_kind": dev.device_kind,
        "num_devices": jax.device_count(),
        "jax": jax.__version__,
    }


def peak_bytes_in_use() -> int | None:
    """The allocator's high-water mark on device 0 (None where the backend keeps none)."""
    import jax

    stats = jax.devices()[0].memory_stats() or {}
    value = stats.get("peak_bytes_in_use")
    return int(value) if value is not None else None


def random_batch(config, batch_size: int, sharding=None) -> dict:
    """A batch of the spec's shapes with valid ranges: identity camera geometry, exact
    keep-mask fraction, unit ray directions from the volume centre, depths inside the box."""
    import jax
    import numpy as np

    from mim4d_jax.data.batch import abstract_batch

    rng = np.random.default_rng(0)
    shapes = abstract_batch(config, batch_size=batch_size)
    batch = {k: rng.standard_normal(s.shape, dtype=np.float32) for k, s in shapes.items()}
    keep = shapes["patch_keep"].shape
    cells = math.prod(keep[-2:])
    visible = round(cells * (1.0 - float(config.data.mask_ratio)))
    order = rng.random((*keep[:-2], cells)).argsort(-1)
    batch["patch_keep"] = (order < visible).astype(np.float32).reshape(keep)
    batch["target_frames"] = np.tile(np.array([0, 1], np.int32), (batch_size, 1))
    batch["ray_dir"] /= np.linalg.norm(batch["ray_dir"], axis=-1, keepdims=True)
    batch["ray_origin"] *= 0.5  # camera centres within a metre or so of the ego origin
    batch["ray_rgb"] = rng.uniform(size=shapes["ray_rgb"].shape).astype(np.float32)
    batch["ray_depth"] = rng.uniform(3.0, 40.0, size=shapes["ray_depth"].shape).astype(np.float32)
    batch["temporal_valid"] = np.ones(shapes["temporal_valid"].shape, np.float32)
    # Volume -> pixels: a camera looking along +y with focal length ~ half the image width.
    wp, hp = config.data.pad_size
    cam = np.array(
        [[wp / 2, wp / 2, 0, 0], [0, hp / 2, -wp / 2, 0], [0, 1, 0, 0], [0, 0, 0, 1]], np.float32
    )
    batch["lidar2img"] = np.broadcast_to(cam, shapes["lidar2img"].shape).copy()
    batch["vol2ref"] = np.broadcast_to(np.eye(4, dtype=np.float32), shapes["vol2ref"].shape).copy()
    if sharding is None:
        return {k: jax.device_put(v) for k, v in batch.items()}
    return {
        k: jax.make_array_from_callback(v.shape, sharding, lambda i, v=v: v[i])
        for k, v in batch.items()
    }


# ---------------------------------------------------------------------------------------------
# Sections. Each returns a JSON-able dict.


def section_matmul(smoke: bool) -> dict:
    """bf16 peak: a chain of n x n matmuls inside one jitted loop (each depends on the last,
    so nothing is hoisted or CSE'd), fp32 accumulation as XLA's default for bf16 dots."""
    import jax
    import jax.numpy as jnp

    from benchmarks.step_bench import peak_flops

    n, chain = (256, 4) if smoke else (8192, 50)
    key_a, key_b = jax.random.split(jax.random.key(0))
    a = jax.random.normal(key_a, (n, n), jnp.bfloat16)
    # Scaled so the chain neither overflows nor underflows (an orthogonal-ish random matrix).
    b = (jax.random.normal(key_b, (n, n), jnp.float32) / math.sqrt(n)).astype(jnp.bfloat16)

    @jax.jit
    def chain_fn(x, w):
        return jax.lax.fori_loop(0, chain, lambda _, y: jnp.dot(y, w), x)

    stats = timed(lambda: chain_fn(a, b), 5 if smoke else 10, 2, jax.block_until_ready)
    flops = 2.0 * n**3 * chain
    vendor = peak_flops(jax.devices()[0])
    return {
        "n": n,
        "chain": chain,
        "flops_per_call": flops,
        "seconds": stats,
        "measured_bf16_flops": flops / stats["median_s"],
        "vendor_peak_bf16_flops": vendor,
        "measured_over_vendor": flops / stats["median_s"] / vendor if vendor else None,
    }


def section_renderer(smoke: bool) -> dict:
    """One render_rays call: the N*R rays of one sample and target through one volume, at the
    config's samples per ray (vs0.1: 72 stratified + 24 importance), forward and
    forward+backward (gradients for the field's parameters and the volume, as in training)."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from benchmarks import flops as flops_lib
    from mim4d_jax.models.fields import SDFField
    from mim4d_jax.rendering.renderer import Renderer

    config = load(smoke)
    renderer = Renderer.from_config(config)
    field = SDFField(config.render, int(config.model.render_channels), nnx.Rngs(0))
    graphdef, params = nnx.split(field)
    rays = len(config.data.cameras) * int(config.data.num_rays)
    batch = random_batch(config, 1)
    origins, dirs = batch["ray_origin"][0, 0], batch["ray_dir"][0, 0]
    nz, ny, nx = renderer.grid.shape_zyx
    vol = jax.nn.relu(
        jax.random.normal(jax.random.key(1), (nz, ny, nx, int(config.model.render_channels)))
    )
    key = jax.random.key(2)

    @jax.jit
    def forward(params, vol):
        return renderer.render_rays(nnx.merge(graphdef, params), vol, origins, dirs, key)

    @jax.jit
    def forward_backward(params, vol):
        def loss(params, vol):
            out = renderer.render_rays(nnx.merge(graphdef, params), vol, origins, dirs, key)
            return jnp.mean(out["rgb_r3"]) + jnp.mean(out["depth_r"])

        return jax.grad(loss, argnums=(0, 1))(params, vol)

    steps = 3 if smoke else 10
    fwd = timed(lambda: forward(params, vol), steps, 1, jax.block_until_ready)
    fwd_bwd = timed(lambda: forward_backward(params, vol), steps, 1, jax.block_until_ready)
    per_render = flops_lib.renderer(config, rays).summary()
    return {
        "rays": rays,
        "samples_per_ray": [int(config.render.num_samples), int(config.render.num_importance)],
        "chunk_rays": int(config.render.chunk_rays),
        "forward": fwd,
        "forward_backward": fwd_bwd,
        "forward_rays_per_s": rays / fwd["median_s"],
        "forward_backward_rays_per_s": rays / fwd_bwd["median_s"],
        "renders_per_sample": flops_lib.RENDERS,
        "analytic_train_flops_per_render": per_render["train_hardware"],
        "achieved_flops_forward_backward": per_render["train_hardware"] / fwd_bwd["median_s"],
    }


def _encoder_inputs(config, images: int):
    import numpy as np

    wp, hp = config.data.pad_size
    patch = int(config.data.mask_patch)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(images, hp, wp, 3)).astype(np.float32)
    cells = (hp // patch) * (wp // patch)
    visible = round(cells * (1.0 - float(config.data.mask_ratio)))
    keep = (rng.random((images, cells)).argsort(-1) < visible).astype(np.float32)
    return x, keep.reshape(images, hp // patch, wp // patch)


def _encoder_loss_value(levels) -> Any:
    """A scalar touching every FPN level (what the heads would read)."""
    return sum(lvl.astype("float32").mean() for lvl in levels)


def section_backbone(smoke: bool) -> dict:
    """JAX backbone + FPN forward+backward on one sample's N*T images in the config's compute
    dtype; gradients for the trainable parameters only (frozen stages get none, as in
    training). Masked (the training path) and unmasked (like the PyTorch reference module)."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from mim4d_jax.models.convnext import MaskedConvNeXt, variant_dims
    from mim4d_jax.models.fpn import FPN
    from mim4d_jax.training.optimizer import FROZEN, param_labels

    config = load(smoke)
    m = config.model
    images = len(config.data.cameras) * int(config.data.frames)
    rngs = nnx.Rngs(0)
    # The two modules as models/mim4d.py builds them (the rest of the model is not needed).
    backbone = MaskedConvNeXt(
        m.backbone,
        drop_path_rate=float(m.drop_path_rate),
        layer_scale_init=float(m.layer_scale_init),
        frozen_stages=int(m.frozen_stages),
        compute_dtype=m.compute_dtype,
        rngs=rngs,
    )
    neck = FPN(
        variant_dims(m.backbone),
        int(m.fpn_channels),
        start_level=int(m.fpn_start_level),
        num_outs=int(m.fpn_num_outs),
        compute_dtype=m.compute_dtype,
        rngs=rngs,
    )
    encoder = nnx.List([backbone, neck])
    graphdef, params = nnx.split(encoder, nnx.Param)
    pure = nnx.to_pure_dict(params)
    frozen_stages = int(config.model.frozen_stages)
    labels = {
        0: param_labels({"img_backbone": pure[0]}, frozen_stages)["img_backbone"],
        1: jax.tree.map(lambda _: "neck", pure[1]),
    }
    x_np, keep_np = _encoder_inputs(config, images)
    x, keep = jnp.asarray(x_np), jnp.asarray(keep_np)

    def make(masked: bool):
        @jax.jit
        def step(params, x, keep):
            def loss(params):
                backbone, neck = nnx.merge(graphdef, params)
                return _encoder_loss_value(neck(backbone(x, keep if masked else None)))

            grads = nnx.to_pure_dict(jax.grad(loss)(params))
            # Only trainable gradients leave the function: XLA drops the frozen stages' backward.
            return jax.tree.map(lambda g, lab: None if lab == FROZEN else g, grads, labels)

        return step

    steps = 3 if smoke else 10
    out = {"images": images, "compute_dtype": str(config.model.compute_dtype)}
    # Unmasked first: it is the like-for-like figure against PyTorch.
    for name, masked in (("unmasked", False), ("masked", True)):
        fn = make(masked)
        start = time.perf_counter()
        jax.block_until_ready(fn(params, x, keep))
        compile_s = time.perf_counter() - start
        stats = timed(lambda fn=fn: fn(params, x, keep), steps, 1, jax.block_until_ready)
        out[name] = {"forward_backward": stats, "first_call_s": compile_s}
    out["peak_bytes_in_use"] = peak_bytes_in_use()
    return out


def section_torch(smoke: bool) -> dict:
    """PyTorch eager backbone + FPN (mim4d_jax/interop/torch_ref), fp16 autocast on CUDA,
    frozen stages without gradients, the same images and the same loss as the JAX section.
    On a CPU autocast is off (float32): CPU autocast without AMX units is many times slower
    than float32 and would only slow the smoke run down."""
    import torch

    from mim4d_jax.interop.torch_ref.model import PerceptionRef

    config = load(smoke)
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    # Fixed shapes: let cuDNN pick its fastest kernels, as XLA autotunes its own.
    torch.backends.cudnn.benchmark = True
    dtype = torch.float16 if cuda else torch.float32
    images = len(config.data.cameras) * int(config.data.frames)
    ref = PerceptionRef.from_config(config)
    backbone, neck = ref.img_backbone.to(device), ref.img_neck.to(device)
    for i in range(int(config.model.frozen_stages)):
        for module in (backbone.downsample_layers[i], backbone.stages[i]):
            module.requires_grad_(False)
    x_np, _ = _encoder_inputs(config, images)
    x = torch.from_numpy(x_np).permute(0, 3, 1, 2).contiguous().to(device)
    params = [p for p in list(backbone.parameters()) + list(neck.parameters()) if p.requires_grad]

    def step():
        for p in params:
            p.grad = None
        with torch.autocast(device_type=device.type, dtype=dtype, enabled=cuda):
            levels = neck(backbone(x))
            loss = sum(lvl.float().mean() for lvl in levels)
        loss.backward()
        return loss

    def sync(_):
        if cuda:
            torch.cuda.synchronize()

    if cuda:
        torch.cuda.reset_peak_memory_stats()
    stats = timed(step, 3 if smoke else 10, 1 if smoke else 2, sync)
    return {
        "images": images,
        "device": torch.cuda.get_device_name() if cuda else "cpu",
        "autocast_dtype": str(dtype).removeprefix("torch."),
        "torch": torch.__version__,
        "forward_backward": stats,
        "max_memory_allocated": int(torch.cuda.max_memory_allocated()) if cuda else None,
    }


def section_step(smoke: bool, out_dir: pathlib.Path, budget_s: float) -> dict:
    """The train step at 1, 2, 4 samples per device (1, 2 in the smoke run), stopping at the
    first that does not fit; the profile is taken at 1 sample per device."""
    import jax

    from benchmarks import flops as flops_lib
    from benchmarks.device_profile import summarise_trace
    from mim4d_jax.data.batch import batch_sharding
    from mim4d_jax.training import dry_run

    started = time.perf_counter()
    base = load(smoke)
    per_sample = flops_lib.train_flops_per_sample(base)
    ndev = jax.device_count()
    result: dict = {
        "config": SMOKE_CONFIG if smoke else FULL_CONFIG,
        "analytic_flops_per_sample": per_sample,
        "batches": {},
    }
    path = out_dir / "step.json"
    state = None
    steps = 3 if smoke else 10
    for per_device in (1, 2) if smoke else (1, 2, 4):
        elapsed = time.perf_counter() - started
        last = result["batches"].get(str(per_device // 2))
        if last and "compile_s" in last:
            # A larger batch compiles about as long and steps longer: skip it rather than be
            # killed half-way by the section's time limit.
            needed = (last["lower_s"] + last["compile_s"]) * 1.3 + 2.5 * (steps + 3) * last[
                "step_s"
            ]["median_s"]
            if elapsed + needed > budget_s:
                result["batches"][str(per_device)] = {"skipped": "time budget"}
                break
        entry: dict = {"global_batch": per_device * ndev}
        result["batches"][str(per_device)] = entry
        try:
            config = base.copy_and_resolve_references()
            config.unlock()
            config.batch_size = per_device * ndev
            config.lock()
            start = time.perf_counter()
            lowered, fns, mesh = dry_run.lower_step(config)
            entry["lower_s"] = time.perf_counter() - start
            start = time.perf_counter()
            with jax.set_mesh(mesh):
                compiled = lowered.compile()
            entry["compile_s"] = time.perf_counter() - start
            # XLA's count before and after its optimisations; the first is the one the
            # analytic `train_hardware_xla_comparable` predicts (loop bodies counted once).
            entry["xla_flops_lowered_per_device"] = dry_run.step_flops(lowered)
            entry["xla_flops_per_device"] = dry_run.step_flops(compiled)
            entry["analytic_xla_comparable_per_device"] = (
                per_sample["train_hardware_xla_comparable"] * per_device
            )
            entry["xla_memory"] = dry_run.peak_memory_bytes(compiled)
            with jax.set_mesh(mesh):
                if state is None:
                    state = fns.init_state(*fns.init_params())
                batch = random_batch(config, config.batch_size, batch_sharding(mesh))
                holder = {"state": state}

                def run_one(holder=holder, compiled=compiled, batch=batch):
                    holder["state"], metrics = compiled(holder["state"], batch)
                    return metrics

                stats = timed(run_one, steps, 2, jax.block_until_ready)
                state = holder["state"]
                loss = float(run_one()["loss"])
                state = holder["state"]
            entry["step_s"] = stats
            entry["samples_per_s"] = config.batch_size / stats["median_s"]
            entry["loss"] = loss
            entry["peak_bytes_in_use"] = peak_bytes_in_use()
            entry["analytic_flops_per_device"] = per_sample["train_model_matmul"] * per_device
            entry["analytic_flops_per_device_all"] = per_sample["train_hardware"] * per_device
            entry["achieved_flops_per_device"] = (
                entry["analytic_flops_per_device"] / stats["median_s"]
            )
            if per_device == 1:
                trace_dir = out_dir / "trace"
                try:
                    with jax.set_mesh(mesh):
                        with jax.profiler.trace(str(trace_dir)):
                            for _ in range(2 if smoke else 3):
                                jax.block_until_ready(run_one())
                    result["profile"] = summarise_trace(trace_dir, top=15)
                except Exception as err:  # noqa: BLE001 - e.g. no CUPTI: keep the timings
                    result["profile"] = {"error": f"{type(err).__name__}: {err}"[:500]}
                state = holder["state"]
        except Exception as err:  # noqa: BLE001 - an OOM ends the sweep, anything else is reported
            entry["error"] = f"{type(err).__name__}: {str(err)[:500]}"
            entry["oom"] = is_oom(err)
            state = None  # the donated state may be gone
            path.write_text(json.dumps(result, indent=1))
            if entry["oom"]:
                break
            raise
        path.write_text(json.dumps(result, indent=1))
    return result


# ---------------------------------------------------------------------------------------------
# The parent: run sections, merge, summarise.


def run_section(name: str, smoke: bool, out_dir: pathlib.Path, timeout_s: float) -> dict:
    """Runs one section in this process and writes its JSON (with the device and timing)."""
    start = time.perf_counter()
    info = {"section": name, "smoke": smoke, "timeout_s": timeout_s}
    try:
        info.update(device_info() if name != "torch" else {})
        if name == "step":
            # Leaves room for the start-up already spent and for writing the results.
            info.update(section_step(smoke, out_dir, budget_s=0.85 * timeout_s))
        else:
            info.update(globals()[f"section_{name}"](smoke))
        info["ok"] = True
    except Exception as err:  # noqa: BLE001 - the parent reports it
        info["ok"] = False
        info["error"] = f"{type(err).__name__}: {str(err)[:2000]}"
        traceback.print_exc()
    info["wall_s"] = time.perf_counter() - start
    (out_dir / f"{name}.json").write_text(json.dumps(info, indent=1))
    return info


def _median(section: dict, *keys: str) -> float | None:
    node: Any = section
    for key in keys:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def summarise(results: dict[str, dict]) -> dict:
    """The headline figures: one flat dict (None where a section did not produce it)."""
    mm, rend, bb, th, st = (
        results.get(s, {}) for s in ("matmul", "renderer", "backbone", "torch", "step")
    )
    peak = mm.get("measured_bf16_flops")
    vendor = mm.get("vendor_peak_bf16_flops")
    summary: dict[str, Any] = {
        "device": mm.get("device_kind") or st.get("device_kind"),
        "sections_ok": {
            name: bool(results[name].get("ok")) for name in SECTIONS if name in results
        },
        "matmul_bf16_tflops": peak / 1e12 if peak else None,
        "renderer_forward_rays_per_s": rend.get("forward_rays_per_s"),
        "renderer_forward_backward_rays_per_s": rend.get("forward_backward_rays_per_s"),
    }
    jax_s = _median(bb, "unmasked", "forward_backward", "median_s")
    torch_s = _median(th, "forward_backward", "median_s")
    summary["backbone_fpn_jax_s"] = jax_s
    summary["backbone_fpn_jax_masked_s"] = _median(bb, "masked", "forward_backward", "median_s")
    summary["backbone_fpn_torch_s"] = torch_s
    summary["backbone_fpn_jax_over_torch"] = jax_s / torch_s if jax_s and torch_s else None
    render_fb = _median(rend, "forward_backward", "median_s")
    steps = {}
    for per_device, entry in (st.get("batches") or {}).items():
        if "step_s" not in entry:
            steps[per_device] = {k: entry[k] for k in ("skipped", "oom", "error") if k in entry}
            continue
        step_s = entry["step_s"]["median_s"]
        achieved = entry["achieved_flops_per_device"]
        row = {
            "lower_s": entry["lower_s"],
            "compile_s": entry["compile_s"],
            "step_s": step_s,
            "samples_per_s": entry["samples_per_s"],
            "peak_bytes_in_use": entry["peak_bytes_in_use"],
            "xla_peak_bytes": entry["xla_memory"].get("peak_bytes"),
            "analytic_flops_per_device": entry["analytic_flops_per_device"],
            "xla_flops_per_device": entry["xla_flops_per_device"],
            "xla_lowered_over_analytic": entry["xla_flops_lowered_per_device"]
            / entry["analytic_xla_comparable_per_device"],
            "mfu_measured_peak": achieved / peak if peak else None,
            "mfu_vendor_peak": achieved / vendor if vendor else None,
        }
        if render_fb:
            renders = int(rend["renders_per_sample"]) * int(per_device)
            row["renderer_share"] = renders * render_fb / step_s
        steps[per_device] = row
    summary["step"] = steps
    profile = st.get("profile") or {}
    summary["profile_top_op"] = (profile.get("top_ops") or [{}])[0].get("name")
    return summary


def parent(args: argparse.Namespace) -> dict:
    out_dir = pathlib.Path(args.out).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    timeouts = SMOKE_TIMEOUTS if args.smoke else FULL_TIMEOUTS
    budget = args.budget if args.budget else sum(timeouts.values())
    started = time.perf_counter()
    carry = 0.0  # seconds earlier sections left unused
    results = {}
    repo = pathlib.Path(__file__).resolve().parents[1]
    for name in [s for s in SECTIONS if s in (args.only or SECTIONS)]:
        remaining = budget - (time.perf_counter() - started)
        timeout = min(timeouts[name] + carry, remaining)
        if timeout < 10:
            results[name] = {"ok": False, "skipped": "suite budget spent"}
            continue
        start = time.perf_counter()
        # PyTorch always gets a process of its own: next to a live XLA:CPU runtime its CPU
        # threads are starved (measured 6x slower in-process in the smoke run).
        if not args.isolate and name != "torch":
            results[name] = run_section(name, args.smoke, out_dir, timeout)
            carry = max(timeout - (time.perf_counter() - start), 0.0)
            print(
                f"[device_suite] {name}: ok={results[name].get('ok')} "
                f"{time.perf_counter() - start:.1f} s",
                file=sys.stderr,
                flush=True,
            )
            continue
        cmd = [sys.executable, "-m", "benchmarks.device_suite", "--section", name]
        cmd += ["--out", str(out_dir), "--timeout", str(timeout)]
        cmd += ["--smoke"] if args.smoke else []
        try:
            proc = subprocess.run(cmd, cwd=repo, timeout=timeout, check=False)
            code = proc.returncode
        except subprocess.TimeoutExpired:
            code = "timeout"
        carry = max(timeout - (time.perf_counter() - start), 0.0)
        path = out_dir / f"{name}.json"
        result = json.loads(path.read_text()) if path.exists() else {}
        if code != 0 or not result:
            result.setdefault("ok", False)
            result["exit"] = code
        results[name] = result
        print(
            f"[device_suite] {name}: ok={result.get('ok')} {time.perf_counter() - start:.1f} s",
            file=sys.stderr,
            flush=True,
        )
    summary = summarise(results)
    summary["smoke"] = bool(args.smoke)
    summary["out"] = str(out_dir)
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="CPU-sized run of the same code")
    parser.add_argument("--out", default="device_suite_out", help="folder for the JSON files")
    parser.add_argument("--only", nargs="*", choices=SECTIONS, help="run only these sections")
    parser.add_argument(
        "--isolate",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="one process per section (default: on, off with --smoke, where the start-up of "
        "five processes would cost more than the sections themselves)",
    )
    parser.add_argument(
        "--budget",
        type=float,
        default=0.0,
        help="seconds for the whole suite (default: the "
        "sum of the section shares, 470 s for the full run)",
    )
    parser.add_argument("--section", choices=SECTIONS, help=argparse.SUPPRESS)
    parser.add_argument("--timeout", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.isolate is None:
        args.isolate = not args.smoke
    if args.section:
        out_dir = pathlib.Path(args.out).resolve()
        out_dir.mkdir(parents=True, exist_ok=True)
        timeout = args.timeout or (SMOKE_TIMEOUTS if args.smoke else FULL_TIMEOUTS)[args.section]
        return 0 if run_section(args.section, args.smoke, out_dir, timeout).get("ok") else 1
    summary = parent(args)
    print(json.dumps(summary), flush=True)
    return 0 if all(summary["sections_ok"].values()) else 1


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main())
