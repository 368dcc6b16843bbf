"""export_torch: reference key names and shapes (docs/exporting.md), the report, and the CLI on
an Orbax checkpoint in the documented layout."""

import pathlib

import jax
import numpy as np
import pytest
import torch
from flax import nnx
from test_torch_ref import random_state

from mim4d_jax.interop import export_torch
from mim4d_jax.interop import mapping as em
from mim4d_jax.interop.torch_ref import verify
from mim4d_jax.interop.torch_ref.io import read_state_dict
from mim4d_jax.models.mim4d import build_model
from mim4d_jax.training import checkpoint
from mim4d_jax.training.config_files import load_config

STEP = 7


def spec_section5_s() -> dict[str, tuple[int, ...]]:
    """The reference key layout, written out by hand for vs0.1 / ConvNeXt-S (not derived from
    our code).
    Left out: the reference's unused duplicate pts_bbox_head.render_conv.* and ema_* buffers."""
    c, depths = (96, 192, 384, 768), (3, 3, 27, 3)
    k: dict[str, tuple[int, ...]] = {}

    def add(name: str, weight: tuple[int, ...], bias: int | None) -> None:
        k[f"{name}.weight"] = weight
        if bias is not None:
            k[f"{name}.bias"] = (bias,)

    bb = "img_backbone"
    add(f"{bb}.downsample_layers.0.0", (96, 3, 4, 4), 96)
    add(f"{bb}.downsample_layers.0.1", (96,), 96)
    for i in (1, 2, 3):
        add(f"{bb}.downsample_layers.{i}.0", (c[i - 1],), c[i - 1])
        add(f"{bb}.downsample_layers.{i}.1", (c[i], c[i - 1], 2, 2), c[i])
    for s in range(4):
        for b in range(depths[s]):
            p = f"{bb}.stages.{s}.{b}"
            add(f"{p}.dwconv", (c[s], 1, 7, 7), c[s])
            add(f"{p}.norm", (c[s],), c[s])
            add(f"{p}.pwconv1", (4 * c[s], c[s]), 4 * c[s])
            add(f"{p}.pwconv2", (c[s], 4 * c[s]), c[s])
            k[f"{p}.gamma"] = (c[s],)
    for i in range(4):
        add(f"{bb}.norm{i}", (c[i],), c[i])
    for i, cin in enumerate((192, 384, 768)):
        add(f"img_neck.lateral_convs.{i}.conv", (128, cin, 1, 1), 128)
    for i in range(4):
        add(f"img_neck.fpn_convs.{i}.conv", (128, 128, 3, 3), 128)
    add("input_proj", (128, 128, 1, 1), 128)
    add("depth_net", (64, 128, 1, 1), 64)
    # Pre-training-only parts.
    add("render_conv.0", (32, 128, 3, 3, 3), 32)
    add("render_conv.1", (32,), 32)
    k["render_conv.1.running_mean"] = k["render_conv.1.running_var"] = (32,)
    k["render_conv.1.num_batches_tracked"] = ()
    f = "pts_bbox_head.render_model.field"
    add(f"{f}.sdf_decoder.fc_p", (16, 3), 16)
    for i in range(6):
        add(f"{f}.sdf_decoder.fc_c.{i}", (16, 32), 16)
        add(f"{f}.sdf_decoder.lin{i}", (17, 16) if i == 5 else (16, 16), 17 if i == 5 else 16)
    add(f"{f}.rgb_decoder.fc_p", (16, 3), 16)
    for i in range(4):
        add(f"{f}.rgb_decoder.fc_c.{i}", (16, 54), 16)
        add(f"{f}.rgb_decoder.lin{i}", (3, 16) if i == 3 else (16, 16), 3 if i == 3 else 16)
    k[f"{f}.laplace_density.beta_min"] = k[f"{f}.laplace_density.beta"] = (1,)
    k[f"{f}.deviation_network.variance"] = (1,)
    h = "history_decoder"
    k[f"{h}.frame_embeds"] = (3, 128)
    k[f"{h}.queries_long.weight"] = (16384, 64)
    k[f"{h}.queries_short.weight"] = (16384, 128)
    add(f"{h}.proj.0", (128, 160, 1, 1), None)
    add(f"{h}.proj.1", (128,), 128)
    add(f"{h}.input_proj.0", (64, 128), 64)
    add(f"{h}.input_proj.1", (64,), 64)
    add(f"{h}.output_proj.0", (160, 192, 3, 3), None)
    add(f"{h}.output_proj.1", (160,), 160)
    for branch, e in (("long", 64), ("short", 128)):
        for layer in (0, 1):
            p = f"{h}.decoder_{branch}.layers.{layer}"
            add(f"{p}.attentions.0.sampling_offsets", (32, e), 32)
            add(f"{p}.attentions.0.attention_weights", (16, e), 16)
            add(f"{p}.attentions.0.value_proj", (e, e), e)
            add(f"{p}.attentions.0.output_proj", (e, e), e)
            add(f"{p}.ffns.0.layers.0.0", (256, e), 256)
            add(f"{p}.ffns.0.layers.1", (e, 256), e)
            add(f"{p}.norms.0", (e,), e)
            add(f"{p}.norms.1", (e,), e)
    return k


