"""Orbax checkpoints in the layout of docs/architecture.md "Checkpoints".

  <workdir>/config.json                  the resolved config (config.to_json())
  <workdir>/checkpoints/<step>/          one Orbax CheckpointManager step, composite items:
      params, batch_stats, opt_state, [ema_params]   array trees (StandardSave)
      data_state                                     JSON, input-iterator state
      meta                                           JSON: step, config hash, the config
      mim4d_manifest.json                            size and sha256 of every other file
  <workdir>/damaged_checkpoints/<step>/  steps moved aside by `--config.resume.fallback=True`

Saves are asynchronous and atomic (Orbax writes a temporary directory and renames it), so a
kill at any moment leaves the previous steps intact. A committed step is never overwritten:
saving a step that exists is an error. After Orbax has finalised a step, process 0 writes the
step's manifest (temporary name, then rename); every restore first checks the step's files
against it, so a missing file or a flipped bit is reported as damage of that step, not as a
model mismatch or a TensorStore error, and never restored silently. A step without a manifest
(killed between commit and manifest, or written by older code) is restored with a warning;
damage that Orbax itself then meets is still reported as damage.

Restores go into abstract ShapeDtypeStructs carrying the *current* mesh's shardings, which is
what makes a checkpoint written on 8 devices load onto 4 (or onto one CPU, for export).

Reader API for export/evaluate (no optimiser, no data):
  restore_params(workdir, step=None, *, ema=False) -> (config, params, batch_stats, step)
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
from collections.abc import Callable
from typing import Any

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from etils import epath
from flax import nnx

from mim4d_jax import atomic_files
from mim4d_jax.training import config_checks
from mim4d_jax.user_errors import CheckpointDamagedError, ConfigError, UserError

ARRAY_ITEMS = ("params", "batch_stats", "opt_state", "ema_params")
JSON_ITEMS = ("data_state", "meta")
MANIFEST_NAME = "mim4d_manifest.json"
DAMAGED_DIR = "damaged_checkpoints"
_HASH_CHUNK = 8 << 20


class CheckpointMismatchError(ConfigError):
    """The checkpoint holds a different model than the config builds."""

    default_hint = (
        "use a fresh --workdir for a different model, or the config the workdir was trained with"
    )


class NotAWorkdirError(UserError, FileNotFoundError):
    """No config.json, or no checkpoint of the asked step, in the given workdir."""

    default_hint = "pass the --workdir of a training run (it holds config.json and checkpoints/)"


class StepExistsError(UserError):
    """A save of a step that is already committed: refused, never overwritten."""


def config_hash(config: ml_collections.ConfigDict) -> str:
    return hashlib.sha256(config.to_json(sort_keys=True).encode()).hexdigest()[:16]


def workdir_path(workdir: str | os.PathLike) -> epath.Path:
    """The workdir as an epath: local folders (made absolute, as Orbax wants) or gs:// URLs."""
    text = os.fspath(workdir)
    return epath.Path(text if "://" in text else os.path.abspath(text))


def write_config(workdir: str | os.PathLike, config: ml_collections.ConfigDict) -> None:
    """Writes config.json (process 0 only; every process holds the same config)."""
    if jax.process_index() == 0:
        path = workdir_path(workdir)
        path.mkdir(parents=True, exist_ok=True)
        atomic_files.write_text(path / "config.json", config.to_json(indent=2, sort_keys=True))


def _tuples(value: Any) -> Any:
    """JSON lists back to the tuples the config files use (pad_size, sharding_rules...)."""
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    if isinstance(value, dict):
        return {k: _tuples(v) for k, v in value.items()}
    return value


def config_from_json(text: str) -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict(_tuples(json.loads(text)))
    config.lock()
    return config


def read_config(workdir: str | os.PathLike) -> ml_collections.ConfigDict:
    path = workdir_path(workdir) / "config.json"
    if not path.is_file():
        raise NotAWorkdirError(f"{path} does not exist: not a mim4d_jax training workdir")
    try:
        return config_from_json(path.read_text())
    except ValueError as error:
        raise ConfigError(f"{path} is not a readable config ({error})") from error


