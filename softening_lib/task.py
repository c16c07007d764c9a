"""The task contract: what every ``softening_lib/tasks/<name>.py`` speaks (see CONTRIBUTING.md).

>>> from softening_lib import task
>>> task.compute_chapter("07", "sevennet-0", preset="default")   # progress bar, then one line
07 high_energy  sevennet-0  default: 60 cases: 57 ok (12 computed, 45 cached), 2 skipped (F: ...), 1 failed (see ...)

A task module has ``TASK``, ``cases(preset="default", **params)``, ``compute(model, cases, *,
calc=None, progress=None) -> list[dict]`` and ``reference(**params)``. ``compute`` returns one
record per case: a dict with ``case``, ``model``, ``status`` (one of :data:`STATUSES`),
``reason``, ``cached`` and the case's values. :func:`run_case` turns one case's exception into
such a record, so one bad case (an element the model does not cover, a calculator that raises)
never stops a chapter.

This is a core module: it never imports ``softening_lib.tasks`` statically; :func:`load_task`
finds a chapter's task module by name (``chapters/NN_name.md`` pairs with ``tasks/name.py``,
``chapters/appendix_gpaw_validation.md`` with ``tasks/gpaw_validation.py``).
"""

from __future__ import annotations

import importlib
import json
import math
import pkgutil
import re
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from . import config

STATUSES = ("ok", "skipped", "failed")
VERBS = ("TASK", "cases", "compute", "reference")

_SYMBOLS: set[str] | None = None
_ELEMENT_WORDS = re.compile(
    r"element|species|symbol|atomic number|potential for|parameters for|not supported|unsupported|"
    r"not covered|does not cover|no .*(model|potential|parameter)|unknown atom", re.I)
_NAMES = {"F": "fluorine", "O": "oxygen", "H": "hydrogen", "Li": "lithium", "Na": "sodium", "Cl": "chlorine"}


def _symbols() -> set[str]:
    global _SYMBOLS
    if _SYMBOLS is None:
        from ase.data import chemical_symbols

        _SYMBOLS = set(chemical_symbols[1:])
    return _SYMBOLS


# --------------------------------------------------------------------------------------
# records
# --------------------------------------------------------------------------------------

def record(case: str, model: str, status: str = "ok", reason: str = "", *, cached: bool = False,
           **values: Any) -> dict:
    """One case's record: ``case``, ``model``, ``status``, ``reason``, ``cached`` and the values."""
    if status not in STATUSES:
        raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
    return {"case": str(case), "model": str(model), "status": status, "reason": str(reason or ""),
            "cached": bool(cached), **values}


def element_reason(exc: BaseException, elements: Iterable[str] | None = None) -> str | None:
    """Why ``exc`` means "this model does not cover an element of the case", or None.

    An :class:`~softening_lib.models.UnsupportedElementError` always does. Any other error does
    when its message names a chemical element in words that say so ("No EMT-potential for F",
    "element Xe not supported", a ``KeyError('F')``) and, if ``elements`` (the case's symbols)
    is given, that element is one of them. The reason starts with the symbol(s): ``"F: ..."``.
    """
    from . import models

    text = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    wanted = set(elements) if elements is not None else None
    found = [w for w in re.findall(r"\b([A-Z][a-z]?)\b", text) if w in _symbols()
             and (wanted is None or w in wanted)]
    if re.search(r"\bNo\s+[A-Za-z]", text):  # the English word ("No EMT-potential for F"), not nobelium
        found = [w for w in found if w != "No"]
    found = list(dict.fromkeys(found))
    if isinstance(exc, models.UnsupportedElementError):
        m = re.search(r"element\(s\) ([A-Z][a-z]?(?:, [A-Z][a-z]?)*)", text)
        syms = m.group(1).split(", ") if m else found
        return f"{', '.join(syms)}: {text}" if syms else text
    if not found:
        return None
    if isinstance(exc, KeyError) and text.strip("'\"") in found:
        return f"{found[0]}: model has no {_NAMES.get(found[0], found[0])} ({type(exc).__name__} {text!r})"
    if _ELEMENT_WORDS.search(text) and isinstance(exc, (NotImplementedError, ValueError, KeyError, RuntimeError,
                                                         IndexError, TypeError)):
        return f"{', '.join(found)}: {text}"
    return None


