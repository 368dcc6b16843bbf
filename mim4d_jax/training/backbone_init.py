"""Backbone initialisation from ImageNet ConvNeXt weights (`init.backbone`).

The reference always starts from SparK / ImageNet ConvNeXt weights, so a config must name them
or say `init.backbone=none` explicitly. Training reads only the `.npz` layout that
`python -m mim4d_jax.import_torch` writes from a PyTorch checkpoint, so the trainer needs no
torch: keys are the `img_backbone` parameter paths joined by "/" (`stages/0/0/dwconv/kernel`).
"""

from __future__ import annotations

import numpy as np
from etils import epath

from mim4d_jax.atomic_files import atomic_path
from mim4d_jax.training.checkpoint import str_keys
from mim4d_jax.training.overlay import flat_items, overlay

NONE = "none"  # the explicit "random backbone" value of init.backbone
WHERE_TO_GET = (
    "get SparK's ImageNet ConvNeXt weights (convnextS_1kpretrained_official_style.pth, linked "
    "from the SparK repository keyu-tian/SparK) or the official ImageNet-1k ConvNeXt weights "
    "(facebookresearch/ConvNeXt), convert them with `python -m mim4d_jax.import_torch --in "
    "FILE.pth --out backbone.npz --variant S`, then pass --config.init.backbone=backbone.npz"
)


def backbone_path(config) -> str | None:
    """The `.npz` to initialise the backbone from, or None for `init.backbone=none`.

    Raises ValueError naming the key when the config leaves it unset or names another format.
    """
    value = config.init.backbone
    if value is None or value == "":
        raise ValueError(
            "init.backbone is not set: the reference starts from ImageNet ConvNeXt weights. "
            f"Either {WHERE_TO_GET}, or train from random init with --config.init.backbone={NONE}"
        )
    if value == NONE:
        return None
    if not str(value).endswith(".npz"):
        raise ValueError(
            f"init.backbone={value!r} is not an .npz: convert it with `python -m "
            f"mim4d_jax.import_torch --in {value} --out backbone.npz` and pass that file"
        )
    if not epath.Path(value).exists():
        raise FileNotFoundError(f"init.backbone={value!r} does not exist; {WHERE_TO_GET}")
    return str(value)


def read_npz(path: str) -> dict:
    """Nested dict of float32 arrays from an `.npz` in the img_backbone layout."""
    tree: dict = {}
    with epath.Path(path).open("rb") as f, np.load(f) as npz:
        for key in npz.files:
            *parents, leaf = key.split("/")
            node = tree
            for name in parents:
                node = node.setdefault(name, {})
            node[leaf] = npz[key].astype(np.float32)
    return tree


def write_npz(params: dict, out: str) -> None:
    """Writes a nested dict of arrays in the layout `read_npz` reads (temp file, then rename)."""
    flat = {key: np.asarray(value) for key, value in flat_items(str_keys(params))}
    with atomic_path(out) as tmp, tmp.open("wb") as f:
        np.savez(f, **flat)


def merge_backbone(params: dict, backbone: dict, shardings: dict) -> dict:
    """Returns `params` with every `img_backbone` leaf replaced by the imported value.

    Every backbone parameter of the model must be present with the same shape, and the file
    may hold nothing else (`overlay` lists every misfit).
    """
    new_backbone = overlay(
        params["img_backbone"],
        backbone,
        shardings["img_backbone"],
        source_name="init.backbone",
        prefix="img_backbone.",
        reject_extra=True,
    )
    return {**params, "img_backbone": new_backbone}


def load_backbone(path: str, params: dict, shardings: dict) -> dict:
    """`params` with the backbone of the `.npz` at `path` (see `backbone_path`)."""
    return merge_backbone(params, read_npz(path), shardings)
