"""Where things live: the offline data mirror, the download cache and the result store.

Environment variables (all optional):

``SOFTENING_DATA_DIR``
    A mirror directory of public data and weights laid out like ``../shared/data`` on the
    project's machines (``models/``, ``phonons/``, ``wbm/``, ``mp/``). Read first.
``SOFTENING_CACHE_DIR``
    Where downloads (pooch) and per-structure prediction caches go. Default
    ``$XDG_CACHE_HOME/softening_lib`` (``~/.cache/softening_lib``).
``SOFTENING_RESULTS_DIR``
    Where task results (tidy tables the chapters plot) are stored. Default: inside a source
    checkout of the book, the repository's ``data/results`` (computed results are committed
    and reused); for an installed package, ``<cache dir>/results``.

An installed wheel never reads or writes a repository's ``data/``: :func:`source_checkout`
finds the book only when the package sits in a checkout (its parent holds ``_toc.yml`` and
``data/``). The dataset manifest is found by :func:`manifest_path` (the checkout's
``data/datasets.yml``, or the copy the wheel ships as package data).
``SOFTENING_ONLINE``
    ``1`` allows network downloads (pooch, matgl, mace). Default ``0``: offline-first.
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parent
MANIFEST_NAME = "datasets.yml"


def source_checkout() -> Path | None:
    """The book's repository when this package runs from a source checkout (its parent holds
    ``_toc.yml`` and ``data/``), else None (an installed wheel)."""
    if (REPO_ROOT / "_toc.yml").is_file() and (REPO_ROOT / "data").is_dir():
        return REPO_ROOT
    return None


def manifest_path() -> Path:
    """The dataset manifest: ``data/datasets.yml`` of a source checkout, else the copy shipped
    inside the package (built from it by ``setup.py``). The one place that finds it."""
    root = source_checkout()
    if root is not None and (root / "data" / MANIFEST_NAME).is_file():
        return root / "data" / MANIFEST_NAME
    return PACKAGE_DIR / MANIFEST_NAME


def local_path(relative: str | Path) -> Path | None:
    """A path relative to the repository (a ``local`` dataset such as
    ``data/reference/wbm_he_gpaw``), or None outside a source checkout."""
    root = source_checkout()
    return None if root is None else root / relative


def data_dir() -> Path | None:
    """The offline mirror directory, or None when not configured / not present."""
    value = os.environ.get("SOFTENING_DATA_DIR")
    if not value:
        return None
    path = Path(value).expanduser().resolve()
    return path if path.is_dir() else None


def cache_dir() -> Path:
    value = os.environ.get("SOFTENING_CACHE_DIR")
    if value:
        path = Path(value).expanduser()
    else:
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        path = Path(base).expanduser() / "softening_lib"
    path.mkdir(parents=True, exist_ok=True)
    return path


def results_dir() -> Path:
    value = os.environ.get("SOFTENING_RESULTS_DIR")
    if value:
        path = Path(value).expanduser()
    else:
        root = source_checkout()
        path = root / "data" / "results" if root is not None else cache_dir() / "results"
    path.mkdir(parents=True, exist_ok=True)
    return path


def reference_dir() -> Path:
    """DFT labels the project computed itself (GPAW), committed with provenance: the
    checkout's ``data/reference`` (an installed package has none: ``<cache dir>/reference``,
    which is empty unless the user puts references there)."""
    root = source_checkout()
    return root / "data" / "reference" if root is not None else cache_dir() / "reference"


def online() -> bool:
    return os.environ.get("SOFTENING_ONLINE", "0") == "1"
