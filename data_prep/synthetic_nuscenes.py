r"""Synthetic driving dataset in the real nuScenes on-disk format (the project's default data).

    python -m data_prep.synthetic_nuscenes --out datasets/synthetic [--scenes N]
        [--samples-per-scene K] [--width W --height H] [--seed S] [--version v1.0-mini]
        [--overwrite] [--workers 2]

Each scene is a procedural grid city (data_prep/synth/world.py): roads with lane markings and
zebra crossings, tiled sidewalks, lawns, textured buildings, trees, poles, parked and moving
vehicles. The ego drives the right lane at 7 m/s with 90-degree turns. Images, depth and LiDAR
are first hits of vectorised NumPy ray casting against that one analytic scene, at each
sensor's own timestamp, so they agree geometrically (tests/test_synthetic_nuscenes.py).

Layout under DIR (loads with `nuscenes.nuscenes.NuScenes(version, DIR)`):
    <version>/*.json            the 13 nuScenes tables
    samples/<CHANNEL>/*.jpg     key-frame images (2 Hz), six cameras with the nuScenes rig
    sweeps/<CHANNEL>/*.jpg      non-key camera frames (12 Hz)
    samples|sweeps/LIDAR_TOP/*.pcd.bin  32-beam LiDAR at 20 Hz, float32 x 5
                                (x, y, z, intensity 0..255, ring 0..31) in the LiDAR frame
    maps/<map token>.png        semantic prior (roads + sidewalks), 0.1 m/px, one per log
Not part of the nuScenes format (for evaluation only):
    depth_gt/samples/<CHANNEL>/<jpeg basename without .jpg>.npy
                                float32 (H, W) camera z-depth in metres of the key-frame image
                                of the same name, 0 where only sky is seen
    depth_gt/index.json         {sample_token: {channel: path relative to DIR}}
Scene names come from `nuscenes.utils.splits` (mini_train / mini_val for v1.0-mini, train / val
for v1.0-trainval), so the standard split lists assign them. The output is written to a
temporary folder beside DIR and renamed at the end: a failed run leaves nothing behind.
"""

import argparse
import json
import multiprocessing
import os
import pathlib
import shutil
import sys
import time

from nuscenes.utils import splits

from data_prep.synth import rig
from data_prep.synth.scene_writer import SceneSpec, SceneWriter, scene_duration_s
from data_prep.synth.tables import Tables
from data_prep.synth.world import build_world

DEFAULTS = {"scenes": 4, "samples_per_scene": 8, "width": 320, "height": 180}
_SCENE_START_US = 1_532_402_900_000_000  # July 2018, like the nuScenes Singapore logs
_SCENE_SPACING_US = 60_000_000


