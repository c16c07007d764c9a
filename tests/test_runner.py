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
    assert other.status == "executed" and other.output.name.startswith("42_tiny__ase-calculators-emt-emt-")
    # the kernel knows its page (run records and figures are filed under it)
    assert f"page {other.output.stem}" in json.dumps(nbformat.read(other.output, as_version=4).cells[-1].outputs)
    assert run.output.is_file()  # the default page is still there
    # a failing run keeps the executed notebook as a report
    (bad,) = runner.execute(runner.plan([str(tiny_notebook)], preset="smoke", extra={"n": -1}),
                            log=lambda *_: None)
    assert bad.status == "failed" and "n must be positive" in bad.error
    assert (runner.REPORTS / f"{bad.output.stem}.failed.ipynb").is_file()
    assert not bad.output.exists()  # the failed page is not left in the staged book
    assert run.output.is_file() and other.output.is_file()  # nor does it remove another page


def test_cli_models_and_data_tables():
    out = subprocess.run([sys.executable, "-m", "softening_lib", "models"], capture_output=True, text=True,
                         check=True).stdout
    assert "chgnet-0.3.0" in out and "mace-mp-0-medium" in out
    assert "fix: download" in out  # MACE's weights are not here: the row says how to get them
    assert max(map(len, out.splitlines())) <= 100  # fits a terminal
    out = subprocess.run([sys.executable, "-m", "softening_lib", "data"], capture_output=True, text=True,
                         check=True).stdout
    assert "wbm-he-figshare" in out and "jageo-pbe-68" in out
    assert max(map(len, out.splitlines())) <= 100


def test_cli_unknown_chapter_is_a_clear_error():
    proc = subprocess.run([sys.executable, "-m", "softening_lib", "run", "--chapter", "77"],
                          capture_output=True, text=True)
    assert proc.returncode == 1 and "no chapter '77'" in proc.stderr


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
    assert mine.output.name == via_p.output.name and mine.output.stem.startswith("42_tiny__mypkg-calc-make-")
    nb = nbformat.read(tiny_notebook, as_version=4)
    nb.cells.insert(0, nbformat.v4.new_markdown_cell("# 42. Tiny\n\ntext"))
    out = runner.STAGE / "chapters" / mine.output.name
    out.parent.mkdir(parents=True)
    nbformat.write(nb, out)
    runner._tidy(out, None, ["mypkg.calc:make"])
    runner._tidy(out, None, ["mypkg.calc:make"])  # idempotent
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
    assert entries["chapters/02_surfaces"] == {"file": "chapters/02_surfaces"}  # a placeholder page
    assert (chapters / "02_surfaces.md").is_file()


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
    assert cli.main(["run", "-c", "05", "-m", "ase.calculators.emt:EMT", "--no-compute",
                     "-p", "profile_path='MgO-vac-s1'"]) == 0
    (_, args, kw), = [c for c in calls if c[0] == "book"]
    (_, pargs, _) = [c for c in calls if c[0] == "plan"][-1]
    assert args[:3] == (["04_solid_solution"], None, "smoke") and kw["extra"] == {"seed": 1}
    assert pargs == (["05_ion_migration"], ["ase.calculators.emt:EMT"], "default", {"profile_path": "MgO-vac-s1"})




# --------------------------------------------------------------------------------------
# pages: names, placeholders, parameters shown, failures keep the old page
# --------------------------------------------------------------------------------------

def test_inputs_that_read_alike_get_pages_of_their_own():
    a = runner.page_for("07_x", {"models": ["chgnet_0.3.0"]})
    b = runner.page_for("07_x", {"models": ["chgnet-0.3.0"]})
    c = runner.page_for("07_x", {"seed": 1})
    assert len({a, b, c, "07_x"}) == 4 and all(p.startswith("07_x__") for p in (a, b, c))
    assert runner.page_for("07_x", {}) == "07_x"
    assert runner.page_for("07_x", {"models": ["chgnet-0.3.0"]}) == b  # stable


