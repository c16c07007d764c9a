"""What a reader's page may show: no build-machine paths, no nan in prose, solutions only in
the teacher's edition, interactive figures whose hover names the material, exercises in
every chapter."""

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from softening_lib import config, pages, plots, runner
from softening_lib.sphinx_ext import is_solution_title

ROOT = Path(__file__).resolve().parent.parent


def test_scrub_writes_paths_relative(monkeypatch, tmp_path):
    mirror = tmp_path / "mirror"
    (mirror / "wbm").mkdir(parents=True)
    monkeypatch.setenv("SOFTENING_DATA_DIR", str(mirror))
    monkeypatch.setenv("SOFTENING_CACHE_DIR", str(tmp_path / "cache"))
    text = (f"not found (looked in {mirror}/wbm/x.json; download cache {tmp_path}/cache/downloads/x.json); "
            f"results in {config.REPO_ROOT}/data/results/high_energy")
    out = pages.scrub(text)
    assert "$SOFTENING_DATA_DIR/wbm/x.json" in out and "$SOFTENING_CACHE_DIR/downloads/x.json" in out
    assert " data/results/high_energy" in out
    assert str(tmp_path) not in out and str(config.REPO_ROOT) not in out
    assert pages.scrub(f"{mirror}other/file") == f"{mirror}other/file"  # a prefix of a name is not a folder


def test_scrub_notebook_outputs(monkeypatch, tmp_path):
    import nbformat

    monkeypatch.setenv("SOFTENING_DATA_DIR", str(tmp_path))
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("x")
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=f"read {tmp_path}/a.json\n"),
                    nbformat.v4.new_output("display_data", data={"text/html": f"<td>{tmp_path}/b</td>",
                                                                 "text/plain": f"{tmp_path}/b"})]
    nb.cells.append(cell)
    assert runner.scrub_local_paths(nb) == 3
    assert str(tmp_path) not in nbformat.writes(nb)


def test_html_problems_finds_paths_and_nan(tmp_path):
    good = "<main><p>s = 0.91 for NaCl</p><pre>x = float('nan')</pre><table><td>NaN</td></table></main>"
    bad = "<main><p>The median is nan and the file is /work/shared/data/wbm/x.json</p></main>"
    (tmp_path / "good.html").write_text(good)
    (tmp_path / "bad.html").write_text(bad)
    found = pages.html_problems(tmp_path)
    assert list(found) == ["bad.html"]
    assert any("nan" in p for p in found["bad.html"]) and any("/work/shared" in p for p in found["bad.html"])


def test_solution_titles_and_blocks():
    assert is_solution_title("Solutions") and is_solution_title("Solution 2") and is_solution_title("solution:")
    assert not is_solution_title("Hint") and not is_solution_title("Exercises")
    text = "x\n\n```{admonition} Solutions\n:class: dropdown\n\n1. The answer is 42.\n```\n\n```{admonition} Hint\n:class: dropdown\nLook.\n```\n"
    assert pages.solution_texts(text) == ["1. The answer is 42."]


def _parity_table():
    return pd.DataFrame({"model": ["chgnet-0.3.0"] * 3 + ["m3gnet-mp-2021.2.8"] * 3, "dft": np.arange(1.0, 7.0),
                         "pred": np.arange(1.0, 7.0) * 0.9, "material_id": list("abcdef"),
                         "formula": ["NaCl"] * 6, "frame": range(6)})


def test_parity_interactive_hover_and_legend():
    fig = plots.parity_interactive(_parity_table(), "dft", "pred", xlabel="E DFT (eV)", ylabel="E model (eV)")
    models = [t for t in fig.data if t.name != "y = x"]
    assert [t.name for t in models] == [plots.label("chgnet-0.3.0"), plots.label("m3gnet-mp-2021.2.8")]
    assert all(t.type == "scatter" for t in fig.data)  # SVG: no WebGL needed to read a tooltip
    template = models[0].hovertemplate
    for word in ("material", "formula", "frame", "E DFT (eV)", "E model (eV)"):
        assert word in template
    assert list(models[0].customdata[:, 0]) == ["a", "b", "c"]
    assert fig.layout.legend.orientation == "h"  # under the plot, never over the data
    html = plots.interactive_html(fig, "fig2a")
    assert 'class="softening-interactive"' in html and "cdn.plot.ly" not in html


