"""Pass-through conversion throughput vs the raw read rate of the same files, one process.

Builds real-size blobs cheaply: every clip gets its own copies of the six real 1600x900
sample JPEGs (~130-165 KB) for each of T frames and of the real 34,688-point LiDAR sweep, then
times (1) reading every file's bytes and (2) the shard writer (`writer.write_shard`: read,
validate, serialise, write TFRecords) on work items naming those files. Geometry is the real
sample's; only throughput matters. The last line printed is JSON with the ratio.

`--cold` drops the page cache (root, Linux) before every timed pass, so both the raw read
and the conversion read from disk, as a real conversion of 300 GB does; without it both read
from memory, where the raw read is a memcpy and the ratio mostly measures serialisation.

`--verify-jpeg` times the conversion with the full-decode scan check of every JPEG
(`--verify-jpeg` of the converter) instead of plain pass-through.

    python -m benchmarks.convert_bench [--clips 24] [--frames 3] [--work DIR] [--cold]
        [--verify-jpeg]
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import tempfile
import time

import numpy as np
from nuscenes.nuscenes import NuScenes

from data_prep.convert import planner, writer
from data_prep.convert.items import ClipItem, ConvertOptions, ShardTask
from data_prep.real_sample import build_real_sample_dataset

REAL_SAMPLE_DIR = pathlib.Path(__file__).resolve().parents[1] / "tests" / "data" / "nuscenes_sample"


def build_blobs(root: pathlib.Path, clips: int, frames: int) -> list[ClipItem]:
    """Real-size copies under `root` and one work item per clip naming them."""
    build_real_sample_dataset(REAL_SAMPLE_DIR, root)
    nusc = NuScenes("v1.0-mini", str(root), verbose=False)
    template = planner.plan_clip(nusc, nusc.sample[0]["token"], frames, "bench", "scene-bench")
    items = []
    for k in range(clips):
        paths = []
        for cam_paths in template.image_paths:
            src = root / cam_paths[0]
            copies = tuple(f"copies/{k:04d}/{t}_{src.name}" for t in range(frames))
            for rel in copies:
                (root / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, root / rel)
            paths.append(copies)
        lidar = f"copies/{k:04d}/{pathlib.Path(template.lidar_path).name}"
        shutil.copyfile(root / template.lidar_path, root / lidar)
        items.append(
            ClipItem(
                **{
                    **template.__dict__,
                    "sample_token": f"bench{k:04d}",
                    "image_paths": tuple(paths),
                    "lidar_path": lidar,
                    "frame_valid_nt": np.ones_like(template.frame_valid_nt),
                }
            )
        )
    return items


def drop_page_cache() -> None:
    """Flush and drop the Linux page cache so the next read comes from disk."""
    os.sync()
    try:
        pathlib.Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError as error:
        raise SystemExit(f"--cold needs root on Linux to drop the page cache: {error}") from error


def raw_read(root: pathlib.Path, items: list[ClipItem]) -> tuple[float, int]:
    """Seconds and bytes to read every blob of every clip once (the floor for pass-through)."""
    start, total = time.perf_counter(), 0
    for item in items:
        for rel in [p for cam in item.image_paths for p in cam] + [item.lidar_path]:
            total += len((root / rel).read_bytes())
    return time.perf_counter() - start, total


def raw_copy(root: pathlib.Path, items: list[ClipItem], dest: pathlib.Path) -> float:
    """Seconds to read every blob and append its bytes to one file: the floor for any converter
    that writes what it reads (context for the ratio; the page cache makes raw reads cheap)."""
    start = time.perf_counter()
    with dest.open("wb") as f:
        for item in items:
            for rel in [p for cam in item.image_paths for p in cam] + [item.lidar_path]:
                f.write((root / rel).read_bytes())
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=24)
    parser.add_argument("--frames", type=int, default=3)
    parser.add_argument("--work", default=None, help="scratch directory (default: a temporary one)")
    parser.add_argument("--cold", action="store_true", help="drop the page cache before each pass")
    parser.add_argument(
        "--verify-jpeg", action="store_true", help="decode every JPEG to check its scan"
    )
    args = parser.parse_args()
    settle = drop_page_cache if args.cold else (lambda: None)
    work = pathlib.Path(args.work or tempfile.mkdtemp(prefix="convert_bench_"))
    root, out = work / "nusc", work / "out"
    out.mkdir(parents=True, exist_ok=True)
    items = build_blobs(root, args.clips, args.frames)
    options = ConvertOptions(
        args.frames, items[0].source_hw, False, "fail", "v1.0-mini", verify_jpeg=args.verify_jpeg
    )
    task = ShardTask("train", 0, 1, str(root), str(out), tuple(items), options)
    raw_read(root, items)  # warm: without --cold both timings read from memory
    # Interleave the timings and keep the best of each, so a busy shared machine hurts both alike.
    raw_s, copy_s, write_s = [], [], []
    for _ in range(3):
        settle()
        seconds, in_bytes = raw_read(root, items)
        raw_s.append(seconds)
        settle()
        copy_s.append(raw_copy(root, items, out / "raw_copy.bin"))
        settle()
        start = time.perf_counter()
        result = writer.write_shard(task)
        write_s.append(time.perf_counter() - start)
    raw, copy, conv = min(raw_s), min(copy_s), min(write_s)
    report = {
        "clips": len(items),
        "cold": args.cold,
        "verify_jpeg": args.verify_jpeg,
        "frames": args.frames,
        "input_mb_per_clip": round(in_bytes / len(items) / 2**20, 3),
        "raw_read_clips_per_s": round(len(items) / raw, 2),
        "raw_read_mb_per_s": round(in_bytes / raw / 2**20, 1),
        "convert_clips_per_s": round(len(items) / conv, 2),
        "convert_in_mb_per_s": round(in_bytes / conv / 2**20, 1),
        "convert_out_mb_per_s": round(result.num_bytes / conv / 2**20, 1),
        "raw_copy_clips_per_s": round(len(items) / copy, 2),
        "ratio_vs_raw_copy": round(copy / conv, 3),
        "ratio_vs_raw_read": round(raw / conv, 3),
    }
    if args.work is None:
        shutil.rmtree(work)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