def zeros_state(config) -> tuple[dict, dict]:
    """Params / batch stats of `config` as zeros: enough for keys and shapes, no init cost."""
    _, p, b = nnx.split(
        nnx.eval_shape(lambda: build_model(config, nnx.Rngs(0))), nnx.Param, nnx.BatchStat
    )
    zeros = lambda s: np.zeros(s.shape, np.float32)  # noqa: E731
    return jax.tree.map(zeros, nnx.to_pure_dict(p)), jax.tree.map(zeros, nnx.to_pure_dict(b))


def test_convnext_s_export_is_spec_section5() -> None:
    config = load_config("configs/mim4d_vs01.py:S")
    state_dict = em.to_state_dict(*zeros_state(config), num_batches_tracked=STEP)
    report = em.compare(spec_section5_s(), {k: v.shape for k, v in state_dict.items()})
    assert report.ok, report.format()
    counter = state_dict["render_conv.1.num_batches_tracked"]
    assert counter.dtype == np.int64 and counter == STEP
    assert all(v.dtype == np.float32 for k, v in state_dict.items() if not k.endswith("tracked"))
    # The export's own reference table agrees with the hand-written one.
    assert em.compare(spec_section5_s(), export_torch.expected_shapes(config, with_ema=False)).ok


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            lambda sd: sd.pop("img_neck.fpn_convs.3.conv.bias"),
            "missing (1): img_neck.fpn_convs.3.conv.bias",
        ),
        (lambda sd: sd.update({"img_neck.extra": np.zeros(2)}), "unexpected (1): img_neck.extra"),
        (
            lambda sd: sd.update({"depth_net.weight": np.zeros((32, 32))}),
            "shape mismatch: depth_net.weight expected (32, 32, 1, 1) got (32, 32)",
        ),
    ],
    ids=["missing", "unexpected", "shape"],
)
def test_report_lists_each_mismatch(edit, expected: str) -> None:
    config = load_config("configs/mim4d_tiny.py:test")
    state_dict = em.to_state_dict(*zeros_state(config), num_batches_tracked=0)
    assert em.compare(
        export_torch.expected_shapes(config, False), {k: v.shape for k, v in state_dict.items()}
    ).ok
    edit(state_dict)
    report = em.compare(
        export_torch.expected_shapes(config, False), {k: v.shape for k, v in state_dict.items()}
    )
    assert not report.ok and report.format() == expected


def test_ema_copies_use_mmcv_names() -> None:
    shapes = {
        "render_conv.1.weight": (4,),
        "render_conv.1.running_mean": (4,),
        "depth_net.bias": (2,),
    }
    assert export_torch.ema_copies(shapes) == {
        "ema_render_conv_1_weight": (4,),
        "ema_depth_net_bias": (2,),
    }


def write_workdir(workdir: pathlib.Path, config, state: dict) -> None:
    """config.json + Orbax step STEP, through the trainer's own checkpoint writer."""
    checkpoint.write_config(workdir, config)
    manager = checkpoint.make_manager(workdir)
    checkpoint.save(manager, STEP, state, {}, config)
    manager.wait_until_finished()
    manager.close()


@pytest.fixture(scope="module")
def tiny_workdir(tmp_path_factory: pytest.TempPathFactory) -> tuple[pathlib.Path, dict, dict]:
    """A workdir in the documented layout with random weights."""
    workdir = tmp_path_factory.mktemp("tiny_run")
    config = load_config("configs/mim4d_tiny.py:test")
    _, params, stats = random_state(config, seed=5)
    write_workdir(workdir, config, {"params": params, "batch_stats": stats})
    return workdir, params, stats


