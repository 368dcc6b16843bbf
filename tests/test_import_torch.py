"""import_torch: ImageNet / exported ConvNeXt weights -> img_backbone params, never silently."""

import os
import pathlib

import jax
import numpy as np
import pytest
import safetensors.torch
import torch
from flax import nnx

from mim4d_jax.interop import import_torch
from mim4d_jax.interop import mapping as em
from mim4d_jax.interop.torch_ref.io import UnsafeCheckpointError
from mim4d_jax.models.convnext import MaskedConvNeXt


def random_backbone(variant: str, seed: int = 0) -> dict:
    """Backbone params with every leaf random (init kernels, perturbed norms/biases/gammas)."""
    model = MaskedConvNeXt(variant, rngs=nnx.Rngs(seed))
    params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    rng = np.random.default_rng(seed)

    def perturb(path, x):
        x = np.asarray(x)
        if path[-1].key == "kernel":
            return x
        return (x + rng.standard_normal(x.shape).astype(np.float32) * 0.1).astype(np.float32)

    return jax.tree_util.tree_map_with_path(perturb, params)


def official_state_dict(params: dict) -> dict[str, torch.Tensor]:
    """The ImageNet-checkpoint view: no prefix, no norm0..3, plus a classifier head/norm."""
    sd = em.to_state_dict(params, {}, num_batches_tracked=0)
    tensors = {k: torch.from_numpy(v) for k, v in sd.items() if not k.startswith("norm")}
    tensors["norm.weight"] = torch.ones(tensors["stages.3.0.gamma"].shape)
    tensors["head.weight"] = torch.zeros(1000, tensors["stages.3.0.gamma"].shape[0])
    return tensors


def assert_trees_equal(a: dict, b: dict) -> None:
    fa, fb = em.flatten(a), em.flatten(b)
    assert fa.keys() == fb.keys()
    for key in fa:
        np.testing.assert_array_equal(np.asarray(fa[key]), np.asarray(fb[key]), err_msg=str(key))
        assert np.asarray(fa[key]).dtype == np.asarray(fb[key]).dtype


@pytest.mark.parametrize("variant", ["tiny", pytest.param("S", marks=pytest.mark.slow)])
def test_import_of_export_is_identity(tmp_path: pathlib.Path, variant: str) -> None:
    params = random_backbone(variant)
    sd = em.to_state_dict({"img_backbone": params, "depth_net": {"bias": np.zeros(3)}}, {}, 0)
    path = tmp_path / "export.pth"
    torch.save({"state_dict": {k: torch.from_numpy(v) for k, v in sd.items()}, "meta": {}}, path)
    assert_trees_equal(import_torch.load_backbone_params(path, variant), params)


def test_official_checkpoint_ignores_head_and_defaults_output_norms(tmp_path: pathlib.Path) -> None:
    params = random_backbone("tiny")
    path = tmp_path / "convnext_official.pth"
    torch.save({"model": official_state_dict(params)}, path)
    loaded = import_torch.load_backbone_params(path, "tiny")
    for i in range(4):
        np.testing.assert_array_equal(loaded[f"norm{i}"]["scale"], 1.0)
        np.testing.assert_array_equal(loaded[f"norm{i}"]["bias"], 0.0)
        loaded[f"norm{i}"] = params[f"norm{i}"]
    assert_trees_equal(loaded, params)


def test_safetensors_with_module_prefix_and_npz_cli(tmp_path: pathlib.Path) -> None:
    params = random_backbone("nano")
    tensors = {"module." + k: v for k, v in official_state_dict(params).items()}
    src = tmp_path / "w.safetensors"
    safetensors.torch.save_file(tensors, str(src))
    out = tmp_path / "backbone.npz"
    assert import_torch.main(["--in", str(src), "--out", str(out), "--variant", "nano"]) == 0
    via_npz = import_torch.load_backbone_params(out, "nano")
    assert_trees_equal(via_npz, import_torch.load_backbone_params(src, "nano"))
    np.testing.assert_array_equal(
        via_npz["stages"][2][0]["pwconv1"]["kernel"], params["stages"][2][0]["pwconv1"]["kernel"]
    )


def _official_file(tmp_path: pathlib.Path, edit) -> pathlib.Path:
    tensors = official_state_dict(random_backbone("tiny"))
    edit(tensors)
    path = tmp_path / "edited.pth"
    torch.save(tensors, path)
    return path


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t.pop("stages.2.1.pwconv2.weight"), "missing (1): stages.2.1.pwconv2.weight"),
        (lambda t: t.update({"norm1.weight": torch.ones(32)}), "missing (7): norm0.bias"),
        (
            lambda t: t.update({"stages.0.5.gamma": torch.ones(16)}),
            "unexpected (1): stages.0.5.gamma",
        ),
        (
            lambda t: t.update({"downsample_layers.1.1.weight": torch.ones(32, 16, 3, 3)}),
            "shape mismatch: downsample_layers.1.1.weight expected (32, 16, 2, 2) got "
            "(32, 16, 3, 3)",
        ),
    ],
    ids=["missing", "partial_output_norms", "unexpected", "shape"],
)
def test_mismatches_are_errors(tmp_path: pathlib.Path, edit, message: str) -> None:
    with pytest.raises(ValueError) as err:
        import_torch.load_backbone_params(_official_file(tmp_path, edit), "tiny")
    assert message in str(err.value)


def test_wrong_variant_lists_every_shape(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "tiny.pth"
    torch.save(official_state_dict(random_backbone("tiny")), path)
    with pytest.raises(ValueError) as err:
        import_torch.load_backbone_params(path, "nano")
    text = str(err.value)
    assert "does not fit ConvNeXt variant 'nano'" in text
    assert "shape mismatch: stages.3.0.pwconv1.weight expected (256, 64) got (512, 128)" in text
    assert "unexpected (9): stages.2.1.dwconv.bias" in text  # tiny has 2 blocks in stage 2


def test_detector_export_requires_output_norms(tmp_path: pathlib.Path) -> None:
    sd = em.to_state_dict({"img_backbone": random_backbone("tiny")}, {}, 0)
    del sd["img_backbone.norm3.bias"]
    path = tmp_path / "export.pth"
    torch.save({"state_dict": {k: torch.from_numpy(v) for k, v in sd.items()}}, path)
    with pytest.raises(ValueError, match=r"missing \(1\): img_backbone.norm3.bias"):
        import_torch.load_backbone_params(path, "tiny")


class _Exploit:
    """Unpickling this calls os.system; a weights_only load must refuse before running it."""

    def __init__(self, marker: pathlib.Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_without_running(tmp_path: pathlib.Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"stages.0.0.gamma": torch.ones(16)}, "x": _Exploit(marker)}, path)
    with pytest.raises(UnsafeCheckpointError, match="refused"):
        import_torch.load_backbone_params(path, "tiny")
    assert not marker.exists()
    # Sanity of the test itself: a full unpickle would have run the payload.
    torch.load(path, weights_only=False)
    assert marker.exists()
