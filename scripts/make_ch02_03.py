#!/usr/bin/env python
"""Chapters 2 (surfaces) and 3 (defects): write the notebooks, or precompute the model side.

    python scripts/make_ch02_03.py notebooks              # (re)write chapters/02_*.ipynb, 03_*.ipynb
    nice -n 10 python scripts/make_ch02_03.py precompute  # model energies -> data/results/{surfaces,defects}
    nice -n 10 python scripts/make_ch02_03.py precompute --models chgnet-0.3.0 --variants static

``precompute`` is resumable (ResultStore records per model x case x variant); statics of every
model first, then relaxations.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from nbtools import code, md, params, write  # noqa: E402

DEFAULT_MODELS = ["chgnet-0.3.0", "m3gnet-mp-2021.2.8", "m3gnet-matpes-pbe", "tensornet-matpes-pbe"]


def precompute(models, variants, tasks, relaxed_systems="all"):
    """Model energies for every case; relaxations in two phases: EMT-metal systems first (what
    the demo figure needs while the GPAW reference is pending), then everything else
    (``relaxed_systems="emt"`` stops after the first phase)."""
    from softening_lib import models as registry
    from softening_lib.tasks import defects as D
    from softening_lib.tasks import surfaces as S

    ok, skipped = registry.runnable(models)
    for name, why in skipped.items():
        print(f"skip {name}: {why}", flush=True)
    s_cases, _ = S.build_cases(S.DEFAULT_SYSTEMS)
    d_cases = D.build_cases(D.DEFAULT_SYSTEMS)
    for variant in variants:
        phases = [(s_cases, d_cases)] if variant == "static" else [
            ([c for c in s_cases if c.system in S.EMT_SYSTEMS], [c for c in d_cases if c.system in D.EMT_SYSTEMS]),
            (s_cases, d_cases)]
        if relaxed_systems == "emt":
            phases = phases[:1]
        for sc, dc in phases:  # surfaces (cheap) of every model before the defects
            if "surfaces" in tasks:
                for model in ok:
                    df = S.compute(sc, model, variant=variant)
                    print(f"{model} surfaces {variant}: {len(df)} rows", flush=True)
            if "defects" in tasks:
                for model in ok:
                    df = D.compute(dc, model, variant=variant)
                    print(f"{model} defects {variant}: {len(df)} rows", flush=True)
        # the EMT stand-in the chapters show while the GPAW reference is pending (cheap)
        if "surfaces" in tasks:
            S.compute([c for c in s_cases if c.system in S.EMT_SYSTEMS], "emt", variant=variant, progress=False)
        if "defects" in tasks:
            D.compute([c for c in d_cases if c.system in D.EMT_SYSTEMS], "emt", variant=variant, progress=False)
        if "defects" in tasks and variant == "static":
            for model in ok:  # supercell-size convergence of the Cu vacancy (model side)
                print(D.convergence_cached(model), flush=True)


# --------------------------------------------------------------------------------------
# notebooks
# --------------------------------------------------------------------------------------

PARAMS_02 = '''models = ["chgnet-0.3.0", "m3gnet-mp-2021.2.8", "m3gnet-matpes-pbe", "tensornet-matpes-pbe", "mace-mp-0-medium"]
preset = "default"  # "smoke" | "default" | "full"
systems = None       # None -> the preset's systems; or a list such as ["Cu", "MgO"]
max_index = 2        # largest Miller index
'''

PARAMS_03 = '''models = ["chgnet-0.3.0", "m3gnet-mp-2021.2.8", "m3gnet-matpes-pbe", "tensornet-matpes-pbe", "mace-mp-0-medium"]
preset = "default"  # "smoke" | "default" | "full"
systems = None       # None -> the preset's systems; or a list such as ["Cu", "Cu3Au"]
min_distance = 7.0   # A between periodic images of a defect
'''


def nb02():
    cells = [
        md("""# 2. Surface energies (Fig. 2a)

