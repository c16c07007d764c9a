import json
import subprocess
import sys

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from softening_lib import runner


@pytest.fixture
def tiny_notebook(tmp_path, monkeypatch):
    for name, value in {"BUILD": tmp_path / "_build", "STAGE": tmp_path / "_build" / "src",
                        "REPORTS": tmp_path / "_build" / "reports"}.items():
        monkeypatch.setattr(runner, name, value)
    nb = new_notebook(cells=[
        new_code_cell('models = ["emt"]\npreset = "default"\nn = 3', metadata={"tags": ["parameters"]}),
        new_code_cell("import os\nassert n > 0, 'n must be positive'\n"
                      "print('ran', models, preset, n, 'page', os.environ.get('SOFTENING_RUN_PAGE'))"),
    ])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = tmp_path / "42_tiny.ipynb"
    nbformat.write(nb, path)
    return path


def test_parameter_of_wrong_type_is_refused(tiny_notebook):
    with pytest.raises(runner.RunnerError, match="'n' must be int"):
        runner.check_parameter_types(tiny_notebook, {"n": "three"})
    with pytest.raises(runner.RunnerError, match="no parameter 'm'"):
        runner.check_parameter_types(tiny_notebook, {"m": 1})
    runner.check_parameter_types(tiny_notebook, {"n": 5, "models": ["chgnet-0.3.0"]})


@pytest.mark.slow
def test_execute_skips_unchanged_and_reports_failures(tiny_notebook, monkeypatch):
    monkeypatch.setattr(runner, "_file_digests", lambda *a, **k: {})  # code/data unchanged
    runs = runner.plan([str(tiny_notebook)], preset="smoke")
    (run,) = runner.execute(runs, log=lambda *_: None)
    assert run.status == "executed" and run.output.is_file()
    out = nbformat.read(run.output, as_version=4)
    assert "ran ['emt'] smoke 3" in json.dumps(out.cells[-1].outputs)
    (again,) = runner.execute(runner.plan([str(tiny_notebook)], preset="smoke"), log=lambda *_: None)
    assert again.status == "cached"
    # another model -> its own page, executed, default page untouched
    (other,) = runner.execute(runner.plan([str(tiny_notebook)], models=["ase.calculators.emt:EMT"],
                                          preset="smoke"), log=lambda *_: None)
    assert other.status == "executed" and other.output.name == "42_tiny__ase-calculators-emt-emt.ipynb"
    # the kernel knows its page (run records and figures are filed under it)
    assert "page 42_tiny__ase-calculators-emt-emt" in json.dumps(nbformat.read(other.output, as_version=4).cells[-1].outputs)
    assert run.output.is_file()  # the default page is still there
    # a failing run keeps the executed notebook as a report
    (bad,) = runner.execute(runner.plan([str(tiny_notebook)], preset="smoke", extra={"n": -1}),
                            log=lambda *_: None)
    assert bad.status == "failed" and "n must be positive" in bad.error
    assert (runner.REPORTS / f"{bad.output.stem}.failed.ipynb").is_file()
    assert not bad.output.exists()  # the failed page is not left in the staged book


def test_cli_models_and_data_tables():
    out = subprocess.run([sys.executable, "-m", "softening_lib", "models"], capture_output=True, text=True,
                         check=True).stdout
    assert "chgnet-0.3.0" in out and "mace-mp-0-medium" in out and "False" in out
    out = subprocess.run([sys.executable, "-m", "softening_lib", "data"], capture_output=True, text=True,
                         check=True).stdout
    assert "wbm-he-figshare" in out and "jageo-pbe-68" in out


def test_cli_unknown_chapter_is_a_clear_error():
    proc = subprocess.run([sys.executable, "-m", "softening_lib", "run", "--chapter", "77"],
                          capture_output=True, text=True)
    assert proc.returncode == 1 and "no chapter '77'" in proc.stderr


