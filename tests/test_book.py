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
