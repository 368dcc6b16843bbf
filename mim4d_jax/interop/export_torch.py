"""Orbax training checkpoint -> PyTorch state dict with the reference key names (table "Key
layout" in docs/exporting.md).

  python -m mim4d_jax.export_torch --workdir DIR [--step N] --out FILE \
      [--format pth|safetensors] [--golden GOLDEN.npz]

Writes `{'state_dict': ..., 'meta': {...}}` (safetensors: the flat tensors, meta as a JSON
string under the `meta` metadata key), all float32 in PyTorch layouts, with
`num_batches_tracked` (int64) = the checkpoint step, i.e. one BatchNorm update per training
step (torch only reads it when momentum=None; it records how far the statistics ran).
When the config trains an EMA (`optim.ema_decay > 0`) the EMA weights are added as mmcv
EMAHook buffers `ema_<key with '.' -> '_'>` (parameters only, as EMAHook does).

The export is compared key by key and shape by shape with the reference layout
(`torch_ref.reference_keys`); differences are printed and make the exit status 1 (the file is
still written, for inspection). `--golden` also writes an .npz for checking any PyTorch
consumer (`python -m mim4d_jax.interop.torch_ref.verify --ckpt FILE --golden G.npz`): `images`
(N, 3, H, W) normalised input, `backbone_0..3` and `fpn_0..3` (N, C, h, w) from the JAX model
with the mask off, float32 compute and highest matmul precision.
"""

import argparse
import datetime
import pathlib
import sys
from collections.abc import Mapping
from typing import Any, TextIO

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import torch
from flax import nnx

from mim4d_jax import user_errors
from mim4d_jax.interop import mapping as em
from mim4d_jax.interop.torch_ref.io import write_state_dict
from mim4d_jax.interop.torch_ref.reference_keys import reference_shapes
from mim4d_jax.models.mim4d import build_model
from mim4d_jax.training import checkpoint, config_checks

GOLDEN_SEED = 0
BN_BUFFERS = ("running_mean", "running_var", em.BN_COUNTER)


