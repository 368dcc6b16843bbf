"""The input pipeline end to end on small synthetic datasets with 8 fake CPU devices."""

import json
import pathlib
import shutil

import jax
import numpy as np
import pytest

from configs import mim4d_tiny
from mim4d_jax.data.batch import abstract_batch, batch_sharding
from mim4d_jax.data.example import make_example
from mim4d_jax.data.pipeline import EpochOrder, make_input_pipeline
from mim4d_jax.data.reader import ClipReader, open_dataset_dir
from mim4d_jax.data.tfrecord import CorruptRecordError
from mim4d_jax.training import dry_run
from mim4d_jax.user_errors import (
    EXIT_USER_ERROR,
    ConfigError,
    DatasetError,
    MissingInputError,
    run_cli,
)
from tests import data_fixtures

NUM_CLIPS = 20  # 2 batches of 8 per epoch, 4 clips dropped


@pytest.fixture(scope="module")
def dataset_root(tmp_path_factory) -> pathlib.Path:
    root = tmp_path_factory.mktemp("clips")
    data_fixtures.synthetic_dataset(root, num_clips=NUM_CLIPS, num_shards=3)
    return root


def _config(data_dir, **data):
    c = mim4d_tiny.get_config("test")
    c.data.dir = str(data_dir)
    c.data.num_parallel_calls = 2
    for key, value in data.items():
        setattr(c.data, key, value)
    return c


