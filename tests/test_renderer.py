"""NeuS renderer: analytic scenes, gradients, chunking, jit, and the field's parameter tree."""

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx
from render_fixtures import CHANNELS, analytic_field, configs, sdf_volume, unit

from configs import mim4d_tiny, mim4d_vs01
from mim4d_jax.geometry.grid import VoxelGrid
from mim4d_jax.models.fields import SDFField
from mim4d_jax.rendering.renderer import Renderer


def test_plane_depth_matches_ray_plane_distance():
    render_cfg, model_cfg = configs()
    field = analytic_field(render_cfg, colour=0.3, inv_s=2000.0)
    plane_z = -1.0
    vol = sdf_volume(model_cfg, lambda p: p[..., 2] - plane_z)
    origins = jnp.broadcast_to(jnp.array([0.3, -0.2, 2.0]), (12, 3))
    horizontal = jax.random.uniform(jax.random.key(1), (12, 2), minval=-0.6, maxval=0.6)
    dirs = unit(jnp.concatenate([horizontal, -jnp.ones((12, 1))], axis=-1))
    want = (origins[:, 2] - plane_z) / -dirs[:, 2]
    for rng in (None, jax.random.key(2)):
        out = Renderer.from_configs(render_cfg, model_cfg).render_rays(
            field, vol, origins, dirs, rng
        )
        # Voxels are 0.4 m; the renderer places depth within a few centimetres.
        np.testing.assert_allclose(out["depth_r"], want, atol=0.08)
        np.testing.assert_allclose(out["weight_sum_r"], 1.0, atol=1e-3)
        np.testing.assert_allclose(out["rgb_r3"], 0.3, atol=1e-3)


def test_sphere_depth_matches_ray_sphere_distance():
    render_cfg, model_cfg = configs()
    field = analytic_field(render_cfg, colour=0.8, inv_s=2000.0)
    centre = jnp.array([3.0, 1.0, 0.0])
    radius = 1.5
    vol = sdf_volume(model_cfg, lambda p: jnp.linalg.norm(p - centre, axis=-1) - radius)
    origins = jnp.broadcast_to(jnp.array([-1.0, -0.5, 0.5]), (10, 3))
    aim = centre + jax.random.uniform(jax.random.key(3), (10, 3), minval=-0.8, maxval=0.8)
    dirs = unit(aim - origins)
    to_centre = centre - origins
    along = jnp.sum(dirs * to_centre, axis=-1)
    closest_sq = jnp.sum(to_centre**2, axis=-1) - along**2
    want = along - jnp.sqrt(radius**2 - closest_sq)
    out = Renderer.from_configs(render_cfg, model_cfg).render_rays(
        field, vol, origins, dirs, jax.random.key(4)
    )
    # Trilinear interpolation of a curved SDF on 0.4 m voxels is off by a few centimetres.
    np.testing.assert_allclose(out["depth_r"], want, atol=0.1)
    np.testing.assert_allclose(out["weight_sum_r"], 1.0, atol=1e-3)


def test_rays_that_miss_everything_render_black():
    render_cfg, model_cfg = configs()
    field = analytic_field(render_cfg, colour=0.5, inv_s=2000.0)
    # Everything is 10 m in front of a plane the rays run parallel to: no surface crossing.
    vol = sdf_volume(model_cfg, lambda p: p[..., 2] + 10.0)
    origins = jnp.zeros((4, 3))
    dirs = unit(jnp.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 1.0, 0.0], [-1.0, 0.2, 0.0]]))
    out = Renderer.from_configs(render_cfg, model_cfg).render_rays(field, vol, origins, dirs)
    np.testing.assert_allclose(out["weight_sum_r"], 0.0, atol=1e-3)
    np.testing.assert_allclose(out["rgb_r3"], 0.0, atol=1e-3)


def _random_problem(num_rays: int):
    # Shallower decoders than the reference keep compile times small; the structure is the same.
    render_cfg, model_cfg = configs(
        num_samples=8, num_importance=0, chunk_rays=4, sdf_blocks=2, rgb_blocks=1, geo_dims=4
    )
    field = SDFField(render_cfg, CHANNELS, nnx.Rngs(5))
    grid = VoxelGrid.from_config(model_cfg.pc_range, model_cfg.voxel_size)
    vol = 0.5 * jax.random.normal(jax.random.key(6), (*grid.shape_zyx, CHANNELS))
    origins = jax.random.uniform(jax.random.key(7), (num_rays, 3), minval=-2.0, maxval=2.0)
    dirs = unit(jax.random.normal(jax.random.key(8), (num_rays, 3)))
    rgb_gt = jax.random.uniform(jax.random.key(9), (num_rays, 3))
    depth_gt = jnp.where(jnp.arange(num_rays) % 3 == 0, -1.0, 3.0)
    return field, vol, origins, dirs, rgb_gt, depth_gt, render_cfg, model_cfg


