"""Point-defect energies (paper Fig. 2b): vacancies, antisites, interstitials.

>>> from softening_lib.tasks import defects
>>> cases = defects.build_cases(["Cu", "Cu3Au"])                 # default: >= 7 A between images
>>> table = defects.defect_energies(cases, calc)                   # static (unrelaxed)
>>> table = defects.defect_energies(cases, calc, relax=True)       # positions relaxed, fmax 0.05
>>> defects.convergence("Cu", "vacancy", calc, repeats=[2, 3, 4])  # supercell-size check

Definition (paper, Methods)::

    E_d = E_defect - E_bulk - sum_i mu_i dN_i

``dN_i`` = atoms of element i added (+1) or removed (-1); ``mu_i`` = energy per atom of the
pure element in its reference phase (:data:`ELEMENT_PHASES`) computed **by the same method**
(the model's own mu for the model, GPAW's for GPAW). For a vacancy in an element this is
``E_defect - (N-1)/N E_bulk``.

Choices where the paper is silent (recorded in every row):

* Host and elemental lattices are fixed: elements use the Materials Project PBE structure of
  the listed prototype (offline mirror), intermetallics the PBE-level lattice constants of
  :data:`DEFECT_SYSTEMS`. Every method sees the same cells; only atomic positions relax.
* Supercell: the conventional cubic cell repeated ``n x n x n`` with the smallest ``n`` whose
  defect-to-image distance (shortest lattice vector of the supercell) is >= ``min_distance``
  (default 7 A; the chapter checks convergence on the Cu vacancy). An explicit ``repeat``
  below that is refused (:class:`SupercellTooSmallError`).
* Sites: one defect per symmetry-inequivalent site (spglib). Interstitial: the point of the
  host cell farthest from every atom (the largest void, e.g. octahedral in fcc), one per
  element of the host. For the *relaxed* variant the interstitial starts 0.1 A off that
  high-symmetry point along a fixed low-symmetry direction, so that a relaxation can leave a
  saddle point (e.g. towards a split dumbbell); the static variant keeps the symmetric site.
* Relaxation: FIRE to fmax 0.05 eV/A at fixed cell; non-converged relaxations are kept and
  flagged (``converged=False`` and the fmax reached) and left out of the statistics.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from ase import Atoms

from .surfaces import VARIANTS, _atoms_from_dict, _atoms_to_dict, _element_structure

TASK = "defects"

#: reference phase of each element for mu_i (prototype of its MP PBE structure)
ELEMENT_PHASES = {
    "Cu": "fcc", "Al": "fcc", "Ag": "fcc", "Au": "fcc", "Pd": "fcc", "Pt": "fcc", "Ni": "fcc",
    "Pb": "fcc", "Ca": "fcc", "Si": "diamond", "Sn": "diamond", "Ge": "diamond", "Na": "bcc",
    "Li": "bcc", "K": "bcc", "Zn": "hcp", "Sc": "hcp", "Mg": "hcp", "Ti": "hcp",
}

#: host systems: elements (MP structure of a prototype) and binary intermetallics
#: (structure type, PBE-level conventional lattice constant in A, Materials Project id)
DEFECT_SYSTEMS: dict[str, dict[str, Any]] = {
    "Cu": {"element": "Cu"}, "Al": {"element": "Al"}, "Ag": {"element": "Ag"}, "Au": {"element": "Au"},
    "Pd": {"element": "Pd"}, "Pt": {"element": "Pt"}, "Si": {"element": "Si"},
    "Li": {"element": "Li"}, "Na": {"element": "Na"},
    "AlNi": {"structure": "B2", "A": "Al", "B": "Ni", "a": 2.895, "mp_id": "mp-1487"},
    "CuZn": {"structure": "B2", "A": "Zn", "B": "Cu", "a": 2.950, "mp_id": "mp-987"},
    "Cu3Au": {"structure": "L12", "A": "Au", "B": "Cu", "a": 3.830, "mp_id": "mp-2258"},
    "CaSn3": {"structure": "L12", "A": "Ca", "B": "Sn", "a": 4.770, "mp_id": None},
    "NaPb3": {"structure": "L12", "A": "Na", "B": "Pb", "a": 4.930, "mp_id": None},
    "Al3Sc": {"structure": "L12", "A": "Sc", "B": "Al", "a": 4.104, "mp_id": "mp-331"},
}
DEFAULT_SYSTEMS = ["Cu", "Al", "Ag", "Au", "Pd", "Pt", "Si", "Li", "Na", "AlNi", "CuZn", "Cu3Au", "CaSn3", "NaPb3",
                   "Al3Sc"]
EMT_SYSTEMS = ["Cu", "Al", "Ag", "Au", "Pd", "Pt", "AlNi", "Cu3Au"]  # EMT covers Al Ni Cu Pd Ag Pt Au

KINDS = ("vacancy", "antisite", "interstitial")
INTERSTITIAL_KICK = np.array([1.0, 2.0, 3.0]) / math.sqrt(14.0) * 0.1  # A, relaxed variant only


class DefectError(ValueError):
    """Bad input to the defect task."""


class SupercellTooSmallError(DefectError):
    """The supercell puts periodic images of the defect closer than requested."""


# --------------------------------------------------------------------------------------
# structures
# --------------------------------------------------------------------------------------

def _cubic(a: float, basis: list[tuple[str, tuple[float, float, float]]]) -> Atoms:
    symbols = [s for s, _ in basis]
    frac = np.array([p for _, p in basis], dtype=float)
    return Atoms(symbols=symbols, scaled_positions=frac, cell=np.eye(3) * a, pbc=True)


def host_structure(system: str) -> tuple[Atoms, str]:
    """The conventional cell of a host in :data:`DEFECT_SYSTEMS` and where its lattice comes from."""
    if system not in DEFECT_SYSTEMS:
        raise DefectError(f"unknown defect host {system!r}; known: {', '.join(DEFECT_SYSTEMS)}")
    spec = DEFECT_SYSTEMS[system]
    if "element" in spec:
        el = spec["element"]
        prim, source = _element_structure(el, ELEMENT_PHASES[el])
        return _conventional(prim), source
    a, A, B = spec["a"], spec["A"], spec["B"]
    if spec["structure"] == "B2":
        atoms = _cubic(a, [(A, (0, 0, 0)), (B, (0.5, 0.5, 0.5))])
    elif spec["structure"] == "L12":
        atoms = _cubic(a, [(A, (0, 0, 0)), (B, (0.5, 0.5, 0)), (B, (0.5, 0, 0.5)), (B, (0, 0.5, 0.5))])
    else:  # pragma: no cover - table is static
        raise DefectError(f"unknown structure type {spec['structure']}")
    cf = f", cf. {spec['mp_id']}" if spec.get("mp_id") else ""
    return atoms, f"{spec['structure']} a = {a} A (PBE-level{cf}; not refetched from MP offline)"


def _conventional(atoms: Atoms) -> Atoms:
    from pymatgen.io.ase import AseAtomsAdaptor
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    conv = SpacegroupAnalyzer(AseAtomsAdaptor.get_structure(atoms)).get_conventional_standard_structure()
    out = AseAtomsAdaptor.get_atoms(conv)
    return Atoms(numbers=out.numbers, positions=out.positions, cell=out.cell.array, pbc=True)


def element_reference(element: str) -> tuple[Atoms, str]:
    """The elemental reference structure whose energy per atom is mu_i."""
    if element not in ELEMENT_PHASES:
        raise DefectError(f"no reference phase for element {element!r}; add it to ELEMENT_PHASES")
    atoms, source = _element_structure(element, ELEMENT_PHASES[element])
    return atoms.copy(), source


def image_distance(cell) -> float:
    """Shortest non-zero lattice vector of ``cell`` (distance between periodic images)."""
    cell = np.asarray(cell, dtype=float)
    best = np.inf
    for n in itertools.product(range(-2, 3), repeat=3):
        if n == (0, 0, 0):
            continue
        best = min(best, float(np.linalg.norm(np.array(n) @ cell)))
    return best


def choose_repeat(unit: Atoms, min_distance: float) -> tuple[int, int, int]:
    """Smallest diagonal repeat of ``unit`` with image distance >= ``min_distance``."""
    if not (min_distance > 0):
        raise DefectError(f"min_distance must be positive, got {min_distance}")
    cell = unit.cell.array
    vol = abs(np.linalg.det(cell))
    widths = [vol / np.linalg.norm(np.cross(cell[(i + 1) % 3], cell[(i + 2) % 3])) for i in range(3)]
    rep = [max(1, math.ceil(min_distance / w - 1e-9)) for w in widths]
    while image_distance(np.diag(rep) @ cell) < min_distance - 1e-9:  # skewed cells
        i = int(np.argmin([np.linalg.norm(r * c) for r, c in zip(rep, cell)]))
        rep[i] += 1
    return tuple(rep)


def largest_void(unit: Atoms, grid: int = 24) -> tuple[np.ndarray, float]:
    """(fractional position, distance to nearest atom) of the emptiest point of the cell."""
    g = (np.arange(grid) + 0.0) / grid
    pts = np.array(list(itertools.product(g, g, g)))
    cart = pts @ unit.cell.array
    best_d = np.full(len(pts), np.inf)
    for shift in itertools.product((-1, 0, 1), repeat=3):
        images = unit.positions + np.array(shift) @ unit.cell.array
        d = np.linalg.norm(cart[:, None, :] - images[None, :, :], axis=2).min(axis=1)
        best_d = np.minimum(best_d, d)
    i = int(np.argmax(best_d))
    return pts[i], float(best_d[i])


def _inequivalent_sites(unit: Atoms) -> list[int]:
    import spglib

    ds = spglib.get_symmetry_dataset((unit.cell.array, unit.get_scaled_positions(), unit.numbers), symprec=1e-3)
    eq = ds.equivalent_atoms if hasattr(ds, "equivalent_atoms") else ds["equivalent_atoms"]
    return sorted(set(int(i) for i in eq))


@dataclass
class DefectCase:
    """One defect in a supercell of its host, plus the perfect supercell."""

    id: str
    system: str
    kind: str  # vacancy | antisite | interstitial
    label: str  # V_Cu, Au_Cu, Cu_i
    defect: Atoms
    bulk: Atoms
    dN: dict[str, int]
    repeat: tuple[int, int, int]
    image_distance: float
    site: int = -1
    lattice_source: str = ""
    start: Atoms | None = None  # relaxation start (interstitials: kicked off the symmetric site)
    extra: dict = field(default_factory=dict)

    def summary(self) -> dict:
        return {"id": self.id, "system": self.system, "kind": self.kind, "label": self.label,
                "n_atoms": len(self.defect), "repeat": "x".join(map(str, self.repeat)),
                "image_distance_A": round(self.image_distance, 3)}

    def elements(self) -> list[str]:
        return sorted(set(self.bulk.get_chemical_symbols()) | set(self.dN))


def make_defects(system: str, min_distance: float = 7.0, repeat: Sequence[int] | None = None,
                 kinds: Sequence[str] = KINDS) -> list[DefectCase]:
    """Every inequivalent vacancy / antisite / interstitial of ``system`` in one supercell.

    ``repeat`` (n1, n2, n3) overrides the automatic size but must keep periodic images of the
    defect at least ``min_distance`` apart, otherwise :class:`SupercellTooSmallError`.
    """
    bad = [k for k in kinds if k not in KINDS]
    if bad:
        raise DefectError(f"unknown defect kind(s) {bad}; choose from {KINDS}")
    unit, source = host_structure(system)
    if repeat is None:
        rep = choose_repeat(unit, min_distance)
    else:
        rep = tuple(int(r) for r in repeat)
        if len(rep) != 3 or min(rep) < 1:
            raise DefectError(f"repeat must be three positive integers, got {repeat!r}")
    sc = unit.repeat(rep)
    dist = image_distance(sc.cell.array)
    if dist < min_distance - 1e-9:
        need = choose_repeat(unit, min_distance)
        raise SupercellTooSmallError(
            f"{system}: a {'x'.join(map(str, rep))} supercell ({len(sc)} atoms) puts periodic images of "
            f"the defect {dist:.2f} A apart, less than the requested separation {min_distance} A; use "
            f"repeat={need} or larger, or lower min_distance")
    species = sorted(set(unit.get_chemical_symbols()))
    sites = _inequivalent_sites(unit)
    tag = "x".join(map(str, rep))
    cases: list[DefectCase] = []

    def add(kind, label, defect, dN, site=-1, start=None, extra=None):
        cases.append(DefectCase(id=f"{system}-{label}-{tag}", system=system, kind=kind, label=label,
                                defect=defect, bulk=sc.copy(), dN=dN, repeat=rep, image_distance=dist,
                                site=site, lattice_source=source, start=start, extra=extra or {}))

    multi = {el: sum(1 for i in sites if unit[i].symbol == el) > 1 for el in species}
    for i in sites:  # supercell atom i is unit atom i (ASE repeat keeps the first block)
        el = unit[i].symbol
        suffix = f"{i}" if multi[el] else ""
        if "vacancy" in kinds:
            d = sc.copy()
            del d[i]
            add("vacancy", f"V_{el}{suffix}", d, {el: -1}, site=i)
        if "antisite" in kinds:
            for other in species:
                if other == el:
                    continue
                d = sc.copy()
                d[i].symbol = other
                add("antisite", f"{other}_{el}{suffix}", d, {other: +1, el: -1}, site=i)
    if "interstitial" in kinds:
        frac, clearance = largest_void(unit)
        pos = frac @ unit.cell.array
        for el in species:
            d = sc.copy()
            d.append(el)
            d.positions[-1] = pos
            start = d.copy()
            start.positions[-1] = pos + INTERSTITIAL_KICK
            add("interstitial", f"{el}_i", d, {el: +1}, start=start,
                extra={"site_frac": np.round(frac, 4).tolist(), "clearance_A": round(clearance, 3)})
    return cases


def build_cases(systems: Sequence[str] = tuple(DEFAULT_SYSTEMS), min_distance: float = 7.0,
                kinds: Sequence[str] = KINDS, max_atoms: int | None = None) -> list[DefectCase]:
    """Defects of every host in ``systems`` (cases above ``max_atoms`` are dropped)."""
    if isinstance(systems, str):
        raise DefectError(f"systems must be a list of names, got the string {systems!r}")
    out = []
    for system in systems:
        out += [c for c in make_defects(system, min_distance=min_distance, kinds=kinds)
                if max_atoms is None or len(c.defect) <= max_atoms]
    return out


# --------------------------------------------------------------------------------------
# energies
# --------------------------------------------------------------------------------------

def formation_energy(e_defect: float, e_bulk: float, mu: dict[str, float], dN: dict[str, int]) -> float:
    """E_d = E_defect - E_bulk - sum_i mu_i dN_i (eV)."""
    missing = [el for el in dN if el not in mu]
    if missing:
        raise DefectError(f"no chemical potential for {missing}; compute mu for every element in dN")
    return float(e_defect) - float(e_bulk) - sum(float(mu[el]) * n for el, n in dN.items())


def _energy(atoms: Atoms, calc) -> float:
    work = atoms.copy()
    work.calc = calc
    return float(work.get_potential_energy())


def chemical_potentials(elements, calc) -> dict[str, float]:
    """mu_i = energy per atom of each element's reference phase with ``calc`` (static)."""
    out = {}
    for el in sorted(set(elements)):
        ref, _ = element_reference(el)
        out[el] = _energy(ref, calc) / len(ref)
    return out


