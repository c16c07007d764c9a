"""Chapters 4 (solid solution) and 5 (ion migration): build the notebooks, precompute results.

    .venv/bin/python scripts/make_ch04_05.py notebooks          # (re)write both .ipynb
    nice -n 10 .venv/bin/python scripts/make_ch04_05.py precompute [--budget-min 20]
        [--models chgnet-0.3.0 ...] [--stages ss-static mig-static ss-relaxed mig-relaxed]

``precompute`` fills the result store (data/results/solid_solution, data/results/migration)
stage by stage; every record is cached, so a killed run resumes where it stopped. It stops
starting new work once ``--budget-min`` CPU minutes (or ``--wall-min`` wall minutes) are used.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from nbtools import code, md, params, write  # noqa: E402

DEFAULT = ["chgnet-0.3.0", "m3gnet-mp-2021.2.8", "m3gnet-matpes-pbe", "tensornet-matpes-pbe"]
STAGES = ["ss-static", "mig-static", "ss-relaxed", "mig-relaxed"]


def precompute(models: list[str], stages: list[str], budget_min: float, relaxed_models: list[str],
               wall_min: float) -> None:
    """Stages in order; stops starting new work once ``budget_min`` CPU minutes (this
    process) or ``wall_min`` wall minutes are used. Everything done is cached."""
    warnings.filterwarnings("ignore")
    from softening_lib.tasks import migration as mig
    from softening_lib.tasks import solid_solution as ss

    t0, c0 = time.time(), time.process_time()

    def over() -> bool:
        return (time.process_time() - c0) / 60 > budget_min or (time.time() - t0) / 60 > wall_min

    orderings = ss.reference_orderings()
    for stage in stages:
        names = models if stage.endswith("static") else relaxed_models
        for m in names:
            if over():
                print(f"budget used; not starting {stage} {m}", flush=True)
                continue
            print(f"[{time.time() - t0:6.0f}s wall {time.process_time() - c0:6.0f}s cpu] {stage} {m}", flush=True)
            if stage == "ss-static":
                ss.score(orderings, m, mode="static", progress=False)
            elif stage == "ss-relaxed":
                for o in orderings:  # one at a time so the budget check is fine-grained
                    if over():
                        break
                    ss.score([o], m, mode="relaxed", progress=False)
            elif stage == "mig-static":
                mig.score(None, m, mode="static", progress=False)
            elif stage == "mig-relaxed":
                for p in mig.PATHS:
                    if over():
                        break
                    mig.score([p], m, mode="relaxed", progress=False)
    print(f"done: {time.time() - t0:.0f} s wall, {time.process_time() - c0:.0f} s CPU", flush=True)


# --------------------------------------------------------------------------------------
# notebooks
# --------------------------------------------------------------------------------------

PARAMS_04 = """models = ["chgnet-0.3.0", "m3gnet-mp-2021.2.8", "m3gnet-matpes-pbe", "tensornet-matpes-pbe",
          "mace-mp-0-medium"]
preset = "default"  # "smoke" | "default" | "full"
max_per_composition_16 = 0  # extra orderings per composition from a 16-cation cell ("full": 52)
seed = 0"""

PARAMS_05 = """models = ["chgnet-0.3.0", "m3gnet-mp-2021.2.8", "m3gnet-matpes-pbe", "tensornet-matpes-pbe",
          "mace-mp-0-medium"]
preset = "default"  # "smoke" | "default" | "full"
profile_path = "auto"  # the path of Fig. 3a, e.g. "MgO-vac-s1"; auto: the first with a GPAW reference
interpolation = "linear"  # or "idpp"
constraint = "fixed"  # or "hyperplane\""""