def test_loss_gradients_match_finite_differences():
    """Directional derivatives w.r.t. the volume and the field parameters (whose RGB branch
    takes the SDF gradient, so this checks second derivatives through the whole renderer).

    Without importance samples the sample positions do not depend on the parameters, so the
    loss is differentiable in them. Softplus(beta=100) bends on a 1e-2 scale, so the loss
    curves on a 1e-4 scale along a random parameter direction: the check runs in float64
    with a small step.
    """
    with jax.enable_x64(True):
        field, vol, origins, dirs, rgb_gt, depth_gt, render_cfg, model_cfg = _random_problem(6)
        graphdef, params = nnx.split(field)
        params, vol, origins, dirs = jax.tree.map(
            lambda x: x.astype(jnp.float64), (params, vol, origins, dirs)
        )

        def loss(params_tree, vol_zyxc):
            field_ = nnx.merge(graphdef, params_tree)
            out = Renderer.from_configs(render_cfg, model_cfg).render_rays(
                field_, vol_zyxc, origins, dirs
            )
            terms = Renderer.from_configs(render_cfg, model_cfg).losses(out, rgb_gt, depth_gt)
            return terms["rgb_loss"] + terms["depth_loss"]

        loss_fn = jax.jit(loss)
        grad_params, grad_vol = jax.jit(jax.grad(loss, argnums=(0, 1)))(params, vol)
        assert grad_vol.dtype == jnp.float64
        eps = 1e-6

        probe_vol = jax.random.normal(jax.random.key(10), vol.shape, jnp.float64)
        numeric = (
            loss_fn(params, vol + eps * probe_vol) - loss_fn(params, vol - eps * probe_vol)
        ) / (2 * eps)
        np.testing.assert_allclose(jnp.sum(grad_vol * probe_vol), numeric, rtol=1e-4)

        leaves, treedef = jax.tree.flatten(params)
        keys = jax.random.split(jax.random.key(11), len(leaves))
        probe = [jax.random.normal(k, x.shape, jnp.float64) for k, x in zip(keys, leaves)]
        for module in ("sdf_decoder", "rgb_decoder", "deviation_network"):
            # One module at a time, so a wrong gradient cannot hide behind another's.
            masked = jax.tree.unflatten(treedef, probe)
            masked = jax.tree_util.tree_map_with_path(
                lambda path, d, m=module: d if m in jax.tree_util.keystr(path) else 0.0 * d, masked
            )
            plus, minus = (
                jax.tree.map(lambda p, d, s=s: p + s * eps * d, params, masked) for s in (1, -1)
            )
            numeric = (loss_fn(plus, vol) - loss_fn(minus, vol)) / (2 * eps)
            analytic = sum(
                jnp.sum(g * d)
                for g, d in zip(jax.tree.leaves(grad_params), jax.tree.leaves(masked))
            )
            assert abs(float(analytic)) > 1e-3, module
            np.testing.assert_allclose(analytic, numeric, rtol=1e-4, err_msg=module)