def test_chapter_numbers_must_exist():
    with pytest.raises(runner.RunnerError, match="no chapter '0'"):
        runner.find_chapter("0")
    assert runner.find_chapter("1").stem == "01_softening_primer"
    assert runner.find_chapter("ion_migration").stem == "05_ion_migration"
    assert runner.find_chapter("appendix").stem == "appendix_gpaw_validation"


def test_parameters_cell_shows_the_values_used():
    src = 'models = ["@default"]   # registry names or tags\npreset = "default"\nsystem = "Si"  # a scan\n'
    out = runner._set_parameters_source(src, {"models": ["chgnet-0.3.0", "emt"], "preset": "smoke"})
    assert out == ("models = ['chgnet-0.3.0', 'emt']   # registry names or tags\npreset = 'smoke'\n"
                   'system = "Si"  # a scan\n')


def test_unexecuted_chapters_get_a_placeholder_and_extra_pages_stay_in_the_toc(tiny_notebook):
    chapters = runner.STAGE / "chapters"
    chapters.mkdir(parents=True)
    (chapters / "07_high_energy_states__sevennet-0-abc123.ipynb").write_text("{}")
    toc = runner.yaml.safe_load(runner.write_toc().read_text())
    entries = {c["file"]: c for part in toc["parts"] for c in part["chapters"]}
    # the extra page is listed although its base chapter was not executed in this build
    assert [s["file"] for s in entries["chapters/07_high_energy_states"]["sections"]] == [
        "chapters/07_high_energy_states__sevennet-0-abc123"]
    placeholder = chapters / "07_high_energy_states.md"
    assert placeholder.read_text().startswith("# 7.") and "--chapter 07" in placeholder.read_text()
    assert (chapters / "appendix_gpaw_validation.md").is_file()  # cross-references stay valid
    (chapters / "07_high_energy_states.ipynb").write_text("{}")  # executed later: replaces it
    runner.write_toc()
    assert not placeholder.exists()


def test_second_run_of_a_page_refuses_at_once_naming_the_first(tiny_notebook):
    with runner._lock("page-42_tiny", wait=False):
        with pytest.raises(runner.RunnerError, match=r"page 42_tiny is being executed by pid \d+"):
            with runner._lock("page-42_tiny", wait=False, what="page 42_tiny"):
                pass


# --------------------------------------------------------------------------------------
# change detection on what a chapter really used
# --------------------------------------------------------------------------------------

def test_key_follows_the_modules_and_files_the_last_run_used(tiny_notebook, tmp_path, monkeypatch):
    used_mod, other_mod = tmp_path / "used_mod.py", tmp_path / "other_mod.py"
    data = tmp_path / "data.json"
    folder = tmp_path / "folder"
    folder.mkdir()
    for f in (used_mod, other_mod, data):
        f.write_text("x = 1\n")
    monkeypatch.setattr(runner, "_digest", lambda p: runner.hashlib.sha256(p.read_bytes()).hexdigest()
                        if p.is_file() else "missing")  # the temporary files live outside the repo
    (first,) = runner.plan([str(tiny_notebook)], preset="smoke")
    assert runner.what_changed(None, first.inputs) == "not executed before"
    used = {"modules": [str(used_mod)], "files": [str(data)], "dirs": [str(folder)]}
    runner._update_shared("chapters/42_tiny.ipynb", "k", {**first.inputs, "used": used})

    def key():
        (run,) = runner.plan([str(tiny_notebook)], preset="smoke")
        return run.key, run.inputs

    k0, inputs0 = key()
    other_mod.write_text("x = 2\n")  # a module the chapter did not import
    assert key()[0] == k0
    used_mod.write_text("x = 2\n")  # one it did
    k1, inputs1 = key()
    assert k1 != k0 and runner.what_changed(inputs0, inputs1) == f"code: {used_mod}"
    data.write_text("{}")  # a file it read
    k2, _ = key()
    assert k2 != k1
    (folder / "new-record.json").write_text("{}")  # a folder it listed gains a file
    assert key()[0] != k2


