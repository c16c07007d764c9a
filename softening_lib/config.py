"""Where things live: the offline data mirror, the download cache and the result store.

Environment variables (all optional):

``SOFTENING_DATA_DIR``
    A mirror directory of public data and weights laid out like ``../shared/data`` on the
    project's machines (``models/``, ``phonons/``, ``wbm/``, ``mp/``). Read first.
``SOFTENING_CACHE_DIR``
    Where downloads (pooch) and per-structure prediction caches go. Default
    ``~/.cache/softening_lib``.
``SOFTENING_RESULTS_DIR``
    Where task results (tidy tables the chapters plot) are stored. Default: the
    repository's ``data/results`` so computed results can be committed and reused.
``SOFTENING_ONLINE``
    ``1`` allows network downloads (pooch, matgl, mace). Default ``0``: offline-first.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def data_dir() -> Path | None:
    """The offline mirror directory, or None when not configured / not present."""
    value = os.environ.get("SOFTENING_DATA_DIR")
    if not value:
        return None
    path = Path(value).expanduser().resolve()
    return path if path.is_dir() else None


def cache_dir() -> Path:
    path = Path(os.environ.get("SOFTENING_CACHE_DIR", Path.home() / ".cache" / "softening_lib"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def results_dir() -> Path:
    path = Path(os.environ.get("SOFTENING_RESULTS_DIR", REPO_ROOT / "data" / "results"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def reference_dir() -> Path:
    """DFT labels the project computed itself (GPAW), committed with provenance."""
    return REPO_ROOT / "data" / "reference"


def online() -> bool:
    return os.environ.get("SOFTENING_ONLINE", "0") == "1"
