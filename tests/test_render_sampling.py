"""Ray samples: box near/far, stratified bins, NeuS alphas/weights, PDF up-sampling."""

import jax
import jax.numpy as jnp
import numpy as np

from mim4d_jax.rendering.sampling import (
    fixed_inv_s_alpha,
    neus_samples,
    pdf_edges,
    ray_box_near_far,
    stratified_edges,
    weights_from_alphas,
)

BOX = jnp.array([-2.0, -1.0, -0.5, 2.0, 1.0, 0.5])


def _unit(v: jnp.ndarray) -> jnp.ndarray:
    return v / jnp.linalg.norm(v, axis=-1, keepdims=True)


def test_ray_box_inside_outside_and_near_clamp():
    origins = jnp.array([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [-4.0, 0.0, 0.0], [1.0, 0.5, 0.2]])
    dirs = _unit(jnp.array([[1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [-1.0, -1.0, 0.0]]))
    near, far = ray_box_near_far(origins, dirs, BOX, near_min=0.1)
    # Axis-parallel rays from inside: near is the clamp, far the face distance.
    np.testing.assert_allclose(near[:2], [0.1, 0.1], atol=1e-6)
    np.testing.assert_allclose(far[:2], [2.0, 1.0], atol=1e-5)
    # From outside: entry and exit of the x slab.
    np.testing.assert_allclose([near[2], far[2]], [2.0, 6.0], atol=1e-5)
    # Diagonal in xy from (1, 0.5): leaves through y = -1 after 1.5 * sqrt(2).
    np.testing.assert_allclose(far[3], 1.5 * np.sqrt(2.0), atol=1e-5)


def test_ray_missing_the_box_gets_a_tiny_valid_interval():
    near, far = ray_box_near_far(
        jnp.array([[0.0, 5.0, 0.0]]), jnp.array([[1.0, 0.0, 0.0]]), BOX, near_min=0.1
    )
    assert bool(jnp.all(jnp.isfinite(near))) and bool(jnp.all(far > near))
    np.testing.assert_allclose(far - near, 1e-6, rtol=0.1)


def test_stratified_edges_uniform_and_single_jitter():
    near = jnp.array([1.0, 2.0])
    far = jnp.array([3.0, 6.0])
    edges = stratified_edges(near, far, 4, None)
    np.testing.assert_allclose(edges[0], [1.0, 1.5, 2.0, 2.5, 3.0], atol=1e-6)
    jitter = jnp.array([0.0, 0.9])
    edges = stratified_edges(near, far, 4, jitter)
    # Jitter 0 puts every edge at the lower end of its half-bin window.
    np.testing.assert_allclose(edges[0], [1.0, 1.25, 1.75, 2.25, 2.75], atol=1e-6)
    # One jitter per ray: interior edges shift together (equal spacing), edges stay in range.
    np.testing.assert_allclose(jnp.diff(edges[1, 1:-1]), [1.0, 1.0], atol=1e-5)
    assert float(edges[1, 0]) >= 2.0 and float(edges[1, 0]) <= 2.5
    assert float(edges[1, -1]) >= 5.5 and float(edges[1, -1]) <= 6.0


def test_weights_use_exclusive_transmittance():
    alpha = jnp.array([[0.2, 0.5, 1.0, 0.3]])
    t1 = 1 - 0.2 + 1e-7
    t2 = t1 * (1 - 0.5 + 1e-7)
    t3 = t2 * 1e-7
    want = [0.2, 0.5 * t1, 1.0 * t2, 0.3 * t3]
    np.testing.assert_allclose(weights_from_alphas(alpha)[0], want, rtol=1e-5)


def test_fixed_inv_s_weights_peak_at_the_crossing():
    t = jnp.linspace(0.0, 1.0, 11)[None]
    sdf = 0.55 - t  # surface at t = 0.55, between samples 5 and 6
    alpha = fixed_inv_s_alpha(sdf, jnp.full_like(t, 0.1), 64.0)
    assert alpha.shape == (1, 10)
    # Inside the solid alpha stays near 1, so the first opaque section takes the weight.
    weights = weights_from_alphas(alpha)
    assert int(jnp.argmax(weights[0])) == 5
    assert float(alpha[0, 5]) > 0.5 and float(alpha[0, 3]) < 1e-3
    # Far in front of the surface (sdf >> 1/inv_s) a section is transparent.
    assert float(alpha[0, 0]) < 1e-3


def test_pdf_edges_follow_the_weights():
    edges = jnp.linspace(0.0, 1.0, 11)[None]
    weights = jnp.zeros((1, 10)).at[0, 3].set(1.0)
    new = pdf_edges(edges, weights, 6, None)
    assert new.shape == (1, 7)
    assert bool(jnp.all((new >= 0.3 - 1e-6) & (new <= 0.4 + 1e-6)))
    # Zero weight on every bin falls back to a uniform PDF, no NaN.
    uniform = pdf_edges(edges, jnp.zeros((1, 10)), 4, jnp.array([0.5]))
    np.testing.assert_allclose(uniform[0], [0.1, 0.3, 0.5, 0.7, 0.9], atol=1e-5)


def test_neus_samples_concentrate_at_the_surface_with_static_shapes():
    origins = jnp.zeros((3, 3))
    dirs = _unit(jnp.array([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [0.0, 1.0, 1.0]]))
    near = jnp.full((3,), 0.1)
    far = jnp.full((3,), 2.0)
    surface_t = jnp.array([0.7, 1.1, 1.5])

    def sdf_fn(points_rs3: jnp.ndarray) -> jnp.ndarray:
        # Distance along each ray to its own surface point (rays do not share points).
        return surface_t[:, None] - jnp.einsum("rsk,rk->rs", points_rs3, dirs)

    run = jax.jit(lambda j: neus_samples(origins, dirs, near, far, sdf_fn, 16, 8, 64.0, j))
    for jitter in (None, jnp.array([[0.3, 0.7], [0.9, 0.1], [0.5, 0.5]])):
        t, deltas = run(jitter)
        assert t.shape == (3, 24) and deltas.shape == (3, 24)
        assert bool(jnp.all(jnp.diff(t, axis=-1) >= 0.0)) and bool(jnp.all(deltas >= 0.0))
        # Samples end at the last stratified edge: far, or within half a bin of it when jittered.
        end = t[:, -1] + deltas[:, -1]
        half_bin = 0.5 * (far - near) / 16
        if jitter is None:
            np.testing.assert_allclose(end, far, atol=1e-5)
        assert bool(jnp.all((end <= far + 1e-5) & (end >= far - half_bin - 1e-5)))
        assert bool(jnp.all(t[:, 0] >= near - 1e-6))
        # The 8 importance samples sit within about one stratified bin of the surface.
        bin_width = (far - near) / 16
        close = jnp.abs(t - surface_t[:, None]) <= 1.5 * bin_width[:, None]
        assert bool(jnp.all(jnp.sum(close, axis=-1) >= 8 + 2))
