"""init.backbone: the full config must name ImageNet weights or say `none`; training reads the
.npz layout that import_torch writes, exactly."""

from __future__ import annotations

import numpy as np
import pytest
from train_fixtures import tiny_config

from configs import mim4d_vs01
from mim4d_jax.training import backbone_init


def test_the_full_config_refuses_to_start_from_a_random_backbone_silently():
    config = mim4d_vs01.get_config()
    with pytest.raises(ValueError, match=r"init\.backbone is not set.*import_torch.*=none"):
        backbone_init.backbone_path(config)
    config.init.backbone = "none"
    assert backbone_init.backbone_path(config) is None
    config.init.backbone = "weights.pth"
    with pytest.raises(ValueError, match=r"not an \.npz.*import_torch --in weights\.pth"):
        backbone_init.backbone_path(config)
    assert backbone_init.backbone_path(tiny_config()) is None  # the CPU config says none


def test_npz_round_trip_and_strict_merge(tmp_path):
    tree = {"stages": {"0": {"0": {"gamma": np.arange(3, dtype=np.float32)}}}, "norm0": {}}
    tree["norm0"] = {"scale": np.ones(2, np.float32)}
    path = str(tmp_path / "b.npz")
    backbone_init.write_npz(tree, path)
    back = backbone_init.read_npz(path)
    np.testing.assert_array_equal(back["stages"]["0"]["0"]["gamma"], [0, 1, 2])
    np.testing.assert_array_equal(back["norm0"]["scale"], [1, 1])
    config = mim4d_vs01.get_config()
    config.init.backbone = path
    assert backbone_init.backbone_path(config) == path
