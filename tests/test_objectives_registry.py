"""The objective registry: config keys, validation, heads only when enabled, and the default
loss reproducing the MIM4D objective exactly."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import train_fixtures
from flax import nnx
from train_fixtures import compilation_cache_fixture  # noqa: F401 (registers the fixture)

from mim4d_jax.data.batch import example_spec
from mim4d_jax.models.mim4d import build_model
from mim4d_jax.objectives import OBJECTIVES, build_loss_fn, check_config
from mim4d_jax.objectives.mim4d import make_loss_fn
from mim4d_jax.user_errors import ConfigError


def objective_batch(config, batch_size=2, seed=0):
    """train_fixtures examples plus the pair keys of the enabled objectives (plausible values:
    same-camera temporal view pairs, points spread over the grid's lower half)."""
    rng = np.random.default_rng(seed)
    examples = []
    for i in range(batch_size):
        ex = train_fixtures.example(config, seed, i)
        frames = config.data.frames
        if config.objectives.croco > 0:
            p = config.croco.num_pairs
            ex["croco_pairs"] = np.array(
                [[i % 6, 0, i % 6, 1 + i % (frames - 1)] for i in range(p)], np.int32
            )
            ex["croco_pair_valid"] = np.ones(p, np.float32)
            ex["croco_overlap"] = np.ones(p, np.float32)
        if config.objectives.pointcontrast > 0:
            m = config.pointcontrast.num_pairs
            ex["pc_points"] = rng.uniform([-20, -20, -4], [20, 20, 0], (m, 3)).astype(np.float32)
            ex["pc_valid"] = np.ones(m, np.float32)
        examples.append(ex)
    return {k: jnp.asarray(np.stack([e[k] for e in examples])) for k in examples[0]}


def test_every_objective_has_a_config_weight_and_the_default_is_mim4d_alone():
    config = train_fixtures.tiny_config()
    assert set(config.objectives) == set(OBJECTIVES)
    assert dict(config.objectives) == {"mim4d": 1.0, "croco": 0.0, "pointcontrast": 0.0}
    on = train_fixtures.tiny_config("objectives.croco=1.0", "objectives.pointcontrast=0.5")
    assert on.objectives.croco == 1.0 and on.objectives.pointcontrast == 0.5


def test_validation_names_an_unknown_objective_a_bad_weight_and_a_missing_batch_key():
    config = train_fixtures.tiny_config()
    config.unlock()
    config.objectives.simclr = 1.0
    with pytest.raises(ConfigError, match="unknown objective.*simclr"):
        check_config(config)
    config = train_fixtures.tiny_config("objectives.croco=-1.0")
    with pytest.raises(ConfigError, match="objectives.croco=-1.0"):
        check_config(config)
    config = train_fixtures.tiny_config("objectives.mim4d=0.0")
    with pytest.raises(ConfigError, match="nothing to train"):
        check_config(config)
    # A batch without the enabled objective's keys is named at trace time.
    config = train_fixtures.tiny_config("batch_size=2", "objectives.pointcontrast=1.0")
    batch = objective_batch(config)
    del batch["pc_points"]
    model = build_model(config, nnx.Rngs(0))
    with pytest.raises(KeyError, match="pointcontrast.*pc_points"):
        build_loss_fn(config)(model, batch, None, train=False)


def test_pair_keys_and_heads_exist_only_when_their_objective_is_on():
    default = train_fixtures.tiny_config()
    on = train_fixtures.tiny_config("objectives.croco=1.0", "objectives.pointcontrast=1.0")
    extra = set(example_spec(on)) - set(example_spec(default))
    assert extra == {"croco_pairs", "croco_pair_valid", "croco_overlap", "pc_points", "pc_valid"}
    abstract = {
        name: nnx.state(nnx.eval_shape(lambda c=c: build_model(c, nnx.Rngs(0))), nnx.Param)
        for name, c in (("default", default), ("on", on))
    }
    base = jax.tree_util.tree_flatten_with_path(abstract["default"])[0]
    full = dict(jax.tree_util.tree_flatten_with_path(abstract["on"])[0])
    # The default model's parameters are exactly the old ones; the heads come on top.
    assert all(path in full and full[path].shape == leaf.shape for path, leaf in base)
    heads = {str(path[0].key) for path in full} - {str(path[0].key) for path, _ in base}
    assert heads == {"croco_decoder", "pc_head"}


def test_default_loss_is_bit_identical_to_the_mim4d_objective(compilation_cache):
    config = train_fixtures.tiny_config("batch_size=2")
    batch = objective_batch(config)
    graphdef, state = nnx.split(build_model(config, nnx.Rngs(0)))
    rng = jax.random.key(3)

    def run(loss_fn):
        def f(state, batch, rng):
            return loss_fn(nnx.merge(graphdef, state, copy=True), batch, rng, train=True)

        return f

    registry_fn, mim4d_fn = run(build_loss_fn(config)), run(make_loss_fn(config))
    # The same program (so the same numbers on any backend) ...
    assert str(jax.make_jaxpr(registry_fn)(state, batch, rng)) == str(
        jax.make_jaxpr(mim4d_fn)(state, batch, rng)
    )
    # ... and the same values, compared exactly.
    total_a, aux_a = jax.jit(registry_fn)(state, batch, rng)
    total_b, aux_b = jax.jit(mim4d_fn)(state, batch, rng)
    assert float(total_a) == float(total_b)
    assert set(aux_a["losses"]) == set(aux_b["losses"])
    for name, value in aux_b["losses"].items():
        assert float(aux_a["losses"][name]) == float(value), name


def test_combined_objectives_log_prefixed_terms_and_sum_by_weight():
    config = train_fixtures.tiny_config(
        "batch_size=2",
        "objectives.mim4d=0.0",
        "objectives.croco=1.0",
        "objectives.pointcontrast=0.5",
    )
    batch = objective_batch(config)
    graphdef, state = nnx.split(build_model(config, nnx.Rngs(0)))
    loss_fn = build_loss_fn(config)
    total, aux = jax.jit(
        lambda s, b: loss_fn(nnx.merge(graphdef, s, copy=True), b, jax.random.key(0))
    )(state, batch)
    terms = {k: float(v) for k, v in aux["losses"].items()}
    assert set(terms) == {"croco_loss", "pointcontrast_loss", "pointcontrast_acc"}
    np.testing.assert_allclose(
        float(total), terms["croco_loss"] + 0.5 * terms["pointcontrast_loss"], rtol=1e-6
    )


def test_export_keeps_the_reference_keys_and_lists_the_heads_under_their_prefixes():
    from mim4d_jax.interop import mapping
    from mim4d_jax.interop.torch_ref.reference_keys import reference_shapes

    config = train_fixtures.tiny_config("objectives.croco=1.0", "objectives.pointcontrast=1.0")
    model = nnx.eval_shape(lambda: build_model(config, nnx.Rngs(0)))
    _, params, stats = nnx.split(model, nnx.Param, nnx.BatchStat)
    actual = {}
    for tree in (params, stats):
        for path, leaf in mapping.flatten(nnx.to_pure_dict(tree)).items():
            actual[mapping.torch_key(path)] = mapping.torch_shape(path, tuple(leaf.shape))
    report = mapping.compare(reference_shapes(config), actual)
    # BN counters are added by the export itself; everything else matches the reference.
    assert not report.unexpected and not report.mismatched
    assert all(k.endswith(mapping.BN_COUNTER) for k in report.missing)
    heads = set(report.objective_heads)
    assert "croco_decoder.mask_token" in heads and "pc_head.fc1.weight" in heads
    assert "croco_decoder.blocks.0.cross_attn.kv.weight" in heads
    assert all(k.startswith(("croco_decoder.", "pc_head.")) for k in heads)
    assert "objective heads exported under croco_decoder.*, pc_head.*" in report.format()
