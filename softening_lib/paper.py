"""The paper's published numbers (Deng et al., npj Comput. Mater. 11, 9 (2025)), as data: the
one module of the paper's numbers in the book.

Every number of the paper that a chapter, ``pitfalls.md`` or ``intro.md`` quotes lives here,
keyed and cited by its figure or table (``"Fig. 5a"``), transcribed from the project's spec
(PAPER.md). Prose never types them: a chapter glues them,

>>> ctx.glue_paper(["fig5a_s_chgnet"])          # doctest: +SKIP
>>> # prose: the paper's CHGNet s on mp-973966 is {glue:text}`paper_fig5a_s_chgnet:.3f` (Fig. 5a)

and builds its "paper vs this book" table with :func:`versus` from glued values, so a reader
sees agreement and difference, whether the two numbers share a definition, and why they differ.

Bounds the paper states as "> 90 %" or "~15 %" are stored as the number (90, 15) with
``bound`` saying how to read it (``">"``, ``"~"``, ``"<"``; ``""`` for an exact value); the
glued text of :func:`text` writes the bound in front in words ("more than 90 % (Fig. 5b)").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Sequence


@dataclass(frozen=True)
class Number:
    value: float | int
    unit: str
    where: str  # "Fig. 5a", "Table 1", "Methods"
    what: str
    bound: str = ""  # ">", "<", "~" or "" (exact)
    digits: int | None = None  # decimals as printed in the paper (0.190: 3); None: as the value reads


def _n(value, unit, where, what, bound="", digits=None):
    if digits is None and isinstance(value, float) and unit in ("eV/Å", "eV/Å²", "") and 0 < value < 1:
        digits = 3  # the paper prints forces, MAEs and scales to three decimals
    return Number(value, unit, where, what, bound, digits)


#: every published number the book quotes, by key; glue name ``paper_<key>``
NUMBERS: dict[str, Number] = {
    # ---- Table 1: the models
    "table1_params_m3gnet": _n(227.5, "k", "Table 1", "M3GNet parameters (thousands)"),
    "table1_params_chgnet": _n(412.5, "k", "Table 1", "CHGNet parameters (thousands)"),
    "table1_params_mace": _n(4.69, "M", "Table 1", "MACE-MP-0 medium parameters (millions)"),
    "table1_train_m3gnet": _n(188.3, "k", "Table 1", "MPF training structures (thousands)"),
    "table1_train_mptrj": _n(1.58, "M", "Table 1", "MPtrj training structures (millions)"),
    # ---- Methods: DFT and relaxation settings
    "methods_ediff": _n(1e-5, "eV", "Methods", "VASP electronic convergence"),
    "methods_ediffg": _n(0.02, "eV/Å", "Methods", "VASP ionic convergence", digits=2),
    "methods_fmax": _n(0.05, "eV/Å", "Methods", "MLIP relaxation fmax", digits=2),
    # ---- Fig. 2a: surface energies
    "fig2a_n_surfaces": _n(147, "", "Fig. 2a", "surfaces"),
    "fig2a_n_systems": _n(29, "", "Fig. 2a", "elements and binary compounds with surfaces"),
    "fig2a_max_miller": _n(2, "", "Fig. 2a", "largest Miller index"),
    "fig2a_min_slab": _n(10, "Å", "Fig. 2a", "slab thickness at least"),
    "fig2a_min_vacuum": _n(10, "Å", "Fig. 2a", "vacuum at least"),
    "fig2a_mae_mace": _n(0.032, "eV/Å²", "Fig. 2a", "surface-energy MAE of MACE-MP-0 (the best model)"),
    # ---- Fig. 2b: point defects
    "fig2b_n_defects_min": _n(129, "", "Fig. 2b", "defects (fewest per model)"),
    "fig2b_n_defects_max": _n(134, "", "Fig. 2b", "defects (most per model)"),
    "fig2b_n_systems": _n(32, "", "Fig. 2b", "defect host systems"),
    # ---- Fig. 2c: solid solution
    "fig2c_max_orderings": _n(52, "", "Fig. 2c", "random Ca/Mg orderings per composition, at most"),
    # ---- Fig. 3 and SI Fig. 1: Mg migration
    "fig3_n_paths": _n(470, "", "Fig. 3", "Mg migration paths"),
    "fig3_n_hosts": _n(110, "", "Fig. 3", "host oxides, halides and sulfides"),
    "fig3_n_histogram": _n(477, "", "Fig. 3", "barrier differences in the histogram"),
    "fig3_n_images": _n(5, "", "Fig. 3", "intermediate images of the example path (mp-28207)"),
    "fig3_mae_mace": _n(0.34, "eV", "Fig. 3", "barrier MAE, MACE-MP-0", digits=2),
    "fig3_mae_chgnet": _n(0.39, "eV", "Fig. 3", "barrier MAE, CHGNet", digits=2),
    "fig3_mae_m3gnet": _n(0.49, "eV", "Fig. 3", "barrier MAE, M3GNet", digits=2),
    # ---- Fig. 4: phonons
    "fig4b_n_materials": _n(229, "", "Fig. 4b", "materials in the max-frequency histogram"),
    "fig4b_pct_ratio_below_1": _n(90, "%", "Fig. 4b", "materials with model / DFT max frequency < 1", ">"),
    # ---- Fig. 5a: mp-973966 AIMD
    "fig5a_temperature": _n(1000, "K", "Fig. 5a", "AIMD temperature"),
    "fig5a_mae_m3gnet": _n(0.220, "eV/Å", "Fig. 5a", "force MAE, M3GNet, mp-973966"),
    "fig5a_mae_chgnet": _n(0.190, "eV/Å", "Fig. 5a", "force MAE, CHGNet, mp-973966"),
    "fig5a_mae_mace": _n(0.176, "eV/Å", "Fig. 5a", "force MAE, MACE-MP-0, mp-973966"),
    "fig5a_cmae_m3gnet": _n(0.184, "eV/Å", "Fig. 5a", "force cMAE, M3GNet, mp-973966"),
    "fig5a_cmae_chgnet": _n(0.162, "eV/Å", "Fig. 5a", "force cMAE, CHGNet, mp-973966"),
    "fig5a_cmae_mace": _n(0.155, "eV/Å", "Fig. 5a", "force cMAE, MACE-MP-0, mp-973966"),
    "fig5a_s_chgnet": _n(0.859, "", "Fig. 5a", "softening scale, CHGNet, mp-973966"),
    # ---- Fig. 5b: WBM high-energy states
    "fig5b_n_compounds": _n(1000, "", "Fig. 5b", "WBM compounds"),
    "fig5b_n_frames": _n(10, "", "Fig. 5b", "frames per compound"),
    "fig5b_n_strained": _n(4, "", "Fig. 5b", "strained frames per compound"),
    "fig5b_strain_pct": _n(3, "%", "Fig. 5b", "strain along the lattice vectors (+/-)"),
    "fig5b_md_ps": _n(20, "ps", "Fig. 5b", "length of the CHGNet NVT MD"),
    "fig5b_temperature": _n(1000, "K", "Fig. 5b", "MD temperature"),
    "fig5b_pct_s_below_1": _n(90, "%", "Fig. 5b", "compounds with s < 1, each of the three models", ">"),
    # ---- Fig. 6a left: one-label linear correction, CHGNet on mp-973966
    "fig6a_s_before_chgnet": _n(0.859, "", "Fig. 6a", "CHGNet s before the correction, mp-973966"),
    "fig6a_s_after_chgnet": _n(0.965, "", "Fig. 6a", "CHGNet s after the one-label correction, mp-973966"),
    "fig6a_mae_before_chgnet": _n(0.190, "eV/Å", "Fig. 6a", "CHGNet force MAE before, mp-973966"),
    "fig6a_mae_after_chgnet": _n(0.166, "eV/Å", "Fig. 6a", "CHGNet force MAE after the one-label correction"),
    "fig6a_cmae_chgnet": _n(0.162, "eV/Å", "Fig. 6a", "CHGNet cMAE (the floor a scalar can reach)"),
    # ---- Fig. 6b: over the WBM compounds
    "fig6b_pct_reduction": _n(15, "%", "Fig. 6b", "force-MAE reduction by the linear correction alone", "~"),
    # ---- Fig. 6a right, SI Figs. 3-4: fine-tuning CHGNet
    "fig6a_ft_n_structures": _n(10, "", "Fig. 6a", "fine-tuning structures (9 train, 1 validation)"),
    "fig6a_ft_n_train": _n(9, "", "Fig. 6a", "fine-tuning training structures"),
    "fig6a_ft_epochs": _n(100, "", "Methods", "fine-tuning epochs"),
    "fig6a_ft_lr_start": _n(1e-3, "", "Methods", "Adam learning rate, start"),
    "fig6a_ft_lr_end": _n(1e-5, "", "Methods", "learning rate after cosine decay"),
    "fig6a_ft_n_test": _n(100, "", "Fig. 6a", "held-out test frames"),
    "fig6a_ft_mae_chgnet": _n(0.125, "eV/Å", "Fig. 6a", "CHGNet force MAE after fine-tuning on 10 structures"),
}

#: the paper's three models, and the registry names the book runs for them
PAPER_MODELS = {"m3gnet": "m3gnet-mp-2021.2.8", "chgnet": "chgnet-0.3.0", "mace": "mace-mp-0-medium"}

# the keys of the first version of this module (``published``) -> the keys above
_OLD_KEYS = {
    "surfaces.mae_eV_per_A2.mace-mp-0-medium": "fig2a_mae_mace",
    "migration.mae_eV.mace-mp-0-medium": "fig3_mae_mace",
    "migration.mae_eV.chgnet-0.3.0": "fig3_mae_chgnet",
    "migration.mae_eV.m3gnet-mp-2021.2.8": "fig3_mae_m3gnet",
    "phonons.fraction_ratio_below_1": "fig4b_pct_ratio_below_1",
    "high_energy.mp973966.mae.m3gnet-mp-2021.2.8": "fig5a_mae_m3gnet",
    "high_energy.mp973966.mae.chgnet-0.3.0": "fig5a_mae_chgnet",
    "high_energy.mp973966.mae.mace-mp-0-medium": "fig5a_mae_mace",
    "high_energy.mp973966.cmae.m3gnet-mp-2021.2.8": "fig5a_cmae_m3gnet",
    "high_energy.mp973966.cmae.chgnet-0.3.0": "fig5a_cmae_chgnet",
    "high_energy.mp973966.cmae.mace-mp-0-medium": "fig5a_cmae_mace",
    "high_energy.mp973966.s.chgnet-0.3.0": "fig5a_s_chgnet",
    "high_energy.wbm.fraction_s_below_1": "fig5b_pct_s_below_1",
    "correction.mp973966.s_after.chgnet-0.3.0": "fig6a_s_after_chgnet",
    "correction.mp973966.mae_after.chgnet-0.3.0": "fig6a_mae_after_chgnet",
    "finetune.mp973966.mae_10_structures.chgnet-0.3.0": "fig6a_ft_mae_chgnet",
    "correction.wbm.median_reduction": "fig6b_pct_reduction",
}
#: the old flat mapping (fractions as fractions), kept for callers of the first version
PUBLISHED: dict[str, Any] = {
    old: (NUMBERS[new].value / 100 if NUMBERS[new].unit == "%" else NUMBERS[new].value)
    for old, new in _OLD_KEYS.items()
}

UNITS = {"mae": "eV/Å", "cmae": "eV/Å", "mae_eV": "eV", "mae_eV_per_A2": "eV/Å²"}


def number(key: str) -> Number:
    """The published number ``key`` (a key of :data:`NUMBERS`; ``paper_`` prefix allowed)."""
    key = key[len("paper_"):] if key.startswith("paper_") else key
    if key in NUMBERS:
        return NUMBERS[key]
    raise KeyError(f"no published number {key!r}; known: {', '.join(sorted(NUMBERS))}")


def published(key: str) -> Any:
    """The value of ``key`` (a :data:`NUMBERS` key, or a key of the first version)."""
    if key in PUBLISHED:
        return PUBLISHED[key]
    return number(key).value


def glue_name(key: str) -> str:
    return key if key.startswith("paper_") else f"paper_{key}"


def text(key: str, digits: int | None = None) -> str:
    """The number as the paper states it, with its bound, unit and source: ``"0.859 (Fig. 5a)"``,
    ``"more than 90 % (Fig. 5b)"``, ``"about 15 % (Fig. 6b)"``."""
    n = number(key)
    digits = n.digits if digits is None else digits
    if digits is None:
        value = f"{n.value:g}"
    else:
        value = f"{n.value:.{digits}f}"
    unit = {"%": " %", "": "", "k": " k", "M": " M"}.get(n.unit, f" {n.unit}")
    bound = {">": "more than ", "<": "less than ", "~": "about "}.get(n.bound, "")
    return f"{bound}{value}{unit} ({n.where})"


def glue_all(ctx, keys: Iterable[str] | None = None) -> dict[str, Any]:
    """Glue ``paper_<key>`` (the value) and ``paper_<key>_text`` (:func:`text`) for ``keys``
    (default: every published number) in the chapter ``ctx``; returns {glue name: value}."""
    out = {}
    for key in (list(keys) if keys is not None else list(NUMBERS)):
        n = number(key)
        name = glue_name(key)
        out[name] = ctx.glue(name, n.value)
        ctx.glue(f"{name}_text", text(key))
    return out


def for_model(prefix: str, model: str) -> str | None:
    """The key ``<prefix>_<m3gnet|chgnet|mace>`` that holds the paper's number for registry
    ``model``, or None when the paper has no number for it (any model outside its three)."""
    for short, name in PAPER_MODELS.items():
        if model == name and f"{prefix}_{short}" in NUMBERS:
            return f"{prefix}_{short}"
    return None


def versus(rows: Sequence[dict]):
    """The "paper vs this book" table: one row per quantity, built from glued values.

    Each row: ``quantity``, ``paper`` (a :data:`NUMBERS` key or None: the paper has no such
    number), ``ours`` (the glued value, or None: the row is left out, so only models and results
    that ran appear), ``same`` (bool: the same definition and comparable data), ``why`` (why
    the numbers differ, in plain words), optional ``digits``."""
    import math

    import pandas as pd

    out = []
    for row in rows:
        ours = row.get("ours")
        if ours is None or (isinstance(ours, float) and not math.isfinite(ours)):
            continue
        digits = row.get("digits", 3)
        key = row.get("paper")
        out.append({
            "quantity": row["quantity"],
            "paper": text(key) if key else "not reported",
            "this book": f"{ours:.{digits}f}" if isinstance(ours, float) else str(ours),
            "same definition": "yes" if row.get("same") else "no",
            "why they differ": row.get("why", ""),
        })
    return pd.DataFrame(out, columns=["quantity", "paper", "this book", "same definition", "why they differ"]
                        ).set_index("quantity")


def comparison(rows: list[tuple[str, str, Any, str]]):
    """A table ``quantity | paper | this book | data used here`` from
    ``(quantity, paper_key or None, our_value, our_data)`` rows (the first version; prefer
    :func:`versus`)."""
    import pandas as pd

    out = []
    for quantity, key, ours, data in rows:
        paper_value = published(key) if key else None
        out.append({"quantity": quantity, "paper": "—" if paper_value is None else paper_value,
                    "this book": ours if not isinstance(ours, float) else round(ours, 3),
                    "data used here": data})
    return pd.DataFrame(out).set_index("quantity")