Deng et al., *Systematic softening in universal machine learning interatomic potentials*,
npj Comput. Mater. **11**, 9 (2025), [doi:10.1038/s41524-024-01500-6](https://doi.org/10.1038/s41524-024-01500-6),
show in their Fig. 2a that universal MLIPs trained on Materials Project relaxation trajectories
**under-predict surface energies**: cutting a crystal costs less energy on the model's potential-energy
surface (PES) than in DFT. A surface is a mild, local departure from the bulk, exactly the kind of
configuration that is rare in near-equilibrium training data.

The surface energy of a symmetric, stoichiometric slab is

$$\\gamma = \\frac{E_\\text{slab} - N\\,\\varepsilon_\\text{bulk}}{2A},$$

with $\\varepsilon_\\text{bulk}$ the bulk energy per atom from the *same* method and $A$ the area of one
face. We build slabs the paper's way (pymatgen `SlabGenerator`, Miller index up to 2, slab and vacuum
at least 10 Å, in-plane lattice fixed to the bulk) and compute $\\gamma$ twice:

* **static**: the bulk-terminated slab, the *same geometry* for DFT and model, a pure comparison of
  the two PESs;
* **relaxed**: atoms relaxed at fixed cell to 0.05 eV/Å, as in the paper.

**Where our data differ from the paper.** The paper's 147 VASP surface calculations were never
deposited. Our reference is **GPAW-PBE computed by this project** (plane waves, the settings of
`softening_lib.dft`), queued by `scripts/gpaw_surfaces_defects.py`; the figure below uses however much of
it exists and says how much is missing. The public VASP surface energies of elemental crystals
(Materials Project, Tran et al., Sci. Data **3**, 160080 (2016)) can be loaded with
`datasets.load("mp-surfaces-tran2016")` where the internet is (Dryad file or MP API with `MP_API_KEY`);
they are relaxed VASP numbers on MP's own slabs, a useful cross-check but not the same slabs as ours.
M3GNet here is matgl's PyTorch re-training, not the paper's TensorFlow model."""),
        params(PARAMS_02),
        code('''from softening_lib import book, plots
from softening_lib.tasks import surfaces
ctx = book.setup_chapter("02", models=models, preset=preset)
ctx.show_models();'''),
        md("## The slabs\n\nEvery symmetrically distinct Miller index up to 2; slabs that cannot be both "
           "stoichiometric and symmetric (polar surfaces such as rocksalt (111)) are listed and skipped."),
        code('''if systems is None:
    systems = ctx.pick(["Cu", "Al"], surfaces.DEFAULT_SYSTEMS, surfaces.DEFAULT_SYSTEMS)
cases, skipped = surfaces.build_cases(systems, max_index=ctx.pick(1, max_index, max_index),
                                      max_atoms=ctx.pick(12, None, None))
ctx.use_dataset("mp-element-structures", "elemental bulk lattices")
ctx.glue("n_surfaces", len(cases))
ctx.glue("n_systems", len({c.system for c in cases}))
import pandas as pd
display(pd.DataFrame([c.summary() for c in cases]).head(12))
display(skipped)'''),
        md("We compute {glue:text}`n_surfaces` surfaces of {glue:text}`n_systems` systems."),
        md("## The reference"),
        code('''status = surfaces.reference_status(cases)
reference = {v: surfaces.load_reference(v) for v in surfaces.VARIANTS}
reference = {v: r[r["id"].isin([c.id for c in cases])] for v, r in reference.items()}
ctx.glue("ref_static_done", len(reference["static"]))
ctx.glue("ref_relaxed_done", len(reference["relaxed"]))
print(f"GPAW-PBE reference: {len(reference['static'])} static and {len(reference['relaxed'])} relaxed "
      f"surface energies of {len(cases)} planned")'''),
        md("""The GPAW reference holds {glue:text}`ref_static_done` static and {glue:text}`ref_relaxed_done`
