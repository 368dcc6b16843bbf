"""CroCo-style cross-view completion: the masked-patch loss, the on-device mask, 2D RoPE, the
view-pair sampler on a clip of known geometry, and a few training steps."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import train_fixtures
from flax import nnx
from test_objectives_registry import objective_batch

from configs import mim4d_tiny
from mim4d_jax.data import masks, pairs, rays, schema
from mim4d_jax.data.clip import parse_clip
from mim4d_jax.data.example import make_example
from mim4d_jax.models.croco_decoder import grid_positions, rope_2d
from mim4d_jax.models.mim4d import build_model
from mim4d_jax.objectives import build_loss_fn
from mim4d_jax.objectives.croco import masked_patch_loss, patch_targets, patchify, random_keep
from tests import data_fixtures

STORED_WH = (320, 180)


def _clip(index=1, frames=3):
    raw = data_fixtures.make_clip(index, frames, STORED_WH, seed=0)
    features = schema.clip_features(frames, STORED_WH[::-1])
    return parse_clip(features.serialize_example(raw), frames, schema.CAMERAS, frames, "t")


def test_loss_is_zero_for_a_perfect_prediction_and_counts_only_masked_patches():
    rng = np.random.default_rng(0)
    images = jnp.asarray(rng.normal(size=(3, 64, 96, 3)), jnp.float32)
    target = patch_targets(images, 32, norm_pix=True)
    assert target.shape == (3, 2, 3, 32 * 32 * 3)
    np.testing.assert_allclose(np.mean(target, -1), 0.0, atol=1e-5)  # per-patch normalised
    keep = random_keep(jax.random.key(0), 3, (2, 3), 0.5)
    valid = jnp.ones(3)
    assert float(masked_patch_loss(target, target, keep, valid)) == 0.0
    noise = jnp.asarray(rng.normal(size=target.shape), jnp.float32)
    # Anything predicted at visible patches is ignored ...
    at_visible = target + noise * keep[..., None]
    assert float(masked_patch_loss(at_visible, target, keep, valid)) == 0.0
    # ... an error at a masked patch counts, averaged over that image's masked patches.
    at_masked = target + noise * (1.0 - keep[..., None])
    per_patch = np.mean(np.square(np.asarray(noise)), -1) * (1.0 - np.asarray(keep))
    expected = np.mean(per_patch.sum((1, 2)) / (1.0 - np.asarray(keep)).sum((1, 2)))
    np.testing.assert_allclose(
        float(masked_patch_loss(at_masked, target, keep, valid)), expected, rtol=1e-5
    )
    # Invalid pairs do not count.
    only_first = jnp.array([1.0, 0.0, 0.0])
    first = np.mean(np.square(np.asarray(noise[0])), -1) * (1.0 - np.asarray(keep[0]))
    np.testing.assert_allclose(
        float(masked_patch_loss(at_masked, target, keep, only_first)),
        first.sum() / (1.0 - np.asarray(keep[0])).sum(),
        rtol=1e-5,
    )


def test_patchify_orders_pixels_row_column_rgb():
    images = jnp.arange(2 * 4 * 6 * 3, dtype=jnp.float32).reshape(2, 4, 6, 3)
    patches = patchify(images, 2)
    np.testing.assert_array_equal(patches[1, 1, 2].reshape(2, 2, 3), images[1, 2:4, 4:6])


def test_mask_has_exactly_the_visible_count_and_changes_with_the_rng():
    a = random_keep(jax.random.key(0), 16, (3, 5), 0.9)
    b = random_keep(jax.random.key(1), 16, (3, 5), 0.9)
    assert a.shape == (16, 3, 5)
    np.testing.assert_array_equal(a.sum((1, 2)), masks.num_visible(15, 0.9))
    assert not np.array_equal(a, b)


def test_rope_scores_depend_only_on_relative_positions():
    rng = np.random.default_rng(0)
    q = jnp.asarray(rng.normal(size=(1, 1, 1, 16)), jnp.float32)
    k = jnp.asarray(rng.normal(size=(1, 1, 1, 16)), jnp.float32)

    def score(pq, pk):
        a = rope_2d(q, jnp.asarray([pq]), 100.0)
        b = rope_2d(k, jnp.asarray([pk]), 100.0)
        return float(jnp.sum(a * b))

    np.testing.assert_allclose(score((1, 2), (3, 0)), score((5, 7), (7, 5)), rtol=1e-5)
    assert abs(score((0, 0), (0, 1)) - score((0, 0), (1, 0))) > 1e-4  # rows != columns
    np.testing.assert_array_equal(grid_positions(2, 3)[4], [1, 1])


def _pair_config(**croco):
    c = mim4d_tiny.get_config("test")
    c.objectives.croco = 1.0
    for key, value in croco.items():
        c.croco[key] = value
    return c


def test_pair_sampler_only_pairs_views_that_overlap():
    clip = _clip()
    # Spatial candidates included with a threshold between the rig's two kinds of overlap.
    config = _pair_config(num_pairs=12, spatial_pairs=True, min_overlap=0.5)
    ex = make_example(clip, config, seed=0, position=0)
    assert ex["croco_pairs"].shape == (12, 4) and ex["croco_pair_valid"].all()
    points_tp3 = _points_in_volumes(clip, config)
    l2i = ex["lidar2img"].astype(np.float64)
    for pair, overlap in zip(ex["croco_pairs"], ex["croco_overlap"], strict=True):
        measured = pairs.view_overlap(points_tp3, l2i, tuple(config.data.image_size), pair)
        np.testing.assert_allclose(overlap, measured, rtol=1e-6)
        assert measured >= 0.5
    # The measured overlaps: same camera over time shares most of the view, ring neighbours
    # little; none of the neighbour pairs passes the 0.5 threshold on this rig.
    cands = pairs.view_pair_candidates(tuple(config.data.cameras), 3, spatial=True)
    over = np.array(
        [pairs.view_overlap(points_tp3, l2i, tuple(config.data.image_size), c) for c in cands]
    )
    temporal = cands[:, 0] == cands[:, 2]
    assert over[temporal].min() > 0.6 and over[~temporal].max() < 0.5
    assert set(map(tuple, ex["croco_pairs"])) <= set(map(tuple, cands[temporal]))
    # Nothing passes an impossible threshold: the slots are marked invalid, not faked.
    none = make_example(clip, _pair_config(min_overlap=1.0), seed=0, position=0)
    assert none["croco_pair_valid"].sum() == 0 or np.all(none["croco_overlap"] >= 1.0)


def _points_in_volumes(clip, config):
    ray_points = clip["lidar_points"][:, :3].astype(np.float64)
    points = rays.filter_lidar(ray_points, rays.RayConfig.from_config(config))
    key2vol = pairs.keylidar2vol(clip["ego2global"], clip["lidar2ego"], clip["lidar_ego2global"], 0)
    return np.stack([points @ m[:3, :3].T + m[:3, 3] for m in key2vol])


def test_croco_alone_trains():
    config = train_fixtures.tiny_config(
        "batch_size=2", "objectives.mim4d=0.0", "objectives.croco=1.0"
    )
    assert_loss_falls(config, "croco_loss")


def assert_loss_falls(config, term, steps=8):
    batch = objective_batch(config)
    graphdef, params, rest = nnx.split(build_model(config, nnx.Rngs(0)), nnx.Param, ...)
    loss_fn = build_loss_fn(config)
    tx = optax.adam(2e-3)

    @jax.jit
    def step(params, opt, i):
        def f(p):
            total, aux = loss_fn(nnx.merge(graphdef, p, rest, copy=True), batch, None)
            return total, aux["losses"][term]

        (_, value), grads = jax.value_and_grad(f, has_aux=True)(params)
        updates, opt = tx.update(grads, opt, params)
        return optax.apply_updates(params, updates), opt, value

    opt = tx.init(params)
    values = []
    for i in range(steps):
        params, opt, value = step(params, opt, i)
        values.append(float(value))
    assert np.all(np.isfinite(values)) and values[-1] < 0.8 * values[0], values
