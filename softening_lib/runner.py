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
BUILD = ROOT / "_build"
STAGE = BUILD / "src"
REPORTS = BUILD / "reports"
STATIC_DIR = "_book_static"  # served as _static in the HTML (see stage_static)
STATIC_PAGES = ("intro.md", "pitfalls.md", "laptop.md", "references.bib", "logo.png")


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


NOTEBOOKS = BUILD / "nb"  # chapters converted from MyST Markdown, what papermill executes


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
    out = (NOTEBOOKS if out_dir is None else Path(out_dir)) / f"{source.stem}.ipynb"
    _write_if_changed(out, nbformat.writes(nb) + "\n")
    return out


def _file_digests(paths: Sequence[Path], pattern: str = "*", base: Path | None = None) -> dict[str, str]:
    """{path relative to the repo (or to ``base``): sha256} of files and of the files under folders."""
    base = ROOT if base is None else Path(base)
    out: dict[str, str] = {}
    for root in paths:
        if not root.exists():
            continue
        files = [root] if root.is_file() else sorted(p for p in root.rglob(pattern) if p.is_file())
        for p in files:
            if "__pycache__" in p.parts:
                continue
            out[p.relative_to(base).as_posix()] = (hashlib.sha256(p.read_bytes()).hexdigest()
                                             if p.stat().st_size < 5e7 else f"size {p.stat().st_size}")
    return out


def _tree_digest(paths: Sequence[Path], pattern: str = "*") -> str:
    return hashlib.sha256(json.dumps(_file_digests(paths, pattern), sort_keys=True).encode()).hexdigest()


_MODULE_STRING = re.compile(r"\bsoftening_lib(?:\.[A-Za-z_]\w*)+")


def _module_file(name: str) -> Path | None:
    """``softening_lib.tasks.surfaces`` -> its source file, or None if no such module."""
    parts = name.split(".")
    if parts[0] != "softening_lib":
        return None
    base = ROOT.joinpath(*parts)
    for cand in (base.with_suffix(".py"), base / "__init__.py"):
        if cand.is_file():
            return cand
    return None


def _imported_modules(source: str, module: str | None = None, strings: bool = True) -> set[str]:
    """softening_lib modules a piece of code imports: import statements anywhere in it (also
    inside functions: lazy imports count), relative ones resolved against ``module``, and
    module names written as strings (``importlib.import_module("softening_lib.tasks.x")``)."""
    import ast

    # notebook magics and shell escapes are not Python
    text = "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines())
    found: set[str] = set()
    try:
        tree = ast.parse(text)
    except SyntaxError:
        tree = None
    is_pkg = module is not None and (_module_file(module) or Path()).name == "__init__.py"
    for node in ast.walk(tree) if tree is not None else ():
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                if module is None:
                    continue
                pkg = module.split(".")
                pkg = pkg if is_pkg else pkg[:-1]
                pkg = pkg[: len(pkg) - (node.level - 1)]
                base = ".".join(pkg + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)
    for name in _MODULE_STRING.findall(source) if strings else ():
        parts = name.split(".")
        while parts and _module_file(".".join(parts)) is None:
            parts.pop()  # "softening_lib.tasks.migration.fetch" -> the module
        if parts:
            found.add(".".join(parts))
    return {m for m in found if _module_file(m) is not None}


def code_closure(notebook: Path, strings: bool = True) -> list[Path]:
    """The library source files a chapter can execute: what its code cells import, and what
    those modules import in turn (with their packages' ``__init__``). The runner, the command
    line and the what-ran page are not among them unless a chapter imports them, so changing
    the build machinery, or a task module of another chapter, re-executes nothing here.
    ``strings=False`` follows import statements only, not module names written in strings
    (lazy dataset readers, messages): the closure whose ``REFERENCE_DIRS`` a chapter reads."""
    import nbformat

    nb = nbformat.read(notebook, as_version=4)
    todo = set()
    for cell in nb.cells:
        if cell.cell_type == "code":
            todo |= _imported_modules(cell.source, strings=strings)
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        parts = name.split(".")
        todo |= {".".join(parts[:i]) for i in range(1, len(parts))} - seen  # parent packages
        todo |= _imported_modules(_module_file(name).read_text(), name, strings=strings) - seen
    return sorted({_module_file(m) for m in seen})