def notebook_04() -> list:
    return [
        md("""
# 4. Solid-solution energetics: Ca$_x$Mg$_{2-x}$O$_2$

MgO and CaO share the rocksalt structure but their lattice constants differ by 13 %, so
mixing them costs energy: the solid solution is unstable against separation into the two
oxides at low temperature. Deng *et al.* (npj Comput. Mater. 11, 9 (2025),
doi:10.1038/s41524-024-01500-6, Fig. 2c) computed the mixing (formation) energy of up to 52
random Ca/Mg orderings per composition with DFT and with three universal MLIPs: every model
predicts the right sign (immiscible) but too small a value -- a softened potential-energy
surface makes the strain of mixing too cheap.

**Where our data differ from the paper.** The paper's solid-solution DFT was never
deposited. Our reference is GPAW-PBE computed by this project (plane waves, 800 eV,
spin-paired; settings recorded with every number) and is computed first as *statics at a
common geometry* (ideal rocksalt sites, Vegard-law lattice constant between
a(MgO) = 4.26 Å and a(CaO) = 4.83 Å), where every method sees exactly the same structures.
Relaxed mixing energies (cell and positions, fmax 0.05 eV/Å, the paper's protocol) are
shown for the models. The orderings are *all* symmetry-distinct ones of two 8-cation cells
(1x1x2 conventional: 28, 2x2x2 primitive: 16; 40 of the 44 are mixed), not the paper's up
to 52 random ones per composition in larger cells; the `full` preset adds a seeded sample of
a 16-cation cell. M3GNet is matgl's PyTorch port; MACE-MP-0 is listed but cannot run
offline here.

A warning about the static panel: with every ion on its ideal site, the lattice mismatch
cannot be accommodated locally, so static mixing energies are several times the relaxed
ones and the "critical temperatures" fitted to them are not physical. The static panel is
a *PES probe* (same structures for every method); the relaxed panel is the physics.
"""),
        params(PARAMS_04),
        code("""
from softening_lib import book, plots
from softening_lib.tasks import solid_solution as ss

ctx = book.setup_chapter("04", models=models, preset=preset,
                         max_per_composition_16=(max_per_composition_16, int), seed=(seed, int))
ctx.show_models();
"""),
        md("""
## The orderings

Symmetry-distinct arrangements of Ca on the cation sites: the space-group operations of the
supercell (spglib) act as permutations of the sites; each ordering keeps the size of its
orbit (*multiplicity*), which sums to the binomial coefficient $\\binom{N}{k}$ at each
composition.
"""),
        code("""
import pandas as pd
if ctx.preset == "smoke":
    orderings = [o for o in ss.enumerate_orderings("conv112", seed=seed) if o.n_solute in (0, 2, 4, 8)]
else:
    orderings = ss.reference_orderings(max_16=ctx.pick(0, max_per_composition_16, 52), seed=seed)
counts = pd.DataFrame([{"supercell": o.supercell, "Ca": o.n_solute, "N": o.n_sites} for o in orderings])
table = counts.groupby(["supercell", "Ca"]).size().unstack(0).fillna(0).astype(int)
ctx.glue("n_orderings", len(orderings))
table.T
"""),
        md("""
## Reference status

The GPAW queue (`scripts/gpaw_solid_solution_migration.py`) writes one JSON per ordering
under `data/reference/solid_solution_gpaw/`. The figure below shows whatever exists; until
the queue has run, the model curves are shown alone with a note saying how many reference
calculations are done.
"""),
        code("""
reference = ss.load_reference()
status = ss.reference_status(orderings, mode="static")
ctx.glue("ref_done", status["done"]); ctx.glue("ref_wanted", status["wanted"])
ref_note = ("" if status["done"] == status["wanted"] else
            f"GPAW reference pending: {status['done']}/{status['wanted']} orderings done")
print(ref_note or "GPAW reference complete for these orderings")
"""),
        md("""
## Fig. 2c, common geometry (static)

Energies of the ideal Vegard-law structures: the comparison with the reference that needs no
relaxation. The dashed lines are the regular-solution fits $\\Omega f(1-f)$.
"""),
        code("""
static = {m: ss.score(orderings, m, mode="static", compute=True, progress=False) for m in ctx.models}
fig = ss.figure_2c(static, mode="static", reference=reference, reference_note=ref_note)
ctx.figure(fig, "fig2c_static", caption=plots.caption(
    what="Mixing energy per cation of Ca/Mg orderings in rocksalt Ca_x Mg_(2-x) O_2 at the common "
         "Vegard-law geometry (no relaxation), one point per ordering; dashed: regular-solution fits.",
    data="orderings enumerated here; reference GPAW-PBE 800 eV computed by this project "
         f"({status['done']}/{status['wanted']} done)", models=ctx.models))
"""),
        md("""
## Fig. 2c, relaxed (the paper's protocol)

Cell and positions relaxed with each model (fmax 0.05 eV/Å). In the default preset these
are read from the result store (`data/results/solid_solution/`); models or orderings not yet
computed there are listed and skipped (run the `full` preset, or
`scripts/make_ch04_05.py precompute`, to fill them).
"""),
        code("""
relaxed_orderings = orderings
relaxed = {m: ss.score(relaxed_orderings, m, mode="relaxed", compute=(ctx.preset == "full"),
                       progress=False) for m in ctx.models}
have = {m: len(t) for m, t in relaxed.items()}
print("relaxed orderings available per model:", have, "of", len(relaxed_orderings))
fig = ss.figure_2c(relaxed, mode="relaxed", reference=reference,
                   reference_note="relaxed GPAW reference: not computed yet" if not
                   (len(reference) and (reference["mode"] == "relaxed").any()) else "")
ctx.figure(fig, "fig2c", caption=plots.caption(
    what="Mixing energy per cation of relaxed Ca/Mg orderings (cell + positions, fmax 0.05 eV/Å) vs Ca "
         "fraction, one point per ordering; dashed: regular-solution fits.",
    data=f"orderings enumerated here; relaxed orderings per model: {have}", models=ctx.models))
flagged = ss.unconverged(relaxed)  # drawn as crosses, left out of the fits below
print(f"{len(flagged)} relaxations did not reach fmax 0.05 eV/Å")
flagged
"""),
        md("""
## Beyond the paper: the miscibility gap

A regular solution has $\\Delta H_\\mathrm{mix} = \\Omega f(1-f)$ per cation site, and its
miscibility gap closes at $T_c = \\Omega / (2 k_B)$. We fit $\\Omega$ to the
multiplicity-weighted mean mixing energy at each composition (the random-alloy average when
every ordering is enumerated). A softened model gives a smaller $\\Omega$ and hence a
lower critical temperature: the error in meV per cation becomes an error of hundreds of
kelvin in a phase diagram.
"""),
        code("""
import numpy as np
fits = ss.fit_table({**static, **({ss.REFERENCE_LABEL: reference} if len(reference) else {})})
fits_relaxed = ss.fit_table(relaxed)
fits_all = pd.concat([fits, fits_relaxed], ignore_index=True)
if len(fits_all):
    for _, r in fits_all.iterrows():
        ctx.glue(f"tc_{r['model']}_{r['mode']}".replace("-", "_").replace(".", "_"), float(r["Tc_K"]))
fits_all.round({"omega_eV": 4, "Tc_K": 0, "mean_e_mix_meV": 1})
"""),
        md("""
## Paper vs this book

| quantity | paper (VASP-PBE reference) | this book |
|---|---|---|
| sign of mixing energy | positive for DFT and all models | see Fig. 2c above |
| ranking (closest to DFT) | CHGNet, then M3GNet, then MACE-MP-0 | see the $\\Omega$ table (static vs GPAW when available) |
| orderings | up to 52 random per composition | all 44 symmetry-distinct orderings of two 8-cation cells |
| reference | VASP, not deposited | GPAW-PBE by this project ({glue:text}`ref_done`/{glue:text}`ref_wanted` done) |

We used {glue:text}`n_orderings` orderings in this run.
"""),
        md("""
## Exercises

1. Why must the end members MgO and CaO be computed in the same supercell and with the same
   method as the orderings?

```{admonition} Solution
:class: dropdown
Mixing energies are differences of large totals. Any error that is the same per cation
(k-point sampling, basis, a model's energy offset per element) cancels only if the end
members see it too; using another method's end members would put that offset straight into
every mixing energy.
```

2. Using the $\\Omega$ of a model and of the reference, how many kelvin of error in $T_c$
   correspond to a 10 meV/cation error in $\\Omega$?

```{admonition} Solution
:class: dropdown
$\\Delta T_c = \\Delta\\Omega / (2 k_B) = 0.010 / (2 \\times 8.617\\times10^{-5})\\,\\mathrm{K}
\\approx 58$ K.
```

3. Show that the multiplicities of the orderings at one composition add up to
   $\\binom{N}{k}$ (`sum(o.multiplicity for o in orderings if o.n_solute == k)`). What would
   a symmetry operation that did *not* map cation sites onto cation sites do?

```{admonition} Solution
:class: dropdown
Each of the $\\binom{N}{k}$ arrangements belongs to exactly one orbit, so orbit sizes add up
to the total. An operation that mapped a cation site onto an anion site would not be a
permutation of the mixing sites; `site_permutations` refuses it with an error.
```
"""),
        code("ctx.finish();"),
    ]


