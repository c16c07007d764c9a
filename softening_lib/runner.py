"""Execute chapters with papermill and build the book with Jupyter Book 1.x.

Source notebooks in ``chapters/`` stay output-free. ``run`` executes each chapter (for a
preset and a list of models) into a staged book under ``_build/src`` and skips a chapter
whose inputs did not change: the key covers the notebook, its parameters, the library
modules it imports (:func:`code_closure`), the committed reference data those modules read
(:func:`data_inputs`: the ``data/reference`` folders they declare, ``data/datasets.yml``) and
the software versions; an executed chapter's log line says which of them changed. ``build`` then renders the staged book (``execute_notebooks: off``), treating
Sphinx warnings as errors; pages, static files and the what-ran page are rewritten only when
their content changed, so a warm rebuild is Sphinx's "0 changed". MathJax and plotly.js are
served from the book's own _static (no CDN).

A run with models other than a chapter's defaults (``--model mypkg.calc:make``) is written
as a page of its own (``NN_name__<model>.ipynb``) listed under the chapter, never over the
default page.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import yaml

from . import config
from .cache import atomic_write_text

ROOT = config.REPO_ROOT
# where the staged book, executed pages, reports and HTML go; SOFTENING_BUILD_DIR moves it (the
# tests build there, so running them never replaces the pages of a developer's own build)
BUILD = Path(os.environ["SOFTENING_BUILD_DIR"]).resolve() if os.environ.get("SOFTENING_BUILD_DIR") else ROOT / "_build"
STAGE = BUILD / "src"
REPORTS = BUILD / "reports"
STATIC_DIR = "_book_static"  # served as _static in the HTML (see stage_static)
STATIC_PAGES = ("intro.md", "pitfalls.md", "laptop.md", "teacher.md", "references.bib", "logo.png")


class RunnerError(RuntimeError):
    pass


@dataclass
class ChapterRun:
    chapter: str
    source: Path
    output: Path
    parameters: dict
    key: str
    inputs: dict = field(default_factory=dict)  # what the key is made of (to say what changed)
    status: str = "pending"  # executed | cached | failed
    seconds: float = 0.0
    error: str = ""
    user_params: dict = field(default_factory=dict)  # what the user gave (-m, -p): names the page


def chapters() -> list[Path]:
    """The chapter sources: MyST Markdown notebooks ``chapters/NN_name.md`` and ``appendix_*.md``."""
    return sorted((ROOT / "chapters").glob("[0-9][0-9]_*.md")) + sorted(
        (ROOT / "chapters").glob("appendix_*.md"))


def find_chapter(spec: str) -> Path:
    """'05', '5', '05_ion_migration', 'ion_migration', 'appendix' or a path -> the chapter source.

    A number must be a chapter's number (``0`` is no chapter); a name must match one chapter."""
    spec = str(spec).strip()
    path = Path(spec)
    if path.suffix in (".md", ".ipynb") and path.is_file():
        return path.resolve()
    found = chapters()
    names = ", ".join(p.stem for p in found)
    if spec.isdigit():
        hits = [p for p in found if p.stem.split("_")[0] == spec.zfill(2)]
    else:
        hits = [p for p in found if p.stem == spec] or [
            p for p in found if p.stem.startswith(spec) or p.stem.partition("_")[2].startswith(spec)]
    if len(hits) == 1 and spec:
        return hits[0]
    if len(hits) > 1:
        raise RunnerError(f"chapter {spec!r} is ambiguous: {', '.join(p.stem for p in hits)}")
    raise RunnerError(f"no chapter {spec!r}; chapters: {names}")


def to_notebook(source: Path, out_dir: Path | None = None) -> Path:
    """The notebook papermill executes for a chapter source: a ``.md`` (MyST, jupytext) is
    converted into ``_build/nb/<stem>.ipynb`` with stable cell ids, rewritten only when its
    content changed; an ``.ipynb`` is used as it is."""
    source = Path(source)
    if source.suffix == ".ipynb":
        return source
    import jupytext
    import nbformat

    nb = jupytext.read(source, fmt="md:myst")
    for i, cell in enumerate(nb.cells):  # stable ids: an unchanged chapter converts to the same bytes
        cell["id"] = hashlib.sha1(f"{i}:{cell.cell_type}:{cell.source}".encode()).hexdigest()[:8]
    nb.metadata.pop("jupytext", None)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    out = (BUILD / "nb" if out_dir is None else Path(out_dir)) / f"{source.stem}.ipynb"
    _write_if_changed(out, nbformat.writes(nb) + "\n")
    return out


def _digest(path: Path) -> str:
    """sha256 of a file in the repository; size and mtime of one outside it (the data mirror,
    read-only and large); ``missing`` when gone."""
    try:
        st = path.stat()
    except OSError:
        return "missing"
    if not path.is_file():
        return "not a file"
    if not path.resolve().is_relative_to(ROOT) or st.st_size > 5e7:
        return f"size {st.st_size} mtime {st.st_mtime_ns}"
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _dir_digest(path: Path) -> str:
    """What a listing of the folder saw: its entries' names (a new campaign record counts)."""
    try:
        names = sorted(os.listdir(path))
    except OSError:
        return "missing"
    return hashlib.sha256("\n".join(names).encode()).hexdigest()