def scene_names(version: str, scenes: int) -> list[str]:
    """Real nuScenes scene names: about a quarter val (at least one when scenes >= 2)."""
    lists = {
        "v1.0-mini": (splits.mini_train, splits.mini_val),
        "v1.0-trainval": (splits.train, splits.val),
    }
    if version not in lists:
        raise ValueError(f"version={version!r}: expected one of {sorted(lists)}")
    train, val = lists[version]
    n_val = min(len(val), 0 if scenes == 1 else max(1, scenes // 4))
    if scenes - n_val > len(train):
        raise ValueError(
            f"scenes={scenes}: {version} has only {len(train) + len(val)} scene "
            f"names ({len(train)} train, {len(val)} val)"
        )
    return list(train[: scenes - n_val]) + list(val[:n_val])


def _check_args(scenes, samples_per_scene, width, height, seed, workers) -> None:
    for key, value in (
        ("scenes", scenes),
        ("samples_per_scene", samples_per_scene),
        ("width", width),
        ("height", height),
        ("workers", workers),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{key}={value!r}: must be a positive integer")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed={seed!r}: must be a non-negative integer")


def _render_scene(
    root: pathlib.Path, spec: SceneSpec, width: int, height: int, seed: int
) -> tuple[dict[str, list[dict]], dict[str, dict[str, str]]]:
    """Writes one scene's files; returns its table records and depth index entries."""
    tables = Tables(seed)
    world = build_world(seed * 10_007 + spec.index, scene_duration_s(spec.samples))
    writer = SceneWriter(root, tables, world, spec, rig.make_cameras(width, height))
    writer.write()
    return tables.records, writer.depth_index


def _write_dataset(
    root: pathlib.Path,
    scenes: int,
    samples_per_scene: int,
    width: int,
    height: int,
    seed: int,
    version: str,
    workers: int,
) -> None:
    channels = [*rig.CAMERA_CHANNELS, rig.LIDAR_CHANNEL]
    for folder in ("samples", "sweeps"):
        for channel in channels:
            (root / folder / channel).mkdir(parents=True)
    for channel in rig.CAMERA_CHANNELS:
        (root / "depth_gt" / "samples" / channel).mkdir(parents=True)
    (root / "maps").mkdir()
    jobs = [
        (
            root,
            SceneSpec(
                index=i,
                name=name,
                samples=samples_per_scene,
                start_us=_SCENE_START_US + i * _SCENE_SPACING_US,
                log_name=f"n900-synthetic-seed{seed}-{i:03d}",
            ),
            width,
            height,
            seed,
        )
        for i, name in enumerate(scene_names(version, scenes))
    ]
    if workers > 1 and len(jobs) > 1:
        # spawn, not fork: the caller may have started JAX or TensorFlow threads.
        context = multiprocessing.get_context("spawn")
        with context.Pool(min(workers, len(jobs))) as pool:
            results = pool.starmap(_render_scene, jobs)
    else:
        results = [_render_scene(*job) for job in jobs]
    tables = Tables(seed)
    depth_index: dict[str, dict[str, str]] = {}
    for records, scene_depth_index in results:  # scene order: output independent of workers
        tables.merge(records)
        depth_index.update(scene_depth_index)
    tables.write(root / version)
    with open(root / "depth_gt" / "index.json", "w") as f:
        json.dump(depth_index, f, indent=1, sort_keys=True)


def _remove_stale_partials(out: pathlib.Path) -> None:
    """Deletes temporaries of earlier runs into `out` that were killed (their process is gone)."""
    for stale in out.parent.glob(f".{out.name}.partial-*"):
        pid_text = stale.name.rsplit("-", 1)[1]
        if not pid_text.isdigit():
            continue
        pid = int(pid_text)
        try:
            alive = pid != os.getpid() and (os.kill(pid, 0) is None)
        except ProcessLookupError:
            alive = False
        except PermissionError:  # someone else's live process
            alive = True
        if not alive:
            shutil.rmtree(stale, ignore_errors=True)


def generate(
    out_dir: str | os.PathLike,
    scenes: int = DEFAULTS["scenes"],
    samples_per_scene: int = DEFAULTS["samples_per_scene"],
    width: int = DEFAULTS["width"],
    height: int = DEFAULTS["height"],
    seed: int = 0,
    version: str = "v1.0-mini",
    overwrite: bool = False,
    workers: int = 1,
) -> pathlib.Path:
    """Writes the dataset to `out_dir` and returns it (the nuScenes dataroot). Scenes are
    rendered by up to `workers` processes (the output does not depend on it); workers > 1
    spawns processes, which re-import the caller's __main__ module: call it from an
    importable script with an `if __name__ == "__main__"` guard, as the CLI does."""
    _check_args(scenes, samples_per_scene, width, height, seed, workers)
    scene_names(version, scenes)  # fail on a bad version or count before touching the disk
    out = pathlib.Path(out_dir).resolve()
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"--out {out}: exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(
            f"--out {out}: directory is not empty (pass overwrite=True / --overwrite to replace it)"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_partials(out)
    partial = out.parent / f".{out.name}.partial-{os.getpid()}"
    try:
        _write_dataset(partial, scenes, samples_per_scene, width, height, seed, version, workers)
        if out.exists():
            # Move the old tree aside first so `out` is never missing or half written.
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            out.rename(old)
            partial.rename(out)
            shutil.rmtree(old)
        else:
            partial.rename(out)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="output dataroot (created)")
    parser.add_argument("--scenes", type=int, default=DEFAULTS["scenes"])
    parser.add_argument("--samples-per-scene", type=int, default=DEFAULTS["samples_per_scene"])
    parser.add_argument("--width", type=int, default=DEFAULTS["width"])
    parser.add_argument("--height", type=int, default=DEFAULTS["height"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--version", default="v1.0-mini")
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument("--workers", type=int, default=2, help="processes rendering scenes")
    args = parser.parse_args(argv)
    start = time.time()
    try:
        root = generate(
            args.out,
            args.scenes,
            args.samples_per_scene,
            args.width,
            args.height,
            args.seed,
            args.version,
            args.overwrite,
            args.workers,
        )
    except (ValueError, FileExistsError) as e:
        parser.error(str(e))
    images = sum(1 for _ in root.glob("s*/CAM_*/*.jpg"))
    print(
        f"wrote {root}: {args.scenes} scenes x {args.samples_per_scene} samples, {images} "
        f"images {args.width}x{args.height}, in {time.time() - start:.1f} s",
        file=sys.stderr,
    )
    return 0


def cli() -> None:
    """Console-script entry: exits with main()'s status."""
    sys.exit(main())


if __name__ == "__main__":
    cli()
