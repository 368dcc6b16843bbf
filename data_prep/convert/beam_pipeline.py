"""The same conversion as an Apache Beam pipeline, for runs beyond one machine.

The launcher plans with the devkit once (`convert_nuscenes.prepare`) and stages each shard
task as a small pickle beside the output; the pipeline maps the shared `writer.write_shard`
over the staged task paths (one task = one output file, so the shard layout is identical to
the local path; the graph carries only paths, not the ~200 MB trainval plan), and the launcher
finalises the metadata from the shard manifests once the pipeline has finished:

    python -m data_prep.convert_nuscenes --dataroot gs://B/nuscenes --version v1.0-trainval \
        --out gs://B/data --runner DataflowRunner --project P --region R \
        --temp_location gs://B/tmp --requirements_file requirements-beam.txt

`dataroot` and `out` must be readable/writable by the workers (a bucket or shared disk).
apache-beam is an optional extra (requirements-beam.txt), imported only inside
`convert_with_beam`; the staging functions below need no Beam.
"""

from __future__ import annotations

import pathlib
import pickle
import time
from typing import TYPE_CHECKING

from etils import epath

from data_prep.convert import writer
from data_prep.convert.items import ShardResult

if TYPE_CHECKING:  # convert_nuscenes imports this module lazily; avoid a cycle at import
    from data_prep.convert_nuscenes import Plan

TASK_SUFFIX = ".task.pkl"


def stage_tasks(plan: Plan) -> list[str]:
    """Writes every shard task that is not already complete; returns the staged paths."""
    work = plan.version_dir / writer.WORK_DIR
    work.mkdir(parents=True, exist_ok=True)
    paths = []
    for task in plan.tasks:
        if writer.verified_result(task) is None:
            path = work / f"{task.filename}{TASK_SUFFIX}"
            path.write_bytes(pickle.dumps(task))
            paths.append(str(path))
    return paths


def write_staged(path: str) -> ShardResult:
    """The Beam worker's step. Retried bundles rewrite the shard (atomic replace)."""
    task = pickle.loads(epath.Path(path).read_bytes())
    return writer.verified_result(task) or writer.write_shard(task)


def collect(plan: Plan) -> list[ShardResult]:
    """Every shard's verified result, read back from the manifests after the pipeline."""
    results = [writer.verified_result(task) for task in plan.tasks]
    missing = [t.filename for t, r in zip(plan.tasks, results) if r is None]
    if missing:
        raise RuntimeError(f"pipeline finished, yet shards are missing or invalid: {missing[:5]}")
    return results


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
    """Runs the shard writes on a Beam runner; returns the same stats as `convert`.

    Resuming is implicit: verified complete shards are neither staged nor rewritten.
    """
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
    convert_nuscenes.clean_stale(plan, keep_complete=True)
    staged = stage_tasks(plan)
    with beam.Pipeline(options=PipelineOptions(pipeline_args)) as pipeline:
        _ = (
            pipeline
            | "StagedTasks" >> beam.Create(staged, reshuffle=True)
            | "WriteShards" >> beam.Map(write_staged)
        )
    return convert_nuscenes.finish(plan, collect(plan), time.monotonic() - start)