def _rel(path: str | Path) -> str:
    path = Path(path)
    return path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else str(path)


def _abs(rel: str) -> Path:
    path = Path(rel)
    return path if path.is_absolute() else ROOT / path


def used_digests(used: dict) -> dict[str, dict[str, str]]:
    """Digests of what a run used (its record's ``used``: modules, files, dirs) as they are now."""
    return {"code": {_rel(f): _digest(_abs(_rel(f))) for f in used.get("modules", [])},
            "data": {_rel(f): _digest(_abs(_rel(f))) for f in used.get("files", [])},
            "dirs": {_rel(d): _dir_digest(_abs(_rel(d))) for d in used.get("dirs", [])}}


def _key_of(inputs: dict) -> str:
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()[:20]


def _versions() -> dict[str, str]:
    from .book import software_versions

    return software_versions()


def notebook_parameters(path: Path) -> dict[str, Any]:
    """Default parameters of a chapter (papermill's inference of its parameters cell)."""
    import papermill as pm

    return {name: info["default"] for name, info in pm.inspect_notebook(str(to_notebook(path))).items()}


def check_parameter_types(path: Path, parameters: dict[str, Any]) -> None:
    """Refuse a parameter unknown to the chapter or of another type than its default."""
    import ast

    defaults = notebook_parameters(path)
    for name, value in parameters.items():
        if name not in defaults:
            raise RunnerError(f"{Path(path).stem} has no parameter {name!r}; it takes: {', '.join(defaults)}")
        try:
            default = ast.literal_eval(defaults[name])
        except (ValueError, SyntaxError):
            continue
        if default is None or value is None:
            continue
        ok = isinstance(value, type(default)) or (
            isinstance(default, (int, float)) and isinstance(value, (int, float)) and not isinstance(value, bool))
        if isinstance(default, (list, tuple)) and isinstance(value, (list, tuple)):
            ok = True
        if not ok:
            raise RunnerError(
                f"{Path(path).stem}: parameter {name!r} must be {type(default).__name__} "
                f"(default {defaults[name]}), got {type(value).__name__} {value!r}"
            )


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()[:48]


def page_for(stem: str, user_params: dict) -> str:
    """The page a run renders. The chapter's own page for its defaults; for other models or
    parameters a page of its own, ``NN_name__<readable>-<hash>``: the hash keeps two inputs
    that read alike (``chgnet_0.3.0`` / ``chgnet-0.3.0``) on two pages."""
    if not user_params:
        return stem
    readable = _slug("-".join(user_params["models"])) if "models" in user_params else ""
    rest = {k: v for k, v in user_params.items() if k != "models"}
    if rest:
        readable = "-".join(filter(None, [readable, _slug("-".join(f"{k}-{v}" for k, v in sorted(rest.items())))]))
    digest = hashlib.sha256(json.dumps(user_params, sort_keys=True, default=str).encode()).hexdigest()[:6]
    return f"{stem}__{readable[:48].strip('-')}-{digest}" if readable else f"{stem}__{digest}"


def _model_ids(names: Sequence[str]) -> dict[str, str]:
    """The cache id of each model: a user's factory is keyed by a hash of its module's source,
    so editing the factory re-executes its pages (its results get a new id, hence recomputed)."""
    from . import models as registry

    out = {}
    for name in names:
        try:
            out[name] = registry.model_id(name)
        except registry.ModelError as exc:  # the chapter lists it as not run, with the reason
            out[name] = f"unknown: {exc}"
    return out


def _expand_models(names: Sequence[str]) -> list[str]:
    from .book import expand_models

    return expand_models(names)


def plan(chapter_specs: Sequence[str] | None = None, models: Sequence[str] | None = None,
         preset: str = "default", extra: dict | None = None) -> list[ChapterRun]:
    """One run per chapter. The chapter's parameters are checked here (before any kernel);
    models given as registry tags are expanded, so the page shows what ran. The key covers
    the chapter's text, its parameters, the software versions, and what its last execution
    of this page really used (modules imported, data files and folders read; see
    :mod:`softening_lib.provenance`) as those files are now."""
    paths = [find_chapter(c) for c in chapter_specs] if chapter_specs else chapters()
    versions = _versions()
    last = _load_json(_inputs_path())
    runs = []
    for src in paths:
        user: dict[str, Any] = dict(extra or {})
        if models:
            user["models"] = list(models)
        if "preset" in user:
            raise RunnerError("give the preset with --preset, not -p preset=...")
        check_parameter_types(src, {**user, "preset": preset})
        params: dict[str, Any] = {"preset": preset, **user}
        defaults = notebook_parameters(src)
        if "models" in defaults:
            import ast

            given = params.get("models", ast.literal_eval(defaults["models"]))
            params["models"] = _expand_models(given)
        page = page_for(src.stem, user)
        rel = f"chapters/{page}.ipynb"
        inputs = {"notebook": hashlib.sha256(src.read_bytes()).hexdigest(), "parameters": params,
                  "versions": versions, "model_ids": _model_ids(params.get("models") or [])}
        if rel in last:  # what its last execution used, as it is now
            inputs.update(used_digests(last[rel].get("used") or {}))
        runs.append(ChapterRun(src.stem, src, STAGE / "chapters" / f"{page}.ipynb", params, _key_of(inputs),
                               inputs, user_params=user))
    return runs


