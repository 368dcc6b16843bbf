"""benchmarks/flops.py: the analytic count against XLA's count of the same code (tiny config),
and the forward/backward/recomputation bookkeeping."""

from __future__ import annotations

import math

import pytest

from benchmarks import flops
from mim4d_jax.training.config_files import load_config

# Observed agreement is within 3 % per component; the bound leaves room for XLA versions that
# lower an op (an erf, a sort) with a few more or fewer elementwise operations.
TOLERANCE = 0.10


@pytest.fixture(scope="module")
def config():
    return load_config("configs/mim4d_tiny.py", ["init.backbone=none"])


@pytest.fixture(scope="module")
def xla(config):
    return flops.xla_forward_flops(config)


def test_loop_free_components_match_xla(config, xla):
    # The tiny config renders its 768 rays in one chunk, so every component but the lift (a
    # scan over cameras) is loop-free, and the lift is compared with its body counted once.
    table = flops.report(config)
    assert -(-6 * config.data.num_rays // config.render.chunk_rays) == 1
    for name in ("backbone", "neck", "heads", "lift", "render_conv", "history_decoder"):
        ours, theirs = table[name]["forward_xla_comparable"], xla[name]
        assert theirs > 0, name
        assert abs(ours / theirs - 1.0) < TOLERANCE, (name, ours, theirs)
    encoder = sum(table[n]["forward"] for n in ("backbone", "neck"))
    assert abs(encoder / (xla["backbone"] + xla["neck"]) - 1.0) < TOLERANCE
    assert abs(table["renderer"]["forward"] / xla["renderer"] - 1.0) < TOLERANCE


def test_chunked_renderer_is_counted_once_by_xla(config):
    # Three chunks: XLA's count of the lax.map body is a third of the work, the analytic
    # `forward_xla_comparable` follows it and `forward` does not.
    chunked = load_config("configs/mim4d_tiny.py", ["init.backbone=none", "render.chunk_rays=256"])
    xla = flops.xla_forward_flops(chunked)["renderer"]
    row = flops.report(chunked)["renderer"]
    assert abs(row["forward_xla_comparable"] / xla - 1.0) < TOLERANCE
    assert abs(row["forward"] / (3 * xla) - 1.0) < TOLERANCE


def test_valid_taps_of_padded_and_strided_convs():
    # 3x3 pad 1 over 4 positions: the border outputs see 2 taps, the inner ones 3.
    assert flops.valid_taps(4, 3, 1, 1) == (4, 10)
    # 3x3 stride 2 pad 1 over 5: outputs at -1..1, 1..3, 3..5 -> 2 + 3 + 2 taps.
    assert flops.valid_taps(5, 3, 2, 1) == (3, 7)
    (mm, bias), outs = flops.conv_flops(2, (4, 4), 8, 16, 3, pad=1)
    assert outs == (4, 4)
    assert mm == 2 * 2 * 10 * 10 * 8 * 16 and bias == 2 * 16 * 16


def test_backward_and_recomputation_bookkeeping(config):
    table = flops.report(config)
    # Everything but the frozen stem/stage 0 and the input mask is differentiated (2x).
    unfrozen = load_config("configs/mim4d_tiny.py", ["init.backbone=none", "model.frozen_stages=0"])
    free = flops.report(unfrozen)
    images = 6 * config.data.frames
    wp, hp = config.data.pad_size
    input_mask = images * hp * wp * 3
    assert free["backbone"]["train_model"] == pytest.approx(
        3 * free["backbone"]["forward"] - 2 * input_mask
    )
    assert table["backbone"]["train_model"] < free["backbone"]["train_model"]
    for name in ("neck", "heads", "render_conv", "history_decoder"):
        assert table[name]["train_model"] == pytest.approx(3 * table[name]["forward"])
        assert table[name]["train_hardware"] == table[name]["train_model"]
    # Rematerialised: the renderer's chunks and the lift's cameras run their forward again.
    for name in ("renderer", "lift"):
        assert table[name]["train_hardware"] - table[name]["train_model"] == pytest.approx(
            table[name]["forward"]
        )
    # Loop-free components: XLA's view of the train step is the whole count; the lift's
    # scan over 6 cameras is counted once.
    assert table["backbone"]["train_hardware_xla_comparable"] == pytest.approx(
        table["backbone"]["train_hardware"]
    )
    assert table["lift"]["train_hardware_xla_comparable"] == pytest.approx(
        table["lift"]["train_hardware"] / 6
    )
    # The up-sampling pass has no backward: the renderer costs less than 3x its forward.
    assert table["renderer"]["train_model"] < 3 * table["renderer"]["forward"]
    total = flops.train_flops_per_sample(config)
    assert total["train_model_matmul"] < total["train_model"] < total["train_hardware"]
    assert all(math.isfinite(v) and v > 0 for v in total.values())


def test_reference_config_is_dominated_by_the_backbone():
    vs01 = flops.report(load_config("configs/mim4d_vs01.py", ["init.backbone=none"]))
    share = vs01["backbone"]["train_model_matmul"] / vs01["total"]["train_model_matmul"]
    # ConvNeXt-S on 800x480: its 8.7 GMACs at 224^2 times 7.65 the pixels = ~133 GFLOPs forward.
    per_image = vs01["backbone"]["forward_matmul"] / 18
    assert 1.1e11 < per_image < 1.5e11
    assert share > 0.8
