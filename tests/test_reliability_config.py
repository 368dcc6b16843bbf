"""Config values are checked up front, each error naming the key, its value and the range."""

from __future__ import annotations

import pytest
from train_fixtures import tiny_config

from configs import mim4d_vs01
from mim4d_jax.training import config_checks
from mim4d_jax.user_errors import ConfigError

BAD = [
    ("checkpoint_every", 0, "an integer >= 1"),
    ("checkpoint_every", 2.5, "an integer >= 1"),
    ("batch_size", 0, "an integer >= 1"),
    ("total_steps", -3, "an integer >= 1"),
    ("log_every", 0, "an integer >= 1"),
    ("keep_checkpoints", 0, "an integer >= 1"),
    ("seed", True, "an integer >= 0"),
    ("mesh.fsdp", 0, "-1 or an integer >= 1"),
    ("data.image_size", (160,), r"a pair \(W, H\) of integers >= 1"),
    ("data.pad_size", (160, 0), r"a pair \(W, H\) of integers >= 1"),
    ("data.frames", 0, "an integer >= 1"),
    ("data.num_rays", 0, "an integer >= 1"),
    ("data.mask_ratio", 1.0, r"a finite number in \[0, 1\)"),
    ("data.mask_ratio", -0.1, r"a finite number in \[0, 1\)"),
    ("data.sky_fraction", float("nan"), r"a finite number in \[0, 1\)"),
    ("data.num_parallel_calls", 0, "-1 or an integer >= 1"),
    ("model.depth_max", 0.0, "a finite number > 0"),
    ("model.voxel_size", (0.8, 0.0, 1.6), "3 finite numbers > 0"),
    ("model.pc_range", (1.0, 2.0), "6 finite numbers"),
    ("render.num_samples", 1, "an integer >= 2"),
    ("render.chunk_rays", 0, "an integer >= 1"),
    ("optim.lr", 0.0, r"a finite number in \(0, 1\]"),
    ("optim.lr", float("inf"), r"a finite number in \(0, 1\]"),
    ("optim.grad_clip", -1.0, "a finite number > 0"),
    ("optim.ema_decay", 1.0, r"a finite number in \[0, 1\)"),
    ("optim.warmup_steps", -1, "an integer >= 0"),
    ("resume.fallback", 1, "True or False"),
]


@pytest.mark.parametrize("key, value, allowed", BAD, ids=[f"{k}={v}" for k, v, _ in BAD])
def test_each_bad_value_is_named_with_its_range(key, value, allowed) -> None:
    config = tiny_config().to_dict()  # a dict: ConfigDict's type checks would stop some values
    config_checks._set(config, key, value)
    with pytest.raises(ConfigError, match=rf"^bad config value {key}=.*: must be {allowed}$"):
        config_checks.check_config(config)


def test_relations_between_keys() -> None:
    config = tiny_config("optim.warmup_steps=10", "data.pad_size=(150, 96)")
    problems = config_checks.config_problems(config)
    assert problems == [
        "optim.warmup_steps=10: must be <= total_steps (4)",
        "data.pad_size=(150, 96): must be >= data.image_size (160, 90) in both W and H",
        "data.mask_patch=32: must divide data.pad_size (150, 96)",
    ]
    config = tiny_config("model.pc_range=(1.0, 0.0, 0.0, 0.0, 1.0, 1.0)")
    with pytest.raises(ConfigError, match=r"model.pc_range=.*x0 < x1"):
        config_checks.check_config(config)


def test_shipped_configs_pass_and_every_error_is_listed_at_once() -> None:
    for variant in ("S", "B"):
        assert config_checks.config_problems(mim4d_vs01.get_config(variant)) == []
    assert config_checks.config_problems(tiny_config()) == []
    config = tiny_config("checkpoint_every=0", "data.image_size=(160,)")
    with pytest.raises(ConfigError) as info:
        config_checks.check_config(config)
    assert str(info.value).splitlines() == [
        "bad config values:",
        "  checkpoint_every=0: must be an integer >= 1",
        "  data.image_size=(160,): must be a pair (W, H) of integers >= 1",
    ]


def test_trainer_stops_on_a_bad_value_before_building_anything(tmp_path) -> None:
    from reliability_fixtures import train_small

    with pytest.raises(ConfigError, match="checkpoint_every=0"):
        train_small(tmp_path, "checkpoint_every=0")
    assert list(tmp_path.iterdir()) == []  # no lock, no config.json, no checkpoints


def test_model_keys_and_eval_side_keys() -> None:
    assert config_checks.is_model_key("model.history.num_layers")
    assert config_checks.is_model_key("data.image_size")
    assert not config_checks.is_model_key("render.chunk_rays")
    assert not config_checks.is_model_key("data.dir") and not config_checks.is_model_key("seed")
    assert set(config_checks.EVAL_SIDE_KEYS).isdisjoint(
        k for k in config_checks.flatten(tiny_config()) if config_checks.is_model_key(k)
    )