def what_changed(old: dict | None, new: dict) -> str:
    """Which inputs of a chapter differ from its last execution, in a few words."""
    if not old:
        return "not executed before"
    out = []
    for part in ("notebook", "parameters", "model_ids", "versions"):
        if json.dumps(old.get(part), sort_keys=True, default=str) != json.dumps(new.get(part), sort_keys=True, default=str):
            out.append(part)
    for part in ("code", "data", "dirs"):
        a, b = old.get(part) or {}, new.get(part) or {}
        files = sorted(f for f in set(a) | set(b) if a.get(f) != b.get(f))
        if files:
            out.append(f"{part}: {', '.join(files[:3])}" + (f" (+{len(files) - 3} more)" if len(files) > 3 else ""))
    return "; ".join(out) or "output missing"


def _inputs_path() -> Path:
    return BUILD / "run_inputs.json"


def _keys_path() -> Path:
    return BUILD / "run_keys.json"


def _load_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def _load_keys() -> dict[str, str]:
    return _load_json(_keys_path())


@contextlib.contextmanager
def _lock(name: str, wait: bool = True, what: str = ""):
    """An exclusive lock file under ``_build/locks``. ``wait=False``: refuse at once, naming
    the process that holds it."""
    import fcntl

    folder = BUILD / "locks"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.lock"
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            raise RunnerError(f"{what or name} is being executed by {holder}; wait for it to finish "
                              "(or stop it) and run again") from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()} since {time.strftime('%H:%M:%S')}")
        fh.flush()
        try:
            yield
        finally:
            fh.seek(0)
            fh.truncate()
            fcntl.flock(fh, fcntl.LOCK_UN)


def _update_shared(page_rel: str, key: str | None, inputs: dict | None) -> None:
    """Record (or forget, with ``key=None``) one page in run_keys.json / run_inputs.json:
    read, change one entry, write atomically, under a lock (concurrent runs keep each other's)."""
    with _lock("run-index"):
        keys, last = _load_keys(), _load_json(_inputs_path())
        if key is None:
            keys.pop(page_rel, None)
        else:
            keys[page_rel], last[page_rel] = key, inputs
        atomic_write_text(_keys_path(), json.dumps(keys, indent=1, sort_keys=True))
        atomic_write_text(_inputs_path(), json.dumps(last, default=str, sort_keys=True))


def _record_of(page: str) -> dict:
    return _load_json(BUILD / "run" / "records" / f"{page}.json")


def render_key() -> str:
    """A digest of the rules that turn an executed notebook into a page (this module's _tidy and
    helpers, softening_lib.pages): when they change, cached pages are re-rendered from the
    executed notebook without executing the chapter again."""
    from . import pages

    return hashlib.sha256(Path(__file__).read_bytes() + Path(pages.__file__).read_bytes()).hexdigest()[:16]


def _raw_path(page: str) -> Path:
    return BUILD / "nb" / "executed" / f"{page}.ipynb"


def _set_render_key(path: Path) -> None:
    import nbformat

    nb = nbformat.read(path, as_version=4)
    nb.metadata.setdefault("softening", {})["render_key"] = render_key()
    nbformat.write(nb, path)


def _retidy_if_stale(run: ChapterRun) -> bool:
    """Re-render a cached page whose render rules changed, from its executed notebook."""
    import nbformat

    try:
        current = nbformat.read(run.output, as_version=4).metadata.get("softening", {}).get("render_key")
    except Exception:
        current = None
    raw = _raw_path(run.output.stem)
    if current == render_key() or not raw.is_file():
        return False
    tmp = raw.with_name(f"{run.output.stem}.{os.getpid()}.render.ipynb")
    shutil.copyfile(raw, tmp)
    try:
        _tidy(tmp, run.parameters, run.user_params.get("models"))
        _set_render_key(tmp)
        os.replace(tmp, run.output)
    finally:
        tmp.unlink(missing_ok=True)
    return True


def _clear_stale_outputs() -> None:
    """Executed notebooks left by runs that were killed (``<page>.<pid>.ipynb`` of a process
    that no longer exists)."""
    for path in (BUILD / "nb" / "executing").glob("*.*.ipynb"):
        try:
            pid = int(path.stem.rsplit(".", 1)[1])
            os.kill(pid, 0)
        except ProcessLookupError:
            path.unlink(missing_ok=True)
        except (ValueError, PermissionError, OSError):
            continue


