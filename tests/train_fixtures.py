"""Shared helpers for the trainer tests: configs, an in-memory batch iterator, subprocess runs.

`SyntheticBatches` has the input pipeline's interface (`next()` -> dict of global jax.Arrays
sharded over ('data', 'fsdp'); JSON `get_state()` / `set_state()`) and plausible geometry
(six cameras on a ring looking outwards, rays leaving the camera centres), so the real model
and objective train on it without a dataset on disk. Every batch is a pure function of
(seed, index): a resumed iterator replays exactly the batches a straight run would see.
"""

from __future__ import annotations

import os
import pathlib
import socket
import subprocess
import sys

import jax
import ml_collections
import numpy as np
import pytest
from jax.sharding import Mesh

from mim4d_jax.data.batch import batch_sharding
from mim4d_jax.training import mesh as mesh_lib
from mim4d_jax.training.config_files import load_config

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
TINY_TEST = str(REPO_ROOT / "configs" / "mim4d_tiny.py") + ":test"


def tiny_config(*overrides: str) -> ml_collections.ConfigDict:
    """configs/mim4d_tiny.py:test with `key=value` overrides.

    Keep overrides that change the compiled step (total_steps: the schedule; mesh; model
    sizes) rare: each distinct step costs minutes of compilation on a 2-core machine, while
    identical ones hit the persistent compilation cache (`compilation_cache` below).
    """
    return load_config(TINY_TEST, list(overrides))