@pytest.mark.slow
def test_a_run_records_what_it_imported_and_read(tmp_path, monkeypatch):
    """A real kernel: the record names the library modules the chapter imported and the data
    file it read, and none it did not."""
    for name, value in {"BUILD": tmp_path / "_build", "STAGE": tmp_path / "_build" / "src",
                        "REPORTS": tmp_path / "_build" / "reports"}.items():
        monkeypatch.setattr(runner, name, value)
    nb = new_notebook(cells=[
        new_code_cell('models = ["emt"]\npreset = "smoke"', metadata={"tags": ["parameters"]}),
        new_code_cell("from softening_lib import book, metrics\n"
                      "ctx = book.setup_chapter('48', models=models, preset=preset)\n"
                      "open(book.config.REPO_ROOT / 'data' / 'datasets.yml').read()\n"
                      "ctx.glue('answer', 42)\n"
                      "ctx.finish();"),
        nbformat.v4.new_markdown_cell("The answer is {glue:text}`answer`.\n\nNever glued: {glue:text}`missing`."),
    ])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = tmp_path / "48_used.ipynb"
    nbformat.write(nb, path)
    (run,) = runner.execute(runner.plan([str(path)], preset="smoke"), log=lambda *_: None)
    assert run.status == "executed", run.error
    inputs = runner._load_json(runner._inputs_path())["chapters/48_used.ipynb"]
    assert "softening_lib/metrics.py" in inputs["code"] and "softening_lib/book.py" in inputs["code"]
    assert not any("tasks/" in f for f in inputs["code"])
    assert "data/datasets.yml" in inputs["data"]
    page = nbformat.read(run.output, as_version=4).cells[-1].source
    assert "The answer is" in page and "Never glued" not in page  # a real kernel's glue is read
    (again,) = runner.execute(runner.plan([str(path)], preset="smoke"), log=lambda *_: None)
    assert again.status == "cached"


def test_glued_values_are_read_as_myst_nb_writes_them():
    """ctx.glue(display=False) stores papermill-record mime types; both forms are read."""
    nb = new_notebook(cells=[new_code_cell("x")])
    nb.cells[0].outputs = [
        nbformat.v4.new_output("display_data", data={"application/papermill.record/text/plain": "60"},
                               metadata={"scrapbook": {"mime_prefix": "application/papermill.record/", "name": "n"}}),
        nbformat.v4.new_output("display_data", data={"text/plain": "0.5"},
                               metadata={"scrapbook": {"mime_prefix": "", "name": "s"}}),
    ]
    assert runner.glued_values(nb) == {"n": "60", "s": "0.5"}


def test_prose_quoting_a_value_this_run_did_not_produce_is_left_out():
    src = ("# T\n\nCHGNet has s = {glue:text}`s_chgnet:.2f`.\nMore of it.\n\nKept: {glue:text}`n`.\n\n"
           "| model | s |\n|---|---|\n| CHGNet | {glue:text}`s_chgnet:.2f` |\n| M3GNet | {glue:text}`s_m3g:.2f` |\n\n"
           "- one {glue:text}`s_chgnet`\n  continued\n- two {glue:text}`n`\n\n"
           "```{admonition} Solutions\n:class: dropdown\n1. {glue:text}`gone`\n\n2. x\n```\nend")
    text, dropped = runner.drop_unbacked_prose(src, {"n": "3", "s_chgnet": "nan", "s_m3g": "0.8"})
    assert "s_chgnet" not in text and "gone" not in text and "More of it" not in text
    assert "Kept: {glue:text}`n`." in text and "| M3GNet |" in text and "- two" in text and text.endswith("end")
    assert set(dropped) == {"s_chgnet", "gone"}
    same, none = runner.drop_unbacked_prose(src, {"n": "3", "s_chgnet": "0.9", "s_m3g": "0.8", "gone": "'x'"})
    assert none == [] and same == src


def test_code_is_folded_for_readers_except_parameters_and_show_input(tmp_path):
    nb = new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# 42. Tiny"),
        new_code_cell('models = ["@test"]\npreset = "default"', metadata={"tags": ["parameters"]}),
        new_code_cell("x = 1"),
        new_code_cell("book.how_to_call()", metadata={"tags": ["show-input"]}),
        new_code_cell("ctx.finish()", metadata={"tags": ["remove-cell"]}),
    ])
    path = tmp_path / "42_tiny.ipynb"
    nbformat.write(nb, path)
    runner._tidy(path, {"models": ["emt"], "preset": "smoke"})
    cells = nbformat.read(path, as_version=4).cells
    assert [c.metadata.get("tags", []) for c in cells[1:]] == [
        ["parameters"], ["hide-input"], ["show-input"], ["remove-cell"]]
    assert cells[1].source == "models = ['emt']\npreset = 'smoke'"


