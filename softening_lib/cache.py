"""A results store: one record per (task, model id, key), written atomically, resumable.

Records live under ``$SOFTENING_RESULTS_DIR/<task>/<model>/<key>.json`` (default
``data/results``), small enough to commit, so the book renders from cached results and a
killed run resumes where it stopped. Arrays go through :func:`save_arrays` /
:func:`load_arrays` (``.npz``), also atomic.

Fault handling:

* every write goes to a temporary file unique to the process (``tempfile.mkstemp``) in the
  target's folder and is moved into place with ``os.replace``;
* a torn or otherwise unreadable file is never fatal and never silently reused: it is set
  aside as ``<name>.corrupt-<time>`` (:func:`set_aside`) and the caller recomputes;
* a name that becomes a path (task, model, dataset, cache tag) goes through
  :func:`safe_name` (``..``, ``/``, empty names are refused) and every final path is checked
  to stay under its root (:func:`under_root`);
* read-modify-write of a shared file happens under :func:`file_lock` (``fcntl.flock`` on a
  ``.lock`` file beside it).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from . import config


log = logging.getLogger(__name__)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._@+-]+", "_", name)


def safe_name(name: Any, what: str = "name", *, allow_slash: bool = False) -> str:
    """``name`` as one path component, or :class:`ValueError` naming the input (``what``).

    Refused: a non-string, an empty name, ``.`` / ``..``, a NUL byte, and (unless
    ``allow_slash``, where ``/`` is folded to ``_`` as before) ``/`` or ``\\``. Other
    characters outside ``[A-Za-z0-9._@+-]`` become ``_`` (as the store always did, so
    existing cache paths do not change)."""
    if not isinstance(name, str):
        raise ValueError(f"{what} must be a string, got {type(name).__name__} {name!r}")
    if not name.strip():
        raise ValueError(f"{what} is empty; give a non-empty {what}")
    if "\x00" in name:
        raise ValueError(f"{what} {name!r} contains a NUL byte; choose another {what}")
    if not allow_slash and ("/" in name or "\\" in name):
        raise ValueError(f"{what} {name!r} contains a path separator ('/' or '\\'); a {what} becomes one "
                         f"folder or file name under the results folder: choose a {what} without one")
    safe = _safe(name)
    if safe in (".", "..") or set(safe) == {"."}:
        raise ValueError(f"{what} {name!r} would name a folder outside its own ('.' or '..'); choose another {what}")
    return safe


def under_root(path: Path, root: Path, what: str = "path") -> Path:
    """``path`` if it resolves to a location under ``root``; otherwise :class:`ValueError`."""
    rp, rr = Path(path).resolve(), Path(root).resolve()
    if rp != rr and rr not in rp.parents:
        raise ValueError(f"{what} {path} resolves to {rp}, outside {rr}; refusing to write there")
    return Path(path)


def set_aside(path: Path, why: str = "unreadable") -> Path | None:
    """Rename a torn/unreadable file to ``<name>.corrupt-<time>`` so it is kept for a look
    but never read again; returns the new path (``None`` if it vanished meanwhile)."""
    path = Path(path)
    stamp = time.strftime("%Y%m%dT%H%M%S") + f"-{os.getpid()}-{time.monotonic_ns() % 10**6}"
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    try:
        os.replace(path, target)
    except FileNotFoundError:
        return None
    log.warning("%s is %s; set aside as %s (it will be recomputed)", path, why, target.name)
    return target


@contextlib.contextmanager
def file_lock(path: Path, shared: bool = False):
    """Hold an ``fcntl.flock`` on ``<path>.lock`` (exclusive unless ``shared``) for a
    read-modify-write of ``path``. The lock dies with its process (no stale locks)."""
    import fcntl

    lock = Path(str(path) + ".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        try:
            yield lock
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def read_json(path: Path, default: Any = None) -> Any:
    """A JSON file's content; ``default`` if it is missing; a torn file is set aside
    (:func:`set_aside`) and ``default`` returned."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        return default
    try:
        return json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError):
        set_aside(path, "not valid JSON (torn write?)")
        return default


@contextlib.contextmanager
def locked_json(path: Path, default: Any = None):
    """Read-modify-write a shared JSON file under :func:`file_lock`::

        with cache.locked_json(index, {}) as data:
            data["x"] = 1            # written back atomically on exit (not on an exception)
    """
    path = Path(path)
    with file_lock(path):
        data = read_json(path, default)
        yield data
        atomic_write_text(path, json.dumps(data, indent=1, sort_keys=True, default=_jsonable) + "\n")


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
        self.root = Path(root) if root is not None else config.results_dir() / safe_name(task, "task")

    def path(self, model: str, key: str) -> Path:
        path = self.root / safe_name(model, "model") / f"{safe_name(key, 'cache key', allow_slash=True)}.json"
        return under_root(path, self.root, "result path")

    def has(self, model: str, key: str) -> bool:
        return self.path(model, key).is_file()

    def get(self, model: str, key: str) -> dict | None:
        path = self.path(model, key)
        if not path.is_file():
            return None
        return read_json(path, None)  # a torn file is set aside: recompute

    def put(self, model: str, key: str, record: dict) -> Path:
        path = self.path(model, key)
        atomic_write_text(path, json.dumps(record, default=_jsonable, indent=1, sort_keys=True))
        return path

    def records(self, model: str | None = None) -> list[dict]:
        pattern = f"{safe_name(model, 'model')}/*.json" if model else "*/*.json"
        out = []
        for path in sorted(self.root.glob(pattern)):
            rec = read_json(path, None)
            if rec is not None:
                out.append(rec)
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
    """The arrays of an ``.npz`` written by :func:`save_arrays`; ``None`` if it is missing.

    A torn or corrupt file (truncated, flipped bytes: ``BadZipFile``, ``EOFError``, CRC
    errors, ...) is set aside as ``<name>.corrupt-<time>`` and ``None`` returned, so the
    caller recomputes instead of failing on every rerun."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        with zipfile.ZipFile(path) as zf:  # CRC of every member: np.load alone may not see a flipped byte
            bad = zf.testzip()
        if bad is not None:
            raise zipfile.BadZipFile(f"member {bad} fails its CRC check")
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except FileNotFoundError:
        return None
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zipfile.LargeZipFile) as exc:
        set_aside(path, f"unreadable ({type(exc).__name__}: {exc})")
        return None
    except Exception as exc:  # zlib.error and friends from a flipped byte
        set_aside(path, f"unreadable ({type(exc).__name__}: {exc})")
        return None


def missing(store: ResultStore, model: str, keys: Iterable[str]) -> list[str]:
    return [k for k in keys if not store.has(model, k)]
