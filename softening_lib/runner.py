"""Execute chapters with papermill and build the book with Jupyter Book 1.x.

Source notebooks in ``chapters/`` stay output-free. ``run`` executes each chapter (for a
preset and a list of models) into a staged book under ``_build/src`` and skips a chapter
whose inputs did not change: the key covers the notebook, its parameters, the library's
source, the committed reference data and results it reads, and the software versions.
``build`` then renders the staged book (``execute_notebooks: off``), treating Sphinx
warnings as errors.

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import yaml

from . import config
from .cache import atomic_write_text

ROOT = config.REPO_ROOT
BUILD = ROOT / "_build"
STAGE = BUILD / "src"
REPORTS = BUILD / "reports"
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
    status: str = "pending"  # executed | cached | failed
    seconds: float = 0.0
    error: str = ""


def chapters() -> list[Path]:
    return sorted((ROOT / "chapters").glob("[0-9][0-9]_*.ipynb")) + sorted(
        (ROOT / "chapters").glob("appendix_*.ipynb"))


def find_chapter(spec: str) -> Path:
    """'05', '5', '05_ion_migration' or a path -> the chapter notebook."""
    path = Path(spec)
    if path.suffix == ".ipynb" and path.is_file():
        return path.resolve()
    for nb in chapters():
        stem = nb.stem
        if stem == spec or stem.split("_")[0] == spec.zfill(2) or stem.startswith(spec):
            return nb
    raise RunnerError(f"no chapter {spec!r}; chapters: {', '.join(p.stem for p in chapters())}")


def _tree_digest(paths: Sequence[Path], pattern: str = "*") -> str:
    h = hashlib.sha256()
    for root in paths:
        if not root.exists():
            continue
        files = [root] if root.is_file() else sorted(p for p in root.rglob(pattern) if p.is_file())
        for p in files:
            if "__pycache__" in p.parts:
                continue
            h.update(str(p.relative_to(ROOT)).encode())
            h.update(hashlib.sha256(p.read_bytes()).digest() if p.stat().st_size < 5e7 else
                     str(p.stat().st_size).encode())
    return h.hexdigest()


def _versions_digest() -> str:
    from .book import software_versions

    return hashlib.sha256(json.dumps(software_versions(), sort_keys=True).encode()).hexdigest()


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
         preset: str = "default", extra: dict | None = None) -> list[ChapterRun]:
    paths = [find_chapter(c) for c in chapter_specs] if chapter_specs else chapters()
    code = _tree_digest([ROOT / "softening_lib"], "*.py")
    # inputs only: results under data/results are what the chapters themselves compute and
    # reuse; after a background computation adds results, rerun with --force.
    data = _tree_digest([ROOT / "data" / "reference", ROOT / "data" / "datasets.yml"])
    versions = _versions_digest()
    runs = []
    for nb in paths:
        params: dict[str, Any] = {"preset": preset}
        if models:
            params["models"] = list(models)
        params.update(extra or {})
        check_parameter_types(nb, params)
        name = nb.name
        if models:
            name = f"{nb.stem}__{_slug('-'.join(models))}.ipynb"
        key = hashlib.sha256(json.dumps(
            [hashlib.sha256(nb.read_bytes()).hexdigest(), params, code, data, versions], sort_keys=True, default=str).encode()).hexdigest()[:20]
        runs.append(ChapterRun(nb.stem, nb, STAGE / "chapters" / name, params, key))
    return runs


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
        log(f"[execute]  {run.chapter} -> {rel} with {run.parameters}")
        t0 = time.time()
        try:
            pm.execute_notebook(str(run.source), str(run.output), parameters=run.parameters,
                                kernel_name=kernel, cwd=str(ROOT / "chapters"), progress_bar=False,
                                log_output=False, request_save_on_cell_execute=False)
            run.status = "executed"
            _tidy(run.output)
            keys[rel] = run.key
        except Exception as exc:  # papermill raises PapermillExecutionError with the cell
            run.status = "failed"
            run.error = str(exc)
            report = REPORTS / f"{run.output.stem}.failed.ipynb"
            if run.output.is_file():
                shutil.copy(run.output, report)
            atomic_write_text(REPORTS / f"{run.output.stem}.error.txt", str(exc))
            keys.pop(rel, None)
            log(f"[FAILED]   {run.chapter}: {str(exc).strip().splitlines()[-1] if str(exc).strip() else exc}"
                f"\n           executed notebook kept at {report}")
        run.seconds = time.time() - t0
        atomic_write_text(_keys_path(), json.dumps(keys, indent=1))
    return list(runs)


def _tidy(path: Path) -> None:
    """Hide papermill's injected-parameters cell in the rendered page."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        tags = cell.metadata.get("tags", [])
        if "injected-parameters" in tags and "remove-cell" not in tags:
            cell.metadata["tags"] = tags + ["remove-cell"]
    nbformat.write(nb, path)


def stage_static() -> None:
    STAGE.mkdir(parents=True, exist_ok=True)
    for name in STATIC_PAGES:
        src = ROOT / name
        if src.is_file():
            shutil.copy(src, STAGE / name)
    cfg = yaml.safe_load((ROOT / "_config.yml").read_text())
    cfg.setdefault("execute", {})["execute_notebooks"] = "off"
    # plotly.js from the installed package, served locally (interactive figures offline)
    import plotly

    static = STAGE / "_static"
    static.mkdir(exist_ok=True)
    shutil.copy(Path(plotly.__file__).parent / "package_data" / "plotly.min.js", static / "plotly.min.js")
    sphinx_cfg = cfg.setdefault("sphinx", {}).setdefault("config", {})
    sphinx_cfg["html_static_path"] = ["_static"]
    sphinx_cfg["html_js_files"] = ["plotly.min.js"]
    atomic_write_text(STAGE / "_config.yml", yaml.safe_dump(cfg, sort_keys=False))
    # figures referenced from markdown pages
    fig_src = ROOT / "figures"
    if fig_src.is_dir():
        shutil.copytree(fig_src, STAGE / "figures", dirs_exist_ok=True)


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
    atomic_write_text(path, yaml.safe_dump(toc, sort_keys=False))
    return path


def build(strict: bool = True, log=print) -> Path:
    """``jupyter-book build`` of the staged book; returns the HTML folder."""
    from .what_ran import write_page

    stage_static()
    write_page(STAGE / "what_ran_here.md")
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
                  log=print) -> Path:
    runs = execute(plan(chapter_specs, models, preset), force=force, log=log)
    failed = [r for r in runs if r.status == "failed"]
    html = build(strict=strict, log=log)
    if failed:
        raise RunnerError("chapters failed: " + ", ".join(r.chapter for r in failed)
                          + f" (executed notebooks and errors in {REPORTS})")
    return html