REFERENCE = "data/reference"  # the committed reference data, relative to the repo
MANIFEST = "data/datasets.yml"


def declared_reference_dirs(module_file: Path) -> tuple[str, ...]:
    """The ``REFERENCE_DIRS`` a library module declares (the folders under data/reference it
    reads), read from its source with ``ast``, not imported; () when it declares none."""
    import ast

    try:
        tree = ast.parse(Path(module_file).read_text())
    except (OSError, SyntaxError):
        return ()
    for node in tree.body:
        targets = (node.targets if isinstance(node, ast.Assign)
                   else [node.target] if isinstance(node, ast.AnnAssign) and node.value is not None else [])
        if any(isinstance(t, ast.Name) and t.id == "REFERENCE_DIRS" for t in targets):
            try:
                value = ast.literal_eval(node.value)
            except ValueError as exc:
                raise RunnerError(f"{module_file}: REFERENCE_DIRS must be a literal tuple of folder names") from exc
            return (value,) if isinstance(value, str) else tuple(value)
    return ()


def dataset_reference_dirs(root: Path | None = None) -> list[str]:
    """Folders under data/reference that a ``local:`` dataset of data/datasets.yml points to
    (relative to data/reference)."""
    root = ROOT if root is None else Path(root)
    try:
        manifest = yaml.safe_load((root / MANIFEST).read_text()) or {}
    except OSError:
        return []
    ref = (root / REFERENCE).resolve()
    out = set()
    for ent in manifest.values():
        local = ent.get("local") if isinstance(ent, dict) else None
        if isinstance(local, str):
            path = (root / local).resolve()
            if path != ref and path.is_relative_to(ref):
                out.add(path.relative_to(ref).as_posix())
    return sorted(out)


def reference_dirs(closure: Sequence[Path], root: Path | None = None) -> list[str]:
    """The folders under data/reference a chapter with this code closure reads: the union of
    its modules' ``REFERENCE_DIRS``, plus every ``local:`` dataset folder when the closure
    holds the dataset layer (softening_lib/datasets.py)."""
    dirs = {d for f in closure for d in declared_reference_dirs(f)}
    if any(Path(f).resolve() == (ROOT / "softening_lib" / "datasets.py").resolve() for f in closure):
        dirs |= set(dataset_reference_dirs(root))
    return sorted(dirs)


def data_inputs(closure: Sequence[Path], root: Path | None = None,
                digests: dict[str, str] | None = None) -> dict[str, str]:
    """The data part of a chapter's key, {file: sha256}: data/datasets.yml, every file directly
    in data/reference, and the files under the folders :func:`reference_dirs` names. A record a
    background campaign adds to another folder re-executes nothing here. ``root`` is the tree
    holding data/ (the repo; tests give a temporary one); ``digests`` of all of data/reference
    and the manifest, when already computed (see :func:`plan`)."""
    root = ROOT if root is None else Path(root)
    if digests is None:
        digests = _file_digests([root / REFERENCE, root / MANIFEST], base=root)
    prefixes = tuple(f"{REFERENCE}/{d.strip('/')}/" for d in reference_dirs(closure, root))
    return {f: h for f, h in digests.items()
            if f == MANIFEST or (f.startswith(REFERENCE + "/") and "/" not in f[len(REFERENCE) + 1:])
            or f.startswith(prefixes)}


def _versions() -> dict[str, str]:
    from .book import software_versions

    return software_versions()


def notebook_parameters(path: Path) -> dict[str, Any]:
    """Default parameters of a chapter (papermill's inference of its parameters cell)."""
    import papermill as pm

    return {name: info["default"] for name, info in pm.inspect_notebook(str(path)).items()}


def check_parameter_types(path: Path, parameters: dict[str, Any]) -> None:
    """Refuse a parameter unknown to the chapter or of another type than its default."""
    import ast

    defaults = notebook_parameters(path)
    for name, value in parameters.items():
        if name not in defaults:
            raise RunnerError(f"{path.stem} has no parameter {name!r}; it takes: {', '.join(defaults)}")
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
                f"{path.stem}: parameter {name!r} must be {type(default).__name__} "
                f"(default {defaults[name]}), got {type(value).__name__} {value!r}"
            )


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()[:60]