def execute(runs: Sequence[ChapterRun], force: bool = False, kernel: str = "python3",
            log=print) -> list[ChapterRun]:
    """Execute each run whose key changed (or all with ``force``). A page is written only by a
    successful run: a failed one leaves the previous page in place and its executed notebook
    in ``_build/reports``. Two runs of one page at once: the second refuses, naming the first."""
    import papermill as pm

    (STAGE / "chapters").mkdir(parents=True, exist_ok=True)
    REPORTS.mkdir(parents=True, exist_ok=True)
    os.environ["SOFTENING_RUN_DIR"] = str(BUILD / "run")
    _clear_stale_outputs()
    keys = _load_keys()
    last_inputs = _load_json(_inputs_path())
    total = len(runs)
    for i, run in enumerate(runs, 1):
        rel = str(run.output.relative_to(STAGE))
        page = run.output.stem
        tag = f"[{i}/{total}]"
        if not force and keys.get(rel) == run.key and run.output.is_file():
            run.status = "cached"
            retidied = _retidy_if_stale(run)
            log(f"{tag} cached    {page}" + (" (page re-rendered: the page rules changed)" if retidied else ""))
            continue
        why = "forced" if force else what_changed(last_inputs.get(rel), run.inputs)
        shown = {k: v for k, v in run.parameters.items() if k != "models" or run.user_params.get("models")}
        log(f"{tag} executing {page} {shown or ''} (changed: {why})")
        t0 = time.time()
        tmp = BUILD / "nb" / "executing" / f"{page}.{os.getpid()}.ipynb"
        tmp.parent.mkdir(parents=True, exist_ok=True)
        os.environ["SOFTENING_RUN_PAGE"] = page  # the kernel files its record under it
        try:
            with _lock(f"page-{page}", wait=False, what=f"page {page}"):
                pm.execute_notebook(str(to_notebook(run.source)), str(tmp), parameters=run.parameters,
                                    kernel_name=kernel, cwd=str(ROOT / "chapters"), progress_bar=False,
                                    log_output=False, request_save_on_cell_execute=False,
                                    stdout_file=None, stderr_file=None,
                                    # the kernel's own log (TCP notice, the KeyboardInterrupt of a
                                    # normal shutdown) is not the reader's business: errors still raise
                                    extra_arguments=["--IPKernelApp.log_level=CRITICAL"])
                raw = _raw_path(page)
                raw.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(tmp, raw.with_suffix(f".{os.getpid()}.tmp"))
                os.replace(raw.with_suffix(f".{os.getpid()}.tmp"), raw)  # as executed, for re-rendering
                _tidy(tmp, run.parameters, run.user_params.get("models"))
                _set_render_key(tmp)
                os.replace(tmp, run.output)
                run.status = "executed"
                used = _record_of(page).get("used") or {}
                inputs = {**{k: v for k, v in run.inputs.items() if k not in ("code", "data", "dirs")},
                          **used_digests(used), "used": used}
                run.key = _key_of({k: v for k, v in inputs.items() if k != "used"})
                _update_shared(rel, run.key, inputs)
                log(f"{tag} executed  {page} in {time.time() - t0:.0f} s")
        except RunnerError as exc:
            run.status, run.error = "failed", str(exc)
            log(f"{tag} REFUSED   {page}: {exc}")
        except Exception as exc:  # papermill raises PapermillExecutionError with the cell
            run.status = "failed"
            run.error = str(exc)
            report = REPORTS / f"{page}.failed.ipynb"
            if tmp.is_file():
                os.replace(tmp, report)
            atomic_write_text(REPORTS / f"{page}.error.txt", str(exc))
            _update_shared(rel, None, None)  # the next build retries it
            kept = ("the previous page is kept in the book" if run.output.is_file()
                    else "no page for it in the book")
            last_line = str(exc).strip().splitlines()[-1] if str(exc).strip() else repr(exc)
            log(f"{tag} FAILED    {page}: {last_line}\n"
                f"           {kept}; executed notebook: {report}")
        finally:
            os.environ.pop("SOFTENING_RUN_PAGE", None)
            tmp.unlink(missing_ok=True)
        run.seconds = time.time() - t0
    return list(runs)


def summary(runs: Sequence[ChapterRun]) -> str:
    """A closing table: one line per page (status, seconds, report) and the counts."""
    lines = [f"{'page':<52} {'status':<9} {'s':>5}  report"]
    for r in runs:
        report = str(REPORTS / f"{r.output.stem}.failed.ipynb") if r.status == "failed" else ""
        lines.append(f"{r.output.stem[:52]:<52} {r.status:<9} {r.seconds:5.0f}  {report}")
    counts = {s: sum(r.status == s for r in runs) for s in ("executed", "cached", "failed")}
    lines.append(", ".join(f"{n} {s}" for s, n in counts.items()))
    return "\n".join(lines)


def _set_parameters_source(source: str, parameters: dict) -> str:
    """The parameters cell's text with the values of ``parameters`` written in (comments and
    other lines kept), so the page shows the parameters the run used."""
    import ast

    tree = ast.parse(source)
    lines = source.splitlines(keepends=True)
    edits = []
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name) \
                and node.targets[0].id in parameters:
            edits.append((node.value, repr(parameters[node.targets[0].id])))
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line))
    text = source
    for value, new in sorted(edits, key=lambda e: (e[0].lineno, e[0].col_offset), reverse=True):
        start = offsets[value.lineno - 1] + len(lines[value.lineno - 1].encode()[:value.col_offset].decode())
        end = offsets[value.end_lineno - 1] + len(lines[value.end_lineno - 1].encode()[:value.end_col_offset].decode())
        text = text[:start] + new + text[end:]
    return text


