import json

import pytest

from softening_lib import book


def test_parameter_types_are_checked_with_a_useful_message():
    with pytest.raises(book.ParameterError, match=r"models=\['chgnet-0.3.0'\]"):
        book.check_parameters("07", "chgnet-0.3.0", "default")
    with pytest.raises(book.ParameterError, match="preset"):
        book.check_parameters("07", ["emt"], "quick")
    with pytest.raises(book.ParameterError, match="'n_materials' must be int"):
        book.check_parameters("06", ["emt"], "smoke", n_materials=("10", int))
    book.check_parameters("06", ["emt"], "smoke", n_materials=(10, int))


def test_setup_chapter_splits_runnable_and_skipped(tmp_path, monkeypatch):
    monkeypatch.setenv("SOFTENING_RUN_DIR", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path))  # no MACE weights cache
    ctx = book.setup_chapter("99", models=["emt", "mace-mp-0-medium", "nope:nothing"], preset="smoke")
    assert ctx.models == ["emt"]
    assert set(ctx.skipped) == {"mace-mp-0-medium", "nope:nothing"}
    assert ctx.pick(1, 2, 3) == 1
    ctx.glue("answer", 42)
    ctx.use_dataset("wbm-equilibrium")
    path = ctx.finish()
    record = json.loads(path.read_text())
    assert record["models"] == ["emt"] and "mace-mp-0-medium" in record["skipped"]
    assert record["glued"]["answer"] == 42
    assert "wbm-equilibrium" in record["datasets"]
    assert record["versions"]["ase"]


def test_not_run_note_comes_from_what_ran(tmp_path, monkeypatch):
    """The prose's sentence on models that did not run is derived from the run, not typed."""
    monkeypatch.setenv("SOFTENING_RUN_DIR", str(tmp_path))
    ctx = book.setup_chapter("99", models=["emt"], preset="smoke")
    assert ctx.not_run_note() == "none"
    ctx.skipped = {"mace-mp-0-medium": "mace-mp-0-medium: the weights are not found. Fix: download them",
                   "nope:nothing": "no module named nope"}
    note = ctx.not_run_note()
    assert note.startswith("MACE-MP-0") and ": the weights are not found;" in note and "Fix" not in note and "no module named nope" in note