def plan(chapter_specs: Sequence[str] | None = None, models: Sequence[str] | None = None,
         preset: str = "default", extra: dict | None = None, data_root: Path | None = None) -> list[ChapterRun]:
    """One run per chapter with its key. ``data_root``: the tree holding data/reference and
    data/datasets.yml (default the repo; tests point it at a temporary one)."""
    paths = [find_chapter(c) for c in chapter_specs] if chapter_specs else chapters()
    # inputs only: results under data/results are what the chapters themselves compute and
    # reuse; after a background computation adds results, rerun with --force. Of the reference
    # data, each chapter's key holds only what its own code reads (data_inputs).
    data_root = ROOT if data_root is None else Path(data_root)
    all_data = _file_digests([data_root / REFERENCE, data_root / MANIFEST], base=data_root)
    versions = _versions()
    runs = []
    for src in paths:
        nb = to_notebook(src)
        params: dict[str, Any] = {"preset": preset}
        if models:
            params["models"] = list(models)
        params.update(extra or {})
        check_parameter_types(nb, params)
        name = nb.name
        if params.get("models"):  # --model or -p models=[...]: a page of its own
            name = f"{nb.stem}__{_slug('-'.join(params['models']))}.ipynb"
        closure = code_closure(nb)
        inputs = {"notebook": hashlib.sha256(src.read_bytes()).hexdigest(), "parameters": params,
                  "code": _file_digests(closure),
                  # reference data: what the modules it really imports declare (not string-named ones)
                  "data": data_inputs(code_closure(nb, strings=False), data_root, all_data),
                  "versions": versions}
        key = hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()[:20]
        runs.append(ChapterRun(nb.stem, nb, STAGE / "chapters" / name, params, key, inputs))
    return runs


def what_changed(old: dict | None, new: dict) -> str:
    """Which inputs of a chapter differ from its last execution, in a few words."""
    if not old:
        return "not executed before"
    out = []
    for part in ("notebook", "parameters", "versions"):
        if json.dumps(old.get(part), sort_keys=True, default=str) != json.dumps(new.get(part), sort_keys=True, default=str):
            out.append(part)
    for part in ("code", "data"):
        a, b = old.get(part) or {}, new.get(part) or {}
        files = sorted(f for f in set(a) | set(b) if a.get(f) != b.get(f))
        if files:
            out.append(f"{part}: {', '.join(files[:3])}" + (f" (+{len(files) - 3} more)" if len(files) > 3 else ""))
    return "; ".join(out) or "output missing"


def _inputs_path() -> Path:
    return BUILD / "run_inputs.json"


def _keys_path() -> Path:
    return BUILD / "run_keys.json"


