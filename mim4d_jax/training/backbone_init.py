"""Backbone initialisation from imported ImageNet ConvNeXt weights (`init.backbone`)."""

from __future__ import annotations

from typing import Any

import jax
import numpy as np


def _by_str_keys(tree: Any) -> Any:
    """NNX list indices are ints in our params, strings in some importers: compare as str."""
    if isinstance(tree, dict):
        return {str(k): _by_str_keys(v) for k, v in tree.items()}
    return tree


def merge_backbone(params: dict, backbone: dict, shardings: dict) -> dict:
    """Returns `params` with every `img_backbone` leaf replaced by the imported value.

    Every backbone parameter of the model must be present with the same shape: a partial or
    mismatched file is an error (mmcv's strict=False would silently skip it).
    """
    imported = _by_str_keys(backbone)
    problems: list[str] = []

    def take(path: tuple, current: jax.Array, sharding: Any) -> jax.Array:
        node: Any = imported
        names = [str(getattr(k, "key", getattr(k, "idx", k))) for k in path]
        for name in names:
            if not isinstance(node, dict) or name not in node:
                problems.append(f"img_backbone.{'.'.join(names)}: missing from the imported file")
                return current
            node = node[name]
        value = np.asarray(node, dtype=current.dtype)
        if value.shape != current.shape:
            problems.append(
                f"img_backbone.{'.'.join(names)}: file {value.shape} vs model {current.shape}"
            )
            return current
        # Works on multi-process meshes too: each process fills only its addressable shards.
        return jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])

    new_backbone = jax.tree_util.tree_map_with_path(
        take, params["img_backbone"], shardings["img_backbone"]
    )
    if problems:
        raise ValueError("init.backbone does not fit the model:\n  " + "\n  ".join(problems[:20]))
    return {**params, "img_backbone": new_backbone}


def load_backbone(path: str, variant: str, params: dict, shardings: dict) -> dict:
    from mim4d_jax.interop.import_torch import load_backbone_params  # lazy: only when configured

    return merge_backbone(params, load_backbone_params(path, variant), shardings)
