r"""MIM4D pre-training: one jit-sharded step, Orbax checkpoints, metrics.

  python -m mim4d_jax.train --config configs/mim4d_tiny.py --workdir workdirs/tiny \
      --config.data.dir=datasets/synthetic_clips [--config.key=value ...] [--dry_run]

Multi-process: launched under SLURM (SLURM_NTASKS > 1) or on a TPU pod slice, the processes
join through `jax.distributed.initialize()` automatically; elsewhere pass
`--coordinator_address=HOST:PORT --num_processes=N --process_id=I` (scripts/launch_*.sh).
A run resumes from the latest checkpoint in --workdir; SIGTERM saves and exits.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
from collections.abc import Callable, Sequence
from typing import Any

import jax
import ml_collections
from absl import app, flags, logging
from etils import epath
from ml_collections import config_flags

from mim4d_jax import user_errors
from mim4d_jax.rendering.cameras import make_preview_fn
from mim4d_jax.training import backbone_init, checkpoint, config_checks, dry_run
from mim4d_jax.training import mesh as mesh_lib
from mim4d_jax.training import step as step_lib
from mim4d_jax.training.logger import MetricsLogger
from mim4d_jax.training.workdir import WorkdirLock

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "configs/<name>.py[:variant]", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "checkpoints, config.json, metrics, TensorBoard")
_DRY_RUN = flags.DEFINE_bool(
    "dry_run", False, "compile the step on abstract inputs and report; no data"
)
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None, "HOST:PORT of process 0 (multi-process)"
)
_NUM_PROCESSES = flags.DEFINE_integer(
    "num_processes", None, "number of processes (with --coordinator_address)"
)
_PROCESS_ID = flags.DEFINE_integer(
    "process_id", None, "this process's index (with --coordinator_address)"
)

PipelineFactory = Callable[[ml_collections.ConfigDict, jax.sharding.Mesh], Any]
InitFn = Callable[[Any, Any, Any], tuple[Any, Any]]


class NonFiniteLossError(user_errors.UserError, RuntimeError):
    """The loss or gradient norm became NaN/Inf; the last good checkpoint is intact."""

    default_hint = (
        "rerun the same command to resume from the last good checkpoint, with a lower "
        "--config.optim.lr or --config.optim.grad_clip; a run that diverges at the same step "
        "again points at its input batch (docs/reliability.md)"
    )


class _Preemption:
    """SIGTERM sets a flag; the loop saves at the current step and exits.

    Only installed in single-process runs: with jax.distributed, JAX's preemption sync
    manager owns SIGTERM and `reached_preemption(step)` makes all processes agree on the
    step to save at (a Python handler would replace it and let processes disagree).
    """

    def __init__(self) -> None:
        self.requested = False
        self._previous = None
        if jax.process_count() == 1:
            self._previous = signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        logging.warning("SIGTERM received: saving a checkpoint after the current step")
        self.requested = True

    def restore(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


def _default_pipeline(config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh) -> Any:
    from mim4d_jax.data.pipeline import make_input_pipeline

    return make_input_pipeline(config, mesh, split=config.data.train_split)


def train(
    config: ml_collections.ConfigDict,
    workdir: str | os.PathLike,
    *,
    devices: Sequence[jax.Device] | None = None,
    pipeline_factory: PipelineFactory | None = None,
    model_factory: step_lib.ModelFactory | None = None,
    loss_fn: step_lib.LossFn | None = None,
    init_fn: InitFn | None = None,
) -> dict[str, Any]:
    """Trains to config.total_steps (or until preempted); returns {'step', 'losses'}.

    `init_fn(params, batch_stats, shardings) -> (params, batch_stats)` replaces the
    `init.backbone` initialisation of a fresh run (the probe loads a pre-trained model).

    `devices` restricts the mesh (tests: restore onto a subset); the factories exist for
    tests and tools, the CLI uses the real data pipeline, model and objective.
    """
    config_checks.check_config(config)  # before anything is built or compiled
    workdir = checkpoint.workdir_path(workdir)  # local folder or gs:// URL
    # One trainer per workdir; process 0 holds the lock for all processes of the run.
    lock = WorkdirLock(workdir) if jax.process_index() == 0 else contextlib.nullcontext()

    # ---- Mesh, model, optimiser and the jitted step. ----
    mesh = mesh_lib.make_mesh(config.mesh, devices)
    with lock, jax.set_mesh(mesh):
        _check_same_model(config, workdir)
        fns = step_lib.make_train_fns(config, mesh, model_factory, loss_fn)
        pipeline = (pipeline_factory or _default_pipeline)(config, mesh)
        manager = checkpoint.make_manager(workdir, config.keep_checkpoints)
        try:
            return _train_loop(config, workdir, fns, pipeline, manager, init_fn)
        finally:
            # Pending async saves must commit before the process ends (or raises).
            manager.wait_until_finished()
            manager.close()
            pipeline.close()  # stops the prefetch threads


def _train_loop(
    config: ml_collections.ConfigDict,
    workdir: epath.Path,
    fns: step_lib.TrainFns,
    pipeline: Any,
    manager: Any,
    init_fn: InitFn | None = None,
) -> dict[str, Any]:
    # ---- Resume from the newest intact checkpoint, or initialise. ----
    fallback = bool(config.get("resume", {}).get("fallback", False))
    resumed = checkpoint.restore_latest(manager, fns.abstract_state, workdir, fallback=fallback)
    last_good = None if resumed is None else resumed[0]
    if resumed is not None:
        _, state, data_state = resumed
        pipeline.set_state(data_state)
        logging.info("resumed from %s at step %d", workdir / "checkpoints", last_good)
    else:
        params, batch_stats = fns.init_params()
        if init_fn is not None:
            params, batch_stats = init_fn(params, batch_stats, fns.shardings)
        elif (backbone := backbone_init.backbone_path(config)) is not None:
            params = backbone_init.load_backbone(backbone, params, fns.shardings["params"])
            logging.info("backbone initialised from %s", backbone)
        state = fns.init_state(params, batch_stats)
    checkpoint.write_config(workdir, config)  # after the compatibility check passed
    start = int(jax.device_get(state["step"]))
    logging.info("parameters per module: %s", fns.param_counts)

    # ---- Loop: dispatch step i+1 before reading step i's metrics. ----
    logger = MetricsLogger(
        workdir,
        total_steps=config.total_steps,
        log_every=config.log_every,
        image_log_every=config.image_log_every,
        start_step=start,
    )
    preemption = _Preemption()
    preview = make_preview_fn(fns.graphdef, config)

    def images_due(step: int) -> bool:
        every = config.image_log_every
        # Every process renders (the arrays are global); only process 0 writes.
        return every > 0 and step % every == 0

    profiling = config.profile.start_step >= 0 and jax.process_index() == 0
    profile_start, profile_stop = (
        config.profile.start_step,
        config.profile.start_step + config.profile.num_steps,
    )
    losses: dict[int, float] = {}

    def check(record: dict | None) -> None:
        if record is None:
            return
        losses[record["step"]] = record["loss"]
        if not record["finite"]:
            raise NonFiniteLossError(
                f"non-finite loss {record['loss']} or grad norm {record['grad_norm']} "
                f"at step {record['step']}; stopping. Last good checkpoint: "
                + (
                    f"step {last_good} in {workdir / 'checkpoints'}"
                    if last_good is not None
                    else "none"
                )
            )

    step, tracing = start, False
    try:
        while step < config.total_steps:
            if profiling and step == profile_start:
                jax.profiler.start_trace(str(workdir / "profile"))
                tracing = True
            batch = next(pipeline)
            state, metrics = fns.train_step(state, batch)
            step += 1
            if images_due(step):  # dispatched now, fetched with the metrics one step late
                metrics["images"] = preview(state["params"], state["batch_stats"], batch)
            check(logger.push(step, metrics))
            if tracing and step == profile_stop:
                jax.block_until_ready(state)
                jax.profiler.stop_trace()
                tracing = False
            preempted = preemption.requested or manager.reached_preemption(step)
            if step % config.checkpoint_every == 0 or step == config.total_steps or preempted:
                check(logger.flush())  # never save a state whose step was non-finite
                checkpoint.save(manager, step, state, pipeline.get_state(), config)
                last_good = step
            if preempted:
                logging.warning("preempted: checkpoint saved at step %d, exiting", step)
                break
        check(logger.flush())
    finally:
        if tracing:  # the run ended inside the traced range
            jax.profiler.stop_trace()
        preemption.restore()
        logger.close()
    return {"step": step, "losses": losses}


def _check_same_model(config: ml_collections.ConfigDict, workdir: epath.Path) -> None:
    """A resume must train the model its checkpoints hold: model-defining keys that differ
    from the workdir's config.json stop the run (shape changes are also caught at restore,
    value changes such as model.depth_max only here)."""
    if not (workdir / "config.json").exists() or not (workdir / "checkpoints").exists():
        return
    previous = checkpoint.read_config(workdir)
    changed = [
        d for d in config_checks.differences(previous, config) if config_checks.is_model_key(d[0])
    ]
    if changed:
        shown = ", ".join(f"{k}: trained {a!r}, now {b!r}" for k, a, b in changed[:10])
        raise checkpoint.CheckpointMismatchError(
            f"workdir {workdir} does not match the config's model: it was trained with "
            f"other model-defining values ({shown})"
        )


def _parse_flags(argv: list[str]) -> list[str]:
    """absl flag parsing, with a one-line error instead of a traceback for a --config.KEY
    override that names no key of the (locked) config."""
    try:
        return flags.FLAGS(argv)
    except flags.Error as error:
        sys.exit(f"FATAL flags parsing error: {error}")
    except (AttributeError, KeyError) as error:
        key = str(error.args[0] if error.args else error).strip("'\"")
        overrides = [arg.split("=")[0] for arg in argv[1:] if arg.startswith("--config.")]
        sys.exit(f"FATAL unknown config key '{key}' (overrides given: {', '.join(overrides)})")


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    mesh_lib.maybe_initialize_distributed(
        _COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value
    )
    config = _CONFIG.value
    config_checks.check_config(config)
    if _DRY_RUN.value:
        report = dry_run.run(config)
        print(json.dumps(report), flush=True)
        return
    if not _WORKDIR.value:
        raise app.UsageError("--workdir is required")
    try:
        train(config, _WORKDIR.value)
    except NonFiniteLossError as error:
        logging.error("%s", error)
        sys.exit(str(error))


def cli() -> None:
    """Console script `mim4d-train` and `python -m mim4d_jax.train`."""
    flags.mark_flag_as_required("config")
    # Known errors (bad data, bad config, damaged checkpoint, locked workdir) as one line.
    user_errors.run_cli(lambda: app.run(main, flags_parser=_parse_flags))


if __name__ == "__main__":
    cli()
