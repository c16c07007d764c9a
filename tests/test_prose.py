"""Every number in the book's prose is glued (computed, or the paper's from paper.py), never typed."""

import pytest

from softening_lib import prose
from softening_lib.config import REPO_ROOT

PAGES = sorted(p.relative_to(REPO_ROOT).as_posix() for p in (REPO_ROOT / "chapters").glob("*.md")) + [
    "pitfalls.md", "intro.md"]


@pytest.mark.parametrize("page", PAGES)
def test_no_typed_numbers(page):
    found = prose.typed_numbers_in_file(REPO_ROOT / page)
    assert not found, f"{page}: {len(found)} typed number(s), glue them:\n" + "\n".join(map(str, found))


def test_the_allow_list():
    md = "\n".join([
        "---", "jupytext: {}", "---", "",
        "# 6. Phonons",
        "As in Fig. 5a and Figs. 2–5 of the paper (chapters 1, 7 and 10; Eq. 4; SI Fig. 3), in 2025,",
        "mp-1784 and wbm-1-2345, CHGNet 0.3.0 (v0.3.0), M3GNet-MP-2021.2.8, SevenNet-0, Li6Zn2In2(IO3)16,",
        "doi:10.1038/s41524-024-01500-6, npj Comput. Mater. **11**, 9 (2025), arXiv:2405.07105, ZnS (111),",
        "s < 1, a 2x2x2 cell, $s=\\sum xy/\\sum x^2$, $10^{-3}$ Å, $\\frac{1}{2}$, $a +",
        "2 b$ over two lines,",
        "{glue:text}`s_chgnet:.3f` and {glue:text}`paper_fig5a_s_chgnet:.3f`, `preset = 12`, [a](http://x/3),",
        "{glue:text}`chapters/08_x.ipynb::red_heldout_chgnet-0.3.0:.0f`.",
        "1. a numbered item",
        "",
        "```{code-cell}", "x = 0.859", "```",
        "```bash", "python -m softening_lib run --chapter 07 --n 5", "```",
        "```{admonition} Solutions", ":class: dropdown", "1. Typed: 0.859 here.",
        prose.HYPOTHETICAL, "2. A made-up ratio of 0.9.", "```",
        "Typed: 1000 K, 0.01 Å, 12.0 THz, $d = 0.01$ Å, 76 frames.",
    ])
    found = [t.number for t in prose.typed_numbers(md)]
    assert found == ["0.859", "1000", "0.01", "12.0", "0.01", "76"], found
    lines = {t.number: t.line for t in prose.typed_numbers(md)}
    assert md.splitlines()[lines["12.0"] - 1].startswith("Typed: 1000 K")
