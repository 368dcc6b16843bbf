"""Test set-up: 8 fake CPU devices, set before anything imports jax."""

import os

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pathlib  # noqa: E402

import pytest  # noqa: E402

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED_DIR = REPO_ROOT.parent / "shared"
REAL_SAMPLE_DIR = SHARED_DIR / "real_nuscenes_sample"


@pytest.fixture(scope="session")
def real_sample_dir() -> pathlib.Path:
    """The one real nuScenes key frame shipped beside the repository."""
    if not REAL_SAMPLE_DIR.is_dir():
        raise FileNotFoundError(f"missing test fixture {REAL_SAMPLE_DIR} (../shared beside the repo)")
    return REAL_SAMPLE_DIR