def test_cli_exports_checkpoint_and_golden_verifies(
    tiny_workdir, tmp_path: pathlib.Path, capsys
) -> None:
    workdir, params, stats = tiny_workdir
    out, golden = tmp_path / "tiny.pth", tmp_path / "golden.npz"
    assert (
        export_torch.main(["--workdir", str(workdir), "--out", str(out), "--golden", str(golden)])
        == 0
    )
    printed = capsys.readouterr().out
    assert "img_backbone.stages.2.1.pwconv1.weight" in printed and "(256, 64)" in printed
    assert "reference layout check: all keys and shapes match" in printed

    raw = torch.load(out, weights_only=True)
    assert set(raw) == {"state_dict", "meta"} and raw["meta"]["iter"] == STEP
    sd = raw["state_dict"]
    assert sd["render_conv.1.num_batches_tracked"].dtype == torch.int64
    assert int(sd["render_conv.1.num_batches_tracked"]) == STEP
    kernel = np.asarray(params["img_neck"]["fpn_convs"][3]["conv"]["kernel"])  # (3, 3, I, O)
    np.testing.assert_array_equal(
        sd["img_neck.fpn_convs.3.conv.weight"].numpy(), kernel.transpose(3, 2, 0, 1)
    )
    np.testing.assert_array_equal(
        sd["render_conv.1.running_var"].numpy(), stats["render_conv"][1]["var"]
    )

    with np.load(golden) as g:
        assert g["images"].shape == (1, 3, 96, 160)
        assert [g[f"fpn_{i}"].shape for i in range(4)] == [
            (1, 32, 12, 20),
            (1, 32, 6, 10),
            (1, 32, 3, 5),
            (1, 32, 2, 3),
        ]
    diffs = verify.verify_golden(out, golden)
    print(f"\ntiny checkpoint golden diffs: {diffs}")
    assert max(diffs.values()) <= 1e-4
    assert verify.main(["--ckpt", str(out), "--golden", str(golden)]) == 0


def test_cli_safetensors(tiny_workdir, tmp_path: pathlib.Path) -> None:
    workdir, params, _ = tiny_workdir
    out = tmp_path / "tiny.safetensors"
    assert (
        export_torch.main(
            [
                "--workdir",
                str(workdir),
                "--step",
                str(STEP),
                "--out",
                str(out),
                "--format",
                "safetensors",
            ]
        )
        == 0
    )
    tensors, meta = read_state_dict(out)
    assert meta["iter"] == STEP and "config" in meta
    gamma = tensors["img_backbone.stages.0.0.gamma"].numpy()
    np.testing.assert_array_equal(gamma, params["img_backbone"]["stages"][0][0]["gamma"])


def test_cli_reports_a_mismatch_with_exit_status(
    tiny_workdir, tmp_path: pathlib.Path, monkeypatch, capsys
) -> None:
    workdir, _, _ = tiny_workdir
    real_restore = checkpoint.restore_params

    def restore_without_a_tensor(*args, **kwargs):
        config, params, stats, step = real_restore(*args, **kwargs)
        del params["input_proj"]["bias"]
        return config, params, stats, step

    monkeypatch.setattr(checkpoint, "restore_params", restore_without_a_tensor)
    out = tmp_path / "partial.pth"
    assert export_torch.main(["--workdir", str(workdir), "--out", str(out)]) == 1
    assert "missing (1): input_proj.bias" in capsys.readouterr().out
    assert out.is_file()


def test_cli_adds_ema_buffers_when_trained_with_ema(tiny_workdir, tmp_path: pathlib.Path) -> None:
    _, params, stats = tiny_workdir
    config = load_config("configs/mim4d_tiny.py:test", ["optim.ema_decay=0.999"])
    ema = jax.tree.map(lambda x: np.asarray(x) + 1.0, params)
    workdir = tmp_path / "ema_run"
    write_workdir(workdir, config, {"params": params, "batch_stats": stats, "ema_params": ema})
    out = tmp_path / "ema.pth"
    assert export_torch.main(["--workdir", str(workdir), "--out", str(out)]) == 0
    sd = torch.load(out, weights_only=True)["state_dict"]
    np.testing.assert_array_equal(
        sd["ema_depth_net_bias"].numpy(), sd["depth_net.bias"].numpy() + 1
    )
    assert "ema_render_conv_1_weight" in sd and "ema_render_conv_1_running_mean" not in sd
