"""The train state, its shardings, and the jitted init and train step.

The state is a plain dict pytree of pure nested dicts (what Orbax saves, see checkpoint.py):
  step (int32 scalar), params, batch_stats, opt_state, and ema_params when optim.ema_decay > 0.
The model is rebuilt inside the step with `nnx.merge(graphdef, params, batch_stats)`: a
functional step with explicit in/out shardings and a donated state, no NNX object crosses jit.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding

from mim4d_jax.data.batch import batch_sharding
from mim4d_jax.training import mesh as mesh_lib
from mim4d_jax.training import optimizer as optim_lib

State = dict[str, Any]
ModelFactory = Callable[[nnx.Rngs], nnx.Module]
LossFn = Callable[..., tuple[jax.Array, dict]]


def default_model_factory(config: ml_collections.ConfigDict) -> ModelFactory:
    from mim4d_jax.models.mim4d import build_model  # lazy: the model code is heavy to import

    return lambda rngs: build_model(config, rngs)


def default_loss_fn(config: ml_collections.ConfigDict) -> LossFn:
    """The weighted objectives of `config.objectives` (MIM4D alone by default)."""
    from mim4d_jax.objectives import build_loss_fn

    return build_loss_fn(config)


def _like_params(tree: Any, params: Any, param_shardings: Any, default: NamedSharding) -> Any:
    """Shardings for an optimiser state: a leaf whose key path ends with a parameter's path
    (Adam's mu/nu under multi_transform's inner states) and has its shape gets that
    parameter's sharding; counters and anything else are replicated.

    (optax.tree_map_params cannot see through multi_transform's MaskedNodes.)
    """
    by_path = {
        tuple(path): (leaf.shape, sharding)
        for (path, leaf), sharding in zip(
            jax.tree_util.tree_flatten_with_path(params)[0],
            jax.tree.leaves(param_shardings),
            strict=True,
        )
    }
    depth = max((len(p) for p in by_path), default=0)

    def pick(path: tuple, leaf: Any) -> NamedSharding:
        for start in range(max(len(path) - depth, 0), len(path)):
            match = by_path.get(tuple(path[start:]))
            if match is not None and tuple(match[0]) == tuple(leaf.shape):
                return match[1]
        return default

    return jax.tree_util.tree_map_with_path(pick, tree)


@dataclasses.dataclass
class TrainFns:
    """Everything the loop needs, built once per (config, mesh)."""

    graphdef: nnx.GraphDef
    tx: optax.GradientTransformation
    schedule: optax.Schedule
    shardings: State  # NamedSharding per state leaf
    abstract_state: State  # ShapeDtypeStruct(sharding=...) per state leaf: the restore target
    init_params: Callable[[], tuple[Any, Any]]  # jitted: -> (params, batch_stats)
    init_state: Callable[[Any, Any], State]  # jitted: (params, batch_stats) -> state
    train_step: Callable[[State, dict], tuple[State, dict]]  # jitted, state donated
    param_counts: dict[str, int]  # per top-level module


def make_train_fns(
    config: ml_collections.ConfigDict,
    mesh: Mesh,
    model_factory: ModelFactory | None = None,
    loss_fn: LossFn | None = None,
) -> TrainFns:
    model_factory = model_factory or default_model_factory(config)
    loss_fn = loss_fn or default_loss_fn(config)
    use_ema = config.optim.ema_decay > 0

    rules = tuple(config.sharding_rules)

    def build() -> nnx.Module:
        # Under a mesh (the jitted init) flax may resolve logical names while it creates
        # variables; the rules make them mesh axes.
        with nnx.logical_axis_rules(rules):
            return model_factory(nnx.Rngs(config.seed))

    # ---- Abstract model: structure, shapes and logical shardings without allocating. ----
    # No mesh in scope: nnx.eval_shape would otherwise attach NamedShardings straight from
    # the logical specs, some of which only become valid after mesh_lib.state_shardings.
    with jax.set_mesh(None):
        abs_model = nnx.eval_shape(build)
    graphdef, abs_params, abs_bstats = nnx.split(abs_model, nnx.Param, nnx.BatchStat)
    param_sh = nnx.to_pure_dict(mesh_lib.state_shardings(abs_params, mesh, rules))
    bstat_sh = nnx.to_pure_dict(mesh_lib.state_shardings(abs_bstats, mesh, rules))
    abs_params, abs_bstats = nnx.to_pure_dict(abs_params), nnx.to_pure_dict(abs_bstats)
    tx, schedule = optim_lib.make_optimizer(config, abs_params)
    replicated = mesh_lib.replicated(mesh)

    # Optimiser moments follow their parameter's sharding; counters are replicated.
    abs_opt = jax.eval_shape(tx.init, abs_params)
    opt_sh = _like_params(abs_opt, abs_params, param_sh, replicated)
    shardings: State = {
        "step": replicated,
        "params": param_sh,
        "batch_stats": bstat_sh,
        "opt_state": opt_sh,
    }
    abstract: State = {
        "step": jax.ShapeDtypeStruct((), jnp.int32),
        "params": abs_params,
        "batch_stats": abs_bstats,
        "opt_state": abs_opt,
    }
    if use_ema:
        shardings["ema_params"] = param_sh
        abstract["ema_params"] = abs_params
    abstract = jax.tree.map(
        lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, shardings
    )

    # ---- Initialisation, sharded from birth (no full copy on one device). ----
    def _init_params() -> tuple[Any, Any]:
        _, params, bstats = nnx.split(build(), nnx.Param, nnx.BatchStat)
        return nnx.to_pure_dict(params), nnx.to_pure_dict(bstats)

    def _init_state(params: Any, bstats: Any) -> State:
        state = {
            "step": jnp.zeros((), jnp.int32),
            "params": params,
            "batch_stats": bstats,
            "opt_state": tx.init(params),
        }
        if use_ema:
            state["ema_params"] = jax.tree.map(jnp.copy, params)
        return state

    init_params = jax.jit(_init_params, out_shardings=(param_sh, bstat_sh))
    init_state = jax.jit(_init_state, in_shardings=(param_sh, bstat_sh), out_shardings=shardings)

    # ---- The train step. ----
    base_key = jax.random.key(config.seed)
    frozen_stages = config.model.frozen_stages
    extra_frozen = tuple(config.optim.frozen_prefixes)

    def _train_step(state: State, batch: dict) -> tuple[State, dict]:
        step = state["step"]
        # Per-step randomness from (seed, step) only: a resumed run replays the same keys.
        rng = jax.random.fold_in(base_key, step)

        def objective(params: Any) -> tuple[jax.Array, tuple[dict, Any]]:
            model = nnx.merge(graphdef, params, state["batch_stats"])
            loss, aux = loss_fn(model, batch, rng, train=True)
            return loss, (aux, nnx.to_pure_dict(nnx.state(model, nnx.BatchStat)))

        (loss, (aux, bstats)), grads = jax.value_and_grad(objective, has_aux=True)(state["params"])
        grad_norm = optim_lib.trainable_grad_norm(grads, frozen_stages, extra_frozen)
        updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
        params = optax.apply_updates(state["params"], updates)
        new: State = {
            "step": step + 1,
            "params": params,
            "batch_stats": bstats,
            "opt_state": opt_state,
        }
        if use_ema:
            new["ema_params"] = optim_lib.ema_update(
                state["ema_params"], params, config.optim.ema_decay
            )
        # A non-finite step leaves the state untouched, so whatever is saved stays finite;
        # the loop sees `finite` and stops the run.
        finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
        new = jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, state)
        metrics = {"loss": loss, "grad_norm": grad_norm, "lr": schedule(step), "finite": finite}
        metrics.update(aux.get("losses", {}))
        return new, metrics

    train_step = jax.jit(
        _train_step,
        in_shardings=(shardings, batch_sharding(mesh)),
        out_shardings=(shardings, replicated),
        donate_argnums=(0,),
    )

    counts = {
        name: sum(int(x.size) for x in jax.tree.leaves(sub))
        for name, sub in sorted(abs_params.items())
    }
    return TrainFns(
        graphdef, tx, schedule, shardings, abstract, init_params, init_state, train_step, counts
    )