def evaluate(case: DefectCase, calc, mu: dict[str, float] | None = None, relax: bool = False,
             fmax: float = 0.05, steps: int = 500, e_bulk: float | None = None) -> dict:
    """Defect energy of one case with one calculator."""
    from ..relax import relax as do_relax

    mu = mu if mu is not None else chemical_potentials(case.elements(), calc)
    e_bulk = e_bulk if e_bulk is not None else _energy(case.bulk, calc)
    row = {**case.summary(), "variant": "relaxed" if relax else "static", "e_bulk": e_bulk,
           "mu": json.dumps({k: round(v, 6) for k, v in mu.items()}), "dN": json.dumps(case.dN)}
    if relax:
        start = case.start if case.start is not None else case.defect
        _, info = do_relax(start, calc, fmax=fmax, steps=steps)
        e_def = info["energy"]
        row.update(converged=info["converged"], fmax=info["fmax"], steps=info["steps"],
                   max_displacement=info["max_displacement"])
    else:
        e_def = _energy(case.defect, calc)
        row.update(converged=True, fmax=np.nan, steps=0, max_displacement=0.0)
    row.update(e_defect=e_def, e_f=formation_energy(e_def, e_bulk, mu, case.dN))
    return row


def defect_energies(cases: Sequence[DefectCase], calc, relax: bool = False, fmax: float = 0.05,
                    steps: int = 500, progress: bool = False, model: str | None = None):
    """Defect energies of many cases with one ASE calculator (e.g. a ScaledCalculator)."""
    import pandas as pd

    if calc is None:
        raise DefectError("defect_energies needs a calculator")
    label = model or getattr(calc, "softening_model", type(calc).__name__)
    elements = sorted({el for c in cases for el in c.elements()})
    mu = chemical_potentials(elements, calc)
    bulk_e: dict[str, float] = {}
    it = cases
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(cases, desc="defects")
    rows = []
    for case in it:
        if not isinstance(case, DefectCase):
            raise DefectError(f"expected DefectCase records (from build_cases), got {type(case).__name__}")
        key = f"{case.system}-{case.repeat}"
        if key not in bulk_e:
            bulk_e[key] = _energy(case.bulk, calc)
        row = evaluate(case, calc, mu=mu, relax=relax, fmax=fmax, steps=steps, e_bulk=bulk_e[key])
        row["model"] = label
        rows.append(row)
    return pd.DataFrame(rows)


