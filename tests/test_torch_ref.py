"""The PyTorch reference modules load an export strictly and compute what the JAX model does.

Random parameters (init kernels; every norm, bias, layer-scale gamma and BN statistic
perturbed away from its constant init, so a swapped or transposed tensor changes outputs),
float32 compute, highest matmul precision, one 64x64 image.
"""

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

from mim4d_jax.interop import export_torch
from mim4d_jax.interop import mapping as em
from mim4d_jax.interop.torch_ref import verify
from mim4d_jax.interop.torch_ref.io import write_state_dict
from mim4d_jax.interop.torch_ref.model import PerceptionRef, own_slice
from mim4d_jax.models.mim4d import build_model
from mim4d_jax.training.config_files import load_config

TOL = 1e-4
CONFIGS = {"tiny": "configs/mim4d_tiny.py:test", "S": "configs/mim4d_vs01.py:S"}


def small_config(name: str):
    config = load_config(CONFIGS[name])
    config.model.compute_dtype = "float32"
    config.data.pad_size = (64, 64)
    return config


def random_state(config, seed: int = 0) -> tuple[nnx.Module, dict, dict]:
    """(model, params, batch_stats) with every non-kernel leaf randomised."""
    graphdef, p_state, b_state = nnx.split(
        build_model(config, nnx.Rngs(seed)), nnx.Param, nnx.BatchStat
    )
    rng = np.random.default_rng(seed)

    def perturb(path, x):
        x = np.asarray(x, np.float32)
        name = str(path[-1].key)
        if name in ("kernel", "embedding"):
            return x
        noise = rng.standard_normal(x.shape).astype(np.float32)
        if name == "var":  # BN variance must stay positive
            return (0.5 + rng.random(x.shape)).astype(np.float32)
        return x + 0.1 * noise

    params = jax.tree_util.tree_map_with_path(perturb, nnx.to_pure_dict(p_state))
    stats = jax.tree_util.tree_map_with_path(perturb, nnx.to_pure_dict(b_state))
    nnx.replace_by_pure_dict(p_state, params)
    nnx.replace_by_pure_dict(b_state, stats)
    return nnx.merge(graphdef, p_state, b_state), params, stats


def torch_reference(config, params: dict, stats: dict) -> PerceptionRef:
    state_dict = em.to_state_dict(params, stats, num_batches_tracked=3)
    ref = PerceptionRef.from_config(config)
    ref.load_state_dict(
        {k: torch.from_numpy(v) for k, v in own_slice(state_dict).items()}, strict=True
    )
    return ref.eval()


def max_diff(jax_nhwc, torch_nchw: torch.Tensor) -> float:
    return float(np.max(np.abs(np.asarray(jax_nhwc).transpose(0, 3, 1, 2) - torch_nchw.numpy())))


@pytest.mark.parametrize("name", ["tiny", pytest.param("S", marks=pytest.mark.slow)])
def test_export_loads_strict_and_matches_jax(name: str) -> None:
    config = small_config(name)
    model, params, stats = random_state(config)
    ref = torch_reference(config, params, stats)
    images = export_torch.golden_images(config)
    golden = export_torch.golden_arrays(model, images)
    with torch.no_grad():
        backbone, fpn = ref(torch.from_numpy(images))
    diffs = {
        f"backbone_{i}": np.max(np.abs(golden[f"backbone_{i}"] - t.numpy()))
        for i, t in enumerate(backbone)
    }
    diffs.update(
        {f"fpn_{i}": np.max(np.abs(golden[f"fpn_{i}"] - t.numpy())) for i, t in enumerate(fpn)}
    )
    with jax.default_matmul_precision("highest"), torch.no_grad():
        for i, level in enumerate(fpn):
            proj, depth = ref.heads(level)
            level_nhwc = jnp.asarray(golden[f"fpn_{i}"].transpose(0, 2, 3, 1))
            diffs[f"input_proj_{i}"] = max_diff(model.input_proj(level_nhwc), proj)
            diffs[f"depth_net_{i}"] = max_diff(model.depth_net(level_nhwc), depth)
    print(f"\n{name} max abs diffs: " + ", ".join(f"{k}={v:.2e}" for k, v in diffs.items()))
    assert len(diffs) == 16 and all(v <= TOL for v in diffs.values()), diffs
    # The outputs are not trivially small (a zeroed branch would also "match").
    assert all(np.std(golden[f"fpn_{i}"]) > 1e-2 for i in range(4))


def test_render_conv_matches_jax() -> None:
    """Conv3d (DHWIO -> OIDHW) + BatchNorm3d running statistics (eval) + ReLU."""
    config = small_config("tiny")
    model, params, stats = random_state(config, seed=1)
    ref = torch_reference(config, params, stats)
    vol_bzyxc = np.random.default_rng(2).standard_normal((1, 4, 6, 5, config.model.fpn_channels))
    vol_bzyxc = vol_bzyxc.astype(np.float32)
    conv3d, batch_norm = model.render_conv
    with jax.default_matmul_precision("highest"):  # as MIM4D.lift applies it, in eval mode
        got_jax = jax.nn.relu(batch_norm(conv3d(jnp.asarray(vol_bzyxc)), use_running_average=True))
    with torch.no_grad():
        got_torch = ref.render_conv(torch.from_numpy(vol_bzyxc.transpose(0, 4, 1, 2, 3)))
    diff = float(np.max(np.abs(np.asarray(got_jax).transpose(0, 4, 1, 2, 3) - got_torch.numpy())))
    print(f"\nrender_conv max abs diff: {diff:.2e}")
    assert diff <= TOL


def test_verify_golden_accepts_export_and_catches_a_changed_tensor(tmp_path: pathlib.Path) -> None:
    config = small_config("tiny")
    model, params, stats = random_state(config, seed=3)
    state_dict = em.to_state_dict(params, stats, num_batches_tracked=0)
    golden = tmp_path / "golden.npz"
    np.savez(golden, **export_torch.golden_arrays(model, export_torch.golden_images(config)))
    ckpt = tmp_path / "export.safetensors"
    tensors = {k: torch.from_numpy(v) for k, v in state_dict.items()}
    write_state_dict(ckpt, tensors, {"iter": 0}, "safetensors")
    assert max(verify.verify_golden(ckpt, golden).values()) <= TOL
    assert verify.main(["--ckpt", str(ckpt), "--golden", str(golden)]) == 0

    tensors["img_neck.fpn_convs.1.conv.bias"] = tensors["img_neck.fpn_convs.1.conv.bias"] + 0.01
    write_state_dict(ckpt, tensors, {"iter": 0}, "safetensors")
    diffs = verify.verify_golden(ckpt, golden)
    # An output conv's bias changes its own level only (laterals feed the top-down path).
    assert diffs["fpn_1"] > 5e-3 and diffs["fpn_0"] <= TOL and diffs["fpn_2"] <= TOL
    assert verify.main(["--ckpt", str(ckpt), "--golden", str(golden)]) == 1

    del tensors["img_backbone.stages.0.0.gamma"]
    write_state_dict(ckpt, tensors, {"iter": 0}, "safetensors")
    with pytest.raises(RuntimeError, match="img_backbone.stages.0.0.gamma"):
        verify.verify_golden(ckpt, golden)
