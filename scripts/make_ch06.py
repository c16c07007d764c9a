"""Write chapters/06_phonons.ipynb (output-free)."""

from nbtools import code, md, params, write

cells = [
    md(r"""
# 6. Phonons: the curvature at the minimum

Deng *et al.* {cite}`deng2025softening` (their Fig. 4) compare harmonic phonons of the
universal MLIPs with DFT finite-displacement phonons from PhononDB {cite}`togo2023phonopy`:
the CsF dispersion (Fig. 4a) and, over 229 materials, the ratio of the model's maximum
phonon frequency to the DFT one (Fig. 4b). More than 90 % of the ratios are below 1: the
models' potential energy surfaces are too flat at the bottom, too.

**How this chapter computes it.** The DFT and the model side go through the *same* phonopy
pipeline. DFT: the reference's own displaced supercells and forces (no non-analytical
correction). Model: relax the DFT unit cell with the model (positions and cell, ASE
`FrechetCellFilter` + FIRE to 0.005 eV/Å, space group kept with `FixSymmetry`), apply the
*same* displacements (same supercell matrix, same atoms, same 0.01 Å vectors) to the relaxed
cell, evaluate all displaced supercells in one batched call, build force constants. Both get
the same seekpath band path, the same q-mesh and the same DOS settings. Imaginary modes are
reported (minimum frequency), never dropped.

**Where our data differ from the paper's.**
* The paper's 229-material list (its Supplementary Table 3) is not available offline. We use a
  deterministic list from the PhononDB-PBEsol mirror (listed at the end of the chapter): CsF,
  then every material of the PhononDB-PBE 103 set, then the smallest supercells. The mirror
  already excludes the Materials Project +U elements and the f-block; PhononDB is
  non-spin-polarised, so no magnetic compounds.
* PhononDB is **PBEsol**, while all models here were trained on **PBE** (MP) or PBE (MatPES)
  data. PBEsol gives smaller lattice constants and stiffer bonds than PBE, so part of a
  ratio below 1 is the functional, not the model. We therefore also show **PBE** references:
  the 68 VASP-PBE force sets of the JaGeo MACE-MP-0b3 benchmark (same pipeline as above) and
  the maximum frequency of the PhononDB-PBE 103 set (Matbench Discovery; only frequency
  quantiles are public offline, so the model side there is computed on the PhononDB-**PBEsol**
  structure and supercell of the same material, relaxed by the model).
* M3GNet is matgl's PyTorch M3GNet-MP-2021.2.8, not the paper's TensorFlow weights (with the
  message-direction fix of `softening_lib.matgl_fix`); MACE-MP-0 needs weights that are not on
  this machine (listed as skipped below).
* **Coverage.** Phonons of hundreds of materials take hours per model; `scripts/run_phonons.py`
  computes them into the result cache. The default build of this page never computes phonons:
  it shows what the cache holds and says, in every caption and in the coverage table, how many
  materials each model has. Models with few materials so far are shown all the same.
"""),
    params("""
models = ["chgnet-0.3.0", "m3gnet-mp-2021.2.8", "mace-mp-0-medium", "m3gnet-matpes-pbe", "tensornet-matpes-pbe"]
preset = "default"
material = "mp-1784"  # Fig. 4a material (a PhononDB-PBEsol mp id; CsF as in the paper)
n_pbesol = 240  # size of the deterministic PBEsol list of Fig. 4b (the paper: 229)
"""),
    code("""
import pandas as pd
from IPython.display import display

from softening_lib import book, plots
from softening_lib.tasks import phonons

ctx = book.setup_chapter("06", models=models, preset=preset, material=(material, str), n_pbesol=(n_pbesol, int))
ctx.show_models();
"""),
    code("""
# which materials, and what may be computed live in this preset:
# smoke: the first model on 2 materials; default: the cache only (nothing computed, coverage stated); full: everything
ids = ctx.pick(phonons.smoke_ids(), phonons.pbesol_selection(n_pbesol), phonons.pbesol_selection(n_pbesol))
compute = phonons.compute_plan(ctx.preset, ctx.models)
if compute is not False:
    phonons.run(phonons.PBESOL, ids, ctx.models, compute=compute, showcase=[])
if ctx.preset == "full":
    phonons.run(phonons.PBE68, phonons.jageo_ids(), ctx.models)
for name in (phonons.PBESOL, phonons.PBE68, phonons.PBE103):
    ctx.use_dataset(name)
coverage_note = phonons.coverage_note(ctx.models, ids)
print(coverage_note)
"""),
    md("""
## Fig. 4a: one dispersion

DFT solid, each model dashed, on the DFT material's seekpath band path (the model curves are
drawn at the same fractional q-points).
"""),
    code("""
fig, csf = phonons.fig4a(material, ctx.models, compute=compute)
ctx.figure(fig, "fig4a", caption=plots.caption(
    what=f"Phonon dispersion and DOS of {material}: DFT solid, models dashed (no NAC).",
    data="PhononDB 2018-04-17 PBEsol force set (A. Togo), phonopy + seekpath",
    models=ctx.models, note=phonons.showcase_note(csf, ctx.models)))
csf_table = phonons.showcase_table(csf)
csf_table
"""),
    code("""
for _, row in csf_table.iterrows():
    if row["model"] != "dft":
        ctx.glue(f"csf_ratio_{row['model']}", float(row["ratio"]))
ctx.glue("csf_ratio_chgnet", float(csf_table.set_index("model")["ratio"].get("chgnet-0.3.0", float("nan"))))
ctx.glue("csf_dvol_chgnet", float(100 * csf_table.set_index("model")["volume_change"].get("chgnet-0.3.0", float("nan"))))
ctx.glue("csf_s_chgnet", float(csf_table.set_index("model")["softening_scale_dft_disp"].get("chgnet-0.3.0", float("nan"))))
ctx.glue("csf_ratio_fixed_chgnet", float(csf_table.set_index("model")["ratio_at_dft_geometry"].get("chgnet-0.3.0", float("nan"))))
"""),
    md("""
For CsF, CHGNet's maximum frequency is {glue:text}`csf_ratio_chgnet:.2f` of the PBEsol value,
and CHGNet's relaxed cell is {glue:text}`csf_dvol_chgnet:.1f` % larger in volume than the
PBEsol one. The volume is not the main cause here: with CHGNet's force constants taken at the
PBEsol geometry (the model's forces on the *same* displaced supercells) the maximum is still
only {glue:text}`csf_ratio_fixed_chgnet:.2f` of DFT. Yet the softening scale of those forces,
{glue:text}`csf_s_chgnet:.2f`, shows no softening: the pooled forces are dominated by the
displaced atom's own restoring force, which CHGNet reproduces, while the highest optical branch
(at L) depends on how that stiffness is shared among the neighbours, which it does not. We
come back to the link between $s$ and frequencies in the last section.
Models listed as running above but missing from the figure have no cached CsF result yet
(`scripts/run_phonons.py` computes it first).
"""),
    md("""
## Fig. 4b: maximum-frequency ratio over many materials

Left: against PhononDB-PBEsol. Middle: against the JaGeo VASP-PBE force sets (same pipeline).
Right: against the PhononDB-PBE 103 maximum frequency (the model side computed on the
PhononDB-PBEsol structure and supercell of the same material, relaxed by the model). Each
model's histogram is normalised to its own number of materials, so models with different
coverage can be compared by shape; the numbers in each panel are that model's materials, the
fraction below 1, the median and how many of them have imaginary modes (kept, not dropped).
"""),
    code("""
shift = phonons.functional_shift_table()
shift_jageo = shift.loc[shift["pbe_set"] == "jageo-pbe-68", "pbe_over_pbesol"] if len(shift) else shift
functional_note = (
    "PBEsol gives shorter, stiffer bonds than PBE, so DFT-PBEsol frequencies are higher than DFT-PBE ones"
    + (f" (DFT PBE / PBEsol maximum frequency: median {shift_jageo.median():.3f} over the {len(shift_jageo)} "
       "JaGeo materials also in PhononDB)" if len(shift_jageo) else "")
    + "; the models are PBE-trained, so the PBEsol panel mixes this functional difference with the softening, "
    "the PBE panels show the softening alone.")
fig, summary, ratios = phonons.fig4b(ctx.models, ids)
ctx.figure(fig, "fig4b", caption=plots.caption(
    what="Histogram of the model / DFT maximum phonon frequency (mesh and band path), one colour per model, "
         "each normalised to its own number of materials; dashed line: ratio 1. Ratios outside 0.4-1.3 are drawn "
         "in the edge bins. " + functional_note,
    data=f"PhononDB 2018-04-17 PBEsol ({len(ids)}-material list); JaGeo VASP-PBE 68 force sets "
         "(doi:10.5281/zenodo.15462975); PhononDB-PBE 103 frequency quantiles (Matbench Discovery)",
    models=ctx.models, note=coverage_note))
summary
"""),
    md("""
Where models cover different materials (a run still going on, or elements a model lacks), medians
over different material sets are not comparable. The same summary on the materials that every model with
results has (`n_common`):
"""),
    code("""
phonons.common_summary(ratios, ctx.models)
"""),
    code("""
coverage = phonons.coverage_table(ctx.models, ids)
coverage
"""),
    md("""
Materials a model could not do, with the reason (an element outside the model's training set
is skipped and listed here, never silently dropped; four JaGeo files hold no DFT forces):
"""),
    code("""
phonons.not_computed_table(ctx.models, ids)
"""),
    code("""
for _, row in summary.iterrows():
    tag = f"{row['reference']}_{row['model']}"
    ctx.glue(f"frac_{tag}", float(100 * row["fraction_below_1"]))
    ctx.glue(f"median_{tag}", float(row["median"]))
    ctx.glue(f"n_{tag}", int(row["n"]))
chg = summary[summary["model"] == "chgnet-0.3.0"].set_index("reference")
for ref in ("pbesol", "pbe-jageo68", "pbe-phonondb103"):
    key = ref.replace("-", "_")
    ctx.glue(f"frac_{key}_chgnet", float(100 * chg["fraction_below_1"].get(ref, float("nan"))))
    ctx.glue(f"median_{key}_chgnet", float(chg["median"].get(ref, float("nan"))))
    ctx.glue(f"n_{key}_chgnet", int(chg["n"].get(ref, 0)))
for pbe_set, key in (("jageo-pbe-68", "jageo"), ("phonondb-pbe-103", "103")):
    sub = shift[shift["pbe_set"] == pbe_set] if len(shift) else shift
    ctx.glue(f"shift_median_{key}", float(sub["pbe_over_pbesol"].median()) if len(sub) else float("nan"))
    ctx.glue(f"shift_n_{key}", int(len(sub)))
ctx.glue("n_list", len(ids))
phonons.paper_table(summary)
"""),
    md("""
The cache behind this build holds CHGNet phonons for {glue:text}`n_pbesol_chgnet` of the
{glue:text}`n_list` listed PBEsol materials (the coverage table gives every model; the full
list is a `scripts/run_phonons.py` run away). Against PBEsol, {glue:text}`frac_pbesol_chgnet:.0f` % of CHGNet's
{glue:text}`n_pbesol_chgnet` ratios are below 1 (median {glue:text}`median_pbesol_chgnet:.3f`);
the paper reports more than 90 % below 1 for all three of its models. Against PBE the CHGNet
median is {glue:text}`median_pbe_phonondb103_chgnet:.3f` on the PhononDB-PBE 103 materials
({glue:text}`frac_pbe_phonondb103_chgnet:.0f` % of {glue:text}`n_pbe_phonondb103_chgnet` below 1)
and {glue:text}`median_pbe_jageo68_chgnet:.3f` on the JaGeo force sets
({glue:text}`frac_pbe_jageo68_chgnet:.0f` % of {glue:text}`n_pbe_jageo68_chgnet` below 1).

**What the functional does to the ratio.** PBEsol was built to fix PBE's overestimated lattice
constants; its bonds are shorter and stiffer, so PBEsol frequencies are usually higher than
PBE ones. The table below compares the two DFT references directly, *with no model involved*:
on the {glue:text}`shift_n_jageo` JaGeo materials that are also in PhononDB, the DFT PBE / PBEsol
maximum-frequency ratio has median {glue:text}`shift_median_jageo:.3f`; on the
{glue:text}`shift_n_103` PhononDB-PBE 103 materials, {glue:text}`shift_median_103:.3f`. A
PBE-trained model that reproduced PBE exactly would show ratios below 1 against PhononDB by
about that much: the PBEsol histogram mixes the functional with the softening, the PBE panels
isolate the softening (the JaGeo sets also differ in k-points, cutoff and supercell).

A caution on the PhononDB-PBE 103 panel: for strongly polar compounds its level-1 quantile
sits far above the rest of the distribution (NaF: 12.0 THz against 9.56 THz at the 15/16
quantile; our no-NAC PBEsol maximum is 10.2 THz). That is the signature of the LO branch at
$\Gamma$ *with* the non-analytical correction, which our no-NAC model phonons cannot have, so
ratios against that set are biased low for polar materials. We could not check this offline
(only the quantiles are mirrored); the JaGeo force sets have no such ambiguity.
"""),
    code("""
# every model, every reference (the paragraph above spells out CHGNet)
from IPython.display import Markdown

display(Markdown(phonons.model_sentences(summary)))
"""),
    code("""
shift
"""),
    md("""
## Imaginary modes

A mode with an imaginary frequency (phonopy reports it as a negative number) means the
structure is not at a minimum of the PES: for the model, after its own relaxation with the
space group kept. Such materials are kept in every figure above (their maximum frequency is
still defined); here they are counted and listed. Below -0.1 THz counts as imaginary
(numerical noise of the acoustic branches near $\\Gamma$ sits above). "DFT only" materials are
unstable in the DFT reference itself (PhononDB holds many high-symmetry structures that are not
the ground state), "model only" ones are unstable only with the model.
"""),
    code("""
fig, imag_counts = phonons.fig_imaginary(ctx.models, ids)
ctx.figure(fig, "fig4d_imaginary", caption=plots.caption(
    what="Lowest phonon frequency (mesh and band path), model after relaxation vs DFT, every material with "
         "results; negative values are imaginary modes. Dotted: the -0.1 THz threshold; dashed: y = x.",
    data="PhononDB 2018-04-17 PBEsol and JaGeo VASP-PBE 68 force sets", models=ctx.models, note=coverage_note))
imaginary = phonons.imaginary_table(ctx.models, ids)
phonons.imaginary_summary(imaginary)
"""),
    md("""
Every material with an imaginary mode, per model and reference (minimum frequencies in THz:
model relaxed, DFT, model at the DFT geometry):
"""),
    code("""
with pd.option_context("display.max_rows", None):
    display(imaginary)
""", tags=["hide-output"]),
    md(r"""
## Beyond the paper: imaginary modes that depend on the displacement

A finite-displacement phonon calculation moves one atom by a small distance $\pm d$, reads the
forces on all atoms and divides by $d$. This gives the curvature of the PES only if the forces
grow in proportion to the displacement over $\pm d$, i.e. if the response is harmonic there.
For a smooth PES near a minimum that holds at any small $d$, and the frequencies do not depend
on the choice of $d$. Chapter 7 showed that CHGNet's force response is *not* proportional at
small displacements: the effective spring constant of a displaced atom changes with the
amplitude of the displacement. The PhononDB force sets, and this chapter's model phonons, use $d = 0.01$ Å.

Here we repeat the model phonons at the DFT geometry (no relaxation, phonopy's own $\pm d$
displacements) for several $d$, on five simple rock-salt and zinc-blende crystals whose DFT
phonons are stable, plus CsF. If an imaginary mode comes from the PES, it stays at every $d$;
if it comes from a force response that is not linear at small $d$, it shrinks or vanishes as
$d$ grows. M3GNet is the contrast: where its response is linear, its frequencies are the same
at every $d$. A material whose imaginary modes survive every amplitude (KH here) has a real
instability of the model's PES at the DFT geometry, not an artefact of the displacement. A mode
that turns imaginary only at large $d$ points the other way, to an anharmonic model PES over
$\pm d$. The note under the figure sorts the materials by these patterns, from the cached numbers.
"""),
    code("""
# cache only (scripts/run_phonons.py --amplitude-scan fills it); the full preset computes what is missing
scan_models = [m for m in ctx.models if m in phonons.SCAN_MODELS]
scan = phonons.amplitude_scan(phonons.SCAN_IDS, scan_models, compute=ctx.preset == "full")
ctx.figure(phonons.fig_amplitude_scan(scan), "fig4e_amplitude", caption=plots.caption(
    what="Lowest phonon frequency (left; negative = imaginary) and highest frequency relative to DFT (right) "
         "of each model at the DFT geometry, against the finite-displacement amplitude d of the phonopy "
         "+/- displacements (log axis). Colour: material; line style: model. Dotted vertical line: the "
         "amplitude of the DFT force sets.",
    data="PhononDB 2018-04-17 PBEsol structures and supercells; DFT values from their force sets",
    models=scan_models))
display(Markdown(phonons.amplitude_note(scan)))
"""),
    md("""
## Check: our pipeline on the JaGeo DFT forces vs the set's own numbers

The JaGeo set ships its own DFT maximum frequency (`benchmark_max_frequency`, from atomate2).
Recomputed from the same DFT forces with this chapter's pipeline:
"""),
    code("""
jcheck = phonons.jageo_check()
ctx.glue("jageo_summary", "; ".join(phonons.jageo_check_summary(jcheck)))
ok = jcheck[jcheck["status"] == "ok"] if "status" in jcheck else jcheck.iloc[0:0]
ctx.glue("jageo_within_band", int((ok.get("rel_diff_band", ok.index.to_series()).abs() <= 0.01).sum()) if len(ok) else 0)
ctx.glue("jageo_ok", int(len(ok)))
print("\\n".join(phonons.jageo_check_summary(jcheck)))
jcheck
"""),
    md("""
{glue:text}`jageo_within_band` of {glue:text}`jageo_ok` recomputed band-path maxima are within
1 % of the JaGeo table, most to 4 digits: the table's column is the maximum along the
(seekpath) band path. Our mesh maximum is slightly lower where the maximum sits on the path
between mesh points (down to -2.5 % for AgTe3) and slightly higher where it sits off the path
(Ag2Te, +1.2 %); this chapter's "maximum frequency" is the larger of the two. The one band-path
outlier, Ag2S (mp-31053, -1.8 %), is not a path or mesh effect: a 16×16×16 mesh over the whole
zone from the stored forces peaks at 9.05 THz, below the table's 9.20 THz, so the table's number
must come from different force constants than the ones in the `phonopy.yaml`. Four of the 68
files upstream hold no displacements or forces; they cannot be recomputed and are listed as
`no_dft_forces`.
"""),
    md(r"""
## Beyond the paper: frequencies from the softening scale

The softening scale $s$ (chapter 7) is the slope of model against DFT force components. Here
we measure it on the phonon calculations themselves, **at the DFT displaced geometries** (no
relaxation): from the model's forces on the DFT displaced supercells we build the model's
force constants at the DFT geometry, and compare the forces $-\Phi u$ that the model's and
the DFT force constants give for the DFT displacements (`metrics.softening_scale`). Working
with force constants matters: phonopy's $\pm$ displacement pairs cancel residual forces, and
PhononDB structures with free Wyckoff parameters (e.g. wurtzites) carry DFT residual forces of
about 0.01 eV/Å, as large as the displacement forces themselves; regressing raw forces then
gives meaningless scales (the raw versions are stored as well).

If the model's PES were the DFT PES scaled by $s$, its force constants would be $s$ times DFT's
and its frequencies $\sqrt{s}$ times DFT's. The right panel checks this at the DFT geometry;
the left panel shows the paper's ratio, where the model has relaxed its own cell.
"""),
    code("""
fig, scale = phonons.fig_scale(ctx.models, ids)
ctx.figure(fig, "fig4c_scale", caption=plots.caption(
    what="Maximum-frequency ratio vs the square root of the softening scale measured on the DFT displaced "
         "supercells, one row per model with cached results. Left: model phonons after relaxing the cell; right: "
         "the model's force constants at the DFT geometry. Dashed: ratio = sqrt(s), what a uniformly scaled "
         "harmonic PES gives. Circles PBEsol, triangles PBE references; open symbols: the model has imaginary modes.",
    data="PhononDB 2018-04-17 PBEsol and JaGeo VASP-PBE 68 force sets",
    models=ctx.models, note=coverage_note))
chs = scale[scale["model"] == "chgnet-0.3.0"].set_index("reference")
for col in ("median_sqrt_s", "median_ratio_relaxed", "median_ratio_at_dft_geometry", "median_volume_change",
            "pearson_r_relaxed", "pearson_r_at_dft_geometry"):
    ctx.glue(f"{col}_pbesol_chgnet", float(chs[col].get("PBEsol (PhononDB)", float("nan"))))
scale
"""),
    md("""
For CHGNet on the PBEsol list ({glue:text}`n_pbesol_chgnet:.0f` materials), the median $\\sqrt{s}$
is {glue:text}`median_sqrt_s_pbesol_chgnet:.3f` and the median frequency ratio at the DFT geometry
{glue:text}`median_ratio_at_dft_geometry_pbesol_chgnet:.3f`; across materials the two correlate with
Pearson $r=$ {glue:text}`pearson_r_at_dft_geometry_pbesol_chgnet:.2f`. At fixed geometry, the scale
measured on the forces predicts the phonon softening material by material, as a uniformly scaled
PES would. After the model relaxes its own cell the correlation drops to
$r=$ {glue:text}`pearson_r_relaxed_pbesol_chgnet:.2f` and the median ratio to
{glue:text}`median_ratio_relaxed_pbesol_chgnet:.3f`, with a median volume change of
{glue:text}`median_volume_change_pbesol_chgnet:.3f` relative to the PBEsol cell: the model's larger,
PBE-like equilibrium volume adds material-dependent softening of its own. The paper's Fig. 4b
ratio therefore mixes two effects: the flatter PES at fixed geometry (the softening proper) and
the equilibrium volume (partly the PBE vs PBEsol difference of the references). Points far
below the diagonal on the right (CsF is one) are materials whose pooled forces look right while
the highest branch does not.
"""),
    md("""
## The material list

The deterministic PBEsol list used above (mp id, formula, space group, supercell), in order,
with the DFT maximum frequency and, per model, the model / DFT ratio ("imag": imaginary modes
after relaxation), or why there is none ("missing": not in the cache yet; "skipped": an
element the model does not cover; "failed": the error is in the table of materials a model
could not do). Click to expand:
"""),
    code("""
with pd.option_context("display.max_rows", None):
    display(phonons.material_table(ids, ctx.models))
""", tags=["hide-output"]),
    md("""
## Exercises

1. A material has a model / DFT maximum-frequency ratio of 0.9 but a softening scale on the DFT
   displacements of 1.0. What else could make its frequencies too low?
2. Rerun the chapter with `models=["emt"]` (EMT is in the registry). What does the coverage table
   say, and why?
3. PhononDB-PBEsol and PBE differ by a few per cent in the maximum frequency. Estimate, from the
   Grüneisen relation $\\Delta\\omega/\\omega \\approx -\\gamma\\,\\Delta V/V$ with $\\gamma \\approx 1.5$-$2$, what
   volume difference this corresponds to.

```{admonition} Solutions
:class: dropdown
1. The model relaxes to a different (usually larger) volume than the DFT reference: frequencies fall
   with volume (positive Grüneisen parameters), so the relaxed phonons are softer although the PES
   curvature at the DFT geometry is right. CsF in Fig. 4a is such a case. Mode-dependent errors
   (only the highest optical branch matters for the maximum) are the other cause.
2. EMT covers only Al, Cu, Ag, Au, Ni, Pd, Pt (+ H, C, N, O); every listed material holds another
   element, so every row is `skipped` with the reason, never silently dropped.
3. With $\\Delta\\omega/\\omega \\approx -3$ % and $\\gamma \\approx 1.5$-$2$, $\\Delta V/V \\approx 1.5$-$2$ %,
   i.e. about 0.5-0.7 % in lattice constant: the typical PBE vs PBEsol difference.
```
"""),
    code("""
ctx.finish();
""", tags=["remove-cell"]),
]

write("chapters/06_phonons.ipynb", cells)
