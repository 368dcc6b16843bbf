"""Prints the demo's summary: both evaluations, the learning check and where things are.

Exits non-zero when the final direct depth AbsRel is not at most half of the step-0 value
(the demo's learning target), so a demo that did not learn never looks like a success.
"""

import argparse
import json
import pathlib
import sys


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workdir", required=True, type=pathlib.Path)
    parser.add_argument("--out", required=True, type=pathlib.Path)
    parser.add_argument("--learning-check", type=int, default=1, help="0: report only")
    args = parser.parse_args()
    eval_dir = args.workdir / "eval"
    results = sorted(
        (json.loads(p.read_text()) for p in eval_dir.glob("step_*.json")), key=lambda r: r["step"]
    )
    if len(results) < 2 or results[0]["step"] != 0:
        print(f"expected evaluations at step 0 and at the end in {eval_dir}", file=sys.stderr)
        return 1
    first, last = results[0], results[-1]
    keys = (
        "depth_abs_rel",
        "depth_rmse_m",
        "dense_depth_abs_rel",
        "dense_depth_rmse_m",
        "rgb_psnr_db",
    )
    print(f"{'metric':32s} {'step ' + str(first['step']):>12s} {'step ' + str(last['step']):>12s}")
    for volume in ("direct", "predicted"):
        for key in keys:
            if key in first[volume]:
                name = f"{volume}.{key}"
                print(f"{name:32s} {first[volume][key]:12.4f} {last[volume][key]:12.4f}")
    ratio = last["direct"]["depth_abs_rel"] / first["direct"]["depth_abs_rel"]
    print(f"\nlearning check: final/initial direct.depth_abs_rel = {ratio:.3f} (target <= 0.5)")
    print(f"metrics:     {args.workdir / 'metrics.jsonl'}")
    print(f"tensorboard: tensorboard --logdir {args.workdir / 'tensorboard'}")
    print(f"panels:      {eval_dir}/step_*_clip*.png")
    print(f"pytorch:     {args.out / 'mim4d_tiny.pth'} (golden: {args.out / 'golden.npz'})")
    return 0 if ratio <= 0.5 or not args.learning_check else 1


if __name__ == "__main__":
    sys.exit(main())