@pytest.fixture(scope="session", name="compilation_cache")
def compilation_cache_fixture(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """A persistent XLA cache shared by this session's trainer tests and their subprocesses.

    Test modules import this function (registering the fixture `compilation_cache`); the
    directory is fixed per session so every importing module shares one cache.
    """
    path = tmp_path_factory.getbasetemp() / "jax_compilation_cache"
    path.mkdir(exist_ok=True)
    previous = {name: getattr(jax.config, name) for name in _CACHE_OPTIONS}
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    yield path
    for name, value in previous.items():
        jax.config.update(name, value)


_CACHE_OPTIONS = (
    "jax_compilation_cache_dir",
    "jax_persistent_cache_min_compile_time_secs",
    "jax_persistent_cache_min_entry_size_bytes",
)


def _rot_z(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def example(config: ml_collections.ConfigDict, seed: int, index: int) -> dict[str, np.ndarray]:
    """One example (no batch dim) with the shapes and value ranges of docs/architecture.md."""
    rng = np.random.default_rng([seed, index])
    d = config.data
    n, t = len(d.cameras), d.frames
    (w, h), (wp, hp), p = d.image_size, d.pad_size, d.mask_patch
    images = np.zeros((n, t, hp, wp, 3), np.float32)
    images[:, :, :h, :w] = rng.normal(size=(n, t, h, w, 3))
    grid = (hp // p) * (wp // p)
    visible = round(grid * (1 - d.mask_ratio))
    keep = np.zeros((n, t, grid), np.float32)
    for cam in range(n):
        for frame in range(t):
            keep[cam, frame, rng.permutation(grid)[:visible]] = 1.0
    # Camera n looks along yaw 60n degrees in the volume frame (x right, y forward, z up).
    focal = 0.6 * w
    intrinsics = np.array([[focal, 0, w / 2, 0], [0, focal, h / 2, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
    cam_axes = np.array([[1.0, 0, 0], [0, 0, -1.0], [0, 1.0, 0]])  # volume->camera at yaw 0
    lidar2img = np.zeros((n, t, 4, 4), np.float32)
    centres = np.zeros((n, 3))
    for cam in range(n):
        rot = cam_axes @ _rot_z(-np.deg2rad(60.0 * cam))
        centres[cam] = [0.0, 0.0, 1.5]
        vol2cam = np.eye(4)
        vol2cam[:3, :3], vol2cam[:3, 3] = rot, -rot @ centres[cam]
        lidar2img[cam] = intrinsics @ vol2cam
    vol2ref = np.tile(np.eye(4, dtype=np.float32), (t, 1, 1))
    vol2ref[:, 1, 3] = -2.0 * np.arange(t)  # the ego drove 2 m forward per frame
    rays = d.num_rays
    dirs = np.zeros((2, n * rays, 3))
    for cam in range(n):
        yaw = np.deg2rad(60.0 * cam) + rng.uniform(-0.5, 0.5, (2, rays))
        pitch = rng.uniform(-0.3, 0.1, (2, rays))
        dirs[:, cam * rays : (cam + 1) * rays] = np.stack(
            [-np.sin(yaw) * np.cos(pitch), np.cos(yaw) * np.cos(pitch), np.sin(pitch)], axis=-1
        )
    depth = rng.uniform(3.0, 20.0, (2, n * rays))
    depth[rng.uniform(size=depth.shape) < 0.3] = -1.0  # top-up rays have no LiDAR depth
    return {
        "images": images,
        "patch_keep": keep.reshape(n, t, hp // p, wp // p),
        "lidar2img": lidar2img,
        "vol2ref": vol2ref,
        "target_frames": np.array([0, rng.integers(1, t)], np.int32),
        "ray_origin": np.repeat(centres, rays, axis=0)[None].repeat(2, 0).astype(np.float32),
        "ray_dir": dirs.astype(np.float32),
        "ray_rgb": rng.uniform(size=(2, n * rays, 3)).astype(np.float32),
        "ray_depth": depth.astype(np.float32),
        "temporal_valid": np.float32(1.0),
    }


class SyntheticBatches:
    """Global batches of `example`s; `repeat=True` yields the same batch every step."""

    def __init__(
        self,
        config: ml_collections.ConfigDict,
        mesh: Mesh,
        *,
        repeat: bool = False,
        nan_at: int | None = None,
    ) -> None:
        self.config, self.repeat, self.nan_at = config, repeat, nan_at
        self.sharding = batch_sharding(mesh)
        self.index = 0

    def __iter__(self) -> SyntheticBatches:
        return self

    def __next__(self) -> dict[str, jax.Array]:
        first = 0 if self.repeat else self.index * self.config.batch_size
        examples = [
            example(self.config, self.config.seed, first + i) for i in range(self.config.batch_size)
        ]
        batch = {k: np.stack([e[k] for e in examples]) for k in examples[0]}
        if self.nan_at is not None and self.index == self.nan_at:
            batch["ray_rgb"][:] = np.nan
        self.index += 1
        # make_array_from_callback: each process fills only its own shards (multi-process safe).
        return {
            k: jax.make_array_from_callback(v.shape, self.sharding, lambda i, v=v: v[i])
            for k, v in batch.items()
        }

    def get_state(self) -> dict:
        return {"index": self.index}

    def set_state(self, state: dict) -> None:
        self.index = int(state["index"])

    def close(self) -> None:
        """Nothing to stop (the real pipeline stops its prefetch threads here)."""


def batches_factory(**kwargs):
    """A `pipeline_factory` for `train.train` that builds `SyntheticBatches(**kwargs)`."""
    return lambda config, mesh: SyntheticBatches(config, mesh, **kwargs)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def subprocess_env(num_devices: int, cache_dir: pathlib.Path) -> dict[str, str]:
    """Environment for a child python with `num_devices` fake CPU devices and the shared
    compilation cache."""
    env = dict(os.environ)
    env["JAX_COMPILATION_CACHE_DIR"] = str(cache_dir)
    env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    env["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={num_devices}"
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = str(REPO_ROOT)
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    return env


def start_child(
    args: list[str], cache_dir: pathlib.Path, log_path: pathlib.Path, *, num_devices: int = 8
) -> subprocess.Popen:
    """Runs `python *args` from the repo root, stdout and stderr into `log_path` (a file, not
    a pipe: a chatty child must never block on a full pipe while the test polls)."""
    with open(log_path, "w") as log:
        return subprocess.Popen(
            [sys.executable, *args],
            cwd=REPO_ROOT,
            env=subprocess_env(num_devices, cache_dir),
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )


def child_main() -> None:
    """`python tests/train_fixtures.py WORKDIR [key=value ...] [--num_processes N ...]`:
    trains on SyntheticBatches and prints {"step", "losses"} as the last line (JSON)."""
    import argparse
    import json

    from mim4d_jax import train

    parser = argparse.ArgumentParser()
    parser.add_argument("workdir")
    parser.add_argument("overrides", nargs="*")
    parser.add_argument("--num_processes", type=int, default=0)
    parser.add_argument("--process_id", type=int, default=0)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    if args.num_processes:
        mesh_lib.maybe_initialize_distributed(
            f"127.0.0.1:{args.port}", args.num_processes, args.process_id
        )
    result = train.train(
        tiny_config(*args.overrides), args.workdir, pipeline_factory=batches_factory()
    )
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    child_main()