def convergence(system: str, kind: str, calc, repeats: Sequence[int] = (2, 3, 4), relax: bool = False,
                fmax: float = 0.05, steps: int = 300, label: str | None = None):
    """Defect energy against supercell size (n x n x n) for one defect of ``system``."""
    import pandas as pd

    rows = []
    for n in repeats:
        cases = [c for c in make_defects(system, min_distance=1e-3, repeat=(n, n, n), kinds=(kind,))
                 if label is None or c.label == label]
        if not cases:
            raise DefectError(f"no {kind} {label or ''} in {system}")
        row = evaluate(cases[0], calc, relax=relax, fmax=fmax, steps=steps)
        rows.append({"system": system, "label": cases[0].label, "repeat": n, "n_atoms": row["n_atoms"],
                     "image_distance_A": row["image_distance_A"], "e_f": row["e_f"],
                     "converged": row["converged"]})
    return pd.DataFrame(rows)


def _case_key(case: DefectCase, variant: str, fmax: float, steps: int) -> str:
    from ..cache import key_of
    from ..predict import geometry_hash

    frames = [case.defect, case.bulk] + ([case.start] if case.start is not None else [])
    return f"{case.id}-{variant}-" + key_of(geometry_hash(frames), variant, fmax, steps)


def compute_cases(cases: Sequence[DefectCase], model: str, variant: str = "static", fmax: float = 0.05,
                  steps: int = 500, progress: Any = True, compute_missing: bool = True, calc=None,
                  records: list | None = None):
    """Model defect energies, cached per (model id, case, geometry, variant) in ResultStore("defects").

    mu_i and the host energy are computed once per element / supercell with the model.
    ``calc``/``records``: see :func:`softening_lib.tasks.surfaces.cached_compute`.
    """
    from .surfaces import cached_compute

    if variant not in VARIANTS:
        raise DefectError(f"variant must be one of {VARIANTS}, got {variant!r}")
    mu_cache: dict[str, float] = {}
    bulk_cache: dict[str, float] = {}

    def one(case: DefectCase, calc) -> dict:
        for el in case.elements():
            if el not in mu_cache:
                mu_cache.update(chemical_potentials([el], calc))
        bkey = f"{case.system}-{case.repeat}"
        if bkey not in bulk_cache:
            bulk_cache[bkey] = _energy(case.bulk, calc)
        return evaluate(case, calc, mu={el: mu_cache[el] for el in case.elements()},
                        relax=(variant == "relaxed"), fmax=fmax, steps=steps, e_bulk=bulk_cache[bkey])

    return cached_compute(TASK, cases, model, variant=variant, progress=progress,
                          compute_missing=compute_missing, key=lambda c: _case_key(c, variant, fmax, steps),
                          elements=lambda c: set(c.elements()), evaluate=one, desc=f"{model} {variant} defects",
                          calc=calc, records=records, finite=("e_f",))