def test_figure_is_saved_with_caption(tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    monkeypatch.setenv("SOFTENING_RUN_DIR", str(tmp_path))
    ctx = book.setup_chapter("98", models=["emt"], preset="smoke")
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    ctx.figure(fig, "demo", caption="a line. Data: none. Models: EMT.", show=False)
    png = tmp_path / "figures" / "98" / "demo.png"
    assert png.is_file() and png.stat().st_size > 1000
    assert ctx.figures[0]["caption"].startswith("a line")


def test_record_is_filed_under_the_page_and_names_the_matgl_state(tmp_path, monkeypatch):
    import sys

    monkeypatch.setenv("SOFTENING_RUN_DIR", str(tmp_path))
    monkeypatch.setenv("SOFTENING_RUN_PAGE", "05_ion_migration__mypkg-calc-make")
    ctx = book.setup_chapter("05", models=["emt"], preset="smoke")
    path = ctx.finish()
    assert path.name == "05_ion_migration__mypkg-calc-make.json"  # never over the chapter's own record
    record = json.loads(path.read_text())
    assert record["page"] == "05_ion_migration__mypkg-calc-make" and record["chapter"] == "05"
    from softening_lib import matgl_fix

    if "matgl" not in sys.modules:
        assert record["matgl_fix"] == "matgl not loaded"
    elif matgl_fix._applied:
        assert record["matgl_fix"] == matgl_fix.describe()
    else:
        assert "no matgl model built" in record["matgl_fix"]
    matgl_fix.apply()  # what building any matgl model does
    assert book.matgl_fix_state() == matgl_fix.describe()
    assert "message direction restored" in book.matgl_fix_state()


def test_what_ran_page_shows_the_matgl_fix_state(tmp_path, monkeypatch):
    from softening_lib import matgl_fix, what_ran

    monkeypatch.setenv("SOFTENING_RUN_DIR", str(tmp_path))
    records = tmp_path / "records"
    records.mkdir()
    patched = matgl_fix.describe() if matgl_fix.apply() else "matgl 9.0 (not affected)"
    for page, state in (("04_solid_solution", patched), ("05_ion_migration", patched),
                        ("01_softening_primer", "matgl not loaded"), ("99_gone", patched)):
        (records / f"{page}.json").write_text(json.dumps({
            "chapter": page[:2], "page": page, "preset": "smoke", "models": ["emt"],
            "versions": {"ase": "3.29.0"}, "matgl_fix": state}))
    text = what_ran.render(pages={"04_solid_solution", "05_ion_migration", "01_softening_primer"})
    software = text[text.index("## Software"):]
    assert "softening_lib.matgl_fix" in software
    assert f"- {patched}: 04_solid_solution, 05_ion_migration" in software
    assert "99_gone" not in text  # records of pages not in the book are left out
    # no chapter loaded matgl: the state in the process that wrote the page
    lines = what_ran.matgl_fix_lines([{"chapter": "01", "matgl_fix": "matgl not loaded"}])
    assert lines == ["- no chapter of this build loaded matgl; in the process that wrote this page: "
                     + matgl_fix.describe()]


def test_what_ran_page_is_rendered_only_when_its_inputs_change(tmp_path, monkeypatch):
    from softening_lib import what_ran

    monkeypatch.setenv("SOFTENING_RUN_DIR", str(tmp_path / "run"))
    calls = []
    monkeypatch.setattr(what_ran, "render", lambda pages=None: calls.append(pages) or f"# page {len(calls)}\n")
    page = tmp_path / "what_ran_here.md"
    what_ran.write_page(page, pages={"01_a"})
    what_ran.write_page(page, pages={"01_a"})
    assert len(calls) == 1 and page.read_text() == "# page 1\n"
    (tmp_path / "run" / "records").mkdir(parents=True, exist_ok=True)
    (tmp_path / "run" / "records" / "01_a.json").write_text("{}")  # a chapter ran
    what_ran.write_page(page, pages={"01_a"})
    what_ran.write_page(page, pages={"01_a", "02_b"})  # another page in the book
    assert len(calls) == 3 and page.read_text() == "# page 3\n"


def test_every_chapter_is_myst_text_that_converts_to_a_valid_notebook(tmp_path):
    """Chapters are MyST Markdown notebooks (no committed .ipynb, no generator scripts): each
    converts to valid nbformat with one ``parameters`` cell, the same bytes twice (stable cell
    ids), and holds no control character (a ``"\\r"`` in a Python string once turned
    ``$E_{\\rm DFT}$`` into a carriage return)."""
    from pathlib import Path

    import nbformat

    from softening_lib import runner

    repo = Path(__file__).resolve().parent.parent
    assert not list((repo / "chapters").glob("*.ipynb")), "chapters are .md files; commit no .ipynb"
    assert not list((repo / "scripts").glob("make_ch*.py")), "chapters are edited as text, not generated"
    sources = runner.chapters()
    assert len(sources) == 12
    for src in sources:
        text = src.read_bytes().decode()
        bad = [c for c in text if ord(c) < 32 and c not in "\n"]
        assert not bad, f"{src.name}: control characters {sorted(set(map(repr, bad)))}"
        first = runner.to_notebook(src, tmp_path / "a")
        second = runner.to_notebook(src, tmp_path / "b")
        assert first.read_bytes() == second.read_bytes()
        nb = nbformat.read(first, as_version=4)
        nbformat.validate(nb)
        ids = [c.id for c in nb.cells]
        assert len(set(ids)) == len(ids), f"{src.name}: duplicate cell ids"
        tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1 and tagged[0].cell_type == "code", f"{src.name}: one parameters code cell"
        assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# "), (
            f"{src.name}: starts with its title")
        finish = [c for c in nb.cells if c.cell_type == "code" and "ctx.finish()" in c.source]
        assert len(finish) == 1 and "remove-cell" in finish[0].metadata.get("tags", []), (
            f"{src.name}: one ctx.finish() cell, tagged remove-cell (bookkeeping, not for readers)")


def test_what_ran_page_escapes_what_runs_recorded(tmp_path, monkeypatch):
    """A model name, note or reason with markup is text on the page, never HTML."""
    from softening_lib import what_ran

    monkeypatch.setenv("SOFTENING_RUN_DIR", str(tmp_path))
    evil = "x<img src=x onerror=alert(1)>"
    (tmp_path / "records").mkdir()
    (tmp_path / "records" / "07_x.json").write_text(json.dumps({
        "chapter": "07", "page": "07_x__" + evil, "preset": "smoke", "models": [evil],
        "skipped": {evil: "reason <script>alert(2)</script>"}, "notes": [f"note `{evil}`"],
        "datasets": {evil: "fp"}, "figures": [{"name": evil}]}))
    text = what_ran.render(pages={"07_x__" + evil})
    assert "<img" not in text and "<script" not in text and "&lt;img" in text
