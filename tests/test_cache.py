import json
import os
import stat

import numpy as np
import pytest

from softening_lib import cache


@pytest.fixture
def umask022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def _mode(path):
    return stat.S_IMODE(path.stat().st_mode)


def test_cache_files_get_the_mode_of_normal_files(tmp_path, umask022):
    # tempfile.mkstemp makes 0600 files; results must be readable like any other file
    cache.save_arrays(tmp_path / "a" / "x.npz", e=np.arange(3.0))
    cache.atomic_write_text(tmp_path / "b.json", "{}")
    path = cache.ResultStore("task", root=tmp_path / "store").put("model", "k", {"e": np.float64(1.5)})
    normal = tmp_path / "normal.txt"
    normal.write_text("x")
    assert _mode(normal) == 0o644
    for p in (tmp_path / "a" / "x.npz", tmp_path / "b.json", path):
        assert _mode(p) == 0o644, (p, oct(_mode(p)))
    np.testing.assert_array_equal(cache.load_arrays(tmp_path / "a" / "x.npz")["e"], np.arange(3.0))
    assert json.loads(path.read_text()) == {"e": 1.5}


def test_cache_files_follow_the_umask(tmp_path):
    old = os.umask(0o077)
    try:
        cache.save_arrays(tmp_path / "x.npz", e=np.zeros(2))
        cache.atomic_write_text(tmp_path / "y.json", "{}")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "x.npz") == 0o600 and _mode(tmp_path / "y.json") == 0o600
    assert not list(tmp_path.glob(".*tmp")) and not list(tmp_path.glob(".x.npz.*"))