# --------------------------------------------------------------------------------------
# the task contract (softening_lib.task): cases / compute / reference
# --------------------------------------------------------------------------------------

def preset_systems(preset: str = "default") -> list[str]:
    return {"smoke": ["Cu", "Al"], "default": list(DEFAULT_SYSTEMS), "full": list(DEFAULT_SYSTEMS)}[preset]


def cases(preset: str = "default", *, systems: Sequence[str] | None = None, min_distance: float = 7.0,
          variants: Sequence[str] | None = None) -> list[dict]:
    """The chapter's (defect, variant) cases: smoke = Cu, Al vacancies, static; default / full =
    every kind in every system of :data:`DEFAULT_SYSTEMS`, static and relaxed."""
    if preset not in ("smoke", "default", "full"):
        raise DefectError(f"preset must be smoke, default or full, got {preset!r}")
    smoke = preset == "smoke"
    built = build_cases(list(systems) if systems is not None else preset_systems(preset),
                        min_distance=min_distance, kinds=("vacancy",) if smoke else KINDS)
    variants = list(variants) if variants is not None else (["static"] if smoke else list(VARIANTS))
    return [{"id": f"{c.id}-{v}", "item": c, "variant": v} for v in variants for c in built]


def compute(model: str, cases: Sequence[dict], *, calc=None, progress=None,
            cached_only: Sequence[str] = ()) -> list[dict]:
    """One record per (defect, variant) case for ``model``: cached ones read, the rest computed
    (``cached_only``: variants only read from the cache, as in ``surfaces.compute``)."""
    from .surfaces import _compute_variants

    return _compute_variants(compute_cases, model, cases, calc=calc, progress=progress, cached_only=cached_only)