relaxed surface energies. While it is incomplete (it is a CPU-heavy campaign; see
`data/reference/surfaces_gpaw/PROVENANCE.md`) the figure shows the surfaces that are done, and, if none
are, a **demonstration** with ASE's EMT potential standing in for the reference on the EMT metals.
EMT is *not* DFT: the demo only shows what the figure will look like, not the softening."""),
        md("## Model surface energies"),
        code('''# statics are cheap and computed when missing; relaxations are read from the cache in the
# "default" build (scripts/make_ch02_03.py precompute fills it) and computed only with "full"
variants = ctx.pick(["static"], surfaces.VARIANTS, surfaces.VARIANTS)
tables = surfaces.model_tables(surfaces.compute, cases, ctx.models, variants,
                               compute_relaxed=(preset == "full"), what="surfaces")
# no GPAW surface yet: ASE's EMT on the EMT metals stands in, labelled as a demo (cached as model "emt")
reference, ref_label, demo = surfaces.reference_or_demo(surfaces.compute, cases, reference, variants,
                                                         surfaces.EMT_SYSTEMS)'''),
        md("## Fig. 2a: model against reference"),
        code('''fig, summary, note, flagged = surfaces.parity_report(surfaces.parity_figure, reference, tables, ref_label, demo,
                                                    what="surfaces")
ctx.figure(fig, "fig2a", caption=plots.caption(
    what="Surface energies, model vs reference, static (bulk-terminated, same geometry) and relaxed "
         "(fmax 0.05 eV/Å, fixed cell); MAE and share of under-predicted surfaces in each panel.",
    data=f"{ref_label}; slabs from pymatgen SlabGenerator on MP PBE lattices", models=ctx.models, note=note))
display(summary)
if len(flagged):
    print(f"{len(flagged)} relaxations did not reach fmax 0.05 eV/Å and are left out of the statistics:")
    display(flagged)
else:
    print("no relaxation left out: every one that ran reached fmax 0.05 eV/Å")
for _, row in summary.iterrows():
    ctx.glue(f"mae_{row['variant']}_{row['model']}", float(row["mae"]) if row["n"] else float("nan"))'''),
        md("""## Which surfaces soften most

The ratio model / reference for every surface (static, bulk-terminated slabs): below 1 is
softer than the reference. Read it by system: a model that is soft on one chemistry need not be
soft on another."""),
        code('''ratios = surfaces.ratio_table(reference, tables, variant="static")
ratios.set_index("id").drop(columns=["system", "miller"], errors="ignore").round(3)'''),
        md("## Paper vs this book"),
        code('''paper = pd.DataFrame([
    {"quantity": "surfaces / systems", "paper (VASP-PBE)": "147 / 29", "this book": f"{len(cases)} / {len({c.system for c in cases})} planned"},
    {"quantity": "MAE (eV/Å²)", "paper (VASP-PBE)": "MACE-MP-0 0.032 (best of the three paper models)",
     "this book": "GPAW reference pending" if demo else ", ".join(
        f"{plots.label(r.model)} {r.variant}: {r.mae:.3f}" for r in summary.itertuples() if r.n)
        + ("" if "mace-mp-0-medium" in ctx.models else " (MACE-MP-0 not run here: weights unavailable offline)")},
    {"quantity": "direction of error", "paper (VASP-PBE)": "mostly under-predicted", "this book": "GPAW reference pending" if demo else ", ".join(
        f"{plots.label(r.model)} {r.variant}: {100*r.frac_under:.0f}% under" for r in summary.itertuples() if r.n)},
])
paper'''),
        md("""## Exercises

1. Re-score the surfaces with a softening-corrected model: wrap a model in
   `softening_lib.models.ScaledCalculator(calc, 1/s)` with the softening scale `s` of chapter 7 and call
   `surfaces.surface_energies(cases, scaled)`. How does the MAE move?
2. Why is the *static* comparison a cleaner test of the PES than the relaxed one?
3. Which Miller indices were skipped for ZnS, and why can a polar slab not give a single surface energy?

```{dropdown} Solutions
1. Scaling E by c scales gamma by c exactly (gamma is a difference of energies of one method), so an
   under-predicting model (c > 1) moves up towards the diagonal; chapter 8 does this for every task.
2. In the static comparison both methods evaluate identical coordinates, so any difference is the PES
   itself; after relaxation each method also finds its own minimum, which mixes PES curvature with
   geometry and can hide or enlarge errors.
3. ZnS (100), (111), (210), (211), (221): zincblende stacks alternating Zn and S planes along these
   directions, so a stoichiometric slab has one Zn face and one S face (a dipole); the two faces differ,
   and (E_slab - N E_bulk)/2A is then an average of two different surface energies.
```"""),
        code("ctx.finish()"),
    ]
    return cells


def nb03():
    cells = [
        md("""# 3. Point defects (Fig. 2b)