# ---------------------------------------------------------------------------------------------
# Manifests: what a committed step must contain, byte for byte.


def step_path(manager: ocp.CheckpointManager, step: int) -> epath.Path:
    return epath.Path(manager.directory) / str(step)


def _files(root: epath.Path) -> list[epath.Path]:
    out = []
    for entry in sorted(root.iterdir(), key=lambda p: p.name):
        if entry.is_dir():
            out.extend(_files(entry))
        elif entry.name != MANIFEST_NAME:
            out.append(entry)
    return out


def _digest(path: epath.Path) -> tuple[int, str]:
    sha, size = hashlib.sha256(), 0
    with path.open("rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            sha.update(chunk)
            size += len(chunk)
    return size, sha.hexdigest()


def write_manifest(step_dir: epath.Path) -> None:
    """`mim4d_manifest.json` with size and sha256 of every file of a finalised step."""
    files = {}
    for path in _files(step_dir):
        size, sha = _digest(path)
        files[os.fspath(path)[len(os.fspath(step_dir)) + 1 :]] = {"bytes": size, "sha256": sha}
    body = {"format": 1, "files": files}
    atomic_files.write_text(step_dir / MANIFEST_NAME, json.dumps(body, indent=1, sort_keys=True))


def verify_step(step_dir: epath.Path) -> str | None:
    """None when every file in the step's manifest is present with its size and sha256 (or
    the step has no manifest: see has_manifest); otherwise what is wrong, in words."""
    if not step_dir.is_dir():
        return f"{step_dir} does not exist"
    manifest = step_dir / MANIFEST_NAME
    if not manifest.exists():
        return None
    try:
        files = json.loads(manifest.read_text())["files"]
    except (ValueError, KeyError) as error:
        return f"its manifest {manifest} is unreadable ({error})"
    problems = []
    for rel, want in sorted(files.items()):
        path = step_dir / rel
        if not path.exists():
            problems.append(f"{rel} is missing")
            continue
        size, sha = _digest(path)
        if size != want["bytes"]:
            problems.append(f"{rel} has {size} bytes, {want['bytes']} were written")
        elif sha != want["sha256"]:
            problems.append(f"{rel} has changed since it was written (sha256 mismatch)")
    if not problems:
        return None
    more = f" and {len(problems) - 3} more" if len(problems) > 3 else ""
    return "; ".join(problems[:3]) + more


def has_manifest(step_dir: epath.Path) -> bool:
    return (step_dir / MANIFEST_NAME).exists()


class _Manager(ocp.CheckpointManager):
    """Orbax's manager, plus a manifest for each step this manager saved, written once the
    step is finalised (Orbax waits for the previous save at the start of every save and at
    close, so every wait ends with the finished steps getting their manifests)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._needs_manifest: set[int] = set()

    def mark_saved(self, step: int) -> None:
        self._needs_manifest.add(int(step))

    def wait_until_finished(self) -> None:
        super().wait_until_finished()
        pending, self._needs_manifest = sorted(self._needs_manifest), set()
        if jax.process_index() != 0:
            return
        for step in pending:
            path = step_path(self, step)
            if path.is_dir():  # max_to_keep may already have removed it
                write_manifest(path)


def make_manager(
    workdir: str | os.PathLike, keep: int | None = None, *, read_only: bool = False
) -> ocp.CheckpointManager:
    handlers: dict[str, ocp.CheckpointHandler] = {
        name: ocp.StandardCheckpointHandler() for name in ARRAY_ITEMS
    }
    handlers.update({name: ocp.JsonCheckpointHandler() for name in JSON_ITEMS})
    options = ocp.CheckpointManagerOptions(
        max_to_keep=keep,
        save_interval_steps=1,  # the trainer decides when to save
        enable_async_checkpointing=not read_only,
        create=not read_only,
        read_only=read_only,
        # A save killed before its commit leaves a partial temporary step directory; the
        # trainer holds the workdir lock, so no other writer can own it: remove it at start.
        cleanup_tmp_directories=not read_only,
    )
    directory = workdir_path(workdir) / "checkpoints"
    return _Manager(directory, options=options, item_handlers=handlers)


def save(
    manager: ocp.CheckpointManager,
    step: int,
    state: dict[str, Any],
    data_state: Any,
    config: ml_collections.ConfigDict,
) -> None:
    """Starts an asynchronous save of `state` at `step` (returns once arrays are copied).

    Refuses (StepExistsError) a step that is already committed or older than the newest one:
    a committed step is never replaced."""
    latest = manager.latest_step()
    if latest is not None and step <= latest:
        what = "already exists" if step in manager.all_steps() else f"is older than step {latest}"
        raise StepExistsError(
            f"refusing to save checkpoint step {step} in {manager.directory}: it {what}, and "
            "committed steps are never overwritten",
            hint="another trainer may be writing this workdir; use a fresh --workdir",
        )
    items = {name: ocp.args.StandardSave(state[name]) for name in ARRAY_ITEMS if name in state}
    items["data_state"] = ocp.args.JsonSave(data_state)
    items["meta"] = ocp.args.JsonSave(
        {
            "step": int(step),
            "config_hash": config_hash(config),
            "config": json.loads(config.to_json(sort_keys=True)),
        }
    )
    if not manager.save(step, args=ocp.args.Composite(**items)):
        raise StepExistsError(f"Orbax declined to save step {step} in {manager.directory}")
    if isinstance(manager, _Manager):
        manager.mark_saved(step)


# ---------------------------------------------------------------------------------------------
# Compatibility and damage.


def _shape_mismatches(saved: Any, expected: Any, item: str) -> list[str]:
    """Leaf paths whose saved shape/structure differs from what the config builds."""
    saved_flat = {
        jax.tree_util.keystr(p): leaf for p, leaf in jax.tree_util.tree_flatten_with_path(saved)[0]
    }
    exp_flat = {
        jax.tree_util.keystr(p): leaf
        for p, leaf in jax.tree_util.tree_flatten_with_path(expected)[0]
    }
    problems = [f"{item}{k}: missing from checkpoint" for k in exp_flat if k not in saved_flat]
    problems += [f"{item}{k}: in checkpoint, not in model" for k in saved_flat if k not in exp_flat]
    for key, leaf in exp_flat.items():
        if key in saved_flat and tuple(saved_flat[key].shape) != tuple(leaf.shape):
            saved_shape = tuple(saved_flat[key].shape)
            problems.append(f"{item}{key}: checkpoint {saved_shape} vs config {tuple(leaf.shape)}")
    return problems


def str_keys(tree: Any) -> Any:
    """Orbax metadata stores dict keys as strings; NNX lists give int keys. Compare as str."""
    if isinstance(tree, dict):
        return {str(k): str_keys(v) for k, v in tree.items()}
    return tree


def _first_line(error: BaseException, limit: int = 300) -> str:
    text = str(error).strip().splitlines()
    line = text[0] if text else type(error).__name__
    return f"{type(error).__name__}: {line[:limit]}"


def damaged(step: int, where: Any, problem: str) -> CheckpointDamagedError:
    return CheckpointDamagedError(f"checkpoint step {step} in {where} is damaged: {problem}")


def _metadata(manager: ocp.CheckpointManager, step: int) -> Any:
    try:
        return manager.item_metadata(step)
    except Exception as error:  # Orbax/TensorStore errors of unreadable metadata
        raise damaged(
            step, manager.directory, f"its metadata cannot be read ({_first_line(error)})"
        ) from error


def check_compatible(
    manager: ocp.CheckpointManager, step: int, abstract: dict[str, Any], workdir: Any
) -> None:
    """Raises CheckpointMismatchError naming every mismatching leaf (never a silent fresh
    start), or CheckpointDamagedError when an item's files exist but its metadata does not."""
    metadata = _metadata(manager, step)
    problems = []
    for name in ("params", "batch_stats"):
        saved = metadata[name] if name in metadata else None
        if saved is None:
            if (step_path(manager, step) / name).exists():
                raise damaged(step, manager.directory, f"item {name!r} has no readable metadata")
            problems.append(f"{name}: missing from checkpoint")
            continue
        saved_tree = saved.tree if hasattr(saved, "tree") else saved
        problems += _shape_mismatches(str_keys(saved_tree), str_keys(abstract[name]), name)
    if problems:
        shown = "\n  ".join(problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise CheckpointMismatchError(
            f"checkpoint step {step} in {workdir} does not match the config's model:"
            f"\n  {shown}{more}\nUse a fresh --workdir for a different model, or the config "
            "the workdir was trained with."
        )


def _agreed(value: int) -> int:
    """Process 0's `value` on every process (decisions about which step to restore must be
    the same everywhere: the restore is collective)."""
    if jax.process_count() == 1:
        return value
    from jax.experimental import multihost_utils

    return int(multihost_utils.broadcast_one_to_all(np.int32(value)))


def verify_or_warn(manager: ocp.CheckpointManager, step: int) -> None:
    """Checks the step against its manifest on process 0 (CheckpointDamagedError on every
    process when damaged); a step without a manifest is restored with a warning."""
    problem = verify_step(step_path(manager, step)) if jax.process_index() == 0 else None
    if _agreed(0 if problem is None else 1):
        raise damaged(step, manager.directory, problem or "found by process 0 (see its log)")
    if jax.process_index() == 0 and not has_manifest(step_path(manager, step)):
        logging.warning(
            "checkpoint step %d in %s has no manifest (killed before it was written, or "
            "saved by an older version): restoring it unverified",
            step,
            manager.directory,
        )


def _orbax_restore(manager: ocp.CheckpointManager, step: int, args: Any) -> Any:
    try:
        return manager.restore(step, args=args)
    except UserError:
        raise
    except Exception as error:  # TensorStore's multi-line dumps: keep the first line
        raise damaged(
            step, manager.directory, f"Orbax could not read it ({_first_line(error)})"
        ) from error


def restore(
    manager: ocp.CheckpointManager, step: int, abstract: dict[str, Any], workdir: Any
) -> tuple[dict[str, Any], Any]:
    """Restores the full train state (onto the shardings in `abstract`) and the data state,
    after checking the step's files and its model."""
    verify_or_warn(manager, step)
    check_compatible(manager, step, abstract, workdir)
    items = {
        name: ocp.args.StandardRestore(abstract[name]) for name in ARRAY_ITEMS if name in abstract
    }
    items.update({name: ocp.args.JsonRestore() for name in JSON_ITEMS})
    restored = _orbax_restore(manager, step, ocp.args.Composite(**items))
    state = {name: restored[name] for name in ARRAY_ITEMS if name in abstract}
    meta = restored["meta"]
    step_array = jax.device_put(
        jax.numpy.asarray(meta["step"], jax.numpy.int32), abstract["step"].sharding
    )
    state["step"] = step_array
    return state, restored["data_state"]


def move_aside(manager: ocp.CheckpointManager, step: int, workdir: Any) -> epath.Path:
    """Moves a damaged step out of Orbax's sight, to <workdir>/damaged_checkpoints/ (kept
    for inspection, never deleted). Process 0 moves; every process then re-reads the steps."""
    target_dir = workdir_path(workdir) / DAMAGED_DIR
    target = target_dir / str(step)
    if jax.process_index() == 0:
        target_dir.mkdir(parents=True, exist_ok=True)
        if target.exists():
            stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%S")
            target = target_dir / f"{step}.{stamp}"
        step_path(manager, step).rename(target)
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(f"mim4d_move_aside_{step}")
    manager.reload()
    return target


def restore_latest(
    manager: ocp.CheckpointManager,
    abstract: dict[str, Any],
    workdir: Any,
    *,
    fallback: bool = False,
) -> tuple[int, dict[str, Any], Any] | None:
    """(step, state, data_state) of the newest intact step, None when there is no step.

    A damaged newest step stops with an error naming it and the newest intact step, unless
    `fallback`: then each damaged step is moved aside (move_aside) and the next older one
    tried. A model mismatch is never taken for damage (it is raised as it is)."""
    skipped: list[str] = []
    while True:
        step = manager.latest_step()
        if step is None:
            if skipped:
                raise CheckpointDamagedError(
                    f"no intact checkpoint in {manager.directory}: "
                    + "; ".join(skipped)
                    + " (moved aside)",
                    hint=f"the damaged steps are in {workdir_path(workdir) / DAMAGED_DIR}; "
                    "start a fresh run in another --workdir",
                )
            return None
        try:
            state, data_state = restore(manager, step, abstract, workdir)
        except CheckpointDamagedError as error:
            if not fallback:
                older = _newest_intact(manager, below=step)
                if older is None:
                    raise CheckpointDamagedError(
                        str(error) + "; no older intact step exists",
                        hint="start a fresh run in another --workdir (this one keeps the "
                        "damaged step for inspection)",
                    ) from error
                raise CheckpointDamagedError(
                    f"{error}. The newest intact step is {older}.",
                    hint=f"rerun with --config.resume.fallback=True to resume from step "
                    f"{older} (step {step} is then moved to "
                    f"{workdir_path(workdir) / DAMAGED_DIR}/{step}, not deleted)",
                ) from error
            moved = move_aside(manager, step, workdir)
            logging.warning("%s; moved to %s, trying the next older step", error, moved)
            skipped.append(str(error))
            continue
        if skipped:
            logging.warning("resumed from step %d after skipping damaged steps", step)
        return step, state, data_state


def _newest_intact(manager: ocp.CheckpointManager, below: int) -> int | None:
    """The newest step below `below` that passes its manifest (and has readable metadata)."""
    for step in sorted((s for s in manager.all_steps() if s < below), reverse=True):
        problem = verify_step(step_path(manager, step)) if jax.process_index() == 0 else None
        if _agreed(0 if problem is None else 1):
            continue
        try:
            _metadata(manager, step)
        except CheckpointDamagedError:
            continue
        return step
    return None


# ---------------------------------------------------------------------------------------------
# Readers (evaluation, export).


def restore_params(
    workdir: str | os.PathLike,
    step: int | None = None,
    *,
    ema: bool = False,
    config: ml_collections.ConfigDict | None = None,
    build: Callable[[ml_collections.ConfigDict, nnx.Rngs], nnx.Module] | None = None,
) -> tuple[ml_collections.ConfigDict, dict, dict, int]:
    """(config, params, batch_stats, step) of a training workdir, on the first local device.
    `build` (default: the MIM4D model) builds the workdir's model, e.g. the BEV probe's.

    Needs only config.json and the model code: builds the model abstractly to get the tree
    structure, then restores just the params (or ema_params) and batch_stats items.
    `step=None` takes the latest checkpoint. `config` (default: config.json) must build the
    same model; the checkpoint's recorded config is checked against it (check_meta_config).
    """
    from mim4d_jax.models.mim4d import build_model

    config = read_config(workdir) if config is None else config
    manager = make_manager(workdir, read_only=True)
    step = manager.latest_step() if step is None else step
    if step is None or step not in manager.all_steps():
        raise NotAWorkdirError(
            f"no checkpoint {'' if step is None else step} in {workdir}/checkpoints"
            f" (steps: {list(manager.all_steps())})",
            hint="pass --step with one of the listed steps" if manager.all_steps() else None,
        )
    try:
        verify_or_warn(manager, step)
    except CheckpointDamagedError as error:
        older = _newest_intact(manager, below=step)
        error.hint = (
            f"pass --step {older} (the newest intact step)" if older is not None else ""
        ) or "no older intact step exists"
        raise
    build = build or build_model
    # No mesh in scope: called from inside a training run (the probe's init), eval_shape would
    # otherwise turn the logical axis names into shardings of that mesh and fail.
    with jax.set_mesh(None):
        abs_model = nnx.eval_shape(lambda: build(config, nnx.Rngs(0)))
    _, abs_params, abs_bstats = nnx.split(abs_model, nnx.Param, nnx.BatchStat)
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])

    def target(tree: nnx.State) -> Any:
        pure = nnx.to_pure_dict(tree)
        return jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=device), pure)

    param_item = "ema_params" if ema else "params"
    abstract = {"params": target(abs_params), "batch_stats": target(abs_bstats)}
    check_compatible(manager, step, abstract, workdir)
    restored = _orbax_restore(
        manager,
        step,
        ocp.args.Composite(
            **{param_item: ocp.args.StandardRestore(abstract["params"])},
            batch_stats=ocp.args.StandardRestore(abstract["batch_stats"]),
            meta=ocp.args.JsonRestore(),
        ),
    )
    manager.close()
    check_meta_config(restored["meta"], config, step, workdir)
    return config, restored[param_item], restored["batch_stats"], int(step)


