r"""Input-pipeline throughput at the reference input size (1600x900 JPEGs -> 800x450 padded to
800x480, 6 cameras x 3 frames, 2048 rays per camera and target frame).

  PYTHONPATH=. python benchmarks/input_bench.py [--data_dir DIR] [--batches 4]
      [--batch_size 8] [--workers -1] [--data_crc on|off]

Without --data_dir it converts tests/data/nuscenes_sample (one real key frame) into a
temporary dataset holding that clip 2 x batch_size times (warm page cache). Two measurements:
1. stage shares, one thread, per clip: read (record bytes + proto parse), decode (JPEG, with
   libjpeg's DCT downscale), resize (PIL resize when still needed + uint8 pad), rays
   (geometry, LiDAR filtering/projection, ray and mask sampling);
2. throughput with all worker threads: the host work alone (`host_batch`) and end to end
   (`next(pipeline)` on one CPU device: adds the transfer and the ImageNet normalisation,
   which on this CPU-only machine also runs on the host cores), wall clips/s and CPU s/clip.
On a shared machine wall figures understate; CPU seconds per clip do not depend on the load.
`--data_crc off` skips the records' data CRC32C check (always on in training) to measure its
cost; the JSON also reports the CRC's own time per record with each implementation.
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
import tensorflow as tf
import tensorflow_datasets as tfds
from PIL import Image

from configs import mim4d_vs01
from mim4d_jax.data import schema, tfrecord
from mim4d_jax.data.example import make_example_u8
from mim4d_jax.data.pipeline import make_input_pipeline
from mim4d_jax.data.reader import ClipReader, open_dataset_dir
from mim4d_jax.data.tfrecord import RecordFile

# One accelerator step of the reference config consumes 1 clip (batch 1 per accelerator, as in
# the reference) at about 1 step/s for ConvNeXt-S on an H100: the brief's planning figure.
CLIPS_PER_ACCELERATOR_PER_S = 1.0
REAL_SAMPLE = pathlib.Path(__file__).resolve().parents[1] / "tests" / "data" / "nuscenes_sample"


def _dataset(data_dir: str | None, tmp: str, copies: int) -> str:
    """`data_dir`, or the converted real sample with its one clip written `copies` times."""
    if data_dir:
        return data_dir
    from data_prep.convert_nuscenes import convert
    from data_prep.real_sample import build_real_sample_dataset

    tmp_path = pathlib.Path(tmp)
    root = build_real_sample_dataset(REAL_SAMPLE, tmp_path / "nuscenes")
    convert(root, "v1.0-mini", tmp_path / "clips", frames=3)
    builder = open_dataset_dir(str(tmp_path / "clips"))
    record = RecordFile(str(builder.info.splits["train"].filepaths[0]))
    out_dir = tmp_path / "copies" / schema.DATASET_NAME / "1.0.0"
    out_dir.mkdir(parents=True)
    name = f"{schema.DATASET_NAME}-train.tfrecord-00000-of-00001"
    with tf.io.TFRecordWriter(str(out_dir / name)) as writer:
        for _ in range(copies):
            writer.write(record.read(0))
    record.close()
    tfds.folder_dataset.write_metadata(
        data_dir=out_dir,
        features=builder.info.features,
        split_infos=None,
        filename_template="{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}",
        metadata=builder.info.metadata,
        check_data=False,
    )
    return str(tmp_path / "copies")


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
        pad_wh = tuple(config.data.pad_size)
        padded = np.zeros((len(decoded), pad_wh[1], pad_wh[0], 3), np.uint8)
        for k, image in enumerate(decoded):
            if image.size != size_wh:
                image = image.resize(size_wh, Image.Resampling.BILINEAR)
            padded[k, : size_wh[1], : size_wh[0]] = np.asarray(image)
        t3 = time.thread_time()
        make_example_u8(clip, config, seed=0, position=i, where=where)
        t4 = time.thread_time()
        totals["read"] += t1 - t0
        totals["decode"] += t2 - t1
        totals["resize"] += t3 - t2
        # make_example repeats decode + resize; what it adds beyond them is geometry and rays
        totals["rays"] += max(0.0, (t4 - t3) - (t3 - t1))
    return {k: v / clips for k, v in totals.items()}


def _timed(step, count: int) -> tuple[float, float]:
    """(wall s, process CPU s) of `count` calls of step(i)."""
    start, cpu_start = time.perf_counter(), time.process_time()
    for i in range(count):
        step(i)
    return time.perf_counter() - start, time.process_time() - cpu_start


def throughput(config, batches: int) -> dict[str, float]:
    """Clips/s and process CPU s/clip (all threads) after one warm-up batch, for
    `host`: the host work alone (`host_batch`: read, decode, resize, rays, stacking) and
    `device`: `next(pipeline)` on one CPU device, adding the transfer and the ImageNet
    normalisation, which here runs on the host's cores (on an accelerator host it does not)."""
    mesh = jax.make_mesh(
        (1, 1, 1),
        ("data", "fsdp", "tensor"),
        devices=jax.devices()[:1],
        axis_types=(jax.sharding.AxisType.Auto,) * 3,
    )
    clips = batches * config.batch_size
    result = {}
    with make_input_pipeline(config, mesh) as pipe:
        pipe.host_batch(0)
        wall, cpu = _timed(lambda i: pipe.host_batch(i + 1), batches)
        result["host"] = (clips / wall, cpu / clips)
        jax.block_until_ready(next(pipe))
        wall, cpu = _timed(lambda i: jax.block_until_ready(next(pipe)), batches)
        result["device"] = (clips / wall, cpu / clips)
    return result


