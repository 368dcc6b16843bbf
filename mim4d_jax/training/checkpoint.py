"""Orbax checkpoints in the layout of docs/architecture.md "Checkpoints".

  <workdir>/config.json                  the resolved config (config.to_json())
  <workdir>/checkpoints/<step>/          one Orbax CheckpointManager step, composite items:
      params, batch_stats, opt_state, [ema_params]   array trees (StandardSave)
      data_state                                     JSON, input-iterator state
      meta                                           JSON: step, config hash

Saves are asynchronous and atomic (Orbax writes a temporary directory and renames it), so a
kill at any moment leaves the previous steps intact. Restores go into abstract
ShapeDtypeStructs carrying the *current* mesh's shardings, which is what makes a checkpoint
written on 8 devices load onto 4 (or onto one CPU, for export).

Reader API for export/evaluate (no optimiser, no data):
  restore_params(workdir, step=None, *, ema=False) -> (config, params, batch_stats, step)
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import jax
import ml_collections
import orbax.checkpoint as ocp
from etils import epath
from flax import nnx

ARRAY_ITEMS = ("params", "batch_stats", "opt_state", "ema_params")
JSON_ITEMS = ("data_state", "meta")


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
        tmp = path / "config.json.tmp"
        tmp.write_text(config.to_json(indent=2, sort_keys=True))
        tmp.replace(path / "config.json")  # a reader never sees half a file


def _tuples(value: Any) -> Any:
    """JSON lists back to the tuples the config files use (pad_size, sharding_rules...)."""
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    if isinstance(value, dict):
        return {k: _tuples(v) for k, v in value.items()}
    return value


def read_config(workdir: str | os.PathLike) -> ml_collections.ConfigDict:
    path = workdir_path(workdir) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: not a mim4d_jax training workdir")
    config = ml_collections.ConfigDict(_tuples(json.loads(path.read_text())))
    config.lock()
    return config


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
    )
    directory = workdir_path(workdir) / "checkpoints"
    return ocp.CheckpointManager(directory, options=options, item_handlers=handlers)


def save(
    manager: ocp.CheckpointManager,
    step: int,
    state: dict[str, Any],
    data_state: Any,
    config: ml_collections.ConfigDict,
) -> None:
    """Starts an asynchronous save of `state` at `step` (returns once arrays are copied)."""
    items = {name: ocp.args.StandardSave(state[name]) for name in ARRAY_ITEMS if name in state}
    items["data_state"] = ocp.args.JsonSave(data_state)
    items["meta"] = ocp.args.JsonSave({"step": int(step), "config_hash": config_hash(config)})
    manager.save(step, args=ocp.args.Composite(**items), force=True)


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


def check_compatible(
    manager: ocp.CheckpointManager, step: int, abstract: dict[str, Any], workdir: Any
) -> None:
    """Raises ValueError naming every mismatching leaf: never a silent fresh start."""
    metadata = manager.item_metadata(step)
    problems = []
    for name in ("params", "batch_stats"):
        saved = metadata[name]
        if saved is None:
            problems.append(f"{name}: missing from checkpoint")
            continue
        saved_tree = saved.tree if hasattr(saved, "tree") else saved
        problems += _shape_mismatches(str_keys(saved_tree), str_keys(abstract[name]), name)
    if problems:
        shown = "\n  ".join(problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise ValueError(
            f"checkpoint step {step} in {workdir} does not match the config's model:"
            f"\n  {shown}{more}\nUse a fresh --workdir for a different model, or the config "
            "the workdir was trained with."
        )


def restore(
    manager: ocp.CheckpointManager, step: int, abstract: dict[str, Any], workdir: Any
) -> tuple[dict[str, Any], Any]:
    """Restores the full train state (onto the shardings in `abstract`) and the data state."""
    check_compatible(manager, step, abstract, workdir)
    items = {
        name: ocp.args.StandardRestore(abstract[name]) for name in ARRAY_ITEMS if name in abstract
    }
    items.update({name: ocp.args.JsonRestore() for name in JSON_ITEMS})
    restored = manager.restore(step, args=ocp.args.Composite(**items))
    state = {name: restored[name] for name in ARRAY_ITEMS if name in abstract}
    meta = restored["meta"]
    step_array = jax.device_put(
        jax.numpy.asarray(meta["step"], jax.numpy.int32), abstract["step"].sharding
    )
    state["step"] = step_array
    return state, restored["data_state"]


def restore_params(
    workdir: str | os.PathLike, step: int | None = None, *, ema: bool = False
) -> tuple[ml_collections.ConfigDict, dict, dict, int]:
    """(config, params, batch_stats, step) of a training workdir, on the first local device.

    Needs only config.json and the model code: builds the model abstractly to get the tree
    structure, then restores just the params (or ema_params) and batch_stats items.
    `step=None` takes the latest checkpoint.
    """
    from mim4d_jax.models.mim4d import build_model

    config = read_config(workdir)
    manager = make_manager(workdir, read_only=True)
    step = manager.latest_step() if step is None else step
    if step is None or step not in manager.all_steps():
        raise FileNotFoundError(
            f"no checkpoint {'' if step is None else step} in {workdir}/checkpoints"
        )
    abs_model = nnx.eval_shape(lambda: build_model(config, nnx.Rngs(0)))
    _, abs_params, abs_bstats = nnx.split(abs_model, nnx.Param, nnx.BatchStat)
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])

    def target(tree: nnx.State) -> Any:
        pure = nnx.to_pure_dict(tree)
        return jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=device), pure)

    param_item = "ema_params" if ema else "params"
    abstract = {"params": target(abs_params), "batch_stats": target(abs_bstats)}
    check_compatible(manager, step, abstract, workdir)
    restored = manager.restore(
        step,
        args=ocp.args.Composite(
            **{param_item: ocp.args.StandardRestore(abstract["params"])},
            batch_stats=ocp.args.StandardRestore(abstract["batch_stats"]),
        ),
    )
    manager.close()
    return config, restored[param_item], restored["batch_stats"], int(step)