def _mesh(num_devices: int, fsdp: int = 1):
    return jax.make_mesh(
        (num_devices // fsdp, fsdp, 1),
        ("data", "fsdp", "tensor"),
        devices=jax.devices()[:num_devices],
        axis_types=(jax.sharding.AxisType.Auto,) * 3,
    )


def _host(batch: dict) -> dict:
    return {k: np.asarray(v) for k, v in batch.items()}


def _assert_batches_equal(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_batches_are_sharded_global_arrays_of_the_contract(dataset_root):
    config = _config(dataset_root)
    mesh = _mesh(8)
    with make_input_pipeline(config, mesh) as pipe:
        batch = next(pipe)
        clip, _ = pipe.reader.read_clip(pipe.order.clip_index(5))
    # the device-side normalisation gives make_example's host-side arrays
    host = make_example(clip, config, seed=config.seed, position=5)
    for key, value in host.items():
        np.testing.assert_allclose(np.asarray(batch[key][5]), value, atol=1e-5, err_msg=key)
    # The one batch spec: the pipeline's batch is exactly the abstract batch the dry run and
    # ahead-of-time compilation use (keys, shapes, dtypes, shardings).
    abstract = abstract_batch(config, batch_sharding(mesh))
    assert set(batch) == set(abstract)
    for key, want in abstract.items():
        got = batch[key]
        assert (got.shape, got.dtype) == (want.shape, want.dtype), key
        assert got.sharding.is_equivalent_to(want.sharding, len(want.shape)), key
        assert len(got.addressable_shards) == 8 and got.addressable_shards[0].data.shape[0] == 1
    # Spot-check the spec against the documented layout (8 samples, 160x96 padded images).
    assert abstract["images"].shape == (8, 6, 3, 96, 160, 3)
    assert abstract["ray_depth"].shape == (8, 2, 6 * config.data.num_rays)
    b = 8
    keep = np.asarray(batch["patch_keep"]).reshape(b * 6 * 3, -1)
    np.testing.assert_array_equal(keep.sum(1), round(15 * 0.7))
    np.testing.assert_allclose(
        np.asarray(batch["vol2ref"])[:, 0], np.broadcast_to(np.eye(4), (b, 4, 4)), atol=1e-5
    )


def test_restore_yields_the_uninterrupted_batches_on_any_local_device_count(dataset_root):
    config = _config(dataset_root)
    with make_input_pipeline(config, _mesh(8)) as pipe:
        reference = [_host(next(pipe)) for _ in range(5)]  # crosses two epoch boundaries
    with make_input_pipeline(config, _mesh(8)) as pipe:
        next(pipe), next(pipe)
        state = json.loads(json.dumps(pipe.get_state()))  # what the trainer stores
        assert state["next_batch"] == 2
    for devices, fsdp in ((8, 2), (4, 1)):
        with make_input_pipeline(config, _mesh(devices, fsdp)) as pipe:
            pipe.set_state(state)
            for expected in reference[2:]:
                _assert_batches_equal(_host(next(pipe)), expected)
    assert not np.array_equal(reference[0]["images"], reference[2]["images"])


def test_resume_reads_no_skipped_records(dataset_root, monkeypatch):
    config = _config(dataset_root, prefetch=1)
    reads = []
    original = ClipReader.read_clip
    monkeypatch.setattr(
        ClipReader, "read_clip", lambda self, i: reads.append(i) or original(self, i)
    )
    with make_input_pipeline(config, _mesh(8)) as pipe:
        state = pipe.get_state()
        pipe.set_state({**state, "next_batch": 10_000})
        next(pipe)
        assert pipe.get_state()["next_batch"] == 10_001
    assert len(reads) <= 8 * 3  # the returned batch plus at most prefetch + 1 batches ahead


def test_epochs_visit_each_clip_once_in_a_fresh_seeded_order():
    order = EpochOrder(NUM_CLIPS, 8, seed=3)
    assert order.batches_per_epoch == 2
    epoch0 = [order.clip_index(p) for p in range(16)]
    epoch1 = [order.clip_index(p) for p in range(16, 32)]
    assert len(set(epoch0)) == 16 and len(set(epoch1)) == 16
    assert epoch0 != epoch1
    assert epoch0 == [EpochOrder(NUM_CLIPS, 8, seed=3).clip_index(p) for p in range(16)]
    assert epoch0 != [EpochOrder(NUM_CLIPS, 8, seed=4).clip_index(p) for p in range(16)]
    with pytest.raises(ValueError, match="fewer than batch_size=8"):
        EpochOrder(5, 8, seed=0)


def test_processes_build_disjoint_rows_of_the_same_global_batch(dataset_root):
    config = _config(dataset_root)
    with make_input_pipeline(config, _mesh(8)) as whole:
        full = whole.host_batch(3)
    parts = []
    for process in range(2):
        with make_input_pipeline(config, _mesh(8), process_index=process, process_count=2) as pipe:
            assert pipe.rows == range(4 * process, 4 * process + 4)
            parts.append(pipe.host_batch(3))
            if process == 1:
                with pytest.raises(RuntimeError, match="host_batch"):
                    next(pipe)
    for key in full:
        np.testing.assert_array_equal(np.concatenate([p[key] for p in parts]), full[key])


def test_state_mismatch_is_rejected(dataset_root):
    with make_input_pipeline(_config(dataset_root), _mesh(8)) as pipe:
        state = pipe.get_state()
        with pytest.raises(ValueError, match="seed"):
            pipe.set_state({**state, "seed": 7})
        with pytest.raises(ValueError, match="format"):
            pipe.set_state({"next_batch": 1})
        with pytest.raises(ValueError, match="next_batch"):
            pipe.set_state({**state, "next_batch": -1})


def _copy(root: pathlib.Path, tmp_path: pathlib.Path) -> pathlib.Path:
    shutil.copytree(root, tmp_path / "copy")
    return tmp_path / "copy"


def test_corrupt_record_error_names_shard_and_record(dataset_root, tmp_path):
    root = _copy(dataset_root, tmp_path)
    shard = sorted((root / "nuscenes_clips" / "1.0.0").glob("*.tfrecord-00001-of-*"))[0]
    data = bytearray(shard.read_bytes())
    first_len = int.from_bytes(data[:8], "little")
    second = 12 + first_len + 4  # start of record 1
    data[second + 12 : second + 12 + 2000] = b"\x07" * 2000  # garbage payload, intact header
    shard.write_bytes(bytes(data))
    reader = ClipReader(_config(root), "train")
    index = reader._starts[1] + 1
    with pytest.raises(CorruptRecordError, match=f"record 1 of shard {shard}"):
        reader.read_clip(index)
    data[second] ^= 0xFF  # broken length header: found while indexing, before training
    shard.write_bytes(bytes(data))
    with pytest.raises(CorruptRecordError, match=f"record 1 of shard {shard}"):
        ClipReader(_config(root), "train")


def test_dataset_dir_resolves_from_out_dir_name_dir_or_version_dir(dataset_root):
    version_dir = dataset_root / "nuscenes_clips" / "1.0.0"
    for path in (dataset_root, dataset_root / "nuscenes_clips", version_dir):
        assert pathlib.Path(str(open_dataset_dir(str(path)).data_dir)) == version_dir


def test_dataset_config_mismatches_fail_before_training(tmp_path, capsys):
    few_frames = tmp_path / "t2"
    data_fixtures.synthetic_dataset(few_frames, num_clips=2, frames=2)
    with pytest.raises(ConfigError, match="frames=2 per clip, fewer than data.frames=3"):
        ClipReader(_config(few_frames), "train")
    cams = tmp_path / "cams"
    clips = [data_fixtures.make_clip(0, 3, (320, 180), 0)]
    data_fixtures.write_dataset(
        cams,
        clips,
        frames=3,
        stored_wh=(320, 180),
        num_shards=1,
        cameras=data_fixtures.schema.CAMERAS[:5],
    )
    with pytest.raises(ConfigError, match="cameras"):
        ClipReader(_config(cams), "train")
    with pytest.raises(ConfigError, match="split 'val' not in dataset"):
        ClipReader(_config(few_frames, frames=2), "val")
    with pytest.raises(MissingInputError, match="does not exist"):
        open_dataset_dir(str(tmp_path / "nowhere"))
    with pytest.raises(MissingInputError, match="dataset_info.json"):
        open_dataset_dir(str(tmp_path))
    empty = tmp_path / "empty"
    data_fixtures.write_dataset(empty, [], frames=3, stored_wh=(320, 180), num_shards=1)
    with pytest.raises(DatasetError, match="empty"):
        ClipReader(_config(empty), "train")
    # Every one of them is a user error: the command line prints it as one line, exit 2.
    with pytest.raises(SystemExit) as exit_info:
        run_cli(lambda: open_dataset_dir(str(tmp_path / "nowhere")))
    assert exit_info.value.code == EXIT_USER_ERROR
    printed = capsys.readouterr().err.splitlines()
    at = next(i for i, line in enumerate(printed) if line.startswith("ERROR: "))
    assert printed[at].startswith("ERROR: dataset directory") and "nowhere" in printed[at]
    assert printed[at + 1].startswith("hint: ") and "Traceback" not in "\n".join(printed)


def test_other_stored_image_sizes_are_resized_and_more_frames_truncated(tmp_path):
    data_fixtures.synthetic_dataset(
        tmp_path, num_clips=8, frames=4, stored_wh=(256, 150), num_shards=1
    )
    with make_input_pipeline(_config(tmp_path), _mesh(8)) as pipe:
        batch = next(pipe)
    assert batch["images"].shape == (8, 6, 3, 96, 160, 3)
    assert np.all(np.asarray(batch["target_frames"])[:, 1] <= 2)


def test_corrupt_record_surfaces_from_next_and_does_not_hang(tmp_path):
    data_dir = data_fixtures.synthetic_dataset(tmp_path, num_clips=8, num_shards=1)
    shard = next(data_dir.glob("*.tfrecord-00000-of-00001"))
    data = bytearray(shard.read_bytes())
    offset = 0
    for _ in range(3):  # skip records 0..2
        offset += 12 + int.from_bytes(data[offset : offset + 8], "little") + 4
    data[offset + 12 : offset + 12 + 64] = b"\xff" * 64
    shard.write_bytes(bytes(data))
    with make_input_pipeline(_config(tmp_path), _mesh(8)) as pipe:  # batch 0 holds all 8 clips
        for _ in range(2):
            with pytest.raises(CorruptRecordError, match=f"record 3 of shard {shard}"):
                next(pipe)
        assert pipe.get_state()["next_batch"] == 0


def test_dry_run_lowers_the_program_that_training_runs(dataset_root):
    """`--dry_run` compiles on the abstract batch; training feeds pipeline batches. Both must
    give the same jitted program (same HLO), or the dry run's memory/FLOPs would describe
    something else."""
    config = _config(dataset_root)
    mesh = _mesh(8)
    with make_input_pipeline(config, mesh) as pipe:
        batch = next(pipe)
    devices = jax.devices()[:8]
    from_pipeline, _, _ = dry_run.lower_step(config, devices, batch=batch)
    from_spec, _, _ = dry_run.lower_step(config, devices)
    assert from_pipeline.as_text() == from_spec.as_text()