_GLUE_ROLE = re.compile(r"\{glue(?::[a-z]+)?\}`([^`]+)`")
_FENCE = re.compile(r"^\s*(`{3,}|~{3,}|:{3,})")
_LIST_ITEM = re.compile(r"^(\s*)([-*+]|\d+[.)])\s")


def glued_values(nb) -> dict[str, str]:
    """{glue key: its text/plain} of an executed notebook (myst-nb's glue outputs)."""
    out = {}
    for cell in nb.cells:
        for o in cell.get("outputs", []) if cell.cell_type == "code" else []:
            book = (o.get("metadata") or {}).get("scrapbook", {})
            name, prefix = book.get("name"), book.get("mime_prefix", "")
            data = o.get("data") or {}
            for key in (prefix + "text/plain", "text/plain"):  # glue(display=False) prefixes the mime type
                if name and key in data:
                    out[name] = data[key]
                    break
    return out


def _unbacked(text: str, glued: dict[str, str]) -> list[str]:
    """Glue keys a piece of prose names that this run did not glue, or glued as a non-finite number."""
    import ast
    import math

    bad = []
    for ref in _GLUE_ROLE.findall(text):
        key = ref.split(":")[0].strip()
        if "::" in ref:
            continue  # from another page
        if key not in glued:
            bad.append(key)
            continue
        try:
            value = ast.literal_eval(glued[key])
        except (ValueError, SyntaxError):
            value = glued[key]
        if (isinstance(value, float) and not math.isfinite(value)) or str(value).strip() in ("nan", "inf", "-inf"):
            bad.append(key)
    return bad


def _blocks(lines: list[str]) -> list[list[str]]:
    """Markdown lines split into blocks: paragraphs, tables, lists, and whole fenced blocks."""
    blocks: list[list[str]] = []
    current: list[str] = []
    fence = None
    for line in lines:
        m = _FENCE.match(line)
        if fence is None and m:
            if current:
                blocks.append(current)
            current, fence = [line], m.group(1)
            continue
        if fence is not None:
            current.append(line)
            if line.strip().startswith(fence[0] * len(fence)) and line.strip().strip(fence[0]) == "" and len(current) > 1:
                blocks.append(current)
                current, fence = [], None
            continue
        if not line.strip():
            if current:
                blocks.append(current)
            blocks.append([line])
            current = []
        else:
            current.append(line)
    if current:
        blocks.append(current)
    return blocks


def drop_unbacked_prose(source: str, glued: dict[str, str]) -> tuple[str, list[str]]:
    """The markdown with every passage that quotes a value this run did not produce left out:
    a table row, a list item, or else the paragraph or fenced block holding the glue role. So a
    page for a model that did not compute some result says nothing about it, instead of 'nan'
    or a sentence about a model that did not run. Returns (text, keys of the passages left out)."""
    dropped: list[str] = []
    out: list[str] = []
    for block in _blocks(source.splitlines()):
        text = "\n".join(block)
        bad = _unbacked(text, glued)
        if not bad:
            out.extend(block)
            continue
        if all(line.lstrip().startswith("|") for line in block):  # a table: drop its rows only
            keep = [line for line in block if not _unbacked(line, glued)]
            dropped += bad
            out.extend(keep if len(keep) > 2 else [])
            continue
        if _LIST_ITEM.match(block[0]) and not _FENCE.match(block[0]):  # a list: drop its items only
            items: list[list[str]] = []
            for line in block:
                if _LIST_ITEM.match(line) and len(_LIST_ITEM.match(line).group(1)) <= len(_LIST_ITEM.match(block[0]).group(1)):
                    items.append([line])
                else:
                    (items[-1] if items else items.append([]) or items[-1]).append(line)
            for item in items:
                lost = _unbacked("\n".join(item), glued)
                if lost:
                    dropped += lost
                else:
                    out.extend(item)
            continue
        dropped += bad
    text = "\n".join(out)
    text = re.sub(r"\n{3,}", "\n\n", text).strip("\n")
    return text, dropped