def ema_copies(ema_state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """mmcv EMAHook buffer names for the EMA weights (parameters, not BN buffers)."""
    return {
        "ema_" + k.replace(".", "_"): v
        for k, v in ema_state_dict.items()
        if not k.endswith(BN_BUFFERS)
    }


def expected_shapes(config: ml_collections.ConfigDict, with_ema: bool) -> dict[str, tuple]:
    shapes = reference_shapes(config)
    if with_ema:
        shapes.update(ema_copies(shapes))
    return shapes


def print_table(state_dict: Mapping[str, np.ndarray], out: TextIO) -> None:
    width = max(len(k) for k in state_dict)
    for key in em.natural_sorted(state_dict):
        value = state_dict[key]
        print(f"{key:{width}s}  {str(tuple(value.shape)):22s} {value.dtype}", file=out)
    total = sum(int(np.size(v)) for k, v in state_dict.items() if not k.startswith("ema_"))
    print(f"{len(state_dict)} tensors, {total:,} values (excluding ema_ copies)", file=out)


def load_into_model(
    config: ml_collections.ConfigDict, params: Mapping[Any, Any], batch_stats: Mapping[Any, Any]
) -> nnx.Module:
    """The MIM4D model of `config` holding the given pure-dict state."""
    model = build_model(config, nnx.Rngs(0))
    graphdef, p_state, b_state = nnx.split(model, nnx.Param, nnx.BatchStat)
    nnx.replace_by_pure_dict(p_state, params)
    nnx.replace_by_pure_dict(b_state, batch_stats)
    return nnx.merge(graphdef, p_state, b_state)


def golden_arrays(model: nnx.Module, images_nchw: np.ndarray) -> dict[str, np.ndarray]:
    """`images`, `backbone_0..3` (normed stage outputs) and `fpn_0..3` (before input_proj),
    NCHW float32, mask off. The model must compute in float32 (see float32_config)."""
    with jax.default_matmul_precision("highest"):
        feats, levels = model.features(jnp.asarray(images_nchw.transpose(0, 2, 3, 1)))
    arrays = {"images": images_nchw.astype(np.float32)}
    for name, maps in (("backbone", feats), ("fpn", levels)):
        for i, x_nhwc in enumerate(maps):
            arrays[f"{name}_{i}"] = np.asarray(x_nhwc, np.float32).transpose(0, 3, 1, 2)
    return arrays


def float32_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """A copy computing in float32: golden outputs are references, not bf16 approximations."""
    config = ml_collections.ConfigDict(config.to_dict())
    config.model.compute_dtype = "float32"
    return config


def golden_images(config: ml_collections.ConfigDict, batch: int = 1) -> np.ndarray:
    """Seeded N(0, 1) images at the model's padded input size: roughly the statistics of
    ImageNet-normalised photos, and reproducible without any data set."""
    width, height = config.data.pad_size
    rng = np.random.default_rng(GOLDEN_SEED)
    return rng.standard_normal((batch, 3, height, width), dtype=np.float32)


def export(
    workdir: str | pathlib.Path,
    out: str | pathlib.Path,
    *,
    step: int | None = None,
    fmt: str = "pth",
    golden: str | pathlib.Path | None = None,
    log: TextIO | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> em.KeyReport:
    """Writes the export (and golden file); returns its comparison with the reference keys.
    The table and the report go to `log` (default: the current sys.stdout).

    The model is the workdir's config.json; `overrides` (dotted key -> value) may change only
    config_checks.EVAL_SIDE_KEYS, any other key that differs is refused by name, and the
    checkpoint's recorded config is checked against config.json (checkpoint.restore_params)."""
    log = log or sys.stdout
    config = config_checks.resolve_run_config(
        checkpoint.read_config(workdir), overrides=dict(overrides or {}), what="export"
    )
    config_checks.check_config(config)
    config, params, batch_stats, step = checkpoint.restore_params(workdir, step, config=config)
    state_dict = em.to_state_dict(params, batch_stats, num_batches_tracked=step)
    with_ema = float(config.optim.ema_decay) > 0
    if with_ema:
        _, ema_params, _, _ = checkpoint.restore_params(workdir, step, ema=True, config=config)
        state_dict.update(ema_copies(em.to_state_dict(ema_params, batch_stats, step)))
    meta = {
        "iter": step,
        "time": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "source": f"mim4d_jax export of {checkpoint.workdir_path(workdir)}",
        "num_batches_tracked": step,
        "config": config.to_json(sort_keys=True),
    }
    write_state_dict(out, {k: torch.from_numpy(v) for k, v in state_dict.items()}, meta, fmt)
    print_table(state_dict, log)
    report = em.compare(
        expected_shapes(config, with_ema), {k: v.shape for k, v in state_dict.items()}
    )
    print(f"reference layout check: {report.format()}", file=log)
    print(f"wrote {out} ({fmt}, step {step})", file=log)
    if golden is not None:
        f32 = float32_config(config)
        arrays = golden_arrays(load_into_model(f32, params, batch_stats), golden_images(f32))
        np.savez(golden, **arrays)
        print(f"wrote {golden}: " + ", ".join(f"{k}{v.shape}" for k, v in arrays.items()), file=log)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--workdir", required=True, help="training workdir (config.json + checkpoints/)"
    )
    parser.add_argument("--step", type=int, default=None, help="checkpoint step (default: latest)")
    parser.add_argument("--out", required=True, help="output file")
    parser.add_argument("--format", choices=("pth", "safetensors"), default="pth")
    parser.add_argument("--golden", default=None, help="also write golden outputs to this .npz")
    parser.epilog = (
        "--config.KEY=VALUE overrides the workdir's config.json for the evaluation-side keys "
        f"only ({', '.join(config_checks.EVAL_SIDE_KEYS)}); --verbose shows tracebacks."
    )
    args, extra = parser.parse_known_args(argv)
    overrides = {}
    for item in extra:
        key, sep, value = item.removeprefix("--config.").partition("=")
        if not item.startswith("--config.") or not sep:
            parser.error(f"unrecognized argument {item!r} (overrides are --config.KEY=VALUE)")
        overrides[key] = config_checks.parse_override_value(value)
    report = export(
        args.workdir,
        args.out,
        step=args.step,
        fmt=args.format,
        golden=args.golden,
        overrides=overrides,
    )
    return 0 if report.ok else 1


def cli() -> None:
    """Console-script entry: exits with main()'s status; known errors as one line."""
    sys.exit(user_errors.run_cli(main))


if __name__ == "__main__":
    cli()
