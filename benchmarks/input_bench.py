r"""Input-pipeline throughput at the reference input size (1600x900 JPEGs -> 800x450 padded to
800x480, 6 cameras x 3 frames, 2048 rays per camera and target frame).

  PYTHONPATH=. python benchmarks/input_bench.py [--data_dir DIR] [--batches 12] [--workers -1]

Without --data_dir it converts ../shared/real_nuscenes_sample (one real key frame) into a
temporary dataset and reads it repeatedly (warm page cache). Two measurements:
1. stage shares, one thread, per clip: read (record bytes + proto parse), decode (JPEG, with
   libjpeg's DCT downscale), resize (PIL resize when still needed + uint8 pad), rays
   (geometry, LiDAR filtering/projection, ray and mask sampling);
2. end to end: `next(pipeline)` on one CPU device, all worker threads, clips/s per process
   (includes the transfer and the on-device ImageNet normalisation).
The last printed line is JSON.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import pathlib
import tempfile
import time

import jax
import numpy as np
from PIL import Image

from configs import mim4d_vs01
from mim4d_jax.data.example import make_example_u8, pad_images
from mim4d_jax.data.pipeline import make_input_pipeline
from mim4d_jax.data.reader import ClipReader

# One accelerator step of the reference config consumes 1 clip (batch 1 per accelerator, as in
# the reference) at about 1 step/s for ConvNeXt-S on an H100: the brief's planning figure.
CLIPS_PER_ACCELERATOR_PER_S = 1.0
REAL_SAMPLE = pathlib.Path(__file__).resolve().parents[2] / "shared" / "real_nuscenes_sample"


def _dataset(data_dir: str | None, tmp: str) -> str:
    if data_dir:
        return data_dir
    from data_prep.convert_nuscenes import convert
    from data_prep.real_sample import build_real_sample_dataset

    root = build_real_sample_dataset(REAL_SAMPLE, pathlib.Path(tmp) / "nuscenes")
    convert(root, "v1.0-mini", pathlib.Path(tmp) / "clips", frames=3)
    return str(pathlib.Path(tmp) / "clips")


def stage_times(config, reader: ClipReader, clips: int) -> dict[str, float]:
    """CPU seconds per clip of each stage, run sequentially in this thread. Thread CPU time,
    not wall time: on a shared machine it does not count time spent waiting for a core."""
    size_wh = tuple(config.data.image_size)
    totals = dict.fromkeys(("read", "decode", "resize", "rays"), 0.0)
    for i in range(clips):
        index = i % len(reader)
        t0 = time.thread_time()
        clip, where = reader.read_clip(index)
        t1 = time.thread_time()
        decoded = []
        for cam_jpegs in clip["jpegs"]:
            for jpeg in cam_jpegs:
                image = Image.open(io.BytesIO(jpeg))
                image.draft("RGB", size_wh)
                decoded.append(image.convert("RGB"))
        t2 = time.thread_time()
        pixels = np.stack(
            [
                np.asarray(
                    im if im.size == size_wh else im.resize(size_wh, Image.Resampling.BILINEAR)
                )
                for im in decoded
            ]
        )
        pad_images(pixels.reshape(6, -1, *pixels.shape[1:]), config.data.pad_size)
        t3 = time.thread_time()
        make_example_u8(clip, config, seed=0, position=i, where=where)
        t4 = time.thread_time()
        totals["read"] += t1 - t0
        totals["decode"] += t2 - t1
        totals["resize"] += t3 - t2
        # make_example repeats decode + resize; what it adds beyond them is geometry and rays
        totals["rays"] += max(0.0, (t4 - t3) - (t3 - t1))
    return {k: v / clips for k, v in totals.items()}


def end_to_end(config, batches: int) -> tuple[float, float]:
    """Clips/s (wall) of `next(pipeline)` on one CPU device after one warm-up batch, and the
    process CPU seconds per clip (all threads: workers, producer, transfer, normalisation)."""
    mesh = jax.make_mesh(
        (1, 1, 1),
        ("data", "fsdp", "tensor"),
        devices=jax.devices()[:1],
        axis_types=(jax.sharding.AxisType.Auto,) * 3,
    )
    with make_input_pipeline(config, mesh) as pipe:
        jax.block_until_ready(next(pipe))
        start, cpu_start = time.perf_counter(), time.process_time()
        for _ in range(batches):
            jax.block_until_ready(next(pipe))
        seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    clips = batches * config.batch_size
    return clips / seconds, cpu_seconds / clips


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data_dir", default=None)
    parser.add_argument("--batches", type=int, default=12)
    parser.add_argument("--batch_size", type=int, default=1, help="per-process batch")
    parser.add_argument("--workers", type=int, default=-1, help="-1 = one per CPU core")
    parser.add_argument("--stage_clips", type=int, default=4)
    args = parser.parse_args()
    config = mim4d_vs01.get_config()
    config.batch_size = args.batch_size
    config.data.num_parallel_calls = args.workers
    with tempfile.TemporaryDirectory() as tmp:
        config.data.dir = _dataset(args.data_dir, tmp)
        reader = ClipReader(config, config.data.train_split)
        stages = stage_times(config, reader, args.stage_clips)
        reader.close()
        clips_per_s, cpu_s_per_clip = end_to_end(config, args.batches)
    total = sum(stages.values())
    goal = 3 * CLIPS_PER_ACCELERATOR_PER_S
    cores = os.cpu_count() or 1
    result = {
        "clips_per_s_per_process": round(clips_per_s, 2),
        "cpu_cores": cores,
        "load_average_1min": round(os.getloadavg()[0], 1),
        "cpu_s_per_clip": round(cpu_s_per_clip, 4),
        # what the same process would deliver with its cores to itself (perfect threading)
        "clips_per_s_on_idle_cores": round(cores / cpu_s_per_clip, 2),
        "image_size": list(config.data.image_size),
        "pad_size": list(config.data.pad_size),
        "num_rays": config.data.num_rays,
        "frames": config.data.frames,
        "single_thread_cpu_s_per_clip": round(total, 4),
        "share": {k: round(v / total, 3) for k, v in stages.items()},
        "assumed_clips_per_accelerator_step": 1,
        "assumed_steps_per_s": CLIPS_PER_ACCELERATOR_PER_S,
        "goal_clips_per_s": goal,
        "meets_goal": clips_per_s >= goal,
    }
    stage_text = json.dumps({k: round(v, 4) for k, v in stages.items()})
    print(f"stages (CPU s/clip, one thread): {stage_text}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
