"""PointContrast-style InfoNCE: the loss's fixed points, matched points on a clip of known
geometry (they are the same world point in both frames), the static-point filter, and a few
training steps."""

import jax.numpy as jnp
import numpy as np
import train_fixtures
from test_objectives_croco import assert_loss_falls

from configs import mim4d_tiny
from mim4d_jax.data import pairs, schema
from mim4d_jax.data.clip import parse_clip
from mim4d_jax.data.example import make_example
from mim4d_jax.geometry import poses
from mim4d_jax.objectives.pointcontrast import frame_points, point_info_nce
from tests import data_fixtures

STORED_WH = (320, 180)


def test_info_nce_is_log_n_for_constant_features_over_the_valid_pairs():
    q = jnp.ones((2, 64, 8)) / np.sqrt(8.0)
    valid = jnp.asarray(np.arange(64) < 48, jnp.float32)[None].repeat(2, 0)
    loss, _ = point_info_nce(q, q, valid, 0.07)
    np.testing.assert_allclose(float(loss), np.log(48.0), rtol=1e-6)
    # A sample with no valid pair does not count.
    loss_one, _ = point_info_nce(q, q, valid.at[1].set(0.0), 0.4)
    np.testing.assert_allclose(float(loss_one), np.log(48.0), rtol=1e-6)


def test_info_nce_falls_as_matched_features_agree():
    rng = np.random.default_rng(0)

    def unit(x):
        return x / np.linalg.norm(x, axis=-1, keepdims=True)

    q = unit(rng.normal(size=(1, 128, 16)))
    noise = unit(rng.normal(size=(1, 128, 16)))
    valid = jnp.ones((1, 128))
    losses, accs = [], []
    for agreement in (0.0, 0.5, 0.9, 1.0):
        k = unit(agreement * q + (1.0 - agreement) * noise)
        loss, acc = point_info_nce(jnp.asarray(q), jnp.asarray(k), valid, 0.07)
        losses.append(float(loss))
        accs.append(float(acc))
    assert losses[0] > 0.9 * np.log(128.0)  # unrelated features: chance level
    assert all(a > b for a, b in zip(losses, losses[1:], strict=False)), losses
    assert accs[-1] == 1.0 and losses[-1] < 0.05


def _clip(index=1, frames=3):
    raw = data_fixtures.make_clip(index, frames, STORED_WH, seed=0)
    features = schema.clip_features(frames, STORED_WH[::-1])
    clip = parse_clip(features.serialize_example(raw), frames, schema.CAMERAS, frames, "t")
    return clip, raw


def _config():
    c = mim4d_tiny.get_config("test")
    c.objectives.pointcontrast = 1.0
    c.pointcontrast.num_pairs = 256
    # The fixture's images change colour every frame: only the geometry is under test here.
    c.pointcontrast.max_color_diff = 256.0
    return c


def test_matched_points_coincide_in_world_coordinates():
    clip, raw = _clip()
    config = _config()
    ex = make_example(clip, config, seed=0, position=3)
    valid = ex["pc_valid"] > 0
    assert valid.sum() > 100
    k = int(ex["target_frames"][1])
    assert k >= 1
    p0 = ex["pc_points"][valid]
    # The frame-k side, computed as on the device from the batch's vol2ref.
    pk = np.asarray(
        frame_points(jnp.asarray(p0[None]), jnp.asarray(ex["vol2ref"][None]), jnp.asarray([k]))
    )[0]
    vol2global = poses.vol2global(clip["ego2global"], clip["lidar2ego"], 0)
    world0 = p0 @ vol2global[0, :3, :3].T + vol2global[0, :3, 3]
    worldk = pk @ vol2global[k, :3, :3].T + vol2global[k, :3, 3]
    np.testing.assert_allclose(world0, worldk, atol=2e-3)  # float32 volume coords, metres
    # ... and they are points of the fixture's world (ground or box faces), not artefacts.
    lidar2global = raw["lidar_ego2global"] @ raw["lidar2ego"]
    lidar_p3 = raw["lidar_points"].reshape(-1, 4)[:, :3].astype(np.float64)
    world_p3 = lidar_p3 @ lidar2global[:3, :3].T + lidar2global[:3, 3]
    nearest = np.min(np.linalg.norm(world0[:, None] - world_p3[None], axis=-1), axis=1)
    assert nearest.max() < 2e-3
    # Different frames really are different coordinates: the ego moved between them.
    assert np.linalg.norm(p0 - pk, axis=-1).min() > 0.5
    # All inside both grids and distinct (no point is its own negative).
    assert len(np.unique(p0, axis=0)) == len(p0)


def test_static_filter_drops_boxed_points_and_colour_changes():
    clip, _ = _clip()
    config = _config()
    points_key = clip["lidar_points"][:, :3].astype(np.float64)
    key2vol = pairs.keylidar2vol(clip["ego2global"], clip["lidar2ego"], clip["lidar_ego2global"], 0)
    points_tp3 = np.stack([points_key @ m[:3, :3].T + m[:3, 3] for m in key2vol])
    size_wh = tuple(config.data.image_size)
    scale = np.tile([size_wh[0] / STORED_WH[0], size_wh[1] / STORED_WH[1]], (6, 3, 1))
    k_nt33 = poses.resize_intrinsics(clip["intrinsics"], scale)
    l2i = poses.lidar2img(
        k_nt33, poses.cam2vol(clip["cam2ego"], clip["ego2global"], clip["lidar2ego"], 0)
    )
    images = np.full((6, 3, size_wh[1], size_wh[0], 3), 100, np.uint8)
    static = pairs.static_points(points_tp3, 1, l2i, images, size_wh, 40.0)
    assert static.sum() > 100
    # A region that changes colour between the frames (an unboxed mover) is dropped.
    changed = images.copy()
    changed[0, 1, :, : size_wh[0] // 2] = 250
    uv, inside = pairs.project(l2i[0, 0], points_tp3[0], size_wh)
    uvk, insidek = pairs.project(l2i[0, 1], points_tp3[1], size_wh)
    hit = inside & insidek & (uvk[:, 0] < size_wh[0] // 2 - 1)
    assert hit.sum() > 10
    moved = pairs.static_points(points_tp3, 1, l2i, changed, size_wh, 40.0)
    assert not moved[hit].any() and moved[static & ~hit].any()
    # Points inside an annotated box are dropped however they look.
    centre = points_tp3[0][static][0]
    boxes = {
        "center_b3": centre[None],
        "size_b3": np.array([[2.0, 4.0, 2.0]]),
        "yaw_b": np.array([0.3]),
    }
    boxed = pairs.static_points(points_tp3, 1, l2i, images, size_wh, 40.0, boxes)
    near = np.linalg.norm(points_tp3[0] - centre, axis=-1) < 0.9
    assert near.sum() >= 1 and not boxed[near].any() and boxed[static & ~near].any()


def test_pointcontrast_alone_trains():
    config = train_fixtures.tiny_config(
        "batch_size=2", "objectives.mim4d=0.0", "objectives.pointcontrast=1.0"
    )
    assert_loss_falls(config, "pointcontrast_loss")
