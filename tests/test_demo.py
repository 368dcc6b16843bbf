"""The demo's steps end to end, shortened: generate -> convert -> train -> evaluate at step 0
and at the end -> export + golden verification -> probes -> summary (scripts/demo.sh on a tiny
world)."""

import json
import os
import pathlib
import subprocess

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_demo_script_runs_every_stage(tmp_path):
    env = {
        **os.environ,
        "DEMO_OUT": str(tmp_path / "demo"),
        "DEMO_SYNTH_ARGS": "--scenes 2 --samples-per-scene 3 --width 96 --height 54",
        "DEMO_LEARNING_CHECK": "0",  # 2 steps cannot learn; the stages are the point
        "DEMO_PROBE_STEPS": "2",
        "DEMO_PROBE_ARGS": "--config.optim.warmup_steps=1 "
        "--config.checkpoint_every=2 --config.data.num_rays=16",
    }
    env.pop("XLA_FLAGS", None)  # the demo runs on the plain CPU device, as a user's would
    result = subprocess.run(
        [
            "bash",
            "scripts/demo.sh",
            "--config.total_steps=2",
            "--config.optim.warmup_steps=1",
            "--config.batch_size=2",
            "--config.checkpoint_every=2",
            "--config.log_every=1",
            "--config.data.num_rays=16",
            "--config.render.num_samples=8",
            "--config.render.num_importance=4",
            "--config.image_log_every=2",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = tmp_path / "demo"
    evals = {
        p.name: json.loads(p.read_text()) for p in (out / "workdir" / "eval").glob("step_*.json")
    }
    assert set(evals) == {"step_0.json", "step_2.json"}
    # Step 0 is scored on the LiDAR rays only; the trained model gets the full evaluation.
    assert evals["step_0.json"]["lidar_only"] and not evals["step_2.json"]["lidar_only"]
    for volume in ("direct", "predicted"):
        assert {"depth_abs_rel", "depth_rmse_m"} <= set(evals["step_0.json"][volume])
        assert {"depth_abs_rel", "depth_rmse_m", "rgb_psnr_db", "dense_depth_abs_rel"} <= set(
            evals["step_2.json"][volume]
        )
    assert list((out / "workdir" / "eval").glob("step_2_clip*.png"))
    assert (out / "workdir" / "metrics.jsonl").read_text().count("\n") == 2
    # The trainer's arguments come after the demo's own --config.data.num_rays=64, so they win.
    config = json.loads((out / "workdir" / "config.json").read_text())
    assert config["data"]["num_rays"] == 16
    assert (out / "mim4d_tiny.pth").stat().st_size > 0 and (out / "golden.npz").exists()
    for init in ("pretrained", "random"):
        probe = json.loads((out / f"probe_{init}" / "probe" / "result.json").read_text())
        assert probe["step"] == 2 and 0.0 <= probe["iou"] <= 1.0, probe
        assert (out / f"probe_{init}" / "probe" / "panel_0.png").exists()
    assert "probe check: pre-trained - random-init best probe IoU" in result.stdout
    # The image check's evaluations: step 0 (its control) and the end with another clip's
    # images, the end with the images removed; each scores the same clips as the plain one.
    for inputs, step in (("shuffled", 0), ("shuffled", 2), ("blind", 2)):
        other = json.loads((out / "workdir" / "eval" / inputs / f"step_{step}.json").read_text())
        assert other[inputs] and other["num_clips"] == evals[f"step_{step}.json"]["num_clips"]
    assert "image check (shuffled): direct.depth_abs_rel with its own images" in result.stdout
    assert "removed-images ratio: direct.depth_abs_rel with its own images" in result.stdout
    assert "learning check (DEMO_GATE=image): " in result.stdout