def crc_times(reader: ClipReader, repeats: int = 5) -> dict[str, float]:
    """Record bytes and seconds per record of the data CRC32C, per implementation."""
    data = reader.files[0].read(0)
    out = {"record_bytes": len(data)}
    for name, fn in (("compiled", tfrecord._crc32c_fast), ("numpy", tfrecord._crc32c_numpy)):
        start = time.perf_counter()
        for _ in range(repeats):
            fn(data)
        out[f"crc_s_per_record_{name}"] = round((time.perf_counter() - start) / repeats, 5)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data_dir", default=None)
    parser.add_argument("--batches", type=int, default=4)
    parser.add_argument("--batch_size", type=int, default=8, help="per-process batch")
    parser.add_argument("--workers", type=int, default=-1, help="-1 = one per CPU core")
    parser.add_argument("--stage_clips", type=int, default=4)
    parser.add_argument("--data_crc", choices=("on", "off"), default="on")
    args = parser.parse_args()
    tfrecord.VERIFY_DATA_CRC = args.data_crc == "on"
    config = mim4d_vs01.get_config()
    config.batch_size = args.batch_size
    config.data.num_parallel_calls = args.workers
    with tempfile.TemporaryDirectory() as tmp:
        config.data.dir = _dataset(args.data_dir, tmp, copies=2 * args.batch_size)
        reader = ClipReader(config, config.data.train_split)
        stages = stage_times(config, reader, args.stage_clips)
        crc = crc_times(reader)
        reader.close()
        measured = throughput(config, args.batches)
    total = sum(stages.values())
    goal = 3 * CLIPS_PER_ACCELERATOR_PER_S
    cores = os.cpu_count() or 1
    result = {
        "data_crc": args.data_crc,
        "crc_implementation": tfrecord.CRC32C_IMPLEMENTATION,
        **crc,
        "clips_per_s_per_process": round(measured["device"][0], 2),
        "host_only_clips_per_s": round(measured["host"][0], 2),
        "cpu_cores": cores,
        "load_average_1min": round(os.getloadavg()[0], 1),
        "host_cpu_s_per_clip": round(measured["host"][1], 4),
        "device_path_cpu_s_per_clip": round(measured["device"][1], 4),
        # what the host work would deliver with this machine's cores to itself (ideal threads)
        "host_clips_per_s_on_idle_cores": round(cores / measured["host"][1], 2),
        "image_size": list(config.data.image_size),
        "pad_size": list(config.data.pad_size),
        "num_rays": config.data.num_rays,
        "frames": config.data.frames,
        "batch_size": config.batch_size,
        "single_thread_cpu_s_per_clip": round(total, 4),
        "share": {k: round(v / total, 3) for k, v in stages.items()},
        "assumed_clips_per_accelerator_step": 1,
        "assumed_steps_per_s": CLIPS_PER_ACCELERATOR_PER_S,
        "goal_clips_per_s": goal,
        "meets_goal_measured": measured["device"][0] >= goal,
        "meets_goal_on_idle_cores": cores / measured["host"][1] >= goal,
    }
    stage_text = json.dumps({k: round(v, 4) for k, v in stages.items()})
    print(f"stages (CPU s/clip, one thread): {stage_text}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