def drop_unbacked_cross_page(source: str, stage: Path) -> tuple[str, list[str]]:
    """:func:`drop_unbacked_prose` for glue roles naming another page (``path::key``, the path
    relative to ``stage``, the staged book): a passage is left out when that page is not staged
    or did not glue the key (or glued a non-finite number). Returns (text, refs left out)."""
    import nbformat

    cache: dict[str, dict[str, str]] = {}
    glued: dict[str, str] = {}
    names: dict[str, str] = {}

    def local(match: re.Match) -> str:
        ref = match.group(1)
        if "::" not in ref:
            return match.group(0)
        path, rest = ref.split("::", 1)
        key = rest.split(":")[0].strip()
        if path not in cache:
            nb_path = stage / path
            try:
                cache[path] = glued_values(nbformat.read(nb_path, as_version=4)) if nb_path.is_file() else {}
            except Exception:  # noqa: BLE001 - an unreadable page backs nothing
                cache[path] = {}
        name = names.setdefault(f"{path}::{key}", f"xref{len(names)}")
        if key in cache[path]:
            glued[name] = cache[path][key]
        return match.group(0).replace(f"{path}::{key}", f"{path}::{name}", 1)

    marked = _GLUE_ROLE.sub(local, source)
    # drop_unbacked_prose skips refs with "::"; check the local names instead
    probe = re.sub(r"\{glue(:[a-z]+)?\}`[^`:]*::(xref\d+)", r"{glue\1}`\2", marked)
    kept, dropped = drop_unbacked_prose(probe, glued)
    back = {v: k for k, v in names.items()}
    kept = re.sub(r"\{glue(:[a-z]+)?\}`(xref\d+)", lambda m: "{glue%s}`%s" % (m.group(1) or "", back[m.group(2)]), kept)
    return kept, [back.get(d, d) for d in dropped]


def scrub_local_paths(nb) -> int:
    """Paths of the build machine in a page's outputs written relative to $SOFTENING_DATA_DIR,
    $SOFTENING_CACHE_DIR, the repository or ~ (:mod:`softening_lib.pages`)."""
    from .pages import scrub_notebook

    return scrub_notebook(nb)


_NA_CELL = re.compile(r"(<td[^>]*>)\s*(?:NaN|nan|None|&lt;NA&gt;|NaT)\s*(</td>)")
READER_VISIBLE = {"parameters", "show-input", "hide-input", "remove-input", "remove-cell", "hide-cell"}