def test_code_closure_follows_imports_of_the_chapter(tmp_path):
    nb = new_notebook(cells=[
        new_code_cell('models = ["emt"]\npreset = "smoke"', metadata={"tags": ["parameters"]}),
        new_code_cell("%matplotlib inline\nfrom softening_lib import book\nfrom softening_lib.tasks import phonons as P"),
    ])
    path = tmp_path / "43_closure.ipynb"
    nbformat.write(nb, path)
    lib = runner.ROOT / "softening_lib"
    files = set(runner.code_closure(path))
    # what the cells import, what those import (relative and lazy imports), and the packages
    assert {lib / "book.py", lib / "tasks" / "phonons.py", lib / "tasks" / "__init__.py",
            lib / "__init__.py", lib / "models.py", lib / "config.py"} <= files
    # datasets.py names its lazy readers' modules as strings: they count
    assert lib / "tasks" / "surfaces.py" in files
    # the build machinery and unrelated code do not: changing them re-executes nothing
    assert not {lib / "runner.py", lib / "cli.py", lib / "what_ran.py", lib / "finetune.py"} & files
    # relative to softening_lib.tasks: no tasks.models / tasks.config exist, only the package
    assert runner._imported_modules("from .models import get_calculator\nfrom . import config",
                                    "softening_lib.tasks.phonons") == {"softening_lib.tasks"}
    assert runner._imported_modules("from ..models import get_calculator",
                                    "softening_lib.tasks.phonons") >= {"softening_lib.models"}
    assert runner._imported_modules("from . import surfaces", "softening_lib.tasks") >= {
        "softening_lib.tasks.surfaces"}


def test_changed_parameter_changes_only_that_chapters_key(tiny_notebook, tmp_path):
    other = tmp_path / "44_other.ipynb"
    other.write_bytes(tiny_notebook.read_bytes())
    before = {r.chapter: r.key for r in runner.plan([str(tiny_notebook), str(other)], preset="smoke")}
    again = {r.chapter: r.key for r in runner.plan([str(tiny_notebook), str(other)], preset="smoke")}
    assert before == again
    (changed,) = runner.plan([str(tiny_notebook)], preset="smoke", extra={"n": 4})
    (same,) = runner.plan([str(other)], preset="smoke")
    assert changed.key != before["42_tiny"] and same.key == before["44_other"]


def test_other_models_get_their_own_page_and_title(tiny_notebook):
    (default,) = runner.plan([str(tiny_notebook)], preset="smoke")
    (mine,) = runner.plan([str(tiny_notebook)], models=["mypkg.calc:make"], preset="smoke")
    (via_p,) = runner.plan([str(tiny_notebook)], preset="smoke", extra={"models": ["mypkg.calc:make"]})
    assert default.output.name == "42_tiny.ipynb"
    assert mine.output.name == via_p.output.name == "42_tiny__mypkg-calc-make.ipynb"
    nb = nbformat.read(tiny_notebook, as_version=4)
    nb.cells.insert(0, nbformat.v4.new_markdown_cell("# 42. Tiny\n\ntext"))
    out = runner.STAGE / "chapters" / mine.output.name
    out.parent.mkdir(parents=True)
    nbformat.write(nb, out)
    runner._tidy(out, ["mypkg.calc:make"])
    runner._tidy(out, ["mypkg.calc:make"])  # idempotent
    title = nbformat.read(out, as_version=4).cells[0].source.splitlines()[0]
    assert title == "# 42. Tiny -- with `mypkg.calc:make`"


def test_toc_lists_each_extra_model_page_under_its_chapter(tiny_notebook, monkeypatch):
    chapters = runner.STAGE / "chapters"
    chapters.mkdir(parents=True)
    for stem in ("05_ion_migration", "05_ion_migration__a-b-make", "05_ion_migration__c-d-make", "06_phonons"):
        (chapters / f"{stem}.ipynb").write_text("{}")
    toc = runner.yaml.safe_load(runner.write_toc().read_text())
    entries = {c["file"]: c for part in toc["parts"] for c in part["chapters"]}
    assert [s["file"] for s in entries["chapters/05_ion_migration"]["sections"]] == [
        "chapters/05_ion_migration__a-b-make", "chapters/05_ion_migration__c-d-make"]
    assert "sections" not in entries["chapters/06_phonons"]
    assert "chapters/02_surfaces" not in entries  # not executed in this build