Deng et al., npj Comput. Mater. **11**, 9 (2025), [doi:10.1038/s41524-024-01500-6](https://doi.org/10.1038/s41524-024-01500-6),
Fig. 2b: vacancy, antisite and interstitial energies in elements and binary intermetallics (AlNi, CaSn3,
Cu3Au, NaPb3, NaAg4, ...), 129-134 defects in 32 systems; the universal MLIPs mostly **under-predict** them.

$$E_d = E_\\text{defect} - E_\\text{bulk} - \\sum_i \\mu_i\\,\\Delta N_i,$$

$\\Delta N_i$ the atoms of element $i$ added (+1) or removed (-1) and $\\mu_i$ the energy per atom of
the pure element, computed by **the same method** (the model's $\\mu$ for the model, GPAW's for GPAW).

**Where our data differ from the paper.** The paper's defect calculations were not deposited. Our
reference is **GPAW-PBE computed by this project** (`scripts/gpaw_surfaces_defects.py`), shown for
whatever part of the queue is finished. Lattices are fixed (MP PBE for elements, PBE-level constants for
the intermetallics, shared by every method), supercells keep periodic images at least `min_distance`
apart, and NaAg4 is not included (no structure offline). Added beyond the paper's examples: the bcc
alkali metals Li and Na, the most loosely bound metals in the set and cheap to label. AlNi contains Ni, which the GPAW labeller
treats spin-paired: B2 NiAl is non-magnetic, so it is labelled with `force=True` and marked so."""),
        params(PARAMS_03),
        code('''from softening_lib import book, plots
from softening_lib.tasks import defects, surfaces
ctx = book.setup_chapter("03", models=models, preset=preset, min_distance=(min_distance, (int, float)))
ctx.show_models();'''),
        md("## The defects"),
        code('''if systems is None:
    systems = ctx.pick(["Cu", "Al"], defects.DEFAULT_SYSTEMS, defects.DEFAULT_SYSTEMS)
cases = defects.build_cases(systems, min_distance=min_distance,
                            kinds=ctx.pick(("vacancy",), defects.KINDS, defects.KINDS))
ctx.use_dataset("mp-element-structures", "elemental lattices and mu_i phases")
import pandas as pd
table = pd.DataFrame([c.summary() for c in cases])
ctx.glue("n_defects", len(cases))
ctx.glue("n_def_systems", len(set(table["system"])))
display(table)'''),
        md("{glue:text}`n_defects` defects in {glue:text}`n_def_systems` systems. A supercell that is too small "
           "for the requested separation is refused, not silently used:"),
        code('''try:
    defects.make_defects("Cu", min_distance=10.0, repeat=(2, 2, 2))
except defects.SupercellTooSmallError as exc:
    print("refused:", exc)'''),
        md("## Supercell-size convergence (Cu vacancy)"),
        code('''conv_model = ctx.models[0] if ctx.models else "emt"
conv = defects.convergence_cached(conv_model, "Cu", "vacancy", repeats=ctx.pick((2, 3), (2, 3, 4), (2, 3, 4, 5)))
print(f"model: {conv_model}")
display(conv)
ctx.glue("conv_spread", float(conv["e_f"].max() - conv["e_f"].min()))'''),
        md("The Cu vacancy energy of the first model changes by {glue:text}`conv_spread:.3f` eV between the "
           "smallest and the largest supercell above: the default separation (7 Å, a 2x2x2 cubic cell for Cu) "
           "is converged well below the model-vs-DFT differences this chapter is about."),
        md("## Reference and models"),
        code('''reference = {v: defects.load_reference(v) for v in defects.VARIANTS}
reference = {v: r[r["id"].isin([c.id for c in cases])] for v, r in reference.items()}
ctx.glue("dref_static_done", len(reference["static"]))
ctx.glue("dref_relaxed_done", len(reference["relaxed"]))
variants = ctx.pick(["static"], defects.VARIANTS, defects.VARIANTS)
# statics computed when missing; relaxations from the cache unless preset == "full"
tables = surfaces.model_tables(defects.compute, cases, ctx.models, variants,
                               compute_relaxed=(preset == "full"), what="defects")
reference, ref_label, demo = surfaces.reference_or_demo(defects.compute, cases, reference, variants,
                                                         defects.EMT_SYSTEMS)'''),
        md("""The GPAW reference holds {glue:text}`dref_static_done` static and {glue:text}`dref_relaxed_done`
relaxed defect energies. If it holds none, ASE's EMT stands in on the EMT metals to show the figure's
machinery: **EMT is not DFT** and says nothing about softening."""),
        md("## Fig. 2b: model against reference"),
        code('''fig, summary, note, flagged = surfaces.parity_report(defects.parity_figure, reference, tables, ref_label, demo,
                                                    what="defects")
ctx.figure(fig, "fig2b", caption=plots.caption(
    what="Point-defect energies (vacancies, antisites, interstitials), model vs reference, static "
         "(unrelaxed, same geometry) and relaxed (fmax 0.05 eV/Å, fixed cell); MAE and share under-predicted.",
    data=f"{ref_label}; supercells >= {min_distance} Å between images", models=ctx.models, note=note))
display(summary)
display(defects.summary_by_kind(reference, tables))  # static interstitials sit far above the rest
if len(flagged):
    print(f"{len(flagged)} relaxations did not reach fmax 0.05 eV/Å and are left out of the statistics:")
    display(flagged)
else:
    print("no relaxation left out: every one that ran reached fmax 0.05 eV/Å")'''),
        md("## Paper vs this book"),
        code('''pd.DataFrame([
    {"quantity": "defects / systems", "paper (VASP-PBE)": "129-134 / 32", "this book": f"{len(cases)} / {len(set(table['system']))} planned"},
    {"quantity": "direction of error", "paper (VASP-PBE)": "mostly under-predicted", "this book": "GPAW reference pending" if demo else ", ".join(
        f"{plots.label(r.model)} {r.variant}: {100*r.frac_under:.0f}% under" for r in summary.itertuples() if r.n)},
])'''),
        md("""## Exercises

1. Show that for a vacancy in an element, $E_d = E_\\text{defect} - \\frac{N-1}{N}E_\\text{bulk}$.
2. Why are static interstitial energies so much larger than relaxed ones?
3. Compute the Cu3Au antisite pair energy $E(\\text{Au}_\\text{Cu}) + E(\\text{Cu}_\\text{Au})$ with one model:
   why does it not depend on $\\mu_\\text{Cu}$ or $\\mu_\\text{Au}$?

```{dropdown} Solutions
1. Removing one atom: $\\Delta N = -1$, so $E_d = E_\\text{defect} - E_\\text{bulk} + \\mu$ with
   $\\mu = E_\\text{bulk}/N$ for the pure element, i.e. $E_\\text{defect} - (N-1)E_\\text{bulk}/N$.
2. The interstitial is placed at the centre of the largest void of the *unrelaxed* host, still much
   closer to its neighbours than a bond length; the repulsion dominates until the neighbours move away.
3. The two antisites exchange one Cu for one Au and one Au for one Cu: the $\\Delta N$ of each element
   sum to zero, so the chemical potentials cancel.
```"""),
        code("ctx.finish()"),
    ]
    return cells


def write_notebooks():
    for name, cells in (("02_surfaces", nb02()), ("03_defects", nb03())):
        print("wrote", write(REPO / "chapters" / f"{name}.ipynb", cells))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("notebooks")
    pc = sub.add_parser("precompute")
    pc.add_argument("--models", default=",".join(DEFAULT_MODELS))
    pc.add_argument("--variants", default="static,relaxed")
    pc.add_argument("--tasks", default="surfaces,defects")
    pc.add_argument("--relaxed-systems", choices=("all", "emt"), default="all",
                    help="relax every system, or only the EMT metals (the demo figure's cases)")
    args = p.parse_args(argv)
    if args.cmd == "notebooks":
        write_notebooks()
    else:
        precompute(args.models.split(","), args.variants.split(","), args.tasks.split(","), args.relaxed_systems)
    return 0


if __name__ == "__main__":
    sys.exit(main())
