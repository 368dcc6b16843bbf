r"""Pre-training objectives compared at the same wall-clock budget, scored downstream.

  python -m benchmarks.objectives --out /tmp/objectives [--data CLIPS_DIR] [--budget 600] \
      [--seeds 0,1] [--runs mim4d,croco,...] [--probe_steps 1000] [--freeze lift]
  python -m benchmarks.objectives --out /tmp/objectives --table   # the markdown table only

For every run (a set of objective weights) and seed:
1. pre-train `configs/mim4d_tiny.py` on the synthetic world with those weights
   (`--config.objectives.*`) through the real trainer (`python -m mim4d_jax.train`); the clock
   starts at the first logged step (compilation excluded) and after `--budget` seconds the
   run gets SIGTERM, on which the trainer saves a checkpoint and exits. The learning-rate
   schedule (`total_steps`) spans the steps the run reaches in the budget: a throwaway
   training of a few steps measures its seconds per step on this machine first (once per set
   of objectives; every seed and `@` variant gets the same schedule). A fixed `total_steps`
   would let a cheap objective finish early or leave a costly one at its peak learning rate;
2. runs that train the renderer (MIM4D weight > 0) get the pretext score: rendered-depth
   AbsRel along the val clips' LiDAR rays (`python -m mim4d_jax.evaluate --lidar_only`), with
   each clip's own images and with another clip's (`--shuffled`); own / shuffled below 1
   means the depth reads the images, 1 is a scene prior;
3. score the checkpoint with the downstream yardstick, the BEV vehicle-segmentation probe
   (`python -m mim4d_jax.probe --config configs/probe_bev.py --init WORKDIR --freeze F`),
   reading the `*iou*` keys of its result.json. `random` (no pre-training) and `blind`
   (random init, `ablation.blind_images=True`: the probe sees no image) are the floors;
   `mim4d@ablation.blind_images=True` is MIM4D's image-blind twin, pre-trained with MIM4D's
   budget and schedule on zero images (a run's `@key=value` suffixes are config overrides);
   its probe, like every other, sees the images.
Without the probe module only steps 1-2 run, and the table says so.

The default freeze is `lift`, the representation benchmark's frozen probe: the head alone
trains on the frozen lifted volume, so an objective is credited for every part it trains
(CroCo trains only the backbone: its neck and lift stay at random init). `--freeze backbone`
also trains neck and lift in the probe, a fairer question for CroCo but a probe that
back-propagates through the lift on every step.

Results are appended to OUT/results.jsonl as they finish (a rerun skips what is there and
adds a missing pretext score; the last line of a run and seed wins);
`--table` prints the markdown table of benchmarks/README.md from them.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import pathlib
import shutil
import signal
import statistics
import subprocess
import sys
import time

from configs import mim4d_tiny
from mim4d_jax import atomic_files
from mim4d_jax.evaluation.report import latest_eval

REPO = pathlib.Path(__file__).resolve().parents[1]
OBJECTIVES = ("mim4d", "croco", "pointcontrast")
DEFAULT_RUNS = (
    "mim4d",
    "croco",
    "pointcontrast",
    "mim4d+croco",
    "mim4d+pointcontrast",
    "mim4d@ablation.blind_images=True",
    "random",
    "blind",
)
BASELINES = ("random", "blind")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env.setdefault("JAX_PLATFORMS", "cpu")
    return env


def _overrides(run: str) -> list[str]:
    """`mim4d+croco@croco.mask_ratio=0.75@...`: objectives joined by +, then config overrides."""
    names, *extra = run.split("@")
    return [f"--config.objectives.{k}={v}" for k, v in _weights(names).items()] + [
        f"--config.{item}" for item in extra
    ]


def _slug(run: str) -> str:
    return run.replace("@", "__").replace("=", "-")


def _weights(run: str) -> dict[str, float]:
    names = run.split("+")
    unknown = [n for n in names if n not in OBJECTIVES]
    if unknown:
        raise SystemExit(f"unknown objective(s) {unknown} in run {run!r}; known: {OBJECTIVES}")
    return {name: (1.0 if name in names else 0.0) for name in OBJECTIVES}


def make_data(out: pathlib.Path) -> pathlib.Path:
    """The synthetic world (4 scenes x 8 samples) converted at the tiny config's 160x90."""
    root, clips = out / "synthetic", out / "clips"
    if not clips.exists():
        py = [sys.executable, "-m"]
        subprocess.run(
            [*py, "data_prep.synthetic_nuscenes", "--out", str(root), "--overwrite"],
            check=True,
            cwd=REPO,
            env=_env(),
        )
        subprocess.run(
            [
                *py,
                "data_prep.convert_nuscenes",
                "--dataroot",
                str(root),
                "--version",
                "v1.0-mini",
                "--out",
                str(clips),
                "--image-size",
                "160x90",
            ],
            check=True,
            cwd=REPO,
            env=_env(),
        )
    return clips


