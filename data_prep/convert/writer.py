"""Devkit-free shard writer: reads blobs named by work items, validates them, writes one shard.

Used unchanged by local worker processes and by Beam workers. A shard is written to a
temporary name and renamed when complete; a small JSON manifest beside it records its
fingerprint, example count and size so `--resume` can verify it without re-reading blobs.
"""

from __future__ import annotations

import io
import json
import os
import struct
from collections.abc import Callable

import numpy as np
import PIL.Image
import tensorflow as tf
from etils import epath

from data_prep.convert.example_codec import ExampleEncoder
from data_prep.convert.items import ClipItem, ConversionError, ShardResult, ShardTask
from mim4d_jax.data import schema
from mim4d_jax.geometry.poses import resize_intrinsics

LIDAR_SOURCE_DIMS = 5  # .pcd.bin: float32 x, y, z, intensity, ring
JPEG_QUALITY = 95
WORK_DIR = "conversion_work"  # manifests, inside the version directory until finalised
# Called after every clip with (clips_done, bytes_written); drives the progress bar.
ProgressFn = Callable[[int, int], None]


class ShardAbandoned(RuntimeError):
    """The writer was told not to publish (its parent process is gone); nothing was kept."""


# SOF markers (baseline, progressive, ...) carry the image size; C4/C8/CC are not frames.
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(H, W) from the first frame header, walking the marker segments; None if malformed."""
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        if marker in _SOF_MARKERS:
            if length < 7 or pos + 9 > len(data):
                return None
            return int.from_bytes(data[pos + 5 : pos + 7], "big"), int.from_bytes(
                data[pos + 7 : pos + 9], "big"
            )
        if marker == 0xDA or length < 2:  # start of scan before any frame header
            return None
        pos += 2 + length
    return None


def truncated_scan(data: bytes) -> bool:
    """Whether the entropy-coded scan ended early (a file cut short, an end marker appended).

    libjpeg does not fail on such a file: it warns and fills every block after the cut with
    zero coefficients, which decode to exactly Y = Cb = Cr = 128. So the scan is called
    truncated when the last MCU's luma is exactly 128 and the last pixel's chroma too; a real
    image region is never perfectly flat mid-grey with neutral chroma. A cut inside the last
    MCU goes unnoticed (that MCU is then only partly grey), and so does a progressive JPEG cut
    after its first scans (it decodes blurred, not grey); nuScenes and the synthetic world
    write baseline JPEGs. Raises OSError if undecodable.
    """
    with PIL.Image.open(io.BytesIO(data)) as img:
        if img.format != "JPEG":
            raise OSError(f"not a JPEG but {img.format}")
        layers = getattr(img, "layer", None) or [("", 1, 1, 0)]
        mcu_w = 8 * max(layer[1] for layer in layers)
        mcu_h = 8 * max(layer[2] for layer in layers)
        if img.mode == "RGB":
            img.draft("YCbCr", img.size)  # libjpeg's own YCbCr: no colour conversion rounding
        img.load()
        pixels = np.asarray(img)
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    height, width = pixels.shape[:2]
    last_mcu = pixels[(height - 1) // mcu_h * mcu_h :, (width - 1) // mcu_w * mcu_w :, 0]
    return bool(np.all(last_mcu == 128) and np.all(pixels[-1, -1] == 128))


def check_scan(data: bytes, path: epath.Path) -> None:
    """ConversionError naming `path` if the JPEG does not decode or its scan is truncated."""
    try:
        truncated = truncated_scan(data)
    except (OSError, ValueError, PIL.Image.DecompressionBombError) as err:
        raise ConversionError(f"corrupt JPEG {path}: {err}") from None
    if truncated:
        raise ConversionError(
            f"truncated JPEG {path}: the scan ends early (the rest decodes as flat grey)"
        )


def read_jpeg(path: epath.Path, source_hw: tuple[int, int]) -> bytes:
    """The file's bytes after cheap checks: JPEG markers at both ends and the frame header.

    A full decode would cost more than the rest of pass-through; truncation, non-JPEG data and
    a wrong size are caught from the markers and headers. Damage inside the entropy-coded data
    is not.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConversionError(f"missing image file {path}") from None
    if data[:2] != b"\xff\xd8" or data.rstrip(b"\x00")[-2:] != b"\xff\xd9":
        raise ConversionError(f"corrupt JPEG {path}: missing start/end marker ({len(data)} bytes)")
    size_hw = jpeg_size(data)
    if size_hw is None:
        raise ConversionError(f"corrupt JPEG {path}: no valid frame header")
    if size_hw != tuple(source_hw):
        raise ConversionError(
            f"image {path}: {size_hw[1]}x{size_hw[0]}, expected {source_hw[1]}x{source_hw[0]}"
        )
    return data