def is_cached(model: str, case: dict) -> bool:
    """True when ``case``'s record for ``model`` is cached and ``ok`` (read only, no model loaded)."""
    from .surfaces import _variants_cached

    return _variants_cached(compute, model, case)


def reference(variant: str | None = None, **_: Any):
    """The GPAW-PBE reference: ``{variant: table}`` (empty tables while it is being computed)."""
    variants = [variant] if variant else list(VARIANTS)
    return {v: load_reference(v) for v in variants}


# --------------------------------------------------------------------------------------
# the GPAW reference (scripts/gpaw_surfaces_defects.py)
# --------------------------------------------------------------------------------------

REFERENCE_DIRS = ("defects_gpaw",)  # its folder(s) under data/reference


def reference_dir() -> Path:
    from .. import config

    return config.reference_dir() / REFERENCE_DIRS[0]


def reference_records(root: Path | None = None) -> list[dict]:
    from .surfaces import json_records

    return json_records(Path(root) if root is not None else reference_dir())


def load_reference(variant: str = "static", root: Path | None = None):
    """GPAW-PBE defect energies: one row per defect whose defect, bulk and every mu_i are done."""
    import pandas as pd

    if variant not in VARIANTS:
        raise DefectError(f"variant must be one of {VARIANTS}, got {variant!r}")
    recs = [r for r in reference_records(root) if r.get("status") == "done"]
    bulk = {r["bulk_id"]: r["energy"] for r in recs if r.get("role") == "bulk"}
    mu = {r["element"]: r["energy"] / r["n_atoms"] for r in recs if r.get("role") == "element"}
    rows = []
    for r in recs:
        if r.get("role") != "defect" or r.get("variant") != variant:
            continue
        dN = r["dN"]
        if r["bulk_id"] not in bulk or any(el not in mu for el in dN):
            continue
        e_f = formation_energy(r["energy"], bulk[r["bulk_id"]], mu, dN)
        rows.append({"id": r["case_id"], "system": r["system"], "kind": r["kind"], "label": r["label"],
                     "variant": variant, "n_atoms": r["n_atoms"], "e_defect": r["energy"],
                     "e_bulk": bulk[r["bulk_id"]], "e_f": e_f, "converged": bool(r.get("converged", True)),
                     "fmax": r.get("fmax", np.nan), "steps": r.get("steps", 0)})
    return pd.DataFrame(rows, columns=["id", "system", "kind", "label", "variant", "n_atoms", "e_defect",
                                       "e_bulk", "e_f", "converged", "fmax", "steps"])