def _metrics(workdir: pathlib.Path) -> list[dict]:
    path = workdir / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _train_cmd(run: str, seed: int, data: pathlib.Path, workdir: pathlib.Path, steps: int):
    return [
        sys.executable,
        "-m",
        "mim4d_jax.train",
        "--config",
        str(REPO / "configs" / "mim4d_tiny.py"),
        "--workdir",
        str(workdir),
        f"--config.data.dir={data}",
        f"--config.seed={seed}",
        f"--config.total_steps={steps}",
        "--config.log_every=1",
        "--config.image_log_every=0",
        "--config.checkpoint_every=100000",
        *_overrides(run),
    ]


def calibrate(run: str, data: pathlib.Path, out: pathlib.Path, steps: int = 12) -> float:
    """Median seconds per step of `run` on this machine, from a throwaway training (killed after
    `steps` logged steps, compilation excluded)."""
    workdir = out / "calibrate" / _slug(run)
    shutil.rmtree(workdir, ignore_errors=True)
    log_path = out / "logs" / f"calibrate_{_slug(run)}.log"
    with open(log_path, "w") as log:
        cmd = _train_cmd(run, 0, data, workdir, 100_000)
        proc = subprocess.Popen(cmd, cwd=REPO, env=_env(), stdout=log, stderr=subprocess.STDOUT)
        while proc.poll() is None and len(_metrics(workdir)) < steps:
            time.sleep(1.0)
        proc.kill()  # no checkpoint: nothing of this run is kept
        proc.wait()
    records = _metrics(workdir)[2:]  # the first steps' rates include warm-up
    shutil.rmtree(workdir, ignore_errors=True)
    if not records:
        raise RuntimeError(f"calibration of {run} logged no step; see {log_path}")
    return 1.0 / statistics.median(r["steps_per_sec"] for r in records)


def pretrain(
    run: str, seed: int, data: pathlib.Path, out: pathlib.Path, budget: float, steps: int
) -> dict:
    """Trains until `budget` seconds after the first logged step, or `steps` steps (the length of
    the learning-rate schedule); returns the run's record."""
    workdir = out / "pretrain" / f"{_slug(run)}_seed{seed}"
    if _has_checkpoint(workdir) and _metrics(workdir):
        # Finished before (an interrupted benchmark): score that checkpoint, do not retrain.
        return _pretrain_record(run, seed, workdir, None, None)
    cmd = _train_cmd(run, seed, data, workdir, steps)
    log = open(out / "logs" / f"pretrain_{_slug(run)}_seed{seed}.log", "w")
    started = time.time()
    proc = subprocess.Popen(cmd, cwd=REPO, env=_env(), stdout=log, stderr=subprocess.STDOUT)
    first, stopped = None, False
    while proc.poll() is None:
        time.sleep(2.0)
        if first is None and _metrics(workdir):
            first = time.time()
        if first is not None and time.time() - first >= budget:
            proc.send_signal(signal.SIGTERM)  # the trainer checkpoints and exits
            stopped = True
            break
    rc = proc.wait()
    log.close()
    # A run that ends its schedule as the budget runs out can get the signal after its final
    # save, while exiting: killed by it, but with its checkpoint complete.
    killed_after_save = stopped and rc == -signal.SIGTERM and _has_checkpoint(workdir)
    if (rc != 0 and not killed_after_save) or not _metrics(workdir):
        raise RuntimeError(f"pre-training {run} seed {seed} failed (rc {rc}); see {log.name}")
    return _pretrain_record(run, seed, workdir, started, first)


