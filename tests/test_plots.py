import numpy as np
import pandas as pd

from softening_lib import plots


def test_interactive_scatter_hover_carries_ids():
    table = pd.DataFrame({"model": ["chgnet-0.3.0"] * 3 + ["emt"] * 3, "dft": np.arange(6.0),
                          "pred": np.arange(6.0) * 0.9, "material_id": list("abcdef"),
                          "formula": ["NaCl"] * 6, "frame": range(6)})
    fig = plots.interactive_scatter(table, "dft", "pred", hover=["material_id", "formula", "frame"])
    assert len(fig.data) == 3  # two models + the diagonal
    assert list(fig.data[0].customdata[:, 0]) == ["a", "b", "c"]
    assert "material_id" in fig.data[0].hovertemplate
    html = fig.to_html(include_plotlyjs=False, full_html=False)
    assert "cdn.plot.ly" not in html  # nothing fetched from the network


def test_interactive_scatter_subsamples_reproducibly():
    n = 100
    table = pd.DataFrame({"model": ["emt"] * n, "x": np.arange(n), "y": np.arange(n)})
    a = plots.interactive_scatter(table, "x", "y", max_points=10, diagonal=False)
    b = plots.interactive_scatter(table, "x", "y", max_points=10, diagonal=False)
    assert len(a.data[0].x) == 10 and list(a.data[0].x) == list(b.data[0].x)


def test_caption_names_models_and_data():
    text = plots.caption(what="Parity.", data="jageo-pbe-68 (VASP PBE)", models=["chgnet-0.3.0", "user.mod:f"])
    assert "CHGNet 0.3.0 (0.3.0)" in text and "user.mod:f" in text and "jageo-pbe-68" in text


def test_colors_stable_and_distinct():
    assert plots.color("chgnet-0.3.0") != plots.color("m3gnet-mp-2021.2.8")
    assert plots.color("chgnet-0.3.0*1.1") == plots.color("chgnet-0.3.0")
    assert plots.color("my.pkg:thing") == plots.color("my.pkg:thing")