def resize_jpeg(data: bytes, path: epath.Path, out_hw: tuple[int, int]) -> bytes:
    """Decode, resize with antialiasing (PIL widens its filters when downscaling), re-encode."""
    try:
        with PIL.Image.open(io.BytesIO(data)) as img:
            img = img.convert("RGB").resize((out_hw[1], out_hw[0]), PIL.Image.Resampling.BILINEAR)
    except OSError as err:
        raise ConversionError(f"corrupt JPEG {path}: {err}") from None
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=JPEG_QUALITY)
    return buf.getvalue()


def read_lidar(path: epath.Path) -> np.ndarray:
    """Key-frame points as a flat float32 (P * LIDAR_DIMS,) array of x, y, z, intensity."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConversionError(f"missing LiDAR file {path}") from None
    record = 4 * LIDAR_SOURCE_DIMS
    if len(data) % record:
        raise ConversionError(
            f"truncated LiDAR file {path}: {len(data)} bytes is not a multiple of {record}"
        )
    points_p5 = np.frombuffer(data, np.float32).reshape(-1, LIDAR_SOURCE_DIMS)
    return np.ascontiguousarray(points_p5[:, : schema.LIDAR_DIMS]).reshape(-1)


def scaled_intrinsics(
    intrinsics_nt33: np.ndarray, source_hw: tuple[int, int], out_hw: tuple[int, int]
) -> np.ndarray:
    """K for a resized image, in the input pipeline's half-pixel convention (the antialiased
    resize maps pixel centre u to (u + 0.5) s - 0.5), so both resize paths agree."""
    scale_2 = np.array([out_hw[1] / source_hw[1], out_hw[0] / source_hw[0]])
    return resize_intrinsics(
        intrinsics_nt33, np.broadcast_to(scale_2, (*intrinsics_nt33.shape[:-2], 2))
    )


def clip_example(item: ClipItem, task: ShardTask) -> dict:
    """The feature dict of one clip (see schema.clip_features)."""
    root, opts = epath.Path(task.dataroot), task.options
    images = {}
    for cam, paths in zip(schema.CAMERAS, item.image_paths):
        frames = []
        for rel in paths:
            data = read_jpeg(root / rel, item.source_hw)
            if opts.resize or opts.verify_jpeg:  # the decode that a resize needs anyway
                check_scan(data, root / rel)
            frames.append(resize_jpeg(data, root / rel, opts.image_hw) if opts.resize else data)
        images[cam] = frames
    if not opts.resize and tuple(item.source_hw) != tuple(opts.image_hw):
        raise ConversionError(
            f"sample {item.sample_token}: images are {item.source_hw}, dataset is {opts.image_hw}"
        )
    intrinsics_nt33 = item.intrinsics_nt33
    if opts.resize:
        intrinsics_nt33 = scaled_intrinsics(intrinsics_nt33, item.source_hw, opts.image_hw)
    points = read_lidar(root / item.lidar_path)
    return {
        "sample_token": item.sample_token,
        "scene_name": item.scene_name,
        "location": item.location,
        "images": images,
        "intrinsics": intrinsics_nt33,
        "cam2ego": item.cam2ego_nt44,
        "ego2global": item.ego2global_nt44,
        "cam_timestamps": item.cam_timestamps_nt,
        "frame_valid": item.frame_valid_nt,
        "lidar_points": points,
        "num_lidar_points": np.int64(points.size // schema.LIDAR_DIMS),
        "lidar2ego": item.lidar2ego_44,
        "lidar_ego2global": item.lidar_ego2global_44,
        "lidar_timestamp": np.int64(item.lidar_timestamp),
        "boxes": {
            "category": list(item.box_category),
            "center": item.box_center_b3,
            "size": item.box_size_b3,
            "yaw": item.box_yaw_b,
            "num_lidar_pts": item.box_num_lidar_pts_b,
            "visibility": item.box_visibility_b,
        },
    }


def manifest_path(task: ShardTask) -> epath.Path:
    return epath.Path(task.version_dir) / WORK_DIR / f"{task.filename}.json"


def write_shard(
    task: ShardTask,
    progress: ProgressFn | None = None,
    may_publish: Callable[[], bool] | None = None,
) -> ShardResult:
    """Writes the shard (temporary name, then rename) and its manifest; returns its result.

    `may_publish` (default: always) is asked before the shard and before its manifest appear;
    False removes what was written and raises ShardAbandoned.
    """
    encoder = ExampleEncoder(
        schema.clip_features(task.options.frames, task.options.image_hw, with_boxes=True)
    )
    may_publish = may_publish or (lambda: True)
    final = epath.Path(task.version_dir) / task.filename
    tmp = final.parent / f"{task.filename}.tmp-{os.getpid()}"
    skipped, count = [], 0
    try:
        with tf.io.TFRecordWriter(os.fspath(tmp)) as out:
            for item in task.items:
                try:
                    record = encoder.encode(clip_example(item, task))
                except ConversionError as err:
                    if task.options.on_error == "fail":
                        raise
                    skipped.append((item.sample_token, str(err)))
                    continue
                out.write(record)
                count += 1
                if progress is not None:
                    progress(1, len(record) + 16)  # TFRecord framing: length + 2 CRCs
        if not may_publish():
            raise ShardAbandoned(f"{final}: not published, the conversion was abandoned")
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(final)  # atomic; overwrites a shard that failed verification
    result = ShardResult(
        split=task.split,
        index=task.index,
        filename=task.filename,
        fingerprint=task.fingerprint(),
        num_examples=count,
        num_bytes=final.stat().length,
        skipped=tuple(skipped),
    )
    manifest = manifest_path(task)
    manifest.parent.mkdir(parents=True, exist_ok=True)
    # The manifest marks the shard complete, so it too appears atomically.
    manifest_tmp = manifest.parent / f"{manifest.name}.tmp-{os.getpid()}"
    manifest_tmp.write_text(json.dumps(result.to_json()))
    if not may_publish():  # a shard without its manifest is incomplete to --resume and Beam
        manifest_tmp.unlink(missing_ok=True)
        final.unlink(missing_ok=True)
        raise ShardAbandoned(f"{final}: not published, the conversion was abandoned")
    manifest_tmp.replace(manifest)
    return result


def count_records(path: epath.Path) -> int:
    """Walks the TFRecord framing (no payload parsing); raises ValueError on a torn file."""
    count = 0
    with path.open("rb") as f:
        size = f.seek(0, io.SEEK_END)
        f.seek(0)
        while f.tell() < size:
            header = f.read(12)
            if len(header) < 12:
                raise ValueError(f"{path}: torn record header")
            (length,) = struct.unpack("<Q", header[:8])
            if f.seek(length + 4, io.SEEK_CUR) > size:
                raise ValueError(f"{path}: torn record")
            count += 1
    return count


def verified_result(task: ShardTask) -> ShardResult | None:
    """The stored result if the shard is complete, matches this task and its file checks out."""
    manifest, shard = manifest_path(task), epath.Path(task.version_dir) / task.filename
    if not manifest.exists() or not shard.exists():
        return None
    try:
        result = ShardResult.from_json(json.loads(manifest.read_text()))
    except (ValueError, TypeError, KeyError):  # unreadable manifest: redo the shard
        return None
    if result.fingerprint != task.fingerprint() or shard.stat().length != result.num_bytes:
        return None
    try:
        return result if count_records(shard) == result.num_examples else None
    except ValueError:
        return None
