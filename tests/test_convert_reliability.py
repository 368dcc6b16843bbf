"""Converter reliability: damaged inputs that used to pass or fail badly, flag validation, one-line
user errors on the command line, and worker processes that outlive a killed parent."""

from __future__ import annotations

import importlib.util
import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest

from data_prep import convert_nuscenes
from data_prep.convert import job, writer
from data_prep.convert.items import ConversionError, RequestError
from data_prep.convert.request import ConvertRequest
from data_prep.real_sample import build_real_sample_dataset

REPO = pathlib.Path(__file__).resolve().parents[1]
TOKEN = "ca9a282c9e77460f8360f564131a8af5"  # the real sample's only key frame


@pytest.fixture(scope="module")
def real_root(real_sample_dir, tmp_path_factory) -> pathlib.Path:
    return build_real_sample_dataset(real_sample_dir, tmp_path_factory.mktemp("real") / "nusc")


@pytest.fixture()
def root(real_root, tmp_path) -> pathlib.Path:
    """A private copy of the one-sample dataroot to damage."""
    return pathlib.Path(shutil.copytree(real_root, tmp_path / "nusc"))


def _request(root: pathlib.Path, out: pathlib.Path, **kwargs) -> ConvertRequest:
    return ConvertRequest(root, "v1.0-mini", out, **{"frames": 1, **kwargs})


def _truncate_with_end_marker(root: pathlib.Path) -> pathlib.Path:
    path = next((root / "samples" / "CAM_FRONT_RIGHT").glob("*.jpg"))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3] + b"\xff\xd9")  # both markers still there
    return path


@pytest.mark.parametrize(
    "kwargs",
    [{"image_size": (160, 90)}, {"verify_jpeg": True}],
    ids=["resize", "verify-pass-through"],
)
def test_truncated_jpeg_with_end_marker_fails_or_skips_naming_the_file(root, tmp_path, kwargs):
    path = _truncate_with_end_marker(root)
    with pytest.raises(ConversionError, match=f"truncated JPEG .*{re.escape(path.name)}"):
        job.convert(_request(root, tmp_path / "fail", **kwargs))
    with pytest.raises(ConversionError, match=f"every clip was skipped.*{re.escape(path.name)}"):
        job.convert(_request(root, tmp_path / "skip", on_error="skip", **kwargs))
    for out in ("fail", "skip"):
        assert not (job.dataset_dir(tmp_path / out) / "dataset_info.json").exists()


def test_intact_jpegs_pass_the_scan_check(real_root):
    for path in (real_root / "samples").glob("CAM_*/*.jpg"):
        writer.check_scan(path.read_bytes(), path)  # raises on a false alarm