def test_stage_static_serves_mathjax_locally(tiny_notebook):
    runner.stage_static()
    cfg = runner.yaml.safe_load((runner.STAGE / "_config.yml").read_text())["sphinx"]["config"]
    static = runner.STAGE / cfg["html_static_path"][0]
    # Jupyter Book puts every .js under a book's _static on every page: MathJax must not be there
    assert not (runner.STAGE / "_static").exists()
    assert cfg["html_js_files"] == ["plotly.min.js"]
    assert cfg["mathjax_path"] == "mathjax/tex-mml-chtml.js"
    assert "://" not in cfg["mathjax_path"]  # relative to _static, never a CDN
    entry = static / cfg["mathjax_path"]
    assert entry.stat().st_size > 500_000 and b'VERSION="3.' in entry.read_bytes()  # MathJax 3
    fonts = list((static / "mathjax" / "output" / "chtml" / "fonts" / "woff-v2").glob("*.woff"))
    assert len(fonts) > 10
    assert (static / "mathjax" / "input" / "tex" / "extensions" / "boldsymbol.js").is_file()  # autoloaded
    assert (static / "plotly.min.js").is_file()
    # a second staging copies nothing (mtimes kept: Sphinx sees no change)
    mtime = entry.stat().st_mtime_ns
    runner.stage_static()
    assert entry.stat().st_mtime_ns == mtime


def test_cli_passes_chapter_parameters_to_book_and_run(monkeypatch):
    from softening_lib import cli

    calls = []
    monkeypatch.setattr(runner, "run_and_build", lambda *a, **k: calls.append(("book", a, k)))
    monkeypatch.setattr(runner, "plan", lambda *a, **k: calls.append(("plan", a, k)) or [])
    monkeypatch.setattr(runner, "execute", lambda runs, **k: [])
    assert cli.main(["book", "--chapter", "04", "-p", "seed=1", "--preset", "smoke"]) == 0
    assert cli.main(["run", "-c", "05", "-m", "mypkg.calc:make", "-p", "profile_path='MgO-vac-s1'"]) == 0
    (_, args, kw), (_, pargs, _) = calls
    assert args[:3] == (["04"], None, "smoke") and kw["extra"] == {"seed": 1}
    assert pargs == (["05"], ["mypkg.calc:make"], "default", {"profile_path": "MgO-vac-s1"})


# --------------------------------------------------------------------------------------
# the data part of a chapter's key: only the reference data its own code reads
# --------------------------------------------------------------------------------------

@pytest.fixture
def reference_tree(tmp_path):
    """A copy-free stand-in for the repo's data/: a few reference folders and a manifest with
    one ``local:`` dataset in data/reference (the real data/reference is never written)."""
    root = tmp_path / "tree"
    ref = root / "data" / "reference"
    for rel in ("surfaces_gpaw/bulk-Al-100-t0.json", "gpaw_validation/mp-149.json",
                "wbm_he_gpaw/wbm-1-1.extxyz", "tiny_mace/tiny_mace.json", "README.md"):
        (ref / rel).parent.mkdir(parents=True, exist_ok=True)
        (ref / rel).write_text(rel)
    (root / "data" / "datasets.yml").write_text(
        "wbm-he-gpaw:\n  local: data/reference/wbm_he_gpaw\n  reader: wbm_he_gpaw\n"
        "wbm-equilibrium:\n  mirror: wbm\n  reader: wbm_equilibrium\n")
    notebooks = {}
    for stem, source in {"45_plain": "from softening_lib import config",
                         "46_data": "from softening_lib import datasets",
                         "47_validation": "from softening_lib.tasks import gpaw_validation"}.items():
        nb = new_notebook(cells=[new_code_cell('preset = "default"', metadata={"tags": ["parameters"]}),
                                 new_code_cell(source)])
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        notebooks[stem] = tmp_path / f"{stem}.ipynb"
        nbformat.write(nb, notebooks[stem])
    return root, notebooks


def _keys(root, notebooks):
    runs = runner.plan([str(p) for p in notebooks.values()], preset="smoke", data_root=root)
    return {r.chapter: r.key for r in runs}, {r.chapter: r.inputs for r in runs}


