"""Parameters taken from another tree onto a model's sharded tree, leaf by leaf.

Two users: `init.backbone` (an imported ImageNet backbone onto `img_backbone`) and the BEV
probe (a pre-training checkpoint onto the probe model, all but its new head). Both need the
same guarantees: every leaf is found by its path and has the model's shape, or the whole
overlay fails listing what does not fit (mmcv's `strict=False` would silently skip it).
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from mim4d_jax.training.checkpoint import str_keys

MAX_LISTED = 20  # problems listed in the error; the rest are counted


def flat_items(tree: dict, prefix: str = "") -> list[tuple[str, Any]]:
    """("a/b/c", leaf) pairs of a nested dict with string keys."""
    items = []
    for name, value in tree.items():
        path = f"{prefix}{name}"
        items += flat_items(value, path + "/") if isinstance(value, dict) else [(path, value)]
    return items


def overlay(
    tree: dict,
    source: dict,
    shardings: dict,
    *,
    source_name: str,
    prefix: str = "",
    skip: tuple[str, ...] = (),
    reject_extra: bool = False,
) -> dict:
    """`tree` with every leaf replaced by the leaf of `source` at the same path, cast to the
    tree's dtype and placed with the leaf's sharding (each process fills only its addressable
    shards, so multi-process meshes work). Leaves under a top-level name in `skip` stay.

    Raises ValueError naming each leaf (as `prefix` + dotted path) that `source_name` lacks or
    holds with another shape, and with `reject_extra` each `source` leaf the tree lacks.
    """
    source = str_keys(source)
    problems: list[str] = []
    used: set[str] = set()

    def take(path: tuple, current: jax.Array, sharding: Any) -> jax.Array:
        names = [str(getattr(k, "key", getattr(k, "idx", k))) for k in path]
        if names[0] in skip:
            return current
        dotted = prefix + ".".join(names)
        node: Any = source
        for name in names:
            if not isinstance(node, dict) or name not in node:
                problems.append(f"{dotted}: missing from {source_name}")
                return current
            node = node[name]
        used.add("/".join(names))
        value = np.asarray(node, dtype=current.dtype)
        if value.shape != current.shape:
            problems.append(f"{dotted}: {source_name} {value.shape} vs model {current.shape}")
            return current
        return jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])

    merged = jax.tree_util.tree_map_with_path(take, tree, shardings)
    if reject_extra:
        extra = sorted({key for key, _ in flat_items(source)} - used)
        problems += [f"{prefix}{k.replace('/', '.')}: not a parameter of the model" for k in extra]
    if problems:
        more = len(problems) - MAX_LISTED
        listed = problems[:MAX_LISTED] + ([f"... and {more} more"] if more > 0 else [])
        raise ValueError(f"{source_name} does not fit the model:\n  " + "\n  ".join(listed))
    return merged