def test_half_written_table_is_named(root, tmp_path):
    table = root / "v1.0-mini" / "sample_data.json"
    table.write_bytes(table.read_bytes()[: table.stat().st_size // 2])
    with pytest.raises(ConversionError, match=r"unreadable nuScenes table .*sample_data\.json"):
        job.convert(_request(root, tmp_path / "out"))


@pytest.mark.parametrize("on_error", ["fail", "skip"])
def test_sample_with_dangling_scene_token_fails(root, tmp_path, on_error):
    table = root / "v1.0-mini" / "sample.json"
    samples = json.loads(table.read_text())
    samples[0]["scene_token"] = "feedfacefeedfacefeedfacefeedface"
    table.write_text(json.dumps(samples))
    match = r"dangling token 'feedface.*': no scene record \(referenced by sample .*scene_token\)"
    if on_error == "skip":
        match = f"every clip was skipped \\(1\\), e.g. {TOKEN}: {match}"
    with pytest.raises(ConversionError, match=match):
        job.convert(_request(root, tmp_path / "out", on_error=on_error))


@pytest.mark.parametrize(
    "flags, named",
    [
        (["--num-shards", "-1"], "--num-shards -1: must be an integer >= 1"),
        (["--num-shards", "0"], "--num-shards 0: must be an integer >= 1"),
        (["--image-size", "0x0"], "--image-size 0x0: width and height must be integers in 1.."),
        (["--image-size", "800x70000"], "--image-size 800x70000: width and height"),
        (["--frames", "0"], "--frames 0: must be an integer >= 1"),
        (["--workers", "0"], "--workers 0: must be an integer >= 1"),
    ],
)
def test_bad_flags_fail_up_front_naming_the_flag(tmp_path, capsys, flags, named):
    argv = ["--dataroot", str(tmp_path / "none"), "--version", "v1.0-mini", "--out", str(tmp_path)]
    with pytest.raises(SystemExit) as exit_info:
        convert_nuscenes.main([*argv, *flags])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "Traceback" not in err
    assert err.splitlines()[0].startswith(f"ERROR: {named}")
    assert err.splitlines()[1].startswith("hint: ")
    assert list(tmp_path.iterdir()) == []  # validated before anything was read or written
    with pytest.raises(RequestError, match=re.escape(named.split(":")[0])):
        ConvertRequest(tmp_path, "v1.0-mini", tmp_path, **_kwargs_of(flags))


def _kwargs_of(flags: list[str]) -> dict:
    name, text = flags[0].lstrip("-").replace("-", "_"), flags[1]
    value = tuple(int(v) for v in text.split("x")) if name == "image_size" else int(text)
    return {name: value}


def test_cli_input_error_is_one_line_and_verbose_shows_the_traceback(
    root, tmp_path, capsys, monkeypatch
):
    (root / "v1.0-mini" / "ego_pose.json").unlink()
    argv = ["--dataroot", str(root), "--version", "v1.0-mini", "--out", str(tmp_path / "o")]
    with pytest.raises(SystemExit) as exit_info:
        convert_nuscenes.main(argv)
    err = capsys.readouterr().err.splitlines()
    assert exit_info.value.code == 2
    assert err[0].startswith("ERROR: missing nuScenes table ") and "ego_pose.json" in err[0]
    assert err[1].startswith("hint: ") and "--verbose" in err[2] and len(err) == 3
    with pytest.raises(SystemExit):
        convert_nuscenes.main([*argv, "--verbose"])
    assert "Traceback (most recent call last)" in capsys.readouterr().err
    monkeypatch.setenv("MIM4D_VERBOSE", "1")
    with pytest.raises(SystemExit):
        convert_nuscenes.main(argv)
    assert "Traceback (most recent call last)" in capsys.readouterr().err


def test_beam_runner_without_apache_beam_is_a_one_line_error(tmp_path, capsys):
    # apache-beam cannot join the main environment (docs/converting.md, "Apache Beam").
    assert importlib.util.find_spec("apache_beam") is None
    argv = ["--dataroot", str(tmp_path), "--version", "v1.0-mini", "--out", str(tmp_path)]
    with pytest.raises(SystemExit) as exit_info:
        convert_nuscenes.main([*argv, "--runner", "DirectRunner", "--direct_num_workers", "2"])
    err = capsys.readouterr().err.splitlines()
    assert exit_info.value.code == 2
    assert err[0].startswith("ERROR: --runner DirectRunner: apache-beam is not installed")
    assert ".venv-beam" in err[1]


def test_writer_publishes_nothing_once_told_not_to(root, tmp_path):
    plan = job.plan(_request(root, tmp_path / "out"))
    job.prepare_output(plan)
    with pytest.raises(writer.ShardAbandoned):
        writer.write_shard(plan.tasks[0], may_publish=lambda: False)
    version_dir = pathlib.Path(plan.version_dir)
    assert not list(version_dir.rglob("*.json")) and not list(version_dir.glob("*tfrecord*"))


def _alive(pid: int) -> bool:
    """Some thread of the process still runs. A zombie left unreaped by the container's init
    counts as gone, but only once every thread has exited: the leader turns zombie while other
    threads may still be exiting, and still holding the process's open files."""
    for stat in pathlib.Path(f"/proc/{pid}/task").glob("*/stat"):
        try:
            state = stat.read_text().rsplit(")", 1)[1].split()[0]
        except OSError:  # the thread is gone
            continue
        if state not in ("Z", "X"):
            return True
    return False


def _readers_of(path: pathlib.Path) -> list[int]:
    pids = []
    for fd_dir in pathlib.Path("/proc").glob("[0-9]*/fd"):
        try:
            if any(os.readlink(fd) == str(path) for fd in fd_dir.iterdir()):
                pids.append(int(fd_dir.parent.name))
        except OSError:  # a process that ended while we looked, or one we may not inspect
            continue
    return pids


@pytest.mark.slow  # two interpreters import TensorFlow (the CLI parent and its spawned worker)
def test_workers_exit_when_the_parent_is_killed_and_publish_nothing(root, tmp_path):
    """A worker blocked reading an image (a FIFO nobody writes) must exit once its parent is
    SIGKILLed, instead of finishing the shard and publishing its manifest afterwards."""
    image = next((root / "samples" / "CAM_BACK").glob("*.jpg"))
    jpeg = image.read_bytes()
    image.unlink()
    os.mkfifo(image)
    out = tmp_path / "out"
    argv = ["--dataroot", str(root), "--version", "v1.0-mini", "--out", str(out)]
    parent = subprocess.Popen(
        [sys.executable, "-m", "data_prep.convert_nuscenes", *argv, "--frames", "1"]
        + ["--workers", "2"],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    writer_fd, workers = None, []
    try:
        deadline = time.monotonic() + 120
        while writer_fd is None:  # a non-blocking open for writing succeeds once a reader waits
            assert parent.poll() is None and time.monotonic() < deadline, "no worker read the FIFO"
            try:
                writer_fd = os.open(image, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:
                time.sleep(0.1)
        while not workers and time.monotonic() < deadline:
            workers = [pid for pid in _readers_of(image) if pid != os.getpid()]
        assert workers and parent.pid not in workers
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        gone_by = time.monotonic() + 10
        while any(map(_alive, workers)) and time.monotonic() < gone_by:
            time.sleep(0.05)
        assert not any(map(_alive, workers)), "a worker outlived its parent"
        with pytest.raises(BrokenPipeError):  # nobody reads: no worker is left to finish
            os.write(writer_fd, jpeg)
        version_dir = job.dataset_dir(out)
        # A killed worker's temporary file may stay (the next run removes it); no shard appears.
        assert not [p for p in version_dir.glob("*.tfrecord-*") if ".tmp-" not in p.name]
        assert not list((version_dir / writer.WORK_DIR).glob("*.json"))
        assert not (version_dir / "dataset_info.json").exists()
    finally:
        if writer_fd is not None:
            os.close(writer_fd)
        if parent.poll() is None:
            parent.kill()
        for pid in workers:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
