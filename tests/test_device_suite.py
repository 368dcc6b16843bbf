"""benchmarks/device_suite.sh --smoke: every figure present and finite, with TensorFlow made
unimportable (the accelerator image has none), and the summary's arithmetic."""

from __future__ import annotations

import json
import math
import os
import pathlib
import subprocess
import textwrap

import pytest

from benchmarks import device_suite

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]

# Installed through sitecustomize, so it is active in the suite's shell, its Python and every
# process that Python starts, before anything else is imported.
BLOCKER = textwrap.dedent(
    """
    import os, sys

    class _NoTensorFlow:
        def find_spec(self, name, path=None, target=None):
            if name == "tensorflow" or name.startswith(("tensorflow.", "tensorflow_")):
                with open(os.environ["TF_BLOCK_LOG"], "a") as log:
                    log.write(name + "\\n")
                raise ModuleNotFoundError(f"blocked by the test: {name}", name=name)
            return None

    sys.meta_path.insert(0, _NoTensorFlow())
    """
)


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("device_suite")
    (tmp / "sitecustomize.py").write_text(BLOCKER)
    log = tmp / "tf_imports.log"
    env = dict(os.environ, PYTHONPATH=str(tmp), TF_BLOCK_LOG=str(log))
    # conftest's persistent compilation cache goes through etils.epath, whose optional
    # TensorFlow import would be logged here although nothing needs it; the suite on a device
    # runs without that cache.
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    # One device, as on the one-GPU host (not conftest's 8 fake CPU devices).
    env.pop("XLA_FLAGS", None)
    probe = subprocess.run(
        [str(REPO_ROOT / ".venv/bin/python"), "-c", "import tensorflow"],
        env=dict(env, TF_BLOCK_LOG=str(tmp / "probe.log")),
        capture_output=True,
        text=True,
    )
    out = tmp / "out"
    proc = subprocess.run(
        ["bash", "benchmarks/device_suite.sh", "--smoke", "--out", str(out)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    attempts = log.read_text().split() if log.exists() else []
    return probe, proc, out, attempts


@pytest.mark.slow
def test_smoke_run_has_every_figure_without_tensorflow(smoke_run):
    probe, proc, out, attempts = smoke_run
    # The blocker works: this environment has TensorFlow installed, and it cannot be imported.
    assert probe.returncode != 0 and "blocked by the test" in probe.stderr
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert attempts == [], f"the suite tried to import {attempts}"

    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary == json.loads((out / "summary.json").read_text())
    assert summary["smoke"] is True
    assert summary["sections_ok"] == dict.fromkeys(device_suite.SECTIONS, True)
    for key in (
        "matmul_bf16_tflops",
        "renderer_forward_rays_per_s",
        "renderer_forward_backward_rays_per_s",
        "backbone_fpn_jax_s",
        "backbone_fpn_jax_masked_s",
        "backbone_fpn_torch_s",
        "backbone_fpn_jax_over_torch",
    ):
        assert _finite(summary[key]) and summary[key] > 0, key
    assert set(summary["step"]) == {"1", "2"}
    for per_device, row in summary["step"].items():
        for key in (
            "lower_s",
            "compile_s",
            "step_s",
            "samples_per_s",
            "mfu_measured_peak",
            "renderer_share",
        ):
            assert _finite(row[key]) and row[key] > 0, (per_device, key)
        # CPUs keep no allocator statistics; the compiler's estimate is always there.
        assert row["peak_bytes_in_use"] is None or row["peak_bytes_in_use"] > 0
        assert row["xla_peak_bytes"] > 0
        # The analytic count of the step program against XLA's own, loops counted once.
        assert 0.8 < row["xla_lowered_over_analytic"] < 1.2, row
    assert summary["profile_top_op"]

    for name in device_suite.SECTIONS:
        section = json.loads((out / f"{name}.json").read_text())
        assert section["ok"] and _finite(section["wall_s"]), name
    step = json.loads((out / "step.json").read_text())
    assert step["analytic_flops_per_sample"]["train_model_matmul"] > 0
    assert step["batches"]["1"]["xla_flops_per_device"] > 0
    assert _finite(step["batches"]["2"]["loss"])
    profile = step["profile"]
    assert 1 <= len(profile["top_ops"]) <= 15
    assert all(op["total_ns"] > 0 for op in profile["top_ops"])
    assert (out / "trace" / "top_ops.txt").read_text().startswith("top ")


def test_isolated_section_runs_in_its_own_process(tmp_path):
    # The full run's path: one child process per section, its JSON read back by the parent.
    proc = subprocess.run(
        [
            "bash",
            "benchmarks/device_suite.sh",
            "--smoke",
            "--isolate",
            "--only",
            "matmul",
            "--out",
            str(tmp_path),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["sections_ok"] == {"matmul": True}
    section = json.loads((tmp_path / "matmul.json").read_text())
    assert section["measured_bf16_flops"] > 0 and section["n"] == 256
    assert section["measured_bf16_flops"] == pytest.approx(
        section["flops_per_call"] / section["seconds"]["median_s"]
    )


def test_summary_arithmetic():
    results = {
        "matmul": {
            "ok": True,
            "device_kind": "X",
            "measured_bf16_flops": 1e12,
            "vendor_peak_bf16_flops": 2e12,
        },
        "renderer": {
            "ok": True,
            "forward_rays_per_s": 10.0,
            "forward_backward_rays_per_s": 5.0,
            "forward_backward": {"median_s": 0.01},
            "renders_per_sample": 4,
        },
        "backbone": {
            "ok": True,
            "unmasked": {"forward_backward": {"median_s": 0.3}},
            "masked": {"forward_backward": {"median_s": 0.25}},
        },
        "torch": {"ok": True, "forward_backward": {"median_s": 0.2}},
        "step": {
            "ok": True,
            "batches": {
                "1": {
                    "lower_s": 3.0,
                    "compile_s": 9.0,
                    "step_s": {"median_s": 0.5},
                    "samples_per_s": 2.0,
                    "peak_bytes_in_use": 7,
                    "xla_memory": {"peak_bytes": 8},
                    "analytic_flops_per_device": 1.25e11,
                    "xla_flops_per_device": 1e11,
                    "xla_flops_lowered_per_device": 1.1e11,
                    "analytic_xla_comparable_per_device": 1e11,
                    "achieved_flops_per_device": 2.5e11,
                },
                "2": {"error": "RESOURCE_EXHAUSTED", "oom": True},
            },
            "profile": {"top_ops": [{"name": "fusion.1"}]},
        },
    }
    summary = device_suite.summarise(results)
    assert summary["backbone_fpn_jax_over_torch"] == pytest.approx(1.5)
    row = summary["step"]["1"]
    assert row["mfu_measured_peak"] == pytest.approx(0.25)
    assert row["mfu_vendor_peak"] == pytest.approx(0.125)
    assert row["renderer_share"] == pytest.approx(4 * 0.01 / 0.5)
    assert row["xla_flops_per_device"] == 1e11 and row["xla_peak_bytes"] == 8
    assert row["xla_lowered_over_analytic"] == pytest.approx(1.1)
    assert summary["step"]["2"] == {"oom": True, "error": "RESOURCE_EXHAUSTED"}
    assert summary["profile_top_op"] == "fusion.1"
    assert all(summary["sections_ok"].values())
