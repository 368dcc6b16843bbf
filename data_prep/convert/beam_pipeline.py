"""The same conversion as an Apache Beam pipeline, for runs beyond one machine.

The launcher plans with the devkit once (`convert_nuscenes.prepare`), the pipeline maps the
shared `writer.write_shard` over the shard tasks (one task = one output file, so the shard
layout is identical to the local path), and the launcher finalises the metadata from the
results once the pipeline has finished:

    python -m data_prep.convert_nuscenes --dataroot gs://B/nuscenes --version v1.0-trainval \
        --out gs://B/data --runner DataflowRunner --project P --region R \
        --temp_location gs://B/tmp --requirements_file requirements-beam.txt

`dataroot` and `out` must be readable/writable by the workers (a bucket or shared disk).
apache-beam is an optional extra (requirements-beam.txt), imported only here.
"""

from __future__ import annotations

import pathlib
import time

from data_prep.convert import writer
from data_prep.convert.items import ShardResult, ShardTask


def _write(task: ShardTask) -> ShardResult:
    # Beam retries failed bundles: a rewritten shard replaces its temporary file atomically.
    return writer.verified_result(task) or writer.write_shard(task)


def convert_with_beam(
    dataroot: str | pathlib.Path,
    version: str,
    out_dir: str | pathlib.Path,
    pipeline_args: list[str],
    frames: int = 3,
    image_size: tuple[int, int] | None = None,
    num_shards: int | None = None,
    on_error: str = "fail",
    scene_list: str | pathlib.Path | None = None,
) -> dict:
    """Runs the shard writes on a Beam runner; returns the same stats as `convert`."""
    try:
        import apache_beam as beam
        from apache_beam.options.pipeline_options import PipelineOptions
    except ImportError as err:
        raise ImportError("the Beam path needs `pip install -r requirements-beam.txt`") from err
    from data_prep import convert_nuscenes

    start = time.monotonic()
    plan = convert_nuscenes.prepare(
        dataroot, version, out_dir, frames, image_size, num_shards, on_error, scene_list
    )
    done = convert_nuscenes.already_done(plan)
    if done is not None:
        return done
    plan.version_dir.mkdir(parents=True, exist_ok=True)
    # Resuming is implicit: verified complete shards are kept by `_write`.
    convert_nuscenes.clean_stale(plan, keep_complete=True)
    results_dir = plan.version_dir / writer.WORK_DIR
    with beam.Pipeline(options=PipelineOptions(pipeline_args)) as pipeline:
        _ = (
            pipeline
            | "ShardTasks" >> beam.Create(plan.tasks, reshuffle=True)
            | "WriteShards" >> beam.Map(_write)
        )
    # Each shard's manifest is its result; read them back once the pipeline has finished.
    results = [writer.verified_result(task) for task in plan.tasks]
    missing = [t.filename for t, r in zip(plan.tasks, results) if r is None]
    if missing:
        raise RuntimeError(
            f"Beam run finished, yet shards are missing or invalid in {results_dir}: {missing[:5]}"
        )
    return convert_nuscenes.finish(plan, results, time.monotonic() - start)