def reference_status(root: Path | None = None) -> dict:
    recs = reference_records(root)
    out = {"records": len(recs), "failed": sum(r.get("status") == "failed" for r in recs)}
    for variant in VARIANTS:
        out[f"{variant}_done"] = len(load_reference(variant, root))
    return out


def parity_figure(reference: dict, model_tables: dict, ref_label: str = "GPAW-PBE", watermark: str | None = None):
    """Fig. 2b: defect energy parity, one column per model, rows static / relaxed."""
    from .surfaces import parity_figure as _pf

    return _pf(reference, model_tables, ref_label=ref_label, quantity="defect energy", unit="eV", col="e_f",
               watermark=watermark)


def summary_by_kind(reference: dict, model_tables: dict):
    """MAE and fraction under-predicted per (model, variant, defect kind)."""
    import pandas as pd

    from .surfaces import compare, stats

    rows = []
    for model, by_variant in model_tables.items():
        for variant, ref in reference.items():
            table = by_variant.get(variant)
            if table is None or not len(table) or ref is None or not len(ref):
                continue
            for kind in KINDS:
                r = ref[ref["kind"] == kind] if "kind" in ref else ref.iloc[0:0]
                rows.append({"model": model, "variant": variant, "kind": kind,
                             **stats(compare(r, table, col="e_f"))})
    return pd.DataFrame(rows, columns=["model", "variant", "kind", "n", "mae", "frac_under", "slope"])


