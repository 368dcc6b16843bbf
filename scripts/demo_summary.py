"""Prints the demo's summary: both evaluations, both probes, the learning check and where
things are.

Two learning checks are printed:
- the probe check, one an image-blind model fails: the frozen-feature BEV vehicle probe of the
  pre-trained model must beat the same probe on random init by IOU_MARGIN;
- the pretext check: final direct depth AbsRel <= 0.5x step 0. An image-blind twin passes it
  too (a scene prior alone halves the depth error), so it only shows that training runs.
It also prints the image check (report only): the final direct depth AbsRel with the input
images over the same with the images removed (`mim4d_jax.evaluate --blind`); 1.0 means the
model's depth is a scene prior.
The exit status follows the pretext check, or the probe check with --probe-gate 1
(DEMO_PROBE_GATE=1). The probe check is not the default gate yet because no pre-trained tiny
model has passed it so far (benchmarks/README.md, "Representation"): the demo would fail for
every user. A demo that did not train never looks like a success either way.
"""

import argparse
import json
import pathlib
import sys

# Pre-trained minus random-init frozen-probe IoU (best threshold) the probe check asks for:
# ten times the spread of the best-threshold IoU of two random-init seeds (0.056 vs 0.048,
# benchmarks/README.md, "Objectives"), so that seed noise cannot pass it.
IOU_MARGIN = 0.05


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workdir", required=True, type=pathlib.Path)
    parser.add_argument("--out", required=True, type=pathlib.Path)
    parser.add_argument("--probe", required=True, type=pathlib.Path, help="pre-trained probe")
    parser.add_argument("--random-probe", required=True, type=pathlib.Path)
    parser.add_argument("--learning-check", type=int, default=1, help="0: report only")
    parser.add_argument("--probe-gate", type=int, default=0, help="1: exit on the probe check")
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
    pretext_ok = ratio <= 0.5
    print(
        f"\npretext check: final/initial direct.depth_abs_rel = {ratio:.3f} (target <= 0.5; "
        f"a scene prior passes it too): {'passed' if pretext_ok else 'FAILED'}"
    )
    seeing = last["direct"]["depth_abs_rel"]
    for inputs, meaning in (
        ("blind", "with the images removed"),
        ("shuffled", "with another clip's images"),
    ):
        path = eval_dir / inputs / f"step_{last['step']}.json"
        if path.exists():
            other = json.loads(path.read_text())["direct"]["depth_abs_rel"]
            print(
                f"image check ({inputs}): direct.depth_abs_rel with its own images {seeing:.4f}"
                f" / {meaning} {other:.4f} = {seeing / other:.3f} (1.0: the depth does not "
                "come from the images; report only)"
            )
    probes = {
        name: json.loads(path.read_text())
        for name, path in (("pre-trained", args.probe), ("random init", args.random_probe))
    }
    print(f"\n{'BEV vehicle probe (frozen lift)':32s} {'IoU@0.5':>12s} {'best IoU':>12s}")
    for name, result in probes.items():
        print(f"{name:32s} {result['iou']:12.4f} {result['best_iou']:12.4f}")
    # Best-threshold IoU: the focal loss leaves small-data probes under-confident, so at 0.5
    # every probe is 0 and the difference says nothing.
    gain = probes["pre-trained"]["best_iou"] - probes["random init"]["best_iou"]
    passed = gain >= IOU_MARGIN
    print(
        f"\nlearning check: pre-trained - random-init best probe IoU = {gain:+.4f} "
        f"(target >= {IOU_MARGIN}): {'passed' if passed else 'NOT MET'}"
        + ("" if args.probe_gate else " (report only; DEMO_PROBE_GATE=1 makes it the gate)")
    )
    print(f"metrics:     {args.workdir / 'metrics.jsonl'}")
    print(f"tensorboard: tensorboard --logdir {args.workdir / 'tensorboard'}")
    print(f"panels:      {eval_dir}/step_*_clip*.png, {args.probe.parent}/panel_*.png")
    print(f"pytorch:     {args.out / 'mim4d_tiny.pth'} (golden: {args.out / 'golden.npz'})")
    gate = passed if args.probe_gate else pretext_ok
    return 0 if gate or not args.learning_check else 1


if __name__ == "__main__":
    sys.exit(main())