def test_histogram_interactive_rug_names_materials():
    table = pd.DataFrame({"model": ["chgnet-0.3.0"] * 4, "dataset": ["a", "a", "b", "b"],
                          "s": [0.8, 0.9, 1.0, 3.0], "material_id": ["mp-1", "mp-2", "mp-3", "mp-4"],
                          "formula": ["Si", "C", "Ge", "Sn"]})
    fig = plots.histogram_interactive(table, "s", facet="dataset", xlabel="softening scale s", nbins=10)
    rugs = [t for t in fig.data if t.type == "scatter"]
    assert len(rugs) == 2 and "material" in rugs[0].hovertemplate
    assert sorted(rugs[1].customdata[:, 0]) == ["mp-3", "mp-4"]
    hists = [t for t in fig.data if t.type == "histogram"]
    assert [h.showlegend for h in hists] == [True, False]  # one legend entry per model


def test_dispersion_interactive_one_legend_entry_per_model():
    d = np.linspace(0, 1, 5)
    curves = {"dft": [(d, np.c_[d, 2 * d])], "chgnet-0.3.0": [(d, np.c_[0.9 * d, 1.8 * d]), (d + 1, np.c_[d, d])]}
    fig = plots.dispersion_interactive(curves, ticks=[0, 1, 2], tick_labels=["Γ", "X", "L"])
    assert sum(bool(t.showlegend) for t in fig.data) == 2
    assert fig.data[0].name == "DFT"  # the reference first, underneath
    assert "THz" in fig.data[0].hovertemplate and list(fig.layout.xaxis.ticktext) == ["Γ", "X", "L"]


def test_ctx_figure_shows_interactive_and_png(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    from softening_lib import book

    monkeypatch.setenv("SOFTENING_RUN_DIR", str(tmp_path))
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda obj, **kw: shown.append(obj))
    ctx = book.ChapterContext(chapter="99", models=[], skipped={}, preset="smoke", requested=[])
    fig, ax = plt.subplots()
    ax.plot([0, 1])
    ctx.figure(fig, "demo", caption=f"read from {config.REPO_ROOT}/data/x.json",
               interactive=plots.parity_interactive(_parity_table(), "dft", "pred"))
    kinds = [type(o).__name__ for o in shown]
    assert kinds == ["Image", "HTML", "Markdown"]
    assert "softening-interactive" in shown[1].data
    assert str(config.REPO_ROOT) not in shown[2].data and ctx.figures[0]["interactive"]
    assert (tmp_path / "figures" / "99" / "demo.png").is_file()


def _chapter_sources():
    return runner.chapters()


@pytest.mark.parametrize("source", _chapter_sources(), ids=lambda p: p.stem)
def test_every_chapter_has_exercises_with_hints_and_solutions(source):
    text = source.read_text()
    exercises = text.split("## Exercises", 1)
    assert len(exercises) == 2, f"{source.name}: no '## Exercises' section"
    body = exercises[1].split("\n## ", 1)[0]
    outside = re.sub(r"^(`{3,}|:{3,}).*?^\1\s*$", "", body, flags=re.S | re.M)  # fenced blocks out
    numbered = re.findall(r"^\d+\.\s", outside, re.M)
    assert len(numbered) >= 2, f"{source.name}: fewer than two exercises"
    assert re.search(r"\{admonition\} Hints?\b", body), f"{source.name}: no hints"
    assert pages.solution_texts(text), f"{source.name}: no solutions block"


@pytest.mark.parametrize("source", _chapter_sources(), ids=lambda p: p.stem)
def test_headings_carry_no_math(source):
    """Titles go to the sidebar, the browser tab and the search results, where math is not
    typeset: plain text or unicode subscripts only."""
    bad = [line for line in source.read_text().splitlines() if line.startswith("#") and ("$" in line or "\\(" in line)]
    assert not bad, bad


@pytest.mark.parametrize("source", _chapter_sources(), ids=lambda p: p.stem)
def test_every_chapter_shows_how_to_call_it(source):
    text = source.read_text()
    assert re.search(r"```\{code-cell\}[^\n]*\n:tags: \[[^\]]*show-input", text), \
        f"{source.name}: no cell tagged show-input ('how to call this')"


def test_wide_table_outputs_scroll_on_screen():
    """Wide pandas tables scroll sideways at reader width instead of being cut at the column
    edge (checked by eye in headless Chromium at 1000 px; this guards the rule itself)."""
    css = (config.REPO_ROOT / "softening_lib" / "static" / "softening.css").read_text()
    screen = css[css.index("@media screen {\n  div.cell_output div.output"):]
    rule = screen[:screen.index("}")]
    assert "overflow-x: auto" in rule and "max-width: 100%" in rule
