"""nuScenes -> sharded TFRecord dataset (TFDS layout) of key-frame clips; library and CLI.

    python -m data_prep.convert_nuscenes --dataroot DIR --version v1.0-mini --out DATA_DIR \
        [--frames T] [--image-size WxH] [--num-shards N] [--workers W] [--resume] \
        [--on-error fail|skip] [--scene-list FILE] [--runner R <Beam pipeline options>]

The dataset lands in `dataset_dir(DATA_DIR)` = `DATA_DIR/nuscenes_clips/1.0.0/`, which
`tfds.builder_from_directory` and the input pipeline open; the run's statistics are in
`DATA_DIR/nuscenes_clips/1.0.0/conversion_stats.json`. One planner (this process) loads the
devkit once; devkit-free worker processes write whole shards; metadata is written last.

Shards: whole scenes per shard, per split. Default count: about 256 MB per shard, rounded up
to a multiple of 8 (so 1, 2, 4 or 8 hosts own whole files), never more than the split's scenes
(then rounded down to a multiple of 8, or one shard per scene below 8 scenes).
Robustness: shards and their manifests appear by atomic rename; `--resume` keeps shards whose
manifest, size, record framing and plan fingerprint (items + options) check out and rewrites
the rest (it trusts that source blobs did not change); rerunning a finished conversion is a
no-op. Bad input (missing/corrupt blob, truncated .pcd.bin, dangling token) fails naming the
file or token, or with `--on-error skip` drops that clip and lists it in the stats; a missing
JSON table, or a run where every clip was skipped, always fails. Nothing is published on error.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import multiprocessing
import pathlib
import queue as queue_lib
import sys
import time

import tqdm
from etils import epath

from data_prep.convert import planner, tfds_meta, writer
from data_prep.convert.items import (
    ON_ERROR_CHOICES,
    ClipItem,
    ConversionError,
    ConvertOptions,
    ShardResult,
    ShardTask,
)
from data_prep.convert.tfds_meta import dataset_dir
from mim4d_jax.data import schema

__all__ = [
    "ConversionError",
    "already_done",
    "clean_stale",
    "convert",
    "dataset_dir",
    "finish",
    "prepare",
]


@dataclasses.dataclass
class Plan:
    """Output of the planning step, shared by the local and the Beam execution."""

    version_dir: epath.Path
    options: ConvertOptions
    tasks: list[ShardTask]
    skipped: list[tuple[str, str, str]]  # (split, sample_token, reason) found while planning
    fingerprint: str


def _estimate_clip_bytes(
    dataroot: pathlib.Path, items: list[ClipItem], options: ConvertOptions
) -> float:
    """Mean stored bytes per clip, from the file sizes of up to 16 clips spread over the split."""
    picks = items[:: max(1, len(items) // 16)][:16]
    sizes = []
    for item in picks:
        images = sum(
            (dataroot / p).stat().st_size
            for paths in item.image_paths
            for p in paths
            if (dataroot / p).exists()
        )
        if options.resize:  # JPEG size scales roughly with pixel count
            images *= (
                options.image_hw[0] * options.image_hw[1] / (item.source_hw[0] * item.source_hw[1])
            )
        lidar = dataroot / item.lidar_path
        sizes.append(images + (lidar.stat().st_size * 4 / 5 if lidar.exists() else 0))
    return sum(sizes) / max(1, len(sizes))


def _raise_nothing_left(where: str, skipped: list[tuple[str, str]]) -> None:
    """An empty dataset is never published: it is an error that quotes the skip reasons."""
    if not skipped:
        raise ConversionError(f"{where}: no clips to convert")
    reasons = "; ".join(f"{token}: {why}" for token, why in skipped[:3])
    raise ConversionError(f"{where}: every clip was skipped ({len(skipped)}), e.g. {reasons}")


def prepare(
    dataroot: str | pathlib.Path,
    version: str,
    out_dir: str | pathlib.Path,
    frames: int = 3,
    image_size: tuple[int, int] | None = None,
    num_shards: int | None = None,
    on_error: str = "fail",
    scene_list: str | pathlib.Path | None = None,
) -> Plan:
    """Loads the devkit once and turns the dataset into shard tasks (no blob is read)."""
    if on_error not in ON_ERROR_CHOICES:
        raise ValueError(f"on_error={on_error!r}, expected one of {ON_ERROR_CHOICES}")
    if frames < 1:
        raise ValueError(f"frames={frames}, expected >= 1")
    dataroot = pathlib.Path(dataroot)
    nusc = planner.load_nuscenes(dataroot, version)
    skipped: list[tuple[str, str, str]] = []
    per_split: dict[str, list[list[ClipItem]]] = {}
    for split, scenes in planner.scene_splits(nusc, version, scene_list).items():

        def on_bad(token: str, err: ConversionError, split: str = split) -> None:
            if on_error == "fail":
                raise err
            skipped.append((split, token, str(err)))

        per_split[split] = [planner.plan_scene(nusc, name, frames, on_bad) for name in scenes]
    del nusc  # the devkit is the planner's alone; workers get compact items
    items = [c for scenes in per_split.values() for clips in scenes for c in clips]
    if not items:
        _raise_nothing_left(f"{dataroot}/{version}", [s[1:] for s in skipped])
    source_sizes = sorted({c.source_hw for c in items})
    if image_size is None and len(source_sizes) > 1:
        raise ConversionError(
            f"{dataroot}: images of several sizes {source_sizes}; pass --image-size"
        )
    image_hw = source_sizes[0] if image_size is None else (image_size[1], image_size[0])
    # Asking for the size the images already have is still pass-through.
    resize = image_size is not None and (
        len(source_sizes) > 1 or tuple(image_hw) != source_sizes[0]
    )
    options = ConvertOptions(frames, tuple(image_hw), resize, on_error, version)
    version_dir = dataset_dir(out_dir)
    tasks = []
    for split, scene_clips in per_split.items():
        split_items = [c for clips in scene_clips for c in clips]
        if not split_items:
            continue
        wanted = num_shards or planner.default_num_shards(
            _estimate_clip_bytes(dataroot, split_items, options), len(split_items), len(scene_clips)
        )
        non_empty = [c for c in scene_clips if c]
        if wanted > len(non_empty):
            logging.info(
                "%s: %d shards asked, %d scenes: one scene per shard", split, wanted, len(non_empty)
            )
        shards = planner.assign_shards(non_empty, wanted)
        tasks += [
            ShardTask(split, i, len(shards), str(dataroot), str(version_dir), tuple(clips), options)
            for i, clips in enumerate(shards)
        ]
    digest = hashlib.sha256(json.dumps(skipped).encode())
    for task in tasks:
        digest.update(task.fingerprint().encode())
    return Plan(version_dir, options, tasks, skipped, digest.hexdigest())


def clean_stale(plan: Plan, keep_complete: bool) -> None:
    """Removes shard files of this dataset that the plan does not name, temporary files, and
    (unless resuming) every earlier shard; foreign files are left alone."""
    names = {t.filename for t in plan.tasks}
    for path in plan.version_dir.glob(f"{schema.DATASET_NAME}-*.tfrecord-*"):
        if ".tmp-" in path.name or path.name not in names or not keep_complete:
            path.unlink()
    work = plan.version_dir / writer.WORK_DIR
    for path in work.glob("*.json*") if work.exists() else []:
        if (
            ".tmp-" in path.name
            or path.name.removesuffix(".json") not in names
            or not keep_complete
        ):
            path.unlink()


_progress_queue = None


def _init_worker(progress_queue: multiprocessing.Queue) -> None:
    global _progress_queue
    _progress_queue = progress_queue
    logging.getLogger("tensorflow").setLevel(logging.ERROR)


def _worker_write(task: ShardTask) -> ShardResult:
    return writer.write_shard(task, progress=lambda n, b: _progress_queue.put((n, b)))


def _run_local(tasks: list[ShardTask], workers: int, bar: tqdm.tqdm) -> list[ShardResult]:
    """Writes the shards in this process (workers=1) or in `workers` spawned processes."""
    start = time.monotonic()
    written = [0]

    def advance(clips: int, nbytes: int) -> None:
        written[0] += nbytes
        bar.update(clips)
        bar.set_postfix_str(
            f"{written[0] / 2**20 / max(time.monotonic() - start, 1e-9):.1f} MB/s", refresh=False
        )

    if workers <= 1:
        return [writer.write_shard(task, progress=advance) for task in tasks]
    # spawn, not fork: the parent holds TensorFlow and the devkit tables.
    ctx = multiprocessing.get_context("spawn")
    progress_queue = ctx.Queue()
    results = []
    with ctx.Pool(
        min(workers, len(tasks)), initializer=_init_worker, initargs=(progress_queue,)
    ) as pool:
        pending = [pool.apply_async(_worker_write, (task,)) for task in tasks]
        while pending:
            try:
                advance(*progress_queue.get(timeout=0.2))
            except queue_lib.Empty:
                pass
            for job in [j for j in pending if j.ready()]:
                results.append(job.get())  # re-raises a worker's ConversionError here
                pending.remove(job)
        while not progress_queue.empty():
            advance(*progress_queue.get())
    return results


def finish(plan: Plan, results: list[ShardResult], seconds: float) -> dict:
    """Stats, TFDS metadata and the stats file; returns the stats."""
    if not any(r.num_examples for r in results):
        _raise_nothing_left(
            str(plan.version_dir), [(t, why) for r in results for t, why in r.skipped]
        )
    skipped = [{"split": s, "sample_token": t, "reason": r} for s, t, r in plan.skipped]
    skipped += [
        {"split": r.split, "sample_token": t, "reason": why}
        for r in results
        for t, why in r.skipped
    ]
    splits = sorted({r.split for r in results})
    stats = {
        "dataset_dir": str(plan.version_dir),
        "fingerprint": plan.fingerprint,
        **tfds_meta.dataset_metadata(plan.options),
        "clips": {s: sum(r.num_examples for r in results if r.split == s) for s in splits},
        "bytes": {s: sum(r.num_bytes for r in results if r.split == s) for s in splits},
        "num_shards": {s: sum(1 for r in results if r.split == s) for s in splits},
        "skipped": skipped,
        "num_skipped": len(skipped),
        "seconds": round(seconds, 3),
    }
    tfds_meta.finalise(plan.version_dir, plan.options, results, stats)
    work = plan.version_dir / writer.WORK_DIR
    if work.exists():
        work.rmtree()
    return stats


def already_done(plan: Plan) -> dict | None:
    """Stored stats if the output is this very conversion; error if it is a different one."""
    if not tfds_meta.is_finalised(plan.version_dir):
        return None
    stats = tfds_meta.read_stats(plan.version_dir)
    if stats.get("fingerprint") != plan.fingerprint:
        raise ConversionError(
            f"{plan.version_dir} already holds a different finished conversion; "
            "delete it or choose another --out"
        )
    return stats


def convert(
    dataroot: str | pathlib.Path,
    version: str,
    out_dir: str | pathlib.Path,
    frames: int = 3,
    image_size: tuple[int, int] | None = None,
    num_shards: int | None = None,
    workers: int = 1,
    resume: bool = False,
    on_error: str = "fail",
    scene_list: str | pathlib.Path | None = None,
) -> dict:
    """Converts `dataroot` (nuScenes `version`) into `dataset_dir(out_dir)`; returns the stats.

    image_size is (W, H) or None for pass-through of the source JPEG bytes. A finished
    conversion with the same inputs and options is a no-op. With resume, verified complete
    shards are kept and the rest rewritten; without it, earlier partial output is removed.
    """
    start = time.monotonic()
    plan = prepare(dataroot, version, out_dir, frames, image_size, num_shards, on_error, scene_list)
    done = already_done(plan)
    if done is not None:
        logging.info("%s is already complete; nothing to do", plan.version_dir)
        return done
    plan.version_dir.mkdir(parents=True, exist_ok=True)
    clean_stale(plan, keep_complete=resume)
    kept = (
        [r for r in (writer.verified_result(t) for t in plan.tasks) if r is not None]
        if resume
        else []
    )
    kept_names = {r.filename for r in kept}
    todo = [t for t in plan.tasks if t.filename not in kept_names]
    total = sum(len(t.items) for t in todo)
    with tqdm.tqdm(
        total=total, unit="clip", desc="convert", file=sys.stderr, disable=total == 0
    ) as bar:
        results = kept + _run_local(todo, workers, bar)
    stats = finish(plan, results, time.monotonic() - start)
    stats["resumed_shards"] = len(kept)
    return stats


def _parse_size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--image-size {text!r}: expected WxH, e.g. 800x450"
        ) from None
    return width, height


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataroot", required=True)
    parser.add_argument("--version", required=True, help="v1.0-mini or v1.0-trainval")
    parser.add_argument(
        "--out", required=True, help="DATA_DIR; the dataset goes to DATA_DIR/nuscenes_clips/1.0.0"
    )
    parser.add_argument("--frames", type=int, default=3)
    parser.add_argument(
        "--image-size", type=_parse_size, default=None, help="WxH; default: pass-through"
    )
    parser.add_argument(
        "--num-shards", type=int, default=None, help="per split; default ~256 MB shards, x8"
    )
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--on-error", choices=ON_ERROR_CHOICES, default="fail")
    parser.add_argument("--scene-list", default=None, help='JSON {"train": [...], "val": [...]}')
    parser.add_argument(
        "--runner", default=None, help="run as an Apache Beam pipeline on this runner"
    )
    args, beam_args = parser.parse_known_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    common = dict(
        frames=args.frames,
        image_size=args.image_size,
        num_shards=args.num_shards,
        on_error=args.on_error,
        scene_list=args.scene_list,
    )
    if args.runner is not None:
        from data_prep.convert import beam_pipeline

        stats = beam_pipeline.convert_with_beam(
            args.dataroot,
            args.version,
            args.out,
            pipeline_args=["--runner", args.runner, *beam_args],
            **common,
        )
    elif beam_args:
        parser.error(f"unrecognised arguments {beam_args} (Beam options need --runner)")
    else:
        stats = convert(
            args.dataroot,
            args.version,
            args.out,
            workers=args.workers,
            resume=args.resume,
            **common,
        )
    summary = {
        k: stats[k]
        for k in ("dataset_dir", "clips", "bytes", "num_shards", "num_skipped", "seconds")
    }
    print(json.dumps(summary, indent=1))
    print(f"stats: {epath.Path(stats['dataset_dir']) / tfds_meta.STATS_FILE}")


if __name__ == "__main__":
    main()
