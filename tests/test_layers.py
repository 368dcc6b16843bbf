"""Logical axis annotations on parameters resolve to PartitionSpecs under config.sharding_rules."""

import jax
import numpy as np
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec

from configs import mim4d_vs01
from mim4d_jax.models import layers
from mim4d_jax.models.convnext import MaskedConvNeXt
from mim4d_jax.models.fpn import FPN


def _flat(tree: nnx.State) -> dict[str, object]:
    return {".".join(map(str, p)): v for p, v in nnx.to_flat_state(tree)}


def test_logical_axes_map_to_mesh_axes_under_config_rules() -> None:
    rules = mim4d_vs01.get_config().sharding_rules
    model = MaskedConvNeXt("nano", rngs=nnx.Rngs(0))  # builds with no mesh in scope
    params = nnx.state(model, nnx.Param)
    logical = _flat(params)
    assert logical["stages.0.0.pwconv1.kernel"].get_metadata()["out_sharding"] == ("embed", "mlp")
    with nnx.logical_axis_rules(rules):
        specs = _flat(nnx.get_partition_spec(params))
    spec = {k: v.get_value() for k, v in specs.items()}
    assert spec["stages.0.0.pwconv1.kernel"] == PartitionSpec("fsdp", "tensor")
    assert spec["stages.0.0.pwconv2.kernel"] == PartitionSpec("tensor", "fsdp")
    assert spec["downsample_layers.1.1.kernel"] == PartitionSpec(None, None, "fsdp", "tensor")
    assert spec["stages.1.0.dwconv.kernel"] == PartitionSpec(None, None, None, "fsdp")
    assert spec["stages.1.0.gamma"] == PartitionSpec(None)
    assert spec["norm3.scale"] == PartitionSpec(None)
    assert all(v is not None for v in spec.values())  # every param is annotated


def test_params_shard_on_a_fake_mesh() -> None:
    rules = mim4d_vs01.get_config().sharding_rules
    mesh = jax.make_mesh(
        (2, 2, 2), ("data", "fsdp", "tensor"), axis_types=(jax.sharding.AxisType.Auto,) * 3
    )
    fpn = FPN((8, 16, 32, 64), 8, rngs=nnx.Rngs(0))
    params = nnx.state(fpn, nnx.Param)
    with nnx.logical_axis_rules(rules):
        shardings = nnx.get_named_sharding(params, mesh)
    kernel = params["lateral_convs"][2]["conv"]["kernel"].get_value()  # (1, 1, 64, 8)
    sharding = shardings["lateral_convs"][2]["conv"]["kernel"].get_value()
    assert isinstance(sharding, NamedSharding)
    placed = jax.device_put(kernel, sharding)
    assert placed.addressable_shards[0].data.shape == (1, 1, 32, 4)
    np.testing.assert_array_equal(np.asarray(placed), np.asarray(kernel))


def test_helpers_annotate_without_mesh() -> None:
    rngs = nnx.Rngs(0)
    dense = layers.dense(4, 8, in_axis="mlp", out_axis="embed", rngs=rngs)
    assert dense.kernel.get_metadata()["out_sharding"] == ("mlp", "embed")
    assert dense.bias.get_metadata()["out_sharding"] == (None,)
    conv3d = layers.conv(4, 8, (3, 3, 3), padding=((1, 1),) * 3, rngs=rngs)
    assert conv3d.kernel.get_metadata()["out_sharding"] == (None, None, None, "embed", "mlp")
    gamma = layers.param(np.ones(3), (None,))
    assert gamma.get_metadata()["out_sharding"] == (None,) and gamma[...].dtype == np.float32
