"""End to end on the project's synthetic world: data_prep.synthetic_nuscenes -> convert_nuscenes
-> input pipeline. The generator's ground-truth depth maps check the LiDAR ray targets."""

import json

import jax
import numpy as np
import pytest

from configs import mim4d_tiny
from data_prep.convert_nuscenes import convert
from data_prep.synthetic_nuscenes import generate
from mim4d_jax.data.example import make_example
from mim4d_jax.data.pipeline import make_input_pipeline
from mim4d_jax.data.reader import ClipReader


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    dataroot = generate(root / "nuscenes", scenes=2, samples_per_scene=2, width=320, height=180)
    convert(dataroot, "v1.0-mini", root / "clips", frames=3)
    config = mim4d_tiny.get_config("test")
    config.data.dir = str(root / "clips")
    config.data.num_rays = 64
    config.data.num_parallel_calls = 2
    return dataroot, config


@pytest.mark.slow
def test_key_frame_ray_depths_match_the_generators_depth_maps(synthetic):
    dataroot, config = synthetic
    index = json.loads((dataroot / "depth_gt" / "index.json").read_text())
    reader = ClipReader(config, "train")
    num_rays, matched, total = config.data.num_rays, 0, 0
    for clip_index in range(len(reader)):
        clip, where = reader.read_clip(clip_index)
        ex = make_example(clip, config, seed=0, position=clip_index, where=where)
        targets = ex["ray_origin"][0] + ex["ray_dir"][0] * ex["ray_depth"][0, :, None]
        for n, cam in enumerate(config.data.cameras):
            depth_hw = np.load(dataroot / index[clip["sample_token"]][cam])
            sl = slice(n * num_rays, (n + 1) * num_rays)
            valid = ex["ray_depth"][0, sl] > 0
            proj = (
                np.concatenate([targets[sl], np.ones((num_rays, 1))], 1) @ ex["lidar2img"][n, 0].T
            )
            z = proj[valid, 2]
            pix = np.rint(proj[valid, :2] / proj[valid, 2:3]).astype(int)
            # a 160x90 pixel covers the 2x2 block of 320x180 depth pixels it was averaged from
            block = np.stack(
                [
                    depth_hw[2 * pix[:, 1] + dy, 2 * pix[:, 0] + dx]
                    for dy in (0, 1)
                    for dx in (0, 1)
                ],
                axis=1,
            )
            closest = np.min(np.abs(block - z[:, None]), axis=1)
            matched += int(np.sum(closest < 0.03 * z + 0.1))
            total += int(valid.sum())
    assert total > 0.5 * len(reader) * 6 * num_rays
    # LiDAR and cameras fire at different times: moving cars may disagree, little else may
    assert matched > 0.9 * total, (matched, total)


@pytest.mark.slow
def test_pipeline_reads_the_converted_synthetic_splits(synthetic):
    _, config = synthetic
    config.batch_size = 2
    mesh = jax.make_mesh(
        (2, 1, 1),
        ("data", "fsdp", "tensor"),
        devices=jax.devices()[:2],
        axis_types=(jax.sharding.AxisType.Auto,) * 3,
    )
    for split in ("train", "val"):
        with make_input_pipeline(config, mesh, split) as pipe:
            batch = next(pipe)
            assert pipe.train == (split == "train")
        assert batch["images"].shape == (2, 6, 3, 96, 160, 3)
        keep = np.asarray(batch["patch_keep"])
        assert (keep.sum((2, 3, 4)) < 15 * 3).all() if split == "train" else (keep == 1).all()
        assert np.isfinite(np.asarray(batch["ray_dir"])).all()
