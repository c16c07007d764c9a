"""The paper's numbers: one module, transcribed from the spec, glued for the prose."""

import math
import os
from pathlib import Path

import pytest

from softening_lib import paper

SPEC = Path(os.environ.get("SOFTENING_SPEC", "/work/shared/spec/PAPER.md"))


def test_every_number_cites_a_figure_or_table():
    for key, n in paper.NUMBERS.items():
        assert n.where.split()[0] in ("Fig.", "Table", "Methods", "SI"), key
        assert key.split("_")[0].lower().replace("fig", "fig. ").startswith(
            n.where.split()[0].lower()[:3]) or n.where == "Methods", key
        assert n.bound in ("", ">", "<", "~")


@pytest.mark.skipif(not SPEC.is_file(), reason="the project's spec PAPER.md is not here")
def test_numbers_are_those_of_the_spec():
    spec = SPEC.read_text()
    for key, n in paper.NUMBERS.items():
        v = n.value
        forms = {f"{v:g}", str(v), f"{v:.2f}", f"{v:.3f}", f"{v:.0e}".replace("e-0", "e-")}
        if isinstance(v, float) and v == int(v):
            forms.add(str(int(v)))
        assert any(f in spec for f in forms), f"{key}={v} not found in PAPER.md"


def test_old_keys_still_answer():
    assert paper.published("high_energy.mp973966.s.chgnet-0.3.0") == 0.859
    assert paper.published("high_energy.wbm.fraction_s_below_1") == pytest.approx(0.90)
    assert paper.published("fig5a_s_chgnet") == 0.859
    with pytest.raises(KeyError):
        paper.number("fig99_nothing")


def test_text_writes_bound_unit_and_figure():
    assert paper.text("fig5b_pct_s_below_1") == "more than 90 % (Fig. 5b)"
    assert paper.text("fig5a_s_chgnet") == "0.859 (Fig. 5a)"
    assert paper.text("fig3_mae_chgnet") == "0.39 eV (Fig. 3)"


class _Ctx:
    def __init__(self):
        self.glued = {}

    def glue(self, name, value):
        self.glued[name] = value
        return value


def test_glue_all_and_the_versus_table():
    ctx = _Ctx()
    paper.glue_all(ctx, ["fig5a_s_chgnet", "fig6b_pct_reduction"])
    assert ctx.glued == {"paper_fig5a_s_chgnet": 0.859, "paper_fig5a_s_chgnet_text": "0.859 (Fig. 5a)",
                         "paper_fig6b_pct_reduction": 15, "paper_fig6b_pct_reduction_text": "about 15 % (Fig. 6b)"}
    paper.glue_all(ctx)
    assert all(f"paper_{k}" in ctx.glued for k in paper.NUMBERS)
    table = paper.versus([
        {"quantity": "s, CHGNet", "paper": "fig5a_s_chgnet", "ours": 0.9, "same": False, "why": "other data"},
        {"quantity": "s, a model that did not run", "paper": None, "ours": None},
        {"quantity": "s, nan", "paper": None, "ours": math.nan},
    ])
    assert list(table.index) == ["s, CHGNet"]
    assert table.loc["s, CHGNet", "paper"] == "0.859 (Fig. 5a)" and table.loc["s, CHGNet", "same definition"] == "no"
    assert paper.for_model("fig3_mae", "chgnet-0.3.0") == "fig3_mae_chgnet"
    assert paper.for_model("fig3_mae", "tensornet-matpes-pbe") is None