def test_editing_a_users_factory_changes_its_pages_key(tiny_notebook, tmp_path, monkeypatch):
    mod = tmp_path / "usermods" / "my_factory_mod.py"
    mod.parent.mkdir()
    mod.write_text("def make():\n    from ase.calculators.emt import EMT\n    return EMT()\n")
    monkeypatch.syspath_prepend(str(mod.parent))
    (before,) = runner.plan([str(tiny_notebook)], models=["my_factory_mod:make"], preset="smoke")
    (same,) = runner.plan([str(tiny_notebook)], models=["my_factory_mod:make"], preset="smoke")
    mod.write_text(mod.read_text().replace("return EMT()", "return EMT()  # edited"))
    (after,) = runner.plan([str(tiny_notebook)], models=["my_factory_mod:make"], preset="smoke")
    assert before.key == same.key and after.key != before.key
    assert after.output == before.output  # the same page, re-executed
    assert runner.what_changed(before.inputs, after.inputs) == "model_ids"


@pytest.mark.slow
def test_changed_page_rules_re_render_cached_pages_without_executing(tiny_notebook, monkeypatch):
    (run,) = runner.execute(runner.plan([str(tiny_notebook)], preset="smoke"), log=lambda *_: None)
    assert run.status == "executed"
    lines = []
    runner.execute(runner.plan([str(tiny_notebook)], preset="smoke"), log=lines.append)
    assert "re-rendered" not in lines[-1]
    monkeypatch.setattr(runner, "render_key", lambda: "new-rules")
    (again,) = runner.execute(runner.plan([str(tiny_notebook)], preset="smoke"), log=lines.append)
    assert again.status == "cached" and "re-rendered" in lines[-1]
    assert nbformat.read(again.output, as_version=4).metadata["softening"]["render_key"] == "new-rules"




def test_table_cells_without_a_value_read_as_a_dash(tmp_path):
    import pandas as pd

    nb = new_notebook(cells=[nbformat.v4.new_markdown_cell("# 42. Tiny"), new_code_cell("table")])
    html = pd.DataFrame({"s": [0.9, float("nan")], "n": [pd.NA, 3]}).to_html()
    nb.cells[1].outputs = [nbformat.v4.new_output("execute_result", data={"text/html": html, "text/plain": "x"},
                                                  execution_count=1)]
    path = tmp_path / "42_tiny.ipynb"
    nbformat.write(nb, path)
    runner._tidy(path)
    out = nbformat.read(path, as_version=4).cells[1].outputs[0]["data"]["text/html"]
    assert "NaN" not in out and "&lt;NA&gt;" not in out and out.count("<td>–</td>") == 2 and "0.9" in out


def test_plain_pages_drop_passages_whose_cross_page_glue_is_missing(tmp_path):
    import nbformat

    (tmp_path / "chapters").mkdir()
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("x")
    cell.outputs = [nbformat.v4.new_output("display_data", data={"text/plain": "6.47"},
                                           metadata={"scrapbook": {"name": "red"}})]
    nb.cells = [cell]
    nbformat.write(nb, tmp_path / "chapters" / "08_x.ipynb")
    src = ("1. Kept: {glue:text}`chapters/08_x.ipynb::red:.0f` % (chapter 8).\n"
           "2. Left out: {glue:text}`chapters/08_x.ipynb::nothing:.0f`.\n"
           "3. Left out: {glue:text}`chapters/09_not_staged.ipynb::red`.\n4. Plain.\n")
    text, dropped = runner.drop_unbacked_cross_page(src, tmp_path)
    assert text.splitlines() == ["1. Kept: {glue:text}`chapters/08_x.ipynb::red:.0f` % (chapter 8).", "4. Plain."]
    assert sorted(dropped) == ["chapters/08_x.ipynb::nothing", "chapters/09_not_staged.ipynb::red"]

