"""The paper's published numbers (Deng et al., npj Comput. Mater. 11, 9 (2025)), as data.

Chapters show these beside their own results with :func:`comparison`, so a reader sees
agreement and difference at a glance. Values are transcribed from the paper (see the
project's spec, PAPER.md); ``None`` where the paper gives no number.
"""

from __future__ import annotations

from typing import Any

PUBLISHED: dict[str, dict[str, Any]] = {
    # Fig. 2a: surface energies, 147 surfaces of 29 systems
    "surfaces.mae_eV_per_A2.mace-mp-0-medium": 0.032,
    # Fig. 3: Mg migration barriers (ApproxNEB), 470 paths in 110 hosts
    "migration.mae_eV.mace-mp-0-medium": 0.34,
    "migration.mae_eV.chgnet-0.3.0": 0.39,
    "migration.mae_eV.m3gnet-mp-2021.2.8": 0.49,
    # Fig. 4b: max phonon frequency ratio (model / DFT) over 229 materials
    "phonons.fraction_ratio_below_1": 0.90,  # "> 90 %"
    # Fig. 5a: Li6Zn2In2(IO3)16 (mp-973966) AIMD at 1000 K
    "high_energy.mp973966.mae.m3gnet-mp-2021.2.8": 0.220,
    "high_energy.mp973966.mae.chgnet-0.3.0": 0.190,
    "high_energy.mp973966.mae.mace-mp-0-medium": 0.176,
    "high_energy.mp973966.cmae.m3gnet-mp-2021.2.8": 0.184,
    "high_energy.mp973966.cmae.chgnet-0.3.0": 0.162,
    "high_energy.mp973966.cmae.mace-mp-0-medium": 0.155,
    "high_energy.mp973966.s.chgnet-0.3.0": 0.859,
    # Fig. 5b: WBM high-energy states, 1000 compounds
    "high_energy.wbm.fraction_s_below_1": 0.90,  # "> 90 % for all three models"
    # Fig. 6a: one-label linear correction and fine-tuning, CHGNet on mp-973966
    "correction.mp973966.s_after.chgnet-0.3.0": 0.965,
    "correction.mp973966.mae_after.chgnet-0.3.0": 0.166,
    "finetune.mp973966.mae_10_structures.chgnet-0.3.0": 0.125,
    # Fig. 6b: median error reduction of the linear correction over WBM compounds
    "correction.wbm.median_reduction": 0.15,  # "~15 %"
}

UNITS = {"mae": "eV/Å", "cmae": "eV/Å", "mae_eV": "eV", "mae_eV_per_A2": "eV/Å²"}


def published(key: str) -> Any:
    if key not in PUBLISHED:
        raise KeyError(f"no published number {key!r}; known: {', '.join(sorted(PUBLISHED))}")
    return PUBLISHED[key]


def comparison(rows: list[tuple[str, str, Any, str]]):
    """A table ``quantity | paper | this book | data used here`` from
    ``(quantity, paper_key or None, our_value, our_data)`` rows."""
    import pandas as pd

    out = []
    for quantity, key, ours, data in rows:
        paper_value = PUBLISHED.get(key) if key else None
        out.append({"quantity": quantity, "paper": "—" if paper_value is None else paper_value,
                    "this book": ours if not isinstance(ours, float) else round(ours, 3),
                    "data used here": data})
    return pd.DataFrame(out).set_index("quantity")
