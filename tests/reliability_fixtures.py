"""Helpers for the failure-injection tests: a trainer run on a two-parameter model (compiles in
seconds, so every test can run real train() calls), and byte-level damage to files."""

from __future__ import annotations

import pathlib

import jax.numpy as jnp
from flax import nnx
from train_fixtures import batches_factory, tiny_config

from mim4d_jax import train as train_lib


class TwoParams(nnx.Module):
    """A Param and a BatchStat: what the trainer and its checkpoints need, nothing more."""

    def __init__(self, rngs: nnx.Rngs) -> None:
        self.w = nnx.Param(jnp.linspace(0.0, 1.0, 64))
        self.mean = nnx.BatchStat(jnp.zeros((3,)))


def quadratic_loss(model, batch, rng, train=True):
    del rng, train
    loss = jnp.mean((model.w[...] - 2.0) ** 2) + 0.0 * jnp.mean(batch["ray_rgb"])
    return loss, {"losses": {}}


def train_small(workdir: pathlib.Path, *overrides: str) -> dict:
    """configs/mim4d_tiny.py:test (+ overrides) on TwoParams: checkpoints every 2 steps."""
    return train_lib.train(
        tiny_config("batch_size=8", *overrides),
        workdir,
        pipeline_factory=batches_factory(),
        model_factory=TwoParams,
        loss_fn=quadratic_loss,
    )


def flip_byte(path: pathlib.Path, offset: int | None = None) -> None:
    """Flips one bit of `path` (default: its middle byte)."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2 if offset is None else offset] ^= 0x01
    path.write_bytes(bytes(data))


def largest_file(root: pathlib.Path) -> pathlib.Path:
    return max((p for p in root.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
