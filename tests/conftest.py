"""Test set-up: 8 fake CPU devices, set before anything imports jax."""

import os

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Persistent XLA cache: the train-step tests compile the same programs in several processes
# (subprocess runs, resumes); a fresh clone starts with an empty cache, so tests stay honest.
_CACHE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".cache", "jax")
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", _CACHE)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "1")

import pathlib  # noqa: E402

import pytest  # noqa: E402

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
REAL_SAMPLE_DIR = REPO_ROOT / "tests" / "data" / "nuscenes_sample"


@pytest.fixture(scope="session")
def real_sample_dir() -> pathlib.Path:
    """The one real nuScenes key frame committed in the repository (see its README)."""
    if not REAL_SAMPLE_DIR.is_dir():
        raise FileNotFoundError(f"missing test fixture {REAL_SAMPLE_DIR}")
    return REAL_SAMPLE_DIR