def check_meta_config(
    meta: dict, config: ml_collections.ConfigDict, step: int, workdir: Any
) -> None:
    """The config a step was saved with against `config`: ConfigError naming every
    model-defining key that differs (config_checks.MODEL_KEYS); run-side differences (a resume
    with more steps, another data.dir) are expected and only logged."""

    if meta.get("config_hash") == config_hash(config):
        return
    saved = meta.get("config")
    if saved is None:
        logging.warning(
            "checkpoint step %d in %s was saved with config hash %s, config.json has %s "
            "(the step records no config to compare key by key)",
            step,
            workdir,
            meta.get("config_hash"),
            config_hash(config),
        )
        return
    saved_config = config_from_json(json.dumps(saved))
    diffs = config_checks.differences(saved_config, config)
    model = [d for d in diffs if config_checks.is_model_key(d[0])]
    if model:
        shown = ", ".join(f"{k}: saved {a!r}, now {b!r}" for k, a, b in model[:10])
        raise ConfigError(
            f"checkpoint step {step} in {workdir} was saved with a different model than "
            f"config.json describes ({shown})",
            hint="config.json was rewritten by a later run with another model; restore the "
            "original config.json or use that run's workdir",
        )
    logging.info(
        "checkpoint step %d: run-side config keys changed since it was saved: %s",
        step,
        ", ".join(k for k, _, _ in diffs),
    )