def _tidy(path: Path, parameters: dict | None = None, models: Sequence[str] | None = None) -> None:
    """The page as a reader sees it: the parameters cell shows the values this run used
    (papermill's injected cell is hidden); on a page for other models than the chapter's own,
    the title names those models."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    scrub_local_paths(nb)
    glued = glued_values(nb)
    dropped: list[str] = []
    for cell in nb.cells:
        if cell.cell_type == "markdown" and _GLUE_ROLE.search(cell.source):
            cell.source, lost = drop_unbacked_prose(cell.source, glued)
            dropped += lost
    if dropped:
        for cell in nb.cells:  # say so under the title
            if cell.cell_type == "markdown" and cell.source.startswith("# "):
                title, _, rest = cell.source.partition("\n")
                note = (f"\n\n```{{note}}\n{len(set(dropped))} value(s) this chapter discusses were not computed "
                        "in this run (models that did not run, or results not available for them); "
                        "the passages quoting them are left out of this page.\n```\n")
                if "were not computed in this run" not in rest:
                    cell.source = title + note + rest
                break
    for cell in nb.cells:
        for out in cell.get("outputs", []) if cell.cell_type == "code" else []:
            data = out.get("data") or {}
            if "text/html" in data:  # a table cell with no value reads as a dash, not "NaN"
                html = data["text/html"]
                data["text/html"] = _NA_CELL.sub(r"\1–\2", "".join(html) if isinstance(html, list) else html)
        tags = cell.metadata.get("tags", [])
        if "injected-parameters" in tags and "remove-cell" not in tags:
            cell.metadata["tags"] = tags + ["remove-cell"]
        elif "parameters" in tags and parameters:
            try:
                cell.source = _set_parameters_source(cell.source, parameters)
            except SyntaxError:
                pass
        elif cell.cell_type == "code" and not set(tags) & READER_VISIBLE:
            # readers see results; the code is one click away (a chapter shows a cell with `show-input`)
            cell.metadata["tags"] = tags + ["hide-input"]
    if models:
        suffix = " -- with " + ", ".join(f"`{m}`" for m in models)
        for cell in nb.cells:
            if cell.cell_type != "markdown":
                continue
            lines = cell.source.splitlines()
            for i, line in enumerate(lines):
                if line.startswith("# ") and not line.endswith(suffix):
                    lines[i] = line.rstrip() + suffix
                    cell.source = "\n".join(lines)
                    break
            else:
                continue
            break
    nbformat.write(nb, path)


def _copy_if_changed(src: Path, dst: Path) -> bool:
    """Copy ``src`` to ``dst`` unless ``dst`` already has the same bytes (keeps its mtime, so
    Sphinx does not re-read an unchanged page on a warm rebuild)."""
    if dst.is_file() and dst.stat().st_size == src.stat().st_size and dst.read_bytes() == src.read_bytes():
        return False
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(src, dst)
    return True


def _write_if_changed(path: Path, text: str) -> bool:
    if path.is_file() and path.read_text() == text:
        return False
    atomic_write_text(path, text)
    return True


MATHJAX_ENTRY = "tex-mml-chtml.js"  # the combined component Sphinx loads by default (from a CDN)


def mathjax_dir() -> Path:
    """MathJax 3 as shipped by the ``sphinx-mathjax-offline`` wheel (requirements.txt).

    The wheel's folder name has hyphens, so it is found through its distribution, not imported.
    """
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        path = Path(distribution("sphinx-mathjax-offline").locate_file("sphinx-mathjax-offline/static/mathjax"))
    except PackageNotFoundError as exc:
        raise RunnerError("MathJax is served locally from the sphinx-mathjax-offline package: "
                          "pip install -r requirements.txt") from exc
    if not (path / MATHJAX_ENTRY).is_file():
        raise RunnerError(f"no {MATHJAX_ENTRY} in {path}")
    return path


def stage_mathjax(static: Path) -> str:
    """Copy MathJax's CHTML build (entry script, TeX extensions it autoloads, fonts, menu,
    accessibility) into ``static/mathjax``; returns the ``mathjax_path`` relative to the HTML's
    _static (Sphinx loads only that entry script; it fetches the rest on demand)."""
    src = mathjax_dir()
    dst = static / "mathjax"
    keep_top = {MATHJAX_ENTRY}
    for path in sorted(src.rglob("*")):
        rel = path.relative_to(src)
        if not path.is_file():
            continue
        if len(rel.parts) == 1 and rel.name not in keep_top:
            continue  # the other combined builds (svg, mml-only, full, speech)
        if rel.parts[0] == "output" and (rel.parts[1:2] == ("svg",) or rel.name == "svg.js"):
            continue
        _copy_if_changed(path, dst / rel)
    return f"mathjax/{MATHJAX_ENTRY}"


def stage_static() -> None:
    STAGE.mkdir(parents=True, exist_ok=True)
    for name in STATIC_PAGES:
        src = ROOT / name
        if src.is_file():
            if src.suffix == ".md" and "::" in src.read_text(encoding="utf-8"):
                # a plain page quoting chapters' glued values ({glue:text}`chapters/08_x.ipynb::key`):
                # passages whose value the staged chapter does not hold are left out, as on chapters
                # and written on every build: Sphinx does not know that the page depends on the
                # chapters' glue, so an unchanged file would keep last build's numbers
                text, _ = drop_unbacked_cross_page(src.read_text(encoding="utf-8"), STAGE)
                atomic_write_text(STAGE / name, text + "\n")
            else:
                _copy_if_changed(src, STAGE / name)
    cfg = yaml.safe_load((ROOT / "_config.yml").read_text())
    cfg.setdefault("execute", {})["execute_notebooks"] = "off"
    if not (cfg.get("repository") or {}).get("url"):
        # no repository address set: no buttons that would point nowhere
        cfg.pop("launch_buttons", None)
        cfg.setdefault("html", {})["use_repository_button"] = False
    # plotly.js from the installed package, served locally (interactive figures offline).
    # Not in a folder named _static: Jupyter Book adds every .js under a book's _static (and
    # under every html_static_path, once _static exists) to every page -- that would load all
    # of MathJax's components as scripts. Sphinx copies STATIC_DIR's content to html/_static.
    import plotly

    if (STAGE / "_static").is_dir():
        shutil.rmtree(STAGE / "_static")  # left by an older runner
    static = STAGE / STATIC_DIR
    static.mkdir(exist_ok=True)
    _copy_if_changed(Path(plotly.__file__).parent / "package_data" / "plotly.min.js", static / "plotly.min.js")
    sphinx_cfg = cfg.setdefault("sphinx", {}).setdefault("config", {})
    sphinx_cfg["html_static_path"] = [STATIC_DIR]
    sphinx_cfg["html_js_files"] = ["plotly.min.js"]
    # MathJax from a wheel, served locally: offline, math renders instead of showing raw LaTeX
    sphinx_cfg["mathjax_path"] = stage_mathjax(static)
    _write_if_changed(STAGE / "_config.yml", yaml.safe_dump(cfg, sort_keys=False))
    # figures referenced from markdown pages
    fig_src = ROOT / "figures"
    if fig_src.is_dir():
        for path in fig_src.rglob("*"):
            if path.is_file():
                _copy_if_changed(path, STAGE / "figures" / path.relative_to(fig_src))


def _title_of(source: Path) -> str:
    for line in source.read_text().splitlines():
        if line.startswith("# "):
            return line[2:].strip()
    return source.stem


def stage_placeholder(stem: str) -> bool:
    """A chapter of the table of contents with no executed page in this build gets a short page
    that says so and how to build it (every link and cross-reference to it stays valid); an
    executed page replaces it. Returns True when a placeholder is in place."""
    chapters_dir = STAGE / "chapters"
    placeholder = chapters_dir / f"{stem}.md"
    if (chapters_dir / f"{stem}.ipynb").is_file():
        placeholder.unlink(missing_ok=True)
        return False
    source = ROOT / "chapters" / f"{stem}.md"
    title = _title_of(source) if source.is_file() else stem
    number = stem.split("_")[0]
    report = REPORTS / f"{stem}.failed.ipynb"
    why = (f"its last execution failed (the executed notebook is `_build/reports/{report.name}`)."
           if report.is_file() else "it was not executed.")
    text = (f"# {title}\n\n```{{note}}\nThis chapter has no page in this build: {why}\n"
            f"Build it with `python -m softening_lib book --chapter {number}`.\n```\n")
    _write_if_changed(placeholder, text)
    return True


def write_toc() -> Path:
    """The staged _toc.yml: the repo's toc (a chapter not executed in this build gets a
    placeholder page) plus one sub-page per page for other models or parameters."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    staged = {p.stem for p in (STAGE / "chapters").glob("*.ipynb")}

    def visit(entries: list) -> list:
        out = []
        for ent in entries:
            if "file" in ent and ent["file"].startswith("chapters/"):
                stem = Path(ent["file"]).stem
                stage_placeholder(stem)
                extras = sorted(s for s in staged if s.startswith(stem + "__"))
                if extras:
                    ent = dict(ent)
                    ent["sections"] = list(ent.get("sections", [])) + [{"file": f"chapters/{s}"} for s in extras]
            if "sections" in ent:
                ent = dict(ent)
                ent["sections"] = visit(ent["sections"])
            if "chapters" in ent:
                ent = dict(ent)
                ent["chapters"] = visit(ent["chapters"])
            out.append(ent)
        return out

    if "parts" in toc:
        toc["parts"] = [dict(p, chapters=visit(p["chapters"])) for p in toc["parts"]]
    else:
        toc["chapters"] = visit(toc.get("chapters", []))
    path = STAGE / "_toc.yml"
    _write_if_changed(path, yaml.safe_dump(toc, sort_keys=False))
    return path