def notebook_05() -> list:
    return [
        md("""
# 5. Ion migration barriers (ApproxNEB)

How fast an ion moves through a solid is set, exponentially, by its migration barrier.
Deng *et al.* (npj Comput. Mater. 11, 9 (2025), doi:10.1038/s41524-024-01500-6, Fig. 3 and
SI Fig. 1) compared 470 Mg$^{2+}$ barriers in 110 oxides, halides and sulfides computed with
ApproxNEB by Rutt *et al.* (ACS Appl. Mater. Interfaces 14, 44367 (2022)) against three
universal MLIPs: the barriers are systematically under-predicted (MAE 0.34-0.49 eV, the
histogram of differences shifted negative). A barrier is an energy *away* from equilibrium,
exactly where softening shows.

**ApproxNEB.** Relax the two end points, interpolate a path, relax every intermediate image
*independently* with the lattice fixed and the moving ion fixed (plus one far host atom, so
the host cannot slide back around it), and read the barrier off the highest image. We use

$$E_\\mathrm{KRA} = \\max_i E_i - \\tfrac{1}{2}(E_0 + E_N),$$

the highest energy after referencing the *mean* of the end images to zero.

**Where our data differ from the paper.** Rutt *et al.*'s data are public on MPContribs
(project `mg_cathode_screening_2022`, needs a Materials Project API key; the loader
`migration.read_mpcontribs_approxneb` reads it), but most of those hosts contain transition
metals that need +U and spin polarisation, which our offline GPAW reference cannot
reproduce. Offline, this chapter uses small non-magnetic hosts (MgO, MgS, LiF, LiCl, Li$_2$O,
Li$_2$S) with a vacancy hop made charge-neutral by a distant compensating vacancy, on the
fixed approximate PBE lattice, and a GPAW-PBE reference computed by this project -- first as
*statics on the unrelaxed straight-line path* (a geometry every method shares exactly), then
as full ApproxNEB when the queue reaches it. These are Mg *and* Li hops in 21-30-atom cells,
not the paper's 470 Mg paths.
"""),
        params(PARAMS_05),
        code("""
from softening_lib import book, plots
from softening_lib.tasks import migration as mig

ctx = book.setup_chapter("05", models=models, preset=preset, profile_path=(profile_path, str),
                         interpolation=(interpolation, str), constraint=(constraint, str))
ctx.show_models();
"""),
        code("""
import pandas as pd
from IPython.display import Markdown
if profile_path == "auto":  # the first path with a complete GPAW reference (relaxed, else static)
    profile_path = mig.profile_path_for(mig.load_reference())
paths = ctx.pick([p for p in mig.PATHS if p.id == profile_path], mig.PATHS, mig.PATHS)
pd.DataFrame([{"path": p.id, "host": p.host, "moving ion": mig.HOSTS[p.host].cation,
               "atoms": len(mig.build_path(p)["initial"]),
               "hop (Å)": round(mig.build_path(p)["hop_distance"], 3), "images": p.n_images}
              for p in paths])
"""),
        md("""
## Reference status

`scripts/gpaw_solid_solution_migration.py` writes one JSON per GPAW image under
`data/reference/migration_gpaw/<path>/<mode>/`. Paths with every image done are used; the
others are counted as pending. Six of the eight hops are symmetric: a space-group operation of
the host swaps their two end points and carries image $j$ onto image $n-1-j$
(`mig.hop_symmetry`, checked image by image). GPAW computes only the first half of such a path;
the second half is written as rotated copies of the first (records with `"mirror_of"`), which
is exact, not an approximation: the two images are the same structure seen from another
origin.
"""),
        code("""
reference = mig.load_reference()
pending = reference.attrs.get("pending", {})
ids = {p.id for p in paths}
n_ref = int(reference["path_id"].isin(ids).sum()) if len(reference) else 0  # complete (path, mode) pairs
ctx.glue("n_ref_paths", n_ref)
n_partial = sum(1 for k, v in pending.items() if k.split("/")[0] in ids and not v.startswith("0/"))
ref_note = "" if n_ref >= 2 * len(paths) else (
    f"GPAW reference pending: {n_ref} of {2 * len(paths)} path-modes complete "
    f"({len(paths)} paths x static/relaxed), {n_partial} in progress")
print(ref_note or "reference complete", pending)
"""),
        md("""
## Fig. 3a: the energy profile along one path
"""),
        code("""
static = {m: mig.score(paths, m, mode="static", interpolation=interpolation, constraint=constraint,
                       progress=False) for m in ctx.models}
relaxed = {m: mig.score(paths, m, mode="relaxed", interpolation=interpolation, constraint=constraint,
                        compute=(ctx.preset == "full"), progress=False) for m in ctx.models}
print("relaxed paths available:", {m: len(t) for m, t in relaxed.items()}, "of", len(paths))
import matplotlib.pyplot as plt
fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 5.4))
mig.figure_3a(relaxed, profile_path, mode="relaxed", reference=reference, ax=a1,
              reference_note="" if len(reference) and (reference["mode"] == "relaxed").any()
              else "GPAW ApproxNEB reference pending")
mig.figure_3a(static, profile_path, mode="static", reference=reference, ax=a2, reference_note=ref_note)
fig.tight_layout()
ctx.figure(fig, "fig3a", caption=plots.caption(
    what=f"Energy along the {profile_path} vacancy hop, end images referenced to 0; left: ApproxNEB "
         "(images relaxed, ion + one far host atom fixed, lattice fixed), right: unrelaxed straight-line path.",
    data="paths built here; reference GPAW-PBE by this project where computed", models=ctx.models))
"""),
        md("""
## Fig. 3b and SI Fig. 1: barrier differences and parity

Model minus reference barriers (histogram) and the parity plot: first for the paper's
protocol (ApproxNEB, images relaxed) on the paths whose GPAW reference is complete, then for
the unrelaxed straight-line paths. Relaxed paths whose barrier depends on the ApproxNEB
constraint (see "how well posed is a path?" below) are drawn as open circles and kept out of the
histogram's bars and of the MAE in the legend: a model and DFT relaxation that fall into
different basins of an under-constrained image measure the constraint, not softening. The
static comparison is no barrier anyone would quote
(squeezing an ion through an unrelaxed host costs eV), but it is a clean test of the potential
energy surface far from equilibrium: the same geometries for model and DFT, no relaxation
noise, and the highest image is exactly the kind of high-energy state where softening shows.
"""),
        code("""
modes = [m for m in ("relaxed", "static") if len(reference) and (reference["mode"] == m).any()] or ["relaxed"]
ill = mig.ill_posed_paths(ctx.models)  # see "how well posed is a path?" below
for ref_mode in modes:
    tables = relaxed if ref_mode == "relaxed" else static
    fig = mig.figure_3b_si1(tables, reference, mode=ref_mode, reference_note=ref_note,
                            ill_posed=ill if ref_mode == "relaxed" else ())
    pairs = mig.barrier_pairs(tables, reference, mode=ref_mode)
    n_paths = pairs["path_id"].nunique() if len(pairs) else 0
    ctx.figure(fig, "fig3b_si1" if ref_mode == "relaxed" else "fig3b_si1_static", caption=plots.caption(
        what=f"Left: E_KRA(model) - E_KRA(reference); right: parity ({ref_mode} paths, {n_paths} with a "
             "complete GPAW reference).",
        data=f"{len(pairs)} model-reference pairs; reference GPAW-PBE by this project", models=ctx.models))
    if len(pairs):
        mae = pairs.assign(abs_diff=pairs["diff"].abs()).groupby("model")[["diff", "abs_diff"]].mean()
        for m, r in mae.iterrows():
            ctx.glue(f"mae_{ref_mode}_{m}".replace("-", "_").replace(".", "_"), float(r["abs_diff"]))
        mae = mae.rename(columns={"diff": "mean signed error (eV)", "abs_diff": "MAE (eV)"})
        if ref_mode == "relaxed" and ill & set(pairs["path_id"]):
            ok = pairs[~pairs["path_id"].isin(ill)]
            mae["MAE, well-posed paths only (eV)"] = ok.assign(a=ok["diff"].abs()).groupby("model")["a"].mean()
        display(Markdown(f"**{ref_mode}** paths ({n_paths}):"))
        display(mae.round(3))
    # paths whose model or reference relaxation did not reach fmax are left out of the comparison, and listed
    print(f"{ref_mode}: {len(pairs.attrs.get('unconverged', []))} model-reference pairs left out "
          "(relaxation not converged)")
    if pairs.attrs.get("unconverged"):
        display(pd.DataFrame(pairs.attrs["unconverged"]))
"""),
        md("""
## All barriers and flags

End points that are not minima and image relaxations that did not converge are flagged
(with the final fmax), never silently dropped.
"""),
        code("""
rows = []
for name, tabs in (("static", static), ("relaxed", relaxed)):
    for m, t in tabs.items():
        for _, r in t.iterrows():
            rows.append({"model": m, "mode": name, "path": r["path_id"], "E_KRA (eV)": round(r["e_kra"], 3),
                         "dE ends (eV)": round(r["delta_e_end"], 3), "flags": "; ".join(r["flags"])})
summary = pd.DataFrame(rows)
summary.pivot_table(index="path", columns=["mode", "model"], values="E_KRA (eV)") if len(summary) else summary
"""),
        code("""
summary[summary["flags"] != ""] if len(summary) else summary
"""),
        md("""
## Beyond the paper: how well posed is a path?

ApproxNEB fixes the moving ion and one "far" host atom, which only removes the host's rigid
translation -- if the atom is really far. In these 21-30-atom cells the farthest host atom is
3.7-6 Å from the hop. `scripts/approxneb_constraints.py` relaxes every path again with each of
the host atoms tied for farthest fixed in turn, and with the host's centre of mass fixed
instead (which removes the translation and nothing else). A small spread means the barrier
belongs to the potential energy surface; a large one means it belongs to the constraint, and a
model-DFT difference on such a path says more about which basin each relaxation fell into than
about softening.
"""),
        code("""
constraints = mig.constraint_table(ctx.models)
if len(constraints):
    ill = sorted(set(constraints.loc[constraints["spread (eV)"] > 0.1, "path"]))
    ctx.glue("n_ill_posed", len(ill))
    display(Markdown(f"Paths whose barrier moves by more than 0.1 eV with the constraint: "
                     f"**{', '.join(ill) if ill else 'none'}**. Spread of E_KRA over the schemes (eV), "
                     "one column per model:"))
    display(constraints.pivot(index="path", columns="model", values="spread (eV)")
            .reindex([p.id for p in mig.PATHS]).dropna(how="all").round(3))
else:
    print("no constraint checks cached yet: run scripts/approxneb_constraints.py")
"""),
        md("""
Every barrier behind those spreads (click to show):
"""),
        code("""
constraints.round(3) if len(constraints) else None
""", tags=["hide-output"]),
        md("""
The same check in DFT. Before the anchor rule was fixed (every calculator now holds the same
atom, `mig.path_anchor`), three images of Li$_2$O-vac-s2 had been relaxed with GPAW holding
host atom 16 instead of atom 6; both atoms are tied for farthest from the hop. Same end points,
same interpolated start, same moving-ion position, both relaxations converged to
fmax 0.05 eV/Å:
"""),
        code("""
anchors = mig.reference_anchor_check("Li2O-vac-s2")
if len(anchors):
    ctx.glue("li2o_s2_anchor_diff", float(anchors["difference (eV)"].abs().max()))
    display(anchors.round(3).set_index("image"))
    display(Markdown(f"DFT itself moves the middle image by **{anchors['difference (eV)'].abs().max():.2f} eV** "
                     "with the choice of a tied anchor atom: on this path the constraint, not the potential "
                     "energy surface, sets the barrier, for DFT as for the models."))
else:
    print("the two-anchor GPAW images are not in the reference folder")
"""),
        md("""
## The public data (with the internet)

```python
# needs SOFTENING_ONLINE=1 and MP_API_KEY (a Materials Project API key)
from softening_lib import datasets
from softening_lib.tasks import migration as mig
mig.fetch_mpcontribs_approxneb()                     # one file per host, cached
hops = datasets.load("mg-approxneb-mpcontribs")       # one record per hop, DFT E_KRA
table = mig.score_public_paths(hops, "chgnet-0.3.0")  # model energies on the DFT images
```

## Paper vs this book

| quantity | paper | this book |
|---|---|---|
| paths | 470 Mg paths, 110 hosts (Rutt *et al.*, VASP) | 8 Mg/Li vacancy hops, 6 small hosts (GPAW-PBE) |
| barrier MAE (eV) | MACE 0.34, CHGNet 0.39, M3GNet 0.49 | the tables above: relaxed paths whose GPAW reference is complete (the campaign is growing), and static paths |
| sign of error | mostly under-predicted | histogram above |
| images | 5 intermediate | 5 intermediate |
"""),
        md("""
## Exercises

1. For a hop with end-image energies $E_0 = 0$ and $E_N = 0.2$ eV and a highest image at
   $0.5$ eV, what are $E_\\mathrm{KRA}$, the forward and the backward barrier?

```{admonition} Solution
:class: dropdown
$E_\\mathrm{KRA} = 0.5 - 0.1 = 0.4$ eV; forward $= 0.5$ eV $= E_\\mathrm{KRA} + \\Delta E/2$;
backward $= 0.3$ eV $= E_\\mathrm{KRA} - \\Delta E/2$.
```

2. Why does ApproxNEB fix a far host atom as well as the moving ion?

```{admonition} Solution
:class: dropdown
With only the ion fixed, a rigid translation of all other atoms costs no energy, and the
optimiser can move the whole host until the ion sits on a lattice site again: every image
then relaxes to the end-point energy and the barrier vanishes. One more fixed atom removes
that zero mode. *Which* atom is not innocent in a 30-atom cell: the host still strains
5 Å from the hop, and pinning one of four equally far atoms instead of another changed a
CHGNet saddle image of MgO by 33 meV. The book therefore fixes the same atom for every model
and for DFT (`mig.path_anchor`), one that the hop's mirror symmetry keeps in place, so a
symmetric hop keeps a symmetric profile.
```

3. Re-run a path with `interpolation="idpp"` and `constraint="hyperplane"`. Which barrier
   changes more, and why is the hyperplane barrier never higher?

```{admonition} Solution
:class: dropdown
In the hyperplane the ion can also relax sideways, so each image reaches an energy at or
below the fixed-ion one; for straight hops through a symmetric window the two agree.
IDPP mostly changes the start of the relaxation, not its end point, for such short hops.
```
"""),
        code("ctx.finish();"),
    ]


def write_notebooks() -> None:
    for name, cells in (("04_solid_solution.ipynb", notebook_04()), ("05_ion_migration.ipynb", notebook_05())):
        print("wrote", write(ROOT / "chapters" / name, cells))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("notebooks")
    pre = sub.add_parser("precompute")
    pre.add_argument("--models", nargs="+", default=DEFAULT)
    pre.add_argument("--relaxed-models", nargs="+", default=DEFAULT)
    pre.add_argument("--stages", nargs="+", default=STAGES, choices=STAGES)
    pre.add_argument("--budget-min", type=float, default=20.0, help="CPU minutes")
    pre.add_argument("--wall-min", type=float, default=120.0, help="wall-clock minutes")
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.cmd == "notebooks":
        write_notebooks()
    else:
        precompute(args.models, args.stages, args.budget_min, args.relaxed_models, args.wall_min)


if __name__ == "__main__":
    main()
