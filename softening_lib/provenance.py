"""What a chapter really used when it ran: the ``softening_lib`` modules it imported and the
data files and folders it read.

The book runner keys a chapter on these (not on a guess from source text): a chapter is
executed again when one of the modules it imported, or one of the files it read, changed --
and not when any other module or file did. :func:`start` installs a Python audit hook
(:pep:`578`) that notes every file opened for reading and every folder listed under the
watched roots (the repository's ``data/``, the result store, the data mirror);
:func:`snapshot` returns what was used so far.

Files opened from C code that bypasses Python's ``open`` (HDF5 through h5py, for one) are
not seen; the mirror's datasets are read through Python here.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from . import config

_state: dict = {"on": False, "roots": (), "files": set(), "dirs": set()}
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


def watched_roots() -> tuple[str, ...]:
    """Absolute folders whose reads count: data/ of the repo, the result store, the mirror."""
    roots = [config.REPO_ROOT / "data", config.results_dir()]
    mirror = config.data_dir()
    if mirror is not None:
        roots.append(mirror)
    return tuple(sorted({str(Path(r).resolve()) + os.sep for r in roots}))


def _under(path: str) -> str | None:
    full = os.path.abspath(path)
    probe = full + os.sep
    return full if any(probe.startswith(root) for root in _state["roots"]) else None


def _hook(event: str, args: tuple) -> None:
    if not _state["on"]:
        return
    try:
        if event == "open":
            path, mode, flags = args
            if not isinstance(path, (str, os.PathLike)):
                return  # a file descriptor
            if mode is not None:
                if any(c in mode for c in "wax+"):
                    return
            elif flags is not None and flags & _WRITE_FLAGS:
                return
            full = _under(os.fspath(path))
            if full is not None:
                _state["files"].add(full)
        elif event in ("os.listdir", "os.scandir"):
            path = args[0] if args and args[0] is not None else "."
            if isinstance(path, (str, os.PathLike)):
                full = _under(os.fspath(path))
                if full is not None:
                    _state["dirs"].add(full)
    except Exception:  # an audit hook must never break the code it watches
        pass


def start() -> None:
    """Start noting reads (idempotent; the hook stays installed for the process)."""
    if not _state.get("installed"):
        sys.addaudithook(_hook)
        _state["installed"] = True
    _state["roots"] = watched_roots()
    _state["on"] = True


def modules() -> list[str]:
    """Source files of the ``softening_lib`` modules imported in this process."""
    out = set()
    for name, mod in list(sys.modules.items()):
        if name == "softening_lib" or name.startswith("softening_lib."):
            path = getattr(mod, "__file__", None)
            if path and path.endswith(".py"):
                out.add(str(Path(path).resolve()))
    return sorted(out)


def snapshot() -> dict[str, list[str]]:
    """{"modules": [...], "files": [...], "dirs": [...]}: absolute paths used so far."""
    return {"modules": modules(), "files": sorted(_state["files"]), "dirs": sorted(_state["dirs"])}