def _load_keys() -> dict[str, str]:
    try:
        return json.loads(_keys_path().read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def execute(runs: Sequence[ChapterRun], force: bool = False, kernel: str = "python3",
            log=print) -> list[ChapterRun]:
    import papermill as pm

    keys = _load_keys()
    try:
        last_inputs = json.loads(_inputs_path().read_text())
    except (OSError, json.JSONDecodeError):
        last_inputs = {}
    (STAGE / "chapters").mkdir(parents=True, exist_ok=True)
    REPORTS.mkdir(parents=True, exist_ok=True)
    env_run_dir = str(BUILD / "run")
    os.environ["SOFTENING_RUN_DIR"] = env_run_dir
    for run in runs:
        rel = str(run.output.relative_to(STAGE))
        if not force and keys.get(rel) == run.key and run.output.is_file():
            run.status = "cached"
            log(f"[cached]   {run.chapter} ({rel})")
            continue
        why = "forced" if force else what_changed(last_inputs.get(rel), run.inputs)
        log(f"[execute]  {run.chapter} -> {rel} with {run.parameters} (changed: {why})")
        t0 = time.time()
        os.environ["SOFTENING_RUN_PAGE"] = run.output.stem  # the kernel files its record under it
        try:
            pm.execute_notebook(str(run.source), str(run.output), parameters=run.parameters,
                                kernel_name=kernel, cwd=str(ROOT / "chapters"), progress_bar=False,
                                log_output=False, request_save_on_cell_execute=False)
            run.status = "executed"
            _tidy(run.output, run.parameters.get("models"))
            keys[rel] = run.key
            last_inputs[rel] = run.inputs
        except Exception as exc:  # papermill raises PapermillExecutionError with the cell
            run.status = "failed"
            run.error = str(exc)
            report = REPORTS / f"{run.output.stem}.failed.ipynb"
            if run.output.is_file():  # out of the book: a page with a traceback is no page
                shutil.move(run.output, report)
            atomic_write_text(REPORTS / f"{run.output.stem}.error.txt", str(exc))
            keys.pop(rel, None)
            log(f"[FAILED]   {run.chapter}: {str(exc).strip().splitlines()[-1] if str(exc).strip() else exc}"
                f"\n           executed notebook kept at {report}")
        finally:
            os.environ.pop("SOFTENING_RUN_PAGE", None)
        run.seconds = time.time() - t0
        atomic_write_text(_keys_path(), json.dumps(keys, indent=1))
        atomic_write_text(_inputs_path(), json.dumps(last_inputs, default=str))
    return list(runs)


def _tidy(path: Path, models: Sequence[str] | None = None) -> None:
    """Hide papermill's injected-parameters cell in the rendered page; on a page for other
    models than the chapter's own, name those models in the title (the table of contents
    would otherwise list two pages of the same name)."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        tags = cell.metadata.get("tags", [])
        if "injected-parameters" in tags and "remove-cell" not in tags:
            cell.metadata["tags"] = tags + ["remove-cell"]
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
            _copy_if_changed(src, STAGE / name)
    cfg = yaml.safe_load((ROOT / "_config.yml").read_text())
    cfg.setdefault("execute", {})["execute_notebooks"] = "off"
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


def write_toc() -> Path:
    """The staged _toc.yml: the repo's toc plus one sub-page per extra-model run."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    staged = {p.stem for p in (STAGE / "chapters").glob("*.ipynb")}

    def visit(entries: list) -> list:
        out = []
        for ent in entries:
            if "file" in ent and ent["file"].startswith("chapters/"):
                stem = Path(ent["file"]).stem
                if stem not in staged:
                    continue  # chapter not executed in this build
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
        toc["parts"] = [p for p in toc["parts"] if p["chapters"]]
    else:
        toc["chapters"] = visit(toc.get("chapters", []))
    path = STAGE / "_toc.yml"
    _write_if_changed(path, yaml.safe_dump(toc, sort_keys=False))
    return path


def build(strict: bool = True, log=print) -> Path:
    """``jupyter-book build`` of the staged book; returns the HTML folder."""
    from .what_ran import write_page

    stage_static()
    write_page(STAGE / "what_ran_here.md", pages={p.stem for p in (STAGE / "chapters").glob("*.ipynb")})
    write_toc()
    cmd = [str(Path(sys.executable).parent / "jupyter-book"), "build", str(STAGE), "--path-output", str(BUILD / "book")]
    if strict:
        cmd += ["-W", "-n", "--keep-going"]
    log("[build]    " + " ".join(cmd))
    proc = subprocess.run(cmd, capture_output=True, text=True)
    log_path = REPORTS / "jupyter-book-build.log"
    REPORTS.mkdir(parents=True, exist_ok=True)
    atomic_write_text(log_path, proc.stdout + "\n" + proc.stderr)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-30:])
        raise RunnerError(f"jupyter-book build failed (log: {log_path}):\n{tail}")
    html = BUILD / "book" / "_build" / "html"
    log(f"[built]    {html / 'index.html'}")
    return html


def run_and_build(chapter_specs=None, models=None, preset="default", force=False, strict=True,
                  log=print, extra: dict | None = None) -> Path:
    runs = execute(plan(chapter_specs, models, preset, extra), force=force, log=log)
    failed = [r for r in runs if r.status == "failed"]
    html = build(strict=strict, log=log)
    if failed:
        raise RunnerError("chapters failed: " + ", ".join(r.chapter for r in failed)
                          + f" (executed notebooks and errors in {REPORTS})")
    return html