def _has_checkpoint(workdir: pathlib.Path) -> bool:
    ckpt = workdir / "checkpoints"
    return ckpt.exists() and any(p.name.isdigit() for p in ckpt.iterdir())


def _pretrain_record(
    run: str, seed: int, workdir: pathlib.Path, started: float | None, first: float | None
) -> dict:
    records = _metrics(workdir)
    losses = [r["loss"] for r in records]
    window = max(1, min(5, len(losses) // 4))
    return {
        "run": run,
        "seed": seed,
        "workdir": str(workdir),
        "steps": records[-1]["step"],
        "train_s": None if started is None else round(time.time() - (first or started), 1),
        "compile_s": None if started is None else round((first or started) - started, 1),
        "s_per_step": round(1.0 / statistics.median(r["steps_per_sec"] for r in records[1:]), 3)
        if len(records) > 1
        else None,
        "loss_first": round(statistics.mean(losses[:window]), 4),
        "loss_last": round(statistics.mean(losses[-window:]), 4),
        "terms_last": {
            k: round(v, 4)
            for k, v in records[-1].items()
            if k.endswith(("_loss", "_acc")) or k in ("rgb_loss", "depth_loss")
        },
    }


def trains_renderer(run: str) -> bool:
    return run not in BASELINES and _weights(run.split("@")[0])["mim4d"] > 0


def pretext(workdir: pathlib.Path, name: str, out: pathlib.Path) -> dict:
    """Rendered-depth AbsRel of the last checkpoint along the val LiDAR rays, with each clip's
    own images and with another val clip's."""
    abs_rel = {}
    for inputs in ("", "shuffled"):
        cmd = [sys.executable, "-m", "mim4d_jax.evaluate", "--workdir", str(workdir)]
        cmd += ["--lidar_only"] + ([f"--{inputs}"] if inputs else [])
        log_path = out / "logs" / f"eval{inputs}_{name}.log"
        with open(log_path, "w") as log:
            rc = subprocess.run(cmd, cwd=REPO, env=_env(), stdout=log, stderr=subprocess.STDOUT)
        evaluation = latest_eval(workdir / "eval" / inputs)
        if rc.returncode != 0 or evaluation is None:
            raise RuntimeError(
                f"evaluation of {workdir} failed (rc {rc.returncode}); see {log_path}"
            )
        abs_rel[inputs] = evaluation["direct"]["depth_abs_rel"]
    return {
        "depth_abs_rel": round(abs_rel[""], 4),
        "own_over_shuffled": round(abs_rel[""] / abs_rel["shuffled"], 3),
    }


def probe_available() -> bool:
    return (
        importlib.util.find_spec("mim4d_jax.probe") is not None
        and (REPO / "configs" / "probe_bev.py").exists()
    )


def probe(
    init: str, name: str, data: pathlib.Path, out: pathlib.Path, steps: int, freeze: str, seed: int
) -> dict:
    workdir = out / "probe" / name
    cmd = [
        sys.executable,
        "-m",
        "mim4d_jax.probe",
        "--config",
        str(REPO / "configs" / "probe_bev.py"),
        "--workdir",
        str(workdir),
        "--init",
        init if init not in BASELINES else "random",
        "--freeze",
        freeze,
        f"--config.data.dir={data}",
        f"--config.total_steps={steps}",
        f"--config.seed={seed}",
    ]
    if init == "blind":
        cmd.append("--config.ablation.blind_images=True")
    started = time.time()
    with open(out / "logs" / f"probe_{name}.log", "w") as log:
        rc = subprocess.run(cmd, cwd=REPO, env=_env(), stdout=log, stderr=subprocess.STDOUT)
    result_path = workdir / "probe" / "result.json"
    if rc.returncode != 0 or not result_path.exists():
        raise RuntimeError(f"probe {name} failed (rc {rc.returncode}); see {log.name}")
    result = json.loads(result_path.read_text())
    scores = {
        k: round(v, 4) for k, v in result.items() if "iou" in k and isinstance(v, int | float)
    }
    return {"probe_s": round(time.time() - started, 1), "probe": scores}


def _done(out: pathlib.Path) -> dict[tuple[str, int], dict]:
    path = out / "results.jsonl"
    if not path.exists():
        return {}
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {(r["run"], r["seed"]): r for r in rows}


def table(out: pathlib.Path) -> str:
    rows = sorted(
        _done(out).values(),
        key=lambda r: (
            DEFAULT_RUNS.index(r["run"]) if r["run"] in DEFAULT_RUNS else len(DEFAULT_RUNS),
            r["run"],
            r["seed"],
        ),
    )
    # The probe's result keys, best-threshold IoU first (the yardstick), on val then on the
    # train split the head was fitted on.
    probe_columns = {
        "best_iou": "probe best IoU",
        "iou": "IoU@0.5",
        "fit_best_iou": "fit best IoU",
    }
    keys = [k for k in probe_columns if any(k in r.get("probe", {}) for r in rows)]
    head = ["run", "seed", "steps / schedule", "s/step", "loss first -> last"]
    head += ["depth AbsRel", "own / shuffled", *(probe_columns[k] for k in keys)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        loss = f"{r['loss_first']:.3f} -> {r['loss_last']:.3f}" if "loss_first" in r else "-"
        steps = f"{r['steps']} / {r.get('schedule_steps', '-')}" if "steps" in r else "-"
        cells = [
            r["run"],
            str(r["seed"]),
            steps,
            str(r.get("s_per_step", "-")),
            loss,
            *(f"{r[k]:.3f}" if k in r else "-" for k in ("depth_abs_rel", "own_over_shuffled")),
            *(f"{r['probe'][k]:.4f}" if k in r.get("probe", {}) else "-" for k in keys),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    if rows and not keys:
        lines.append("\n(probe not run: pre-training figures only)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, type=pathlib.Path)
    parser.add_argument("--data", type=pathlib.Path, default=None, help="converted clips")
    parser.add_argument("--budget", type=float, default=600.0, help="training seconds per run")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--runs", default=",".join(DEFAULT_RUNS))
    parser.add_argument("--probe_steps", type=int, default=1000)
    parser.add_argument("--freeze", default="lift", choices=("backbone", "lift", "none"))
    parser.add_argument("--no_probe", action="store_true")
    parser.add_argument("--table", action="store_true", help="print the table and exit")
    args = parser.parse_args(argv)
    out = args.out
    if args.table:
        print(table(out))
        return 0
    (out / "logs").mkdir(parents=True, exist_ok=True)
    data = args.data or make_data(out)
    with_probe = not args.no_probe and probe_available()
    done = _done(out)
    schedules_path = out / "schedule_steps.json"  # {objectives: steps}, kept for every rerun
    schedule_steps = json.loads(schedules_path.read_text()) if schedules_path.exists() else {}
    warmup = mim4d_tiny.get_config().optim.warmup_steps
    for seed in (int(s) for s in args.seeds.split(",")):
        for run in args.runs.split(","):
            name = f"{_slug(run)}_seed{seed}"
            record: dict = done.get((run, seed), {"run": run, "seed": seed})
            missing_pretext = trains_renderer(run) and "depth_abs_rel" not in record
            if (run, seed) in done and not missing_pretext:
                continue
            if run not in BASELINES and "workdir" not in record:
                # Each run's schedule (warm-up, then cosine decay) spans the steps it reaches in
                # the budget on this machine, measured once per set of objectives and kept for
                # every seed and every `@` variant (an ablation such as the blind twin trains on
                # its base run's schedule: the same recipe, one thing changed).
                objectives = run.split("@")[0]
                if objectives not in schedule_steps:
                    s_per_step = calibrate(objectives, data, out)
                    schedule_steps[objectives] = max(warmup + 1, int(args.budget / s_per_step))
                    atomic_files.write_text(schedules_path, json.dumps(schedule_steps, indent=1))
                record["schedule_steps"] = steps = schedule_steps[objectives]
                record.update(pretrain(run, seed, data, out, args.budget, steps))
            elif run in BASELINES and not with_probe:
                continue
            if missing_pretext:
                record.update(pretext(pathlib.Path(record["workdir"]), name, out))
            if with_probe and "probe" not in record:
                init = record.get("workdir", run)
                try:
                    record.update(probe(init, name, data, out, args.probe_steps, args.freeze, seed))
                except RuntimeError as error:  # recorded; the other runs still get scored
                    record["probe_error"] = str(error)
                record["freeze"] = args.freeze
            with open(out / "results.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")
            print(json.dumps(record), flush=True)
    print(table(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
