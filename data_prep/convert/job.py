"""The conversion job: plan (devkit, this process), write shards (local workers or Beam), finish.

    plan(request) -> Plan                     loads the devkit once; compact shard tasks
    prepare_output(plan) -> kept results      output directory ready; verified shards on resume
    run_local(plan, workers, kept) -> results writes the other shards, here or in worker processes
    finish(plan, results, seconds) -> stats   TFDS metadata and conversion_stats.json, last
    convert(request) -> stats                 all of the above (a finished run is a no-op)

The Beam launcher (beam_pipeline.py) runs the same plan / prepare / finish steps around its
pipeline. Local worker processes exit as soon as the process that started them is gone, and
never publish a shard after that (see `_watch_parent`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import multiprocessing
import os
import pathlib
import queue as queue_lib
import sys
import threading
import time

import tqdm
from etils import epath

from data_prep.convert import planner, tfds_meta, writer
from data_prep.convert.items import (
    ClipItem,
    ConversionError,
    ConvertOptions,
    ShardResult,
    ShardTask,
)
from data_prep.convert.request import ConvertRequest
from data_prep.convert.tfds_meta import dataset_dir
from mim4d_jax.data import schema

__all__ = [
    "Plan",
    "already_done",
    "clean_stale",
    "convert",
    "dataset_dir",
    "finish",
    "plan",
    "prepare_output",
    "run_local",
]

# How often a worker checks that its parent is still alive (seconds).
PARENT_POLL_S = 0.2
# Exit status of a worker that stops because its parent died (EX_SOFTWARE-like, not 0).
EXIT_PARENT_GONE = 70


@dataclasses.dataclass
class Plan:
    """Output of the planning step, shared by the local and the Beam execution."""

    request: ConvertRequest
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


def plan(request: ConvertRequest) -> Plan:
    """Loads the devkit once and turns the dataset into shard tasks (no blob is read)."""
    dataroot = pathlib.Path(request.dataroot)
    on_error, frames = request.on_error, request.frames
    nusc = planner.load_nuscenes(dataroot, request.version)
    skipped: list[tuple[str, str, str]] = []
    per_split: dict[str, list[list[ClipItem]]] = {}
    for split, scenes in planner.scene_splits(nusc, request.version, request.scene_list).items():

        def on_bad(token: str, err: ConversionError, split: str = split) -> None:
            if on_error == "fail":
                raise err
            skipped.append((split, token, str(err)))

        per_split[split] = [planner.plan_scene(nusc, name, frames, on_bad) for name in scenes]
    del nusc  # the devkit is the planner's alone; workers get compact items
    items = [c for scenes in per_split.values() for clips in scenes for c in clips]
    if not items:
        _raise_nothing_left(f"{dataroot}/{request.version}", [s[1:] for s in skipped])
    source_sizes = sorted({c.source_hw for c in items})
    image_size = request.image_size
    if image_size is None and len(source_sizes) > 1:
        raise ConversionError(
            f"{dataroot}: images of several sizes {source_sizes}; pass --image-size",
            hint="pass --image-size WxH to resize every image to one size",
        )
    image_hw = source_sizes[0] if image_size is None else (image_size[1], image_size[0])
    # Asking for the size the images already have is still pass-through.
    resize = image_size is not None and (
        len(source_sizes) > 1 or tuple(image_hw) != source_sizes[0]
    )
    options = ConvertOptions(
        frames, tuple(image_hw), resize, on_error, request.version, request.verify_jpeg
    )
    version_dir = dataset_dir(request.out_dir)
    tasks = []
    for split, scene_clips in per_split.items():
        split_items = [c for clips in scene_clips for c in clips]
        if not split_items:
            continue
        wanted = request.num_shards or planner.default_num_shards(
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
    return Plan(request, version_dir, options, tasks, skipped, digest.hexdigest())


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


def already_done(plan: Plan) -> dict | None:
    """Stored stats if the output is this very conversion; error if it is a different one."""
    if not tfds_meta.is_finalised(plan.version_dir):
        return None
    stats = tfds_meta.read_stats(plan.version_dir)
    if stats.get("fingerprint") != plan.fingerprint:
        raise ConversionError(
            f"{plan.version_dir} already holds a different finished conversion; "
            "delete it or choose another --out",
            hint="delete that directory or pass another --out",
        )
    return stats


def prepare_output(plan: Plan, keep_complete: bool | None = None) -> list[ShardResult]:
    """Creates the version directory and removes stale files; returns the verified complete
    shards that are kept (only when resuming: `keep_complete`, default the request's resume)."""
    keep = plan.request.resume if keep_complete is None else keep_complete
    plan.version_dir.mkdir(parents=True, exist_ok=True)
    clean_stale(plan, keep_complete=keep)
    if not keep:
        return []
    return [r for r in (writer.verified_result(t) for t in plan.tasks) if r is not None]


# --- local worker processes -------------------------------------------------------------------

_progress_queue = None
_parent_pid: int | None = None


def _parent_alive() -> bool:
    """The process that started this worker is still its parent (an orphan is re-parented)."""
    return _parent_pid is None or os.getppid() == _parent_pid


def _watch_parent() -> None:
    """Ends the worker soon after its parent dies, wherever the worker's main thread is (a
    blocked read, a long shard), so no orphan keeps writing into a conversion nobody finishes."""
    while _parent_alive():
        time.sleep(PARENT_POLL_S)
    os._exit(EXIT_PARENT_GONE)


def _init_worker(progress_queue: multiprocessing.Queue, parent_pid: int) -> None:
    global _progress_queue, _parent_pid
    _progress_queue, _parent_pid = progress_queue, parent_pid
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    threading.Thread(target=_watch_parent, name="parent-watchdog", daemon=True).start()
    if not _parent_alive():  # the parent died while this worker was starting up
        os._exit(EXIT_PARENT_GONE)


def _worker_write(task: ShardTask) -> ShardResult:
    # The publish check closes the gap between the parent's death and the watchdog's next poll.
    return writer.write_shard(
        task, progress=lambda n, b: _progress_queue.put((n, b)), may_publish=_parent_alive
    )


def run_local(
    plan: Plan, workers: int | None = None, kept: list[ShardResult] = ()
) -> list[ShardResult]:
    """Writes every shard of the plan not in `kept`, in this process (workers=1) or in
    `min(workers, shards)` spawned processes; returns `kept` + the new results."""
    workers = plan.request.workers if workers is None else workers
    kept_names = {r.filename for r in kept}
    tasks = [t for t in plan.tasks if t.filename not in kept_names]
    total = sum(len(t.items) for t in tasks)
    with tqdm.tqdm(
        total=total, unit="clip", desc="convert", file=sys.stderr, disable=total == 0
    ) as bar:
        return list(kept) + _write_tasks(tasks, workers, bar)


def _write_tasks(tasks: list[ShardTask], workers: int, bar: tqdm.tqdm) -> list[ShardResult]:
    start = time.monotonic()
    written = [0]

    def advance(clips: int, nbytes: int) -> None:
        written[0] += nbytes
        bar.update(clips)
        bar.set_postfix_str(
            f"{written[0] / 2**20 / max(time.monotonic() - start, 1e-9):.1f} MB/s", refresh=False
        )

    if not tasks:
        return []
    if workers <= 1:
        return [writer.write_shard(task, progress=advance) for task in tasks]
    # spawn, not fork: the parent holds TensorFlow and the devkit tables.
    ctx = multiprocessing.get_context("spawn")
    progress_queue = ctx.Queue()
    results = []
    with ctx.Pool(
        min(workers, len(tasks)), initializer=_init_worker, initargs=(progress_queue, os.getpid())
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
    """Stats, TFDS metadata and the stats file (all after every shard); returns the stats."""
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


def convert(request: ConvertRequest) -> dict:
    """Converts `request.dataroot` into `dataset_dir(request.out_dir)`; returns the stats
    (plus `resumed_shards`). A finished conversion with the same plan is a no-op; with
    resume, verified complete shards are kept; without it, earlier partial output is removed."""
    start = time.monotonic()
    job_plan = plan(request)
    done = already_done(job_plan)
    if done is not None:
        logging.info("%s is already complete; nothing to do", job_plan.version_dir)
        return done
    kept = prepare_output(job_plan)
    results = run_local(job_plan, request.workers, kept)
    stats = finish(job_plan, results, time.monotonic() - start)
    stats["resumed_shards"] = len(kept)
    return stats
