"""The same conversion as an Apache Beam pipeline, for runs beyond one machine.

The launcher plans with the devkit once (`job.plan`) and stages each shard task as a small
pickle beside the output; the pipeline maps the shared `writer.write_shard`
over the staged task paths (one task = one output file, so the shard layout is identical to
the local path; the graph carries only paths, not the ~200 MB trainval plan), and the launcher
finalises the metadata from the shard manifests once the pipeline has finished:

    python -m data_prep.convert_nuscenes --dataroot /mnt/nuscenes --version v1.0-trainval \
        --out gs://B/data --runner DataflowRunner --project P --region R \
        --temp_location gs://B/tmp --sdk_container_image IMAGE_WITH_THIS_REPOSITORY

`dataroot` must be a local path mounted at the same place on the launcher and every worker
(the devkit reads it with pathlib); `out` must be writable by the workers (a bucket or disk).
apache-beam is an optional extra (requirements-beam.txt), imported only inside
`convert_with_beam`; the staging functions below need no Beam.
"""

from __future__ import annotations

import pickle
import time

from etils import epath

from data_prep.convert import job, writer
from data_prep.convert.items import ConversionError, RequestError, ShardResult
from data_prep.convert.job import Plan
from data_prep.convert.request import ConvertRequest

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
        raise ConversionError(
            f"pipeline finished, yet shards are missing or invalid: {missing[:5]}",
            hint="see the runner's worker logs; rerunning writes only the missing shards",
        )
    return results


def request_runner(pipeline_args: list[str]) -> str:
    """The runner named in Beam pipeline options (for messages)."""
    for i, arg in enumerate(pipeline_args):
        if arg == "--runner" and i + 1 < len(pipeline_args):
            return pipeline_args[i + 1]
        if arg.startswith("--runner="):
            return arg.split("=", 1)[1]
    return "DirectRunner"


def convert_with_beam(request: ConvertRequest, pipeline_args: list[str]) -> dict:
    """Runs the shard writes on a Beam runner; returns the same stats as `job.convert`.

    `request.workers` and `request.resume` are not used: the runner sizes its workers, and
    resuming is implicit (verified complete shards are neither staged nor rewritten).
    """
    try:
        import apache_beam as beam
        from apache_beam.options.pipeline_options import PipelineOptions
    except ImportError as err:
        raise RequestError(
            f"--runner {request_runner(pipeline_args)}: apache-beam is not installed here ({err})",
            hint="run with .venv-beam/bin/python (scripts/install.sh builds it from "
            "requirements-beam.txt)",
        ) from err

    start = time.monotonic()
    plan = job.plan(request)
    done = job.already_done(plan)
    if done is not None:
        return done
    job.prepare_output(plan, keep_complete=True)
    staged = stage_tasks(plan)
    with beam.Pipeline(options=PipelineOptions(pipeline_args)) as pipeline:
        _ = (
            pipeline
            | "StagedTasks" >> beam.Create(staged, reshuffle=True)
            | "WriteShards" >> beam.Map(write_staged)
        )
    return job.finish(plan, collect(plan), time.monotonic() - start)