def workdir_config(
    workdir: Any,
    file_config: ml_collections.ConfigDict | None = None,
    overrides: dict[str, Any] | None = None,
    *,
    what: str = "evaluation",
) -> ml_collections.ConfigDict:
    """The config to evaluate or export a workdir with: its config.json, with only
    evaluation-side overrides (config_checks.EVAL_SIDE_KEYS) applied; a model-defining key
    that differs is a ConfigError naming it (config_checks.resolve_run_config).
    `overrides=None` takes the evaluation-side values of `file_config` (library callers pass
    one config). A workdir with neither
    config.json nor checkpoints (a step-0 evaluation before training) uses `file_config`."""
    path = workdir_path(workdir)
    if (path / "config.json").exists():
        if overrides is None and file_config is not None:
            flat = config_checks.flatten(file_config)
            overrides = {k: flat[k] for k in config_checks.EVAL_SIDE_KEYS if k in flat}
        config = config_checks.resolve_run_config(
            read_config(path), file_config=file_config, overrides=overrides, what=what
        )
    elif file_config is not None and not (path / "checkpoints").exists():
        config = file_config
    else:
        raise ConfigError(
            f"{path / 'config.json'} does not exist"
            + (" (the workdir has checkpoints)" if (path / "checkpoints").exists() else ""),
            hint=f"pass the training run's --workdir; {what} reads the model from its config.json",
        )
    config_checks.check_config(config)
    return config
