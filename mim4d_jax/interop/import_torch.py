"""ImageNet ConvNeXt weights (official / SparK key style) -> `img_backbone` parameters.

  python -m mim4d_jax.import_torch --in convnextS_1kpretrained_official_style.pth \
      --out backbone_S.npz [--variant S]

`load_backbone_params(path, variant)` reads the weights for conversion to the `.npz` that the
trainer reads for `init.backbone` (mim4d_jax/training/backbone_init.py). It accepts
- an official-style classification checkpoint (`.pth` or safetensors; keys
  `downsample_layers.*`, `stages.*`, maybe under `model`/`state_dict`, maybe `module.`-prefixed);
  its classifier `head.*` and final `norm.*` are ignored, and the output norms `norm0..3`, which
  it does not have, start at LayerNorm init (weight 1, bias 0) as in the reference (a file with
  only some of them is an error);
- a full detector export (`img_backbone.*` keys, e.g. from export_torch): only `img_backbone.*`
  is read, and there `norm0..3` must be present;
- an `.npz` written by this CLI (keys `stages/0/0/dwconv/kernel`, already our layout).
Every expected key is checked, and so is every shape; any missing, unexpected or mis-shaped
tensor is an error listing all of them. `.pth` files are opened with weights_only=True only.
"""

import argparse
import dataclasses
import pathlib
import re
import sys
import zipfile
from typing import Any

import jax
import numpy as np
from flax import nnx

from mim4d_jax import user_errors
from mim4d_jax.interop import mapping as em
from mim4d_jax.interop.torch_ref.io import read_state_dict
from mim4d_jax.models.convnext import MaskedConvNeXt
from mim4d_jax.training import backbone_init

DETECTOR_PREFIX = "img_backbone."
# Classification-only parts of an ImageNet checkpoint.
IGNORED = re.compile(r"^(head|norm)\.")
# Output norms the reference adds (norm_out); an ImageNet checkpoint has none of them.
OUTPUT_NORM = re.compile(r"^norm[0-3]\.(weight|bias)$")


def backbone_abstract(variant: str) -> dict[Any, Any]:
    """Pure dict of ShapeDtypeStructs: the `img_backbone` parameter tree of `variant`."""
    model = nnx.eval_shape(lambda: MaskedConvNeXt(variant, rngs=nnx.Rngs(0)))
    return nnx.to_pure_dict(nnx.state(model, nnx.Param))


def load_backbone_params(path: str | pathlib.Path, variant: str) -> dict[Any, Any]:
    """Nested pure dict (our NNX layout, float32 numpy) of `img_backbone` for `variant`."""
    expected = backbone_abstract(variant)
    if pathlib.Path(path).suffix == ".npz":
        return _load_npz(path, expected)
    tensors, _ = read_state_dict(path)
    arrays = {k: v.float().numpy() for k, v in tensors.items()}
    if any(k.startswith(DETECTOR_PREFIX) for k in arrays):
        prefix = DETECTOR_PREFIX
        arrays = {k: v for k, v in arrays.items() if k.startswith(DETECTOR_PREFIX)}
    else:
        prefix = ""
        arrays = {k: v for k, v in arrays.items() if not IGNORED.match(k)}
    check_finite(arrays, path)
    params, report = em.from_state_dict(arrays, expected, prefix)
    if not prefix and not any(OUTPUT_NORM.match(k) for k in arrays):
        # An ImageNet checkpoint without any output norm: all of them start at LN init. A file
        # with only some of them is inconsistent and stays an error.
        absent = tuple(k for k in report.missing if OUTPUT_NORM.match(k))
        report = dataclasses.replace(
            report, missing=tuple(k for k in report.missing if k not in absent)
        )
        for key in absent:
            name, leaf = key.split(".")  # e.g. "norm2", "weight"
            jax_leaf, fill = ("scale", np.ones) if leaf == "weight" else ("bias", np.zeros)
            shape = expected[name][jax_leaf].shape
            params.setdefault(name, {})[jax_leaf] = fill(shape, np.float32)
    if not report.ok:
        raise user_errors.BadInputError(
            f"{path} does not fit ConvNeXt variant {variant!r}:\n{report.format()}",
            hint="pass the --variant the weights were trained as (S, B, tiny, nano)",
        )
    return params


def check_finite(arrays: dict[str, np.ndarray], path: str | pathlib.Path) -> None:
    """BadInputError naming the file and every tensor holding NaN or Inf: such weights would
    train to a non-finite loss at step 1, far from their cause."""
    bad = {k: int(np.size(v) - np.isfinite(v).sum()) for k, v in arrays.items()}
    bad = {k: n for k, n in bad.items() if n}
    if bad:
        shown = ", ".join(f"{k} ({n} values)" for k, n in sorted(bad.items())[:10])
        more = f" and {len(bad) - 10} more" if len(bad) > 10 else ""
        raise user_errors.BadInputError(
            f"{path}: non-finite (NaN/Inf) weights in {len(bad)} tensors: {shown}{more}"
        )


def _load_npz(path: str | pathlib.Path, expected: dict[Any, Any]) -> dict[Any, Any]:
    try:
        tree = backbone_init.read_npz(str(path))
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise user_errors.BadInputError(
            f"{path} cannot be read as an .npz file: it is truncated or damaged ({error})"
        ) from error
    flat = {"/".join(p): v for p, v in em.flatten(tree).items()}
    check_finite(flat, path)
    want = {"/".join(p): tuple(leaf.shape) for p, leaf in em.flatten(expected).items()}
    report = em.compare(want, {k: v.shape for k, v in flat.items()})
    if not report.ok:
        raise user_errors.BadInputError(f"{path} does not fit the backbone:\n{report.format()}")
    return jax.tree_util.tree_map_with_path(
        lambda p, _: flat["/".join(str(k.key) for k in p)], expected
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--in", dest="src", required=True, help=".pth / .safetensors checkpoint")
    parser.add_argument("--out", required=True, help="output .npz (our img_backbone layout)")
    parser.add_argument("--variant", default="S", help="ConvNeXt variant: S, B, tiny, nano")
    args = parser.parse_args(argv)
    params = load_backbone_params(args.src, args.variant)
    backbone_init.write_npz(params, args.out)
    count = sum(np.size(v) for v in em.flatten(params).values())
    print(f"wrote {args.out}: {len(em.flatten(params))} tensors, {count:,} parameters")
    return 0


def cli() -> None:
    """Console-script entry: exits with main()'s status; known errors as one line."""
    sys.exit(user_errors.run_cli(main))


if __name__ == "__main__":
    cli()