def case_to_dict(case: DefectCase) -> dict:
    return {"id": case.id, "system": case.system, "kind": case.kind, "label": case.label, "dN": case.dN,
            "repeat": list(case.repeat), "image_distance": case.image_distance, "site": case.site,
            "lattice_source": case.lattice_source, "extra": case.extra,
            "defect": _atoms_to_dict(case.defect), "bulk": _atoms_to_dict(case.bulk),
            "start": _atoms_to_dict(case.start) if case.start is not None else None}


def case_from_dict(d: dict) -> DefectCase:
    return DefectCase(id=d["id"], system=d["system"], kind=d["kind"], label=d["label"],
                      defect=_atoms_from_dict(d["defect"]), bulk=_atoms_from_dict(d["bulk"]), dN=d["dN"],
                      repeat=tuple(d["repeat"]), image_distance=d["image_distance"], site=d.get("site", -1),
                      lattice_source=d.get("lattice_source", ""), extra=d.get("extra", {}),
                      start=_atoms_from_dict(d["start"]) if d.get("start") else None)


def convergence_cached(model: str, system: str = "Cu", kind: str = "vacancy",
                       repeats: Sequence[int] = (2, 3, 4), compute_missing: bool = True):
    """:func:`convergence` with a registry model, cached in ResultStore("defects_convergence")."""
    import pandas as pd

    from .. import models as registry
    from ..cache import ResultStore
    from ..predict import calculator

    store = ResultStore("defects_convergence")
    key = f"{system}-{kind}-{'-'.join(map(str, repeats))}"
    mid = registry.model_id(model)
    rec = store.get(mid, key)
    if rec is None:
        if not compute_missing:
            return pd.DataFrame()
        df = convergence(system, kind, calculator(model), repeats=repeats)
        rec = {"model": model, "model_id": mid, "rows": df.to_dict(orient="records")}
        store.put(mid, key, rec)
    cols = ["system", "label", "repeat", "n_atoms", "image_distance_A", "e_f", "converged"]
    df = pd.DataFrame(rec["rows"])
    return df[[c for c in cols if c in df] + [c for c in df if c not in cols]]