def test_reference_data_counts_only_for_the_chapters_that_read_it(reference_tree):
    root, notebooks = reference_tree
    ref = root / "data" / "reference"
    keys, inputs = _keys(root, notebooks)
    folders = {c: sorted({f.split("/")[2] for f in i["data"] if f.count("/") > 2}) for c, i in inputs.items()}
    assert folders["45_plain"] == []  # declares nothing: manifest and top-level files only
    assert set(inputs["45_plain"]["data"]) == {"data/datasets.yml", "data/reference/README.md"}
    assert "wbm_he_gpaw" in folders["46_data"] and "gpaw_validation" not in folders["46_data"]
    assert {"gpaw_validation", "wbm_he_gpaw"} <= set(folders["47_validation"])
    assert "tiny_mace" not in {f for v in folders.values() for f in v}  # finetune is in no closure here

    # a campaign record in a folder only the validation appendix reads: only its key changes
    (ref / "gpaw_validation" / "mp-23330.json").write_text("{}")
    new, new_inputs = _keys(root, notebooks)
    assert new["47_validation"] != keys["47_validation"]
    assert new["45_plain"] == keys["45_plain"] and new["46_data"] == keys["46_data"]
    assert "data: data/reference/gpaw_validation/mp-23330.json" in runner.what_changed(
        inputs["47_validation"], new_inputs["47_validation"])
    keys, inputs = new, new_inputs

    # a frame added to a local dataset's folder: every chapter that loads datasets
    (ref / "wbm_he_gpaw" / "wbm-2-2.extxyz").write_text("frame")
    new, _ = _keys(root, notebooks)
    assert new["46_data"] != keys["46_data"] and new["47_validation"] != keys["47_validation"]
    assert new["45_plain"] == keys["45_plain"]
    keys = new

    # a file directly in data/reference, or the manifest: every chapter
    (ref / "NOTES.md").write_text("x")
    new, _ = _keys(root, notebooks)
    assert all(new[c] != keys[c] for c in keys)
    keys = new
    with open(root / "data" / "datasets.yml", "a") as fh:
        fh.write("# edited\n")
    new, _ = _keys(root, notebooks)
    assert all(new[c] != keys[c] for c in keys)


def test_declared_reference_dirs_are_read_from_source(tmp_path):
    mod = tmp_path / "m.py"
    mod.write_text('"""doc"""\nimport os\nREFERENCE_DIRS = ("a_gpaw", "b")\nX = 1\n')
    assert runner.declared_reference_dirs(mod) == ("a_gpaw", "b")
    mod.write_text('REFERENCE_DIRS: tuple = ("a",)\n')
    assert runner.declared_reference_dirs(mod) == ("a",)
    mod.write_text("def f():\n    REFERENCE_DIRS = ('local',)\n")  # module level only
    assert runner.declared_reference_dirs(mod) == ()
    mod.write_text("REFERENCE_DIRS = tuple(x for x in 'ab')\n")
    with pytest.raises(runner.RunnerError, match="literal"):
        runner.declared_reference_dirs(mod)
    # the real manifest: the GPAW campaign's dataset lives in data/reference
    assert "wbm_he_gpaw" in runner.dataset_reference_dirs()


def test_declared_reference_dirs_match_the_folders_the_modules_read():
    import re

    from softening_lib import config, finetune
    from softening_lib.tasks import defects, gpaw_validation, migration, softening_primer, solid_solution, surfaces

    read = {
        softening_primer: {softening_primer.REFERENCE_DIR},
        migration: {migration.reference_dir()},
        surfaces: {surfaces.reference_dir()},
        defects: {defects.reference_dir()},
        solid_solution: {solid_solution.reference_dir()},
        gpaw_validation: {gpaw_validation.validation_dir(), gpaw_validation.convergence_dir(),
                          gpaw_validation.campaign_dir()},
        finetune: {finetune.tiny_mace_path().parent},
    }
    for module, dirs in read.items():
        assert {d.relative_to(config.reference_dir()).parts[0] for d in dirs} == set(module.REFERENCE_DIRS)
        # what the runner reads without importing is what the module holds
        assert runner.declared_reference_dirs(module.__file__) == module.REFERENCE_DIRS
    # every library module that reads data/reference through config declares what it reads
    lib = runner.ROOT / "softening_lib"
    for path in lib.rglob("*.py"):
        if path.name != "config.py" and re.search(r"\breference_dir\(\)", path.read_text()):
            assert runner.declared_reference_dirs(path), f"{path.relative_to(lib)} reads data/reference " \
                                                         "but declares no REFERENCE_DIRS"
