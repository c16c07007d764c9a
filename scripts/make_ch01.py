"""Write chapters/01_softening_primer.ipynb (output-free)."""

from nbtools import code, md, params, write

cells = [
    md(r"""
# 1. What "softer" means: a real potential energy surface

Deng *et al.* {cite}`deng2025softening` open their paper with a sketch (their Fig. 1): a
universal MLIP trained on near-equilibrium structures reproduces the bottom of the potential
energy surface (PES) but rises too slowly away from it. This chapter draws that picture from
a real computation instead of a cartoon.

We take a crystal, move **one atom** along a fixed direction, and at every step compare the
energy and the force on that atom from DFT with those from each model. The DFT reference is
computed by this project with GPAW (PBE, plane waves; settings stored with every point,
{doc}`appendix_gpaw_validation` compares GPAW with VASP forces). It is *not* the paper's VASP
data, which were never deposited; along one scan only energy *differences* and forces matter,
and those agree between the two codes (see the appendix).
"""),
    params("""
models = ["chgnet-0.3.0", "m3gnet-mp-2021.2.8", "mace-mp-0-medium", "m3gnet-matpes-pbe", "tensornet-matpes-pbe"]
preset = "default"
system = "Si"  # a scan committed under data/reference/primer/ ("Si"; "MgO" where computed)
"""),
    code("""
from softening_lib import book, plots
from softening_lib.tasks import softening_primer as primer

ctx = book.setup_chapter("01", models=models, preset=preset, system=(system, str))
ctx.show_models();
"""),
    md("""
## The scan

The displaced atom moves by up to 0.6 Å, far beyond thermal vibrations at room temperature
(about 0.1 Å): the regime of defects, surfaces, transition states and hot MD.
"""),
    code("""
reference = primer.load_reference(system)
if ctx.preset == "smoke":
    reference = reference[::2]  # every other point: still 3 within the curvature window
ctx.note(f"chapter 1 reference: data/reference/primer/{system}_scan.extxyz ({len(reference)} GPAW-PBE points)")
result = primer.compare(reference, ctx.models)
fig = primer.figure_pes(result, system)
ctx.figure(fig, "fig1_pes_cut", caption=plots.caption(
    what=f"Energy (left) and restoring force (right) along a one-atom displacement in {system}; "
         "DFT solid black, models dashed, s = softening scale on this scan.",
    data=f"GPAW-PBE scan computed by this project ({len(reference)} points, "
         f"{reference[0].info.get('dft_ecut_eV', reference[0].info.get('ecut_eV', '?'))} eV cutoff)",
    models=ctx.models))
"""),
    code("""
table = primer.summary_table(result)
table
"""),
    code("""
import numpy as np
s_values = {m: result[m]["s"] for m in ctx.models}
softest = min(s_values, key=s_values.get) if s_values else None
ctx.glue("n_models", len(ctx.models))
ctx.glue("n_below_one", int(sum(v < 1 for v in s_values.values())))
ctx.glue("softest_model", plots.label(softest) if softest else "none")
ctx.glue("softest_s", float(s_values[softest]) if softest else float("nan"))
ctx.glue("max_amp", float(np.max(np.abs(result["amplitude"]))))
"""),
    md("""
## What the figure shows

Of the {glue:text}`n_models` models that ran, {glue:text}`n_below_one` have a softening
scale below 1 on this scan; the softest is {glue:text}`softest_model` with
$s =$ {glue:text}`softest_s:.2f`. A model with $s<1$ has restoring forces that are too
small, so its energy curve is too flat: over the ±{glue:text}`max_amp:.1f` Å of the scan
the energy error grows roughly quadratically with the displacement. Near the minimum all
curves agree — that is the part of the PES the training data covered.

The same mechanism runs through the rest of the book: surface and defect energies
(chapters 2–3) and migration barriers (chapter 5) are energies of structures away from the
minimum, phonon frequencies (chapter 6) are the curvature at the minimum, and the
high-energy MD frames of chapter 7 sample the PES exactly where this figure's curves part.

| quantity | paper (Fig. 1) | this book |
|---|---|---|
| picture | schematic PES | real GPAW-PBE scan vs each model |
| definition of softening | slope of MLIP vs DFT forces, $s$ | same, on this scan |
"""),
    md("""
## Exercises

1. A harmonic model whose forces are $s$ times the DFT forces has energies $s$ times the DFT
   energies. Check this on the table: is the curvature ratio close to $s$? Where and why does it fail?
2. Rerun the chapter with a corrected model: `ScaledCalculator(base, 1/s)`. Which curve moves, and by how much?
3. Why does the disagreement grow with displacement although every model fits the equilibrium structure well?

```{admonition} Solutions
:class: dropdown
1. For a purely harmonic PES, $E=\\tfrac12 k x^2$ and $F=-kx$, so scaling $F$ by $s$ scales $k$ and $E$ by $s$:
   curvature ratio ≈ $s$. The scan is anharmonic at large amplitudes and $s$ pools all force components
   (not only the displaced atom's), so the two numbers differ by a few per cent.
2. Both curves are multiplied by $1/s$; energies relative to the crystal then match DFT to within the
   anharmonic differences. One number fixes most of the error — the paper's central remedy (chapter 8).
3. The training data (MP relaxation trajectories) sample structures near minima; far from them the models
   extrapolate, and a smooth regressor extrapolates towards flatter curves.
```
"""),
    code("""
ctx.finish();
""", tags=["remove-cell"]),
]

write("chapters/01_softening_primer.ipynb", cells)
