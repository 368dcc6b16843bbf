"""The pre-training loss: its terms, and the single-frame fallback for clips without history."""

import jax
import jax.numpy as jnp
import numpy as np
import train_fixtures
from flax import nnx

from mim4d_jax.models.mim4d import build_model
from mim4d_jax.objectives.mim4d import LOSS_TERMS, make_loss_fn
from mim4d_jax.training import optimizer


def _batch(config, temporal_valid):
    examples = [train_fixtures.example(config, seed=0, index=i) for i in range(2)]
    batch = {k: np.stack([e[k] for e in examples]) for k in examples[0]}
    batch["temporal_valid"] = np.asarray(temporal_valid, np.float32)
    return {k: jnp.asarray(v) for k, v in batch.items()}


def test_loss_terms_and_single_frame_fallback():
    config = train_fixtures.tiny_config("batch_size=2")
    model = build_model(config, nnx.Rngs(0))
    graphdef, state = nnx.split(model)
    loss_fn = make_loss_fn(config)

    @jax.jit
    def losses(state, batch):
        return loss_fn(nnx.merge(graphdef, state, copy=True), batch, None, train=False)

    total, aux = losses(state, _batch(config, [1.0, 1.0]))
    terms = {k: float(v) for k, v in aux["losses"].items()}
    assert set(terms) == set(LOSS_TERMS) and all(np.isfinite(v) and v > 0 for v in terms.values())
    np.testing.assert_allclose(float(total), sum(terms.values()), rtol=1e-6)
    # With history the prediction is its own volume: its losses differ from the direct ones.
    assert abs(terms["depth_loss_adj"] - terms["depth_loss"]) > 1e-4

    # Without history the temporal terms fall back to the direct volume (is_hop=False).
    _, aux = losses(state, _batch(config, [0.0, 0.0]))
    fallback = {k: float(v) for k, v in aux["losses"].items()}
    for name in ("rgb_loss", "depth_loss"):
        np.testing.assert_allclose(fallback[name + "_adj"], fallback[name], rtol=1e-6)
        np.testing.assert_allclose(fallback[name], terms[name], rtol=1e-5)


def test_unused_render_parameters_are_frozen():
    """laplace_density gets no gradient; it must not decay either (PyTorch's AdamW skips it)."""
    params = {"render_model": {"laplace_density": {"beta": np.ones(1)}, "sdf": {"w": np.ones(1)}}}
    labels = optimizer.param_labels(params, frozen_stages=0)
    assert labels["render_model"]["laplace_density"]["beta"] == optimizer.FROZEN
    assert labels["render_model"]["sdf"]["w"] == optimizer.DEFAULT