def test_chunked_equals_unchunked():
    field, vol, origins, dirs, rgb_gt, depth_gt, render_cfg, model_cfg = _random_problem(10)
    render_cfg.num_importance = 4
    graphdef, params = nnx.split(field)

    def loss_and_out(params_tree, vol_zyxc, cfg):
        out = Renderer.from_configs(cfg, model_cfg).render_rays(
            nnx.merge(graphdef, params_tree), vol_zyxc, origins, dirs, jax.random.key(12)
        )
        terms = Renderer.from_configs(cfg, model_cfg).losses(out, rgb_gt, depth_gt)
        return terms["rgb_loss"] + terms["depth_loss"], out

    whole_cfg = ml_collections.ConfigDict(render_cfg.to_dict())
    whole_cfg.chunk_rays = 64
    results = []
    for cfg in (render_cfg, whole_cfg):  # 3 chunks of 4 (2 padding rays) vs one chunk of 10
        grad_fn = jax.value_and_grad(
            functools.partial(loss_and_out, cfg=cfg), argnums=(0, 1), has_aux=True
        )
        results.append(jax.jit(grad_fn)(params, vol))
    (_, out_a), grads_a = results[0]
    (_, out_b), grads_b = results[1]
    for name in ("rgb_r3", "depth_r", "weight_sum_r"):
        np.testing.assert_allclose(out_a[name], out_b[name], rtol=1e-5, atol=1e-6)
    for a, b in zip(jax.tree.leaves(grads_a), jax.tree.leaves(grads_b)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_jitted_render_compiles_once():
    config = mim4d_tiny.get_config()  # 32 x 32 x 4 grid, 32 + 16 samples, 16 channels
    config.render.chunk_rays = 64
    field = SDFField(config.render, config.model.render_channels, nnx.Rngs(0))
    graphdef, params = nnx.split(field)
    traces = []

    @jax.jit
    def render(params_tree, vol, origins, dirs, rng):
        traces.append(1)
        return Renderer.from_configs(config.render, config.model).render_rays(
            nnx.merge(graphdef, params_tree), vol, origins, dirs, rng
        )

    grid = VoxelGrid.from_config(config.model.pc_range, config.model.voxel_size)
    for seed in range(3):
        key = jax.random.key(seed)
        vol = jax.random.normal(key, (*grid.shape_zyx, config.model.render_channels))
        origins = jax.random.uniform(key, (256, 3), minval=-3.0, maxval=3.0)
        dirs = unit(jax.random.normal(jax.random.fold_in(key, 1), (256, 3)))
        out = render(params, vol, origins, dirs, jax.random.fold_in(key, 2))
        assert out["rgb_r3"].shape == (256, 3) and out["depth_r"].shape == (256,)
        assert bool(jnp.all(jnp.isfinite(out["depth_r"])))
    assert len(traces) == 1


def test_field_tree_maps_onto_reference_keys():
    """Every parameter maps 1:1 onto `pts_bbox_head.render_model.field.*` at vs0.1 sizes."""
    config = mim4d_vs01.get_config()
    field = nnx.eval_shape(
        lambda: SDFField(config.render, config.model.render_channels, nnx.Rngs(0))
    )
    flat = nnx.to_flat_state(nnx.state(field, nnx.Param))
    got = {}
    for path, variable in flat:
        names = [str(p) for p in path]
        shape = tuple(variable.get_value().shape)
        if names[-1] == "kernel":  # Dense (in, out) -> Linear weight (out, in)
            names[-1], shape = "weight", shape[::-1]
        got[".".join(names)] = shape
    want = {
        "deviation_network.variance": (1,),
        "laplace_density.beta_min": (1,),
        "laplace_density.beta": (1,),
    }
    for decoder, cond, blocks, out in (("sdf_decoder", 32, 5, 17), ("rgb_decoder", 54, 3, 3)):
        want[f"{decoder}.fc_p.weight"] = (16, 3)
        want[f"{decoder}.fc_p.bias"] = (16,)
        for i in range(blocks + 1):
            want[f"{decoder}.fc_c.{i}.weight"] = (16, cond)
            want[f"{decoder}.fc_c.{i}.bias"] = (16,)
            width = out if i == blocks else 16
            want[f"{decoder}.lin{i}.weight"] = (width, 16)
            want[f"{decoder}.lin{i}.bias"] = (width,)
    assert got == want
    assert all(v.get_value().dtype == jnp.float32 for _, v in flat)


def test_losses_weights_scale_and_depth_mask():
    render_cfg, model_cfg = configs(rgb_weight=10.0, depth_weight=2.0)
    pred = {
        "rgb_r3": jnp.array([[0.5, 0.5, 0.5], [1.0, 0.0, 0.0]]),
        "depth_r": jnp.array([4.0, 9.0]),
        "weight_sum_r": jnp.ones(2),
    }
    rgb_gt = jnp.array([[0.5, 0.2, 0.5], [1.0, 0.0, 0.3]])
    # The second ray is a top-up ray (depth -1): RGB only.
    terms = Renderer.from_configs(render_cfg, model_cfg).losses(
        pred, rgb_gt, jnp.array([3.2, -1.0])
    )
    np.testing.assert_allclose(terms["rgb_loss"], 10.0 * 0.6 / 6, rtol=1e-6)
    np.testing.assert_allclose(terms["depth_loss"], 2.0 * 0.8 / 6.4, rtol=1e-6)
    # No valid depth at all: zero, not NaN.
    terms = Renderer.from_configs(render_cfg, model_cfg).losses(
        pred, rgb_gt, jnp.array([-1.0, -1.0])
    )
    assert float(terms["depth_loss"]) == 0.0


def test_chunking_bounds_backward_memory():
    """Rematerialised chunks: the backward pass's scratch memory follows the chunk size, not
    the ray count (checked on the compiled program, without running it)."""
    field, vol, _, _, _, _, render_cfg, model_cfg = _random_problem(1)
    graphdef, params = nnx.split(field)
    rays = jax.ShapeDtypeStruct((512, 3), jnp.float32)
    temp_bytes = []
    for chunk in (32, 512):
        cfg = ml_collections.ConfigDict(render_cfg.to_dict())
        cfg.chunk_rays = chunk

        def loss(params_tree, vol_zyxc, origins, dirs, cfg=cfg):
            out = Renderer.from_configs(cfg, model_cfg).render_rays(
                nnx.merge(graphdef, params_tree), vol_zyxc, origins, dirs
            )
            return jnp.sum(out["rgb_r3"]) + jnp.sum(out["depth_r"])

        compiled = jax.jit(jax.grad(loss, argnums=(0, 1))).lower(params, vol, rays, rays).compile()
        temp_bytes.append(compiled.memory_analysis().temp_size_in_bytes)
    assert temp_bytes[0] < 0.25 * temp_bytes[1], temp_bytes