def _stage_book() -> None:
    """Static pages, the what-ran page and the table of contents of the staged book."""
    from .what_ran import write_page

    stage_static()
    write_page(STAGE / "what_ran_here.md", pages={p.stem for p in (STAGE / "chapters").glob("*.ipynb")})
    write_toc()


def _jupyter_book(out: Path, name: str, strict: bool, log, config: Path | None = None) -> Path:
    """``jupyter-book build`` of the staged book into ``out`` (one Sphinx build at a time); its
    log in ``_build/reports/<name>.log``. A strict build after a failed one rebuilds every page
    (Sphinx re-reads only changed pages, so it would not repeat the warnings). Returns the HTML."""
    cmd = [str(Path(sys.executable).parent / "jupyter-book"), "build", str(STAGE), "--path-output", str(out)]
    if config is not None:
        cmd += ["--config", str(config)]
    failed_marker = REPORTS / f"{name}.failed"
    if strict:
        cmd += ["-W", "-n", "--keep-going"] + (["--all"] if failed_marker.is_file() else [])
    log(f"[{name}] " + " ".join(cmd))
    REPORTS.mkdir(parents=True, exist_ok=True)
    with _lock("sphinx-build"):
        proc = subprocess.run(cmd, capture_output=True, text=True)
    log_path = REPORTS / f"{name}.log"
    atomic_write_text(log_path, proc.stdout + "\n" + proc.stderr)
    if proc.returncode != 0:
        atomic_write_text(failed_marker, time.strftime("%Y-%m-%dT%H:%M:%S"))
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-30:])
        raise RunnerError(f"{name} failed (log: {log_path}):\n{tail}")
    failed_marker.unlink(missing_ok=True)
    return out / "_build" / "html"


def build(strict: bool = True, log=print) -> Path:
    """``jupyter-book build`` of the staged book; returns the HTML folder."""
    _stage_book()
    html = _jupyter_book(BUILD / "book", "jupyter-book-build", strict, log)
    log(f"[built]    {html / 'index.html'}")
    return html


def run_and_build(chapter_specs=None, models=None, preset="default", force=False, strict=True,
                  log=print, extra: dict | None = None, runs: Sequence[ChapterRun] | None = None) -> Path:
    """Execute (what changed) and build. Every page the build holds is in its table of contents;
    failed chapters keep their previous page (or a placeholder) and are named at the end."""
    runs = execute(runs if runs is not None else plan(chapter_specs, models, preset, extra), force=force, log=log)
    failed = [r for r in runs if r.status == "failed"]
    html = build(strict=strict, log=log)
    log(summary(runs))
    if failed:
        raise RunnerError("chapters failed: " + ", ".join(r.chapter for r in failed)
                          + f" (executed notebooks and errors in {REPORTS})")
    return html


def build_student(strict: bool = True, log=print) -> Path:
    """The student edition: the same executed pages as :func:`build`, built into
    ``_build/student`` with every solution block left out (``softening_student`` of
    :mod:`softening_lib.sphinx_ext`: no "Solution" admonition in the pages or the search index,
    no page source copied). Returns its HTML folder."""
    _stage_book()
    cfg = yaml.safe_load((STAGE / "_config.yml").read_text())
    cfg["title"] = f"{cfg.get('title', 'The softening book')} (student edition)"
    cfg.setdefault("sphinx", {}).setdefault("config", {})["softening_student"] = True
    config_path = STAGE / "_config_student.yml"
    _write_if_changed(config_path, yaml.safe_dump(cfg, sort_keys=False))
    html = _jupyter_book(BUILD / "student", "jupyter-book-build-student", strict, log, config=config_path)
    log(f"[built]    {html / 'index.html'} (student edition: no solutions)")
    return html
