"""Check an exported checkpoint against its golden file, in PyTorch only.

  python -m mim4d_jax.interop.torch_ref.verify --ckpt export.pth --golden golden.npz [--tol 1e-4]

Loads the transferable slice of the state dict (`img_backbone/img_neck/input_proj/depth_net/
render_conv`) with strict=True into `PerceptionRef` (sizes read from the tensors), runs the
golden `images` through it and reports the max abs difference to each stored
`backbone_i` / `fpn_i`. Exit status 1 when a difference exceeds --tol or an output is missing.
"""

import argparse
import pathlib
import sys

import numpy as np
import torch

from mim4d_jax.interop.torch_ref.io import read_state_dict
from mim4d_jax.interop.torch_ref.model import PerceptionRef, own_slice


def load_reference(state_dict_path: str | pathlib.Path) -> PerceptionRef:
    """PerceptionRef in eval mode holding the checkpoint's weights (strict load)."""
    tensors, _ = read_state_dict(state_dict_path)
    own = own_slice(tensors)
    model = PerceptionRef.from_state_dict(own)
    model.load_state_dict(own, strict=True)
    return model.eval()


def verify_golden(
    state_dict_path: str | pathlib.Path, golden_npz: str | pathlib.Path
) -> dict[str, float]:
    """{`backbone_i` / `fpn_i`: max abs difference between PyTorch and the golden output}."""
    model = load_reference(state_dict_path)
    with np.load(golden_npz) as golden:
        arrays = {k: golden[k] for k in golden.files}
    with torch.no_grad():
        backbone, fpn = model(torch.from_numpy(arrays["images"]).float())
    outputs = {f"backbone_{i}": t for i, t in enumerate(backbone)}
    outputs.update({f"fpn_{i}": t for i, t in enumerate(fpn)})
    expected = sorted(k for k in arrays if k != "images")
    if sorted(outputs) != expected:
        raise ValueError(f"golden file holds {expected}, the model gives {sorted(outputs)}")
    diffs = {}
    for name in expected:
        got = outputs[name].numpy()
        if got.shape != arrays[name].shape:
            raise ValueError(
                f"{name}: golden shape {arrays[name].shape}, PyTorch gives {got.shape}"
            )
        diffs[name] = float(np.max(np.abs(got - arrays[name])))
    return diffs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ckpt", required=True, help="exported .pth or .safetensors")
    parser.add_argument("--golden", required=True, help="golden .npz from export_torch --golden")
    parser.add_argument("--tol", type=float, default=1e-4, help="max abs difference allowed")
    args = parser.parse_args(argv)
    diffs = verify_golden(args.ckpt, args.golden)
    worst = max(diffs.values())
    for name, diff in diffs.items():
        print(f"{name:12s} max|torch - jax| = {diff:.3e}{'' if diff <= args.tol else '  FAIL'}")
    print(f"{'OK' if worst <= args.tol else 'FAILED'}: worst {worst:.3e} (tol {args.tol:.1e})")
    return 0 if worst <= args.tol else 1


def cli() -> None:
    """Console-script entry: exits with main()'s status."""
    sys.exit(main())


if __name__ == "__main__":
    cli()
