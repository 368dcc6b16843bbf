"""History decoder: exported key tree, BEV channel order, positional encoding, dropped-frame
prediction (shapes, gradients, independence from the key frame)."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from configs import mim4d_vs01
from mim4d_jax.geometry.grid import VoxelGrid
from mim4d_jax.geometry.rigid import relative_transform
from mim4d_jax.models.history_decoder import (
    HistoryDecoder,
    bev_to_volume,
    other_frames,
    predict_dropped_frame,
    sine_positional_encoding,
    volume_to_bev,
)
from mim4d_jax.models.warp import warp_volume

# Tiny: Z, Y, X = 2, 8, 8; C = 4; T = 3.
GRID = VoxelGrid.from_config((-4.0, -4.0, -1.0, 4.0, 4.0, 2.0), (1.0, 1.0, 1.5))
CHANNELS, FRAMES = 4, 3


def _tiny_cfg() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(
        dict(
            embed_dims=16,
            reduction=2,
            num_layers=1,
            long_heads=2,
            short_heads=4,
            num_points=2,
            ffn_dims=24,
        )
    )


def _tiny_decoder(seed: int = 0) -> HistoryDecoder:
    return HistoryDecoder(
        _tiny_cfg(),
        render_channels=CHANNELS,
        grid_zyx=GRID.shape_zyx,
        num_frames=FRAMES,
        rngs=nnx.Rngs(seed),
    )


def _inputs(seed: int, batch: int = 2):
    rng = np.random.default_rng(seed)
    vols = rng.normal(size=(batch, FRAMES, *GRID.shape_zyx, CHANNELS)).astype(np.float32)
    vol2ref = np.tile(np.eye(4, dtype=np.float32), (batch, FRAMES, 1, 1))
    for b in range(batch):
        for t in range(1, FRAMES):
            yaw = rng.uniform(-0.3, 0.3)
            vol2ref[b, t, :2, :2] = [[np.cos(yaw), -np.sin(yaw)], [np.sin(yaw), np.cos(yaw)]]
            vol2ref[b, t, :3, 3] = rng.normal(0, 1.0, 3)
    return jnp.asarray(vols), jnp.asarray(vol2ref)


def _vs01_expected_params() -> dict[str, tuple[int, ...]]:
    """Reference `history_decoder.*` keys and torch shapes, in Flax names and layouts
    (Linear (out, in) -> kernel (in, out); Conv OIHW -> HWIO; LN weight -> scale)."""
    want = {
        "frame_embeds": (3, 128),
        "queries_long.embedding": (16384, 64),
        "queries_short.embedding": (16384, 128),
        "proj.0.kernel": (1, 1, 160, 128),
        "proj.1.scale": (128,),
        "proj.1.bias": (128,),
        "input_proj.0.kernel": (128, 64),
        "input_proj.0.bias": (64,),
        "input_proj.1.scale": (64,),
        "input_proj.1.bias": (64,),
        "output_proj.0.kernel": (3, 3, 192, 160),
        "output_proj.1.scale": (160,),
        "output_proj.1.bias": (160,),
    }
    for branch, e in (("long", 64), ("short", 128)):
        for layer in range(2):
            prefix = f"decoder_{branch}.layers.{layer}"
            for name, out in (
                ("sampling_offsets", 32),
                ("attention_weights", 16),
                ("value_proj", e),
                ("output_proj", e),
            ):
                want[f"{prefix}.attentions.0.{name}.kernel"] = (e, out)
                want[f"{prefix}.attentions.0.{name}.bias"] = (out,)
            want[f"{prefix}.ffns.0.layers.0.0.kernel"] = (e, 256)
            want[f"{prefix}.ffns.0.layers.0.0.bias"] = (256,)
            want[f"{prefix}.ffns.0.layers.1.kernel"] = (256, e)
            want[f"{prefix}.ffns.0.layers.1.bias"] = (e,)
            for norm in range(2):
                want[f"{prefix}.norms.{norm}.scale"] = (e,)
                want[f"{prefix}.norms.{norm}.bias"] = (e,)
    return want


def test_vs01_param_tree_maps_one_to_one_onto_exported_keys():
    config = mim4d_vs01.get_config()
    grid = VoxelGrid.from_config(config.model.pc_range, config.model.voxel_size)
    decoder = nnx.eval_shape(
        lambda: HistoryDecoder(
            config.model.history,
            render_channels=config.model.render_channels,
            grid_zyx=grid.shape_zyx,
            num_frames=config.data.frames,
            rngs=nnx.Rngs(0),
        )
    )
    flat = nnx.to_flat_state(nnx.state(decoder, nnx.Param))
    got = {".".join(str(k) for k in path): var for path, var in flat}
    want = _vs01_expected_params()
    assert sorted(got) == sorted(want)
    for name, var in got.items():
        assert var.shape == want[name], name
        assert var.dtype == jnp.float32, name
        axes = var.get_metadata()["out_sharding"]
        assert len(axes) == len(var.shape), name
        assert set(axes) <= {None, "embed", "mlp", "heads", "queries"}, name
    assert got["queries_long.embedding"].get_metadata()["out_sharding"] == ("queries", "embed")


def test_bev_channel_order_is_c_times_z_plus_z():
    vol = jax.random.normal(jax.random.key(0), (2, 3, 5, 4, 6))  # (B, Z, Y, X, C)
    bev = np.asarray(volume_to_bev(vol))
    assert bev.shape == (2, 5, 4, 6 * 3)
    for c, z in ((0, 0), (1, 2), (5, 1)):
        np.testing.assert_array_equal(bev[..., c * 3 + z], np.asarray(vol[:, z, :, :, c]))
    np.testing.assert_array_equal(np.asarray(bev_to_volume(jnp.asarray(bev), 3)), np.asarray(vol))


def test_sine_positional_encoding_matches_mmdet_formula():
    y_count, x_count, feats = 3, 5, 8
    pos = sine_positional_encoding((y_count, x_count), feats).reshape(y_count, x_count, 2 * feats)
    j, i = 1, 3
    y_embed = (j + 1) / (y_count + 1e-6) * 2 * np.pi
    x_embed = (i + 1) / (x_count + 1e-6) * 2 * np.pi
    for k in range(feats // 2):
        freq = 10000.0 ** (2 * k / feats)
        np.testing.assert_allclose(pos[j, i, 2 * k], np.sin(y_embed / freq), atol=1e-6)
        np.testing.assert_allclose(pos[j, i, 2 * k + 1], np.cos(y_embed / freq), atol=1e-6)
        np.testing.assert_allclose(pos[j, i, feats + 2 * k], np.sin(x_embed / freq), atol=1e-6)
        np.testing.assert_allclose(pos[j, i, feats + 2 * k + 1], np.cos(x_embed / freq), atol=1e-6)


def test_other_frames_keep_increasing_index_order():
    got = np.asarray(other_frames(jnp.asarray([0, 1, 2, 1]), 3))
    np.testing.assert_array_equal(got, [[1, 2], [0, 2], [0, 1], [0, 2]])


def test_prediction_shape_and_finite_gradients():
    decoder = _tiny_decoder()
    vols, vol2ref = _inputs(0)
    key = jnp.asarray([0, 2])

    @jax.jit
    def loss_and_grads(model, vols_btzyxc):
        def loss_fn(model, vols_btzyxc):
            pred = predict_dropped_frame(model, vols_btzyxc, vol2ref, key, GRID)
            return jnp.mean(pred**2), pred

        return nnx.value_and_grad(loss_fn, argnums=(0, 1), has_aux=True)(model, vols_btzyxc)

    (loss, pred), (param_grads, vol_grads) = loss_and_grads(decoder, vols)
    assert pred.shape == (2, *GRID.shape_zyx, CHANNELS) and pred.dtype == jnp.float32
    assert np.isfinite(float(loss))
    leaves = jax.tree.leaves(param_grads)
    assert all(np.all(np.isfinite(np.asarray(g))) for g in leaves)
    assert np.all(np.isfinite(np.asarray(vol_grads)))
    # Gradients reach the inputs through the warp and the deformable sampling.
    assert np.abs(np.asarray(vol_grads[0, 1])).sum() > 0
    # ...but never the dropped frame itself.
    assert not np.any(np.asarray(vol_grads[0, 0])) and not np.any(np.asarray(vol_grads[1, 2]))


def test_prediction_ignores_the_key_frame_and_uses_the_others():
    decoder = _tiny_decoder(1)
    vols, vol2ref = _inputs(1)
    key = jnp.asarray([1, 0])
    predict = jax.jit(lambda v: predict_dropped_frame(decoder, v, vol2ref, key, GRID))
    base = np.asarray(predict(vols))
    noise = jax.random.normal(jax.random.key(2), vols.shape[2:]) * 10.0
    perturbed_key = vols.at[0, 1].add(noise).at[1, 0].add(noise)
    np.testing.assert_array_equal(np.asarray(predict(perturbed_key)), base)
    perturbed_other = vols.at[0, 2].add(noise)
    assert np.abs(np.asarray(predict(perturbed_other))[0] - base[0]).max() > 1e-3


def test_prediction_equals_decoder_on_explicitly_warped_frames():
    decoder = _tiny_decoder(2)
    vols, vol2ref = _inputs(2, batch=1)
    predict = jax.jit(lambda m, v: predict_dropped_frame(m, v, vol2ref, jnp.asarray([1]), GRID))
    got = np.asarray(predict(decoder, vols))

    @jax.jit
    def by_hand(model, vols_btzyxc):
        warped = [
            warp_volume(vols_btzyxc[0, src], relative_transform(vol2ref[0], 1, src), GRID)
            for src in (0, 2)
        ]
        return model(volume_to_bev(jnp.stack(warped)[None]))

    want = np.asarray(by_hand(decoder, vols))
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_short_branch_sees_only_the_first_other_frame():
    # With the long branch's attention silenced (zero value/output projection), only the short
    # branch reads values, and it must read list position 0 only.
    decoder = _tiny_decoder(3)
    for layer in decoder.decoder_long.layers:
        layer.attentions[0].output_proj.kernel[...] = jnp.zeros_like(
            layer.attentions[0].output_proj.kernel[...]
        )
    bev = jax.random.normal(jax.random.key(3), (1, FRAMES - 1, 8, 8, CHANNELS * 2))
    run = jax.jit(lambda b: decoder(b))
    base = np.asarray(run(bev))
    np.testing.assert_allclose(np.asarray(run(bev.at[:, 1].mul(-3.0))), base, atol=1e-5)
    assert np.abs(np.asarray(run(bev.at[:, 0].mul(-3.0))) - base).max() > 1e-3


def test_rejects_wrong_number_of_frames():
    decoder = _tiny_decoder()
    with pytest.raises(ValueError, match="expected BEVs"):
        decoder(jnp.zeros((1, FRAMES, 8, 8, CHANNELS * 2)))
