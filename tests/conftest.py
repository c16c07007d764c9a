"""Test environment: offline, one thread, the data mirror beside the repository, and a
throw-away results store so unit tests never write into the committed data/results."""

import os
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("SOFTENING_DATA_DIR", str(ROOT.parent / "shared" / "data"))
os.environ["OMP_NUM_THREADS"] = "1"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("SOFTENING_RESULTS_DIR", tempfile.mkdtemp(prefix="softening-results-"))
os.environ.setdefault("SOFTENING_CACHE_DIR", str(Path.home() / ".cache" / "softening_lib"))

import pytest  # noqa: E402


@pytest.fixture
def mirror_available():
    from softening_lib import config

    if config.data_dir() is None:
        pytest.skip("SOFTENING_DATA_DIR does not point at a data mirror")
    return config.data_dir()