def _non_finite(values: dict, keys: Iterable[str] | None = None) -> str | None:
    wanted = None if keys is None else set(keys)
    for key, value in values.items():
        if key in ("case", "model", "status", "reason", "cached") or (wanted is not None and key not in wanted):
            continue
        if isinstance(value, bool) or value is None:
            continue
        if isinstance(value, (int, float, np.integer, np.floating)):
            if not math.isfinite(float(value)):
                return key
        elif isinstance(value, np.ndarray) and value.dtype.kind in "fc":
            if not np.all(np.isfinite(value)):
                return key
    return None


def run_case(fn: Callable[..., Any], case_id: str, model: str, *args: Any,
             elements: Iterable[str] | None = None, cached: bool = False,
             finite: Iterable[str] | None = None, **kwargs: Any) -> dict:
    """``fn(*args, **kwargs)`` for one case, as a record; never raises for the case's own errors.

    ``fn`` returns a dict of values (a ``status``/``reason`` in it is kept: a task may know
    itself that a case is skipped) or one value (stored as ``value``). An element the model
    does not cover (:func:`element_reason`) gives ``"skipped"`` with the reason; any other
    exception, or a non-finite number among the values (among ``finite``, the keys that are
    the case's result, when given), gives ``"failed"`` with the error text. ``run_case`` caches nothing: the task caches what is ``ok`` before returning it.
    ``KeyboardInterrupt`` / ``SystemExit`` propagate.
    """
    t0 = time.perf_counter()
    try:
        out = fn(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - one case's error becomes its record
        why = element_reason(exc, elements)
        if why is not None:
            return record(case_id, model, "skipped", why)
        return record(case_id, model, "failed", f"{type(exc).__name__}: {exc}",
                      seconds=round(time.perf_counter() - t0, 2))
    values = dict(out) if isinstance(out, dict) else {"value": out}
    status = values.pop("status", "ok")
    reason = values.pop("reason", "")
    values.pop("case", None)
    values.pop("model", None)
    was_cached = bool(values.pop("cached", cached))
    if status not in STATUSES:  # a task's own status word ("no_dft_forces", "missing", ...)
        reason = f"{status}: {reason}" if reason else str(status)
        status = "skipped"
    if status == "ok":
        bad = _non_finite(values, finite)
        if bad is not None:
            return record(case_id, model, "failed", f"non-finite value in {bad!r}", **values)
    return record(case_id, model, status, reason, cached=was_cached, **values)


def progress_iter(items: Sequence, progress: Any = None, desc: str = "") -> Iterable:
    """Iterate ``items`` with a progress display: ``progress`` None/False (none), True (a new
    tqdm bar) or a tqdm-like object (``.update(1)`` after each item: :func:`compute_chapter`'s bar)."""
    if progress is None or progress is False:
        yield from items
        return
    if progress is True:
        from tqdm.auto import tqdm

        yield from tqdm(items, desc=desc)
        return
    for item in items:
        yield item
        progress.update(1)


def advance(progress: Any, n: int = 1) -> None:
    """Move a tqdm-like ``progress`` by ``n`` (no-op for None/bool): for tasks that work in batches."""
    if progress is not None and not isinstance(progress, bool) and n:
        progress.update(n)


def records_table(records: Sequence[dict]):
    import pandas as pd

    return pd.DataFrame(list(records))


def skipped_table(records: Sequence[dict]):
    """The cases that did not give numbers (skipped or failed), one row each, for a page.

    Columns: model, case, status, reason. Empty (with those columns) when everything ran.
    """
    import pandas as pd

    rows = [{"model": r.get("model", ""), "case": r.get("case", ""), "status": r.get("status", ""),
             "reason": r.get("reason", "")} for r in records if r.get("status") != "ok"]
    return pd.DataFrame(rows, columns=["model", "case", "status", "reason"])


def skipped_summary(records: Sequence[dict], examples: int = 3):
    """:func:`skipped_table` grouped: one row per (model, status, reason) with the number of
    cases and the first few of them -- what a page shows when many cases share a reason."""
    import pandas as pd

    table = skipped_table(records)
    if not len(table):
        return table.assign(n_cases=[], cases=[])[["model", "status", "reason", "n_cases", "cases"]]
    rows = []
    for (model, status, reason), group in table.groupby(["model", "status", "reason"], sort=False):
        cases = list(group["case"])
        shown = ", ".join(cases[:examples]) + (f", ... (+{len(cases) - examples})" if len(cases) > examples else "")
        rows.append({"model": model, "status": status, "reason": reason, "n_cases": len(cases), "cases": shown})
    return pd.DataFrame(rows)


def show_skipped(records: Sequence[dict], max_rows: int = 20) -> None:
    """Display the cases without numbers in a notebook (or say that every case ran): one row
    each, or grouped by model and reason (:func:`skipped_summary`) when there are more than
    ``max_rows``."""
    from IPython.display import display

    table = skipped_table(records)
    if len(table):
        print(f"{len(table)} case(s) without numbers (skipped: not computable for the model; failed: error):")
        display(table if len(table) <= max_rows else skipped_summary(records))
    else:
        print("every case ran for every model")


# --------------------------------------------------------------------------------------
# chapters and task modules
# --------------------------------------------------------------------------------------

def task_names() -> list[str]:
    """The task modules under ``softening_lib/tasks`` (found on disk, not imported)."""
    path = Path(__file__).resolve().parent / "tasks"
    return sorted(m.name for m in pkgutil.iter_modules([str(path)]) if not m.name.startswith("_"))


def chapter_files() -> list[Path]:
    root = config.REPO_ROOT / "chapters"
    files = sorted(root.glob("*.md")) or sorted(root.glob("*.ipynb"))
    return [f for f in files if not f.name.startswith(("_", "."))]


def _stem_task(stem: str, names: Sequence[str]) -> str | None:
    name = re.sub(r"^\d+_", "", stem)
    name = re.sub(r"^appendix_", "", name)
    if name in names:
        return name
    # a chapter named more fully than its task (07_high_energy_states -> high_energy): longest match
    hits = [n for n in names if re.search(rf"(^|_){re.escape(n)}(_|$)", name)]
    return max(hits, key=len) if hits else None


def resolve(chapter_or_name: str | int) -> tuple[str, str]:
    """``(chapter label, task name)`` for a chapter number ("07", 7), chapter file stem, or task name."""
    names = task_names()
    key = str(chapter_or_name).strip()
    if key.isdigit():
        key = f"{int(key):02d}"
    files = chapter_files()
    for f in files:
        stem = f.stem
        number = stem.split("_", 1)[0]
        task_name = _stem_task(stem, names)
        if key in (number, stem, f.name) or (task_name is not None and key == task_name):
            label = number if number.isdigit() else stem.split("_", 1)[0]
            if task_name is None:
                break
            return label, task_name
    if key in names:
        return key, key
    stem_task = _stem_task(key, names)
    if stem_task is not None:
        return key.split("_", 1)[0], stem_task
    raise KeyError(f"no task module for chapter {chapter_or_name!r}; chapters: "
                   f"{', '.join(f.stem for f in files)}; tasks: {', '.join(names)}")


def load_task(chapter_or_name: str | int):
    """The task module of a chapter ("07", "07_high_energy", "appendix_gpaw_validation") or of
    a task name ("high_energy"), imported by name."""
    _, name = resolve(chapter_or_name)
    return importlib.import_module(f"softening_lib.tasks.{name}")


def check_module(module) -> list[str]:
    """What ``module`` lacks of the contract (empty when it speaks every verb)."""
    import inspect

    problems = [f"no {verb}" for verb in VERBS if not hasattr(module, verb)]
    if hasattr(module, "compute"):
        sig = inspect.signature(module.compute)
        params = list(sig.parameters.values())
        if [p.name for p in params[:2]] != ["model", "cases"]:
            problems.append(f"compute{sig}: first arguments must be (model, cases)")
        for kw in ("calc", "progress"):
            if kw not in sig.parameters or sig.parameters[kw].kind is not inspect.Parameter.KEYWORD_ONLY:
                problems.append(f"compute{sig}: keyword-only {kw!r} missing")
    if hasattr(module, "cases"):
        sig = inspect.signature(module.cases)
        first = next(iter(sig.parameters.values()), None)
        if first is None or first.name != "preset" or first.default != "default":
            problems.append(f"cases{sig}: first argument must be preset='default'")
    return problems


# --------------------------------------------------------------------------------------
# one chapter, one model
# --------------------------------------------------------------------------------------

def summarise(records: Sequence[dict]) -> dict:
    statuses = Counter(r.get("status") for r in records)
    ok = [r for r in records if r.get("status") == "ok"]
    return {"n_cases": len(records), "ok": statuses.get("ok", 0), "skipped": statuses.get("skipped", 0),
            "failed": statuses.get("failed", 0), "cached": sum(bool(r.get("cached")) for r in ok),
            "computed": sum(not r.get("cached") for r in ok)}


def _short(reason: str, n: int = 60) -> str:
    reason = " ".join(str(reason).split())
    return reason if len(reason) <= n else reason[: n - 3] + "..."


def summary_line(label: str, task_name: str, model: str, preset: str, records: Sequence[dict],
                 failed_log: str | Path | None = None) -> str:
    """``07 high_energy  sevennet-0  default: 60 cases: 57 ok (12 computed, 45 cached), 2 skipped (F: ...), 1 failed (see ...)``"""
    s = summarise(records)
    line = (f"{label} {task_name}  {model}  {preset}: {s['n_cases']} cases: {s['ok']} ok "
            f"({s['computed']} computed, {s['cached']} cached)")
    if s["skipped"]:
        reasons = Counter(_short(r.get("reason", "")) for r in records if r.get("status") == "skipped")
        top = "; ".join(f"{k}" + (f" x{v}" if v > 1 and len(reasons) > 1 else "") for k, v in reasons.most_common(2))
        more = f"; +{len(reasons) - 2} other reasons" if len(reasons) > 2 else ""
        line += f", {s['skipped']} skipped ({top}{more})"
    if s["failed"]:
        line += f", {s['failed']} failed (see {failed_log})" if failed_log else f", {s['failed']} failed"
    return line


def failure_log_path(label: str, task_name: str, model: str, preset: str) -> Path:
    from .cache import _safe

    return config.REPO_ROOT / "_build" / "compute" / _safe(f"{label}_{task_name}__{model}__{preset}.json")


def compute_chapter(chapter: str | int, model: str, preset: str = "default", progress: bool = True,
                    calc=None, **params: Any) -> dict:
    """Compute what is missing of ``chapter`` for ``model`` on ``preset``; one summary line.

    Calls the chapter's task ``cases(preset, **params)`` then ``compute(model, cases,
    progress=bar)``. Prints and returns the summary: ``{"line", "chapter", "task", "model",
    "preset", "n_cases", "ok", "computed", "cached", "skipped", "failed", "records",
    "failed_log", "seconds"}``. Failed cases (never cached) are written with their errors to
    ``_build/compute/<chapter>_<task>__<model>__<preset>.json``. Unknown presets and models
    raise (a wrong command, not a bad case); a case's own error never does.
    """
    from . import models as registry

    if preset not in ("smoke", "default", "full"):
        raise ValueError(f"preset must be one of smoke, default, full; got {preset!r}")
    label, name = resolve(chapter)
    module = importlib.import_module(f"softening_lib.tasks.{name}")
    if calc is None:
        registry.check_available(model)
    t0 = time.perf_counter()
    cases = module.cases(preset, **params)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(cases), desc=f"{label} {name} {model}", unit="case")
    try:
        records = module.compute(model, cases, calc=calc, progress=bar)
    finally:
        if bar is not None:
            bar.close()
    failed = [r for r in records if r.get("status") == "failed"]
    log_path = None
    if failed:
        from .cache import atomic_write_text

        log_path = failure_log_path(label, name, model, preset)
        atomic_write_text(log_path, json.dumps(
            [{k: r.get(k) for k in ("case", "model", "status", "reason")} for r in failed], indent=1))
        try:
            shown = log_path.relative_to(config.REPO_ROOT)
        except ValueError:
            shown = log_path
    line = summary_line(label, name, model, preset, records, shown if failed else None)
    print(line, flush=True)
    return {"line": line, "chapter": label, "task": name, "model": model, "preset": preset,
            **summarise(records), "records": records, "failed_log": str(log_path) if log_path else None,
            "seconds": round(time.perf_counter() - t0, 1)}
