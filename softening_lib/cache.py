"""A results store: one record per (task, model id, key), written atomically, resumable.

Records live under ``$SOFTENING_RESULTS_DIR/<task>/<model>/<key>.json`` (default
``data/results``), small enough to commit, so the book renders from cached results and a
killed run resumes where it stopped. Arrays go through :func:`save_arrays` /
:func:`load_arrays` (``.npz``), also atomic.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from . import config


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._@+-]+", "_", name)


def key_of(*parts: Any) -> str:
    """A short stable hash of anything JSON-serialisable (parameters, ids, versions)."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _file_mode() -> int:
    """The mode ``open()`` gives a new file (0o666 less the umask; 0o644 under umask 022).

    ``tempfile.mkstemp`` creates 0o600, which would leave results readable by their owner only.
    """
    try:  # Linux: read the umask without changing it (os.umask is process-wide, not thread-safe)
        with open("/proc/self/status") as fh:
            umask = next(int(line.split()[1], 8) for line in fh if line.startswith("Umask:"))
    except (OSError, StopIteration, ValueError, IndexError):
        umask = os.umask(0o022)
        os.umask(umask)
    return 0o666 & ~umask


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, _file_mode())
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(Path(path), text.encode())


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


class ResultStore:
    """``store = ResultStore("phonons"); store.put(model, key, record); store.get(model, key)``."""

    def __init__(self, task: str, root: Path | None = None):
        self.task = task
        self.root = Path(root) if root is not None else config.results_dir() / _safe(task)

    def path(self, model: str, key: str) -> Path:
        return self.root / _safe(model) / f"{_safe(key)}.json"

    def has(self, model: str, key: str) -> bool:
        return self.path(model, key).is_file()

    def get(self, model: str, key: str) -> dict | None:
        path = self.path(model, key)
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError:
            return None  # a torn file from an older, non-atomic writer: recompute

    def put(self, model: str, key: str, record: dict) -> Path:
        path = self.path(model, key)
        atomic_write_text(path, json.dumps(record, default=_jsonable, indent=1, sort_keys=True))
        return path

    def records(self, model: str | None = None) -> list[dict]:
        pattern = f"{_safe(model)}/*.json" if model else "*/*.json"
        out = []
        for path in sorted(self.root.glob(pattern)):
            try:
                out.append(json.loads(path.read_text()))
            except json.JSONDecodeError:
                continue
        return out

    def models(self) -> list[str]:
        return sorted(p.name for p in self.root.iterdir() if p.is_dir()) if self.root.is_dir() else []


def save_arrays(path: Path, **arrays: np.ndarray) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".npz")
    try:
        try:
            os.fchmod(fd, _file_mode())
        finally:
            os.close(fd)
        np.savez_compressed(tmp, **arrays)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load_arrays(path: Path) -> dict[str, np.ndarray] | None:
    path = Path(path)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (OSError, ValueError):
        return None


def missing(store: ResultStore, model: str, keys: Iterable[str]) -> list[str]:
    return [k for k in keys if not store.has(model, k)]
