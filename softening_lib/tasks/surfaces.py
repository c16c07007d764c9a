"""Surface energies (paper Fig. 2a): slabs, gamma, relaxed and static, model vs reference.

>>> from softening_lib.tasks import surfaces
>>> cases, skipped = surfaces.build_cases(["Cu", "MgO"])          # slabs + matching bulk cells
>>> table = surfaces.surface_energies(cases, calc)                 # static (bulk-terminated)
>>> table = surfaces.surface_energies(cases, calc, relax=True)     # positions relaxed, fmax 0.05
>>> table = surfaces.compute_cases(cases, "chgnet-0.3.0", variant="relaxed")   # cached per model
>>> records = surfaces.compute("chgnet-0.3.0", surfaces.cases("default"))  # the task contract
>>> ref = surfaces.load_reference("static")                        # GPAW-PBE records (this project)

Protocol (paper, Methods; Tran et al., Sci. Data 3, 160080 (2016)):

* pymatgen ``SlabGenerator`` on the conventional standard cell, every symmetrically distinct
  Miller index with max index <= 2, ``min_slab_size >= 10 A``, ``min_vacuum_size >= 10 A``,
  primitive in-plane cell, ``center_slab``. Only **stoichiometric and symmetric** slabs are
  kept (both faces identical, so gamma = (E_slab - N E_bulk) / 2A is the energy of one
  face). A Miller index with no such termination is listed in ``skipped`` with the reason.
* The in-plane lattice is the bulk lattice; the cell is never relaxed.
* ``gamma = (E_slab - N_slab * e_bulk) / (2 A)`` in eV/A^2 (x 16.0218 -> J/m^2), ``e_bulk`` the
  energy per atom of bulk computed by the **same method**.
* The bulk cell of each slab (``case.bulk``) is the bulk crystal expressed with the slab's
  own in-plane vectors ``a, b`` plus the shortest bulk lattice vector out of the plane, so a
  DFT code samples the in-plane Brillouin zone identically for slab and bulk (the standard
  "oriented unit cell" trick) -- the plane-wave reference uses k-grids ``(n1, n2, 1)`` and
  ``(n1, n2, n3)``.
* ``static``: bulk-terminated slab, no relaxation -- the *same geometry* for DFT and model, a
  pure comparison of the two potential-energy surfaces. ``relaxed``: all atoms relaxed at fixed
  cell (FIRE, fmax 0.05 eV/A, as the paper's MLIP protocol); a relaxation that does not reach
  fmax is kept but **flagged** (``converged=False`` and the fmax reached) and excluded from
  the statistics by default.
* Lattice constants: elements use the Materials Project PBE structure of the named prototype
  (offline mirror, dataset ``mp-element-structures``); compounds use the PBE-level lattice
  constants in :data:`SURFACE_SYSTEMS` (rounded, close to the MP values of the listed mp-id).
  Every method uses the same lattice, so this choice does not bias the comparison.
"""

from __future__ import annotations

import functools
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
from ase import Atoms

from ..public_refs import (  # noqa: F401  (moved to a core module; names kept here)
    EV_A2_TO_J_M2, MP_API_URL, MP_SURFACES, SurfaceError, fetch_mp_surfaces, miller_tag,
    parse_mp_surfaces, read_mp_surfaces,
)


# Prototype spacegroups used to pick an elemental structure from the MP candidate polymorphs.
PROTOTYPE_SPACEGROUP = {"fcc": "Fm-3m", "bcc": "Im-3m", "hcp": "P6_3/mmc", "diamond": "Fd-3m"}

#: system -> how to build its bulk. Elements: MP PBE structure of the given prototype.
#: Compounds: ASE prototype + PBE-level conventional lattice constant (A), with the MP id.
SURFACE_SYSTEMS: dict[str, dict[str, Any]] = {
    "Si": {"element": "Si", "prototype": "diamond"},
    "Al": {"element": "Al", "prototype": "fcc"},
    "Cu": {"element": "Cu", "prototype": "fcc"},
    "Ag": {"element": "Ag", "prototype": "fcc"},
    "Au": {"element": "Au", "prototype": "fcc"},
    "Pd": {"element": "Pd", "prototype": "fcc"},
    "Pt": {"element": "Pt", "prototype": "fcc"},
    "MgO": {"formula": "MgO", "crystal": "rocksalt", "a": 4.258, "mp_id": "mp-1265"},
    "CaO": {"formula": "CaO", "crystal": "rocksalt", "a": 4.838, "mp_id": "mp-2605"},
    "LiF": {"formula": "LiF", "crystal": "rocksalt", "a": 4.083, "mp_id": "mp-1138"},
    "NaCl": {"formula": "NaCl", "crystal": "rocksalt", "a": 5.695, "mp_id": "mp-22862"},
    "ZnS": {"formula": "ZnS", "crystal": "zincblende", "a": 5.453, "mp_id": "mp-10695"},
    "CaF2": {"formula": "CaF2", "crystal": "fluorite", "a": 5.500, "mp_id": "mp-2741"},
}
#: the systems the book's default preset uses (>= 10 systems, >= 30 surfaces)
DEFAULT_SYSTEMS = ["Si", "Al", "Cu", "Ag", "Au", "Pd", "Pt", "MgO", "CaO", "LiF", "NaCl", "ZnS", "CaF2"]
EMT_SYSTEMS = ["Al", "Cu", "Ag", "Au", "Pd", "Pt"]  # what ASE's EMT can describe

VARIANTS = ("static", "relaxed")
TASK = "surfaces"


# --------------------------------------------------------------------------------------
# bulk structures
# --------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def _mp_element_data() -> dict:
    import gzip

    from .. import datasets

    path = datasets.locate("mp-element-structures", "MP-PBE-Element-Refs.json.gz")
    with gzip.open(path, "rt") as fh:
        return json.load(fh)


@functools.lru_cache(maxsize=None)
def _element_structure(element: str, prototype: str) -> tuple[Atoms, str]:
    """The MP PBE structure of ``element`` with the prototype's spacegroup (lowest energy)."""
    from pymatgen.core import Structure
    from pymatgen.io.ase import AseAtomsAdaptor
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    data = _mp_element_data()
    if element not in data:
        raise SurfaceError(f"element {element!r} is not in the MP element structures")
    want = PROTOTYPE_SPACEGROUP[prototype]
    best = None
    for sdict, e in zip(data[element]["structure"], data[element]["energy_per_atom"]):
        st = Structure.from_dict(sdict)
        if len(st) > 8:
            continue
        if SpacegroupAnalyzer(st, symprec=0.1).get_space_group_symbol() == want and (best is None or e < best[1]):
            best = (st, float(e))
    if best is None:
        raise SurfaceError(f"no {prototype} ({want}) structure of {element} among the MP candidates")
    return AseAtomsAdaptor.get_atoms(best[0]), f"MP PBE structure ({prototype}, {want}) from dataset mp-element-structures"


def bulk_structure(system: str) -> tuple[Atoms, str]:
    """(bulk Atoms, where its lattice comes from) for a name in :data:`SURFACE_SYSTEMS`."""
    if system not in SURFACE_SYSTEMS:
        raise SurfaceError(f"unknown surface system {system!r}; known: {', '.join(SURFACE_SYSTEMS)} "
                           "(or pass your own bulk Atoms to make_slabs)")
    spec = SURFACE_SYSTEMS[system]
    if "element" in spec:
        atoms, source = _element_structure(spec["element"], spec["prototype"])
        return atoms.copy(), source
    from ase.build import bulk

    atoms = bulk(spec["formula"], spec["crystal"], a=spec["a"])
    return atoms, f"{spec['crystal']} a = {spec['a']} A (PBE-level, cf. {spec['mp_id']}; not refetched from MP offline)"


# --------------------------------------------------------------------------------------
# slabs
# --------------------------------------------------------------------------------------

@dataclass
class SurfaceCase:
    """One slab and the bulk cell it is referenced to (same in-plane vectors)."""

    id: str
    system: str
    miller: tuple[int, int, int]
    termination: int
    shift: float
    slab: Atoms
    bulk: Atoms
    area: float  # A^2, one face
    thickness: float  # A, outermost atomic planes along the normal
    vacuum: float  # A, along the normal
    lattice_source: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def formula(self) -> str:
        return self.bulk.get_chemical_formula(mode="metal", empirical=True)

    def summary(self) -> dict:
        return {"id": self.id, "system": self.system, "miller": "".join(map(str, self.miller)),
                "termination": self.termination, "n_atoms": len(self.slab), "n_bulk": len(self.bulk),
                "area_A2": round(self.area, 3), "thickness_A": round(self.thickness, 2),
                "vacuum_A": round(self.vacuum, 2)}


def _plain_atoms(structure, center: bool = False) -> Atoms:
    from pymatgen.io.ase import AseAtomsAdaptor

    atoms = AseAtomsAdaptor.get_atoms(structure)
    atoms = Atoms(numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell.array, pbc=True)
    if center:
        _center_slab(atoms)
    return atoms


def _center_slab(atoms: Atoms) -> None:
    """Move the slab (in place) to the middle of its cell along c, vacuum split evenly."""
    frac = atoms.get_scaled_positions(wrap=True)
    z = np.sort(frac[:, 2])
    gaps = np.diff(np.concatenate([z, [z[0] + 1.0]]))
    k = int(np.argmax(gaps))
    start = z[(k + 1) % len(z)]  # first atom above the vacuum gap
    frac[:, 2] = (frac[:, 2] - start) % 1.0
    frac[:, 2] += 0.5 - 0.5 * frac[:, 2].max()
    atoms.set_scaled_positions(frac)


def _bulk_with_inplane(prim, slab) -> Atoms:
    """The bulk crystal with the slab's in-plane vectors a, b and the best out-of-plane vector."""
    L = prim.lattice.matrix
    ab = slab.lattice.matrix[:2]
    f = np.linalg.solve(L.T, ab.T).T
    if not np.allclose(f, np.round(f), atol=1e-4):
        raise SurfaceError("slab in-plane vectors are not bulk lattice vectors (pymatgen frame changed?)")
    f = np.round(f).astype(int)
    normal = np.cross(ab[0], ab[1])
    normal /= np.linalg.norm(normal)
    best = None
    rng = range(-3, 4)
    for c in itertools.product(rng, rng, rng):
        M = np.array([f[0], f[1], c])
        det = round(float(np.linalg.det(M)))
        if det == 0:
            continue
        vec = np.array(c) @ L
        score = (abs(det), -abs(vec @ normal) / np.linalg.norm(vec))
        if best is None or score < best[0]:
            best = (score, M if det > 0 else np.array([f[0], f[1], -np.array(c)]))
    if best is None or best[0][0] != 1:
        raise SurfaceError("could not find a primitive bulk cell sharing the slab's in-plane vectors")
    cell = prim.copy()
    cell.make_supercell(best[1])
    return _plain_atoms(cell)


def _thickness_and_vacuum(slab: Atoms) -> tuple[float, float]:
    cell = slab.cell.array
    normal = np.cross(cell[0], cell[1])
    normal /= np.linalg.norm(normal)
    height = abs(cell[2] @ normal)
    z = (slab.get_scaled_positions(wrap=True)[:, 2] * height)
    zs = np.sort(z)
    gaps = np.diff(np.concatenate([zs, [zs[0] + height]]))
    vacuum = float(gaps.max())
    return float(height - vacuum), vacuum


def _generate(conv, miller, min_slab, min_vacuum, symmetrize):
    import warnings

    from pymatgen.core.surface import SlabGenerator

    # center_slab=False: pymatgen's centring costs a neighbour search per slab; _plain_atoms
    # centres the slab in its cell instead (cheap, same result).
    gen = SlabGenerator(conv, miller, min_slab, min_vacuum, center_slab=False, primitive=True,
                        max_normal_search=None, reorient_lattice=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "Too many sites removed": we filter below
        return gen.get_slabs(symmetrize=symmetrize)


def _valid_slabs(conv, miller, min_slab, min_vacuum, bulk_formula):
    """Stoichiometric symmetric slabs whose atom-to-atom thickness is >= min_slab."""
    reasons: set[str] = set()
    for symmetrize in (False, True):
        kept = []
        for slab in _generate(conv, miller, min_slab, min_vacuum, symmetrize):
            if slab.composition.reduced_formula != bulk_formula:
                reasons.add("non-stoichiometric" + (" after symmetrisation" if symmetrize else ""))
                continue
            if not slab.is_symmetric():
                reasons.add("asymmetric (polar / inequivalent faces)")
                continue
            # pymatgen's min_slab_size counts whole layer spacings; make the distance between
            # the outermost atomic planes itself >= min_slab (the paper's "slab >= 10 A")
            size = min_slab
            d_hkl = conv.lattice.d_hkl(miller)
            for _ in range(12):
                thick, _vac = _thickness_and_vacuum(_plain_atoms(slab))
                if thick >= min_slab - 1e-6:
                    break
                # pymatgen rounds to whole layers: grow by at least half an interplanar spacing
                size += max((min_slab - thick) + 0.05, 0.5 * d_hkl)
                bigger = [s for s in _generate(conv, miller, size, min_vacuum, symmetrize)
                          if abs(s.shift - slab.shift) < 1e-6]
                if not bigger:
                    break
                slab = bigger[0]
            if slab.composition.reduced_formula == bulk_formula and slab.is_symmetric():
                kept.append(slab)
        if kept:
            return kept, reasons
    return [], reasons


def make_slabs(bulk: Atoms, system: str | None = None, max_index: int = 2, min_slab: float = 10.0,
               min_vacuum: float = 10.0, max_terminations: int = 1, millers: Iterable[Sequence[int]] | None = None,
               lattice_source: str = "") -> tuple[list[SurfaceCase], list[dict]]:
    """Stoichiometric symmetric slabs of ``bulk``; returns ``(cases, skipped)``.

    ``skipped`` lists ``{"system", "miller", "reason"}`` for every Miller index without a
    stoichiometric, symmetric termination (they are *not* computed).
    """
    from pymatgen.core.surface import get_symmetrically_distinct_miller_indices
    from pymatgen.io.ase import AseAtomsAdaptor
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    if not isinstance(bulk, Atoms) or len(bulk) == 0:
        raise SurfaceError("make_slabs needs a non-empty bulk ase.Atoms")
    if not all(bulk.pbc):
        raise SurfaceError("the bulk structure must be periodic in all three directions")
    if int(max_index) < 1:
        raise SurfaceError(f"max_index must be >= 1, got {max_index}")
    if min_slab < 10.0 or min_vacuum < 10.0:
        raise SurfaceError(f"the paper's protocol needs slab >= 10 A and vacuum >= 10 A "
                           f"(got slab {min_slab}, vacuum {min_vacuum})")
    if int(max_terminations) < 1:
        raise SurfaceError("max_terminations must be >= 1")
    system = system or bulk.get_chemical_formula(mode="metal", empirical=True)
    conv = SpacegroupAnalyzer(AseAtomsAdaptor.get_structure(bulk)).get_conventional_standard_structure()
    prim = conv.get_primitive_structure()
    bulk_formula = conv.composition.reduced_formula
    if millers is None:
        millers = get_symmetrically_distinct_miller_indices(conv, int(max_index))
    cases, skipped = [], []
    for miller in millers:
        miller = tuple(int(i) for i in miller)
        if len(miller) != 3 or not any(miller):
            raise SurfaceError(f"bad Miller index {miller}")
        kept, reasons = _valid_slabs(conv, miller, min_slab, min_vacuum, bulk_formula)
        if not kept:
            skipped.append({"system": system, "miller": miller_tag(miller),
                            "reason": "no stoichiometric + symmetric termination: " + ", ".join(sorted(reasons))})
            continue
        for t, slab in enumerate(kept[:max_terminations]):
            atoms = _plain_atoms(slab, center=True)
            ref = _bulk_with_inplane(prim, slab)
            thick, vac = _thickness_and_vacuum(atoms)
            area = float(np.linalg.norm(np.cross(atoms.cell[0], atoms.cell[1])))
            case = SurfaceCase(
                id=f"{system}-{miller_tag(miller)}-t{t}", system=system, miller=miller, termination=t,
                shift=float(slab.shift), slab=atoms, bulk=ref, area=area, thickness=thick, vacuum=vac,
                lattice_source=lattice_source,
                extra={"n_terminations_valid": len(kept)},
            )
            cases.append(case)
    return cases, skipped


def _atoms_to_dict(atoms: Atoms) -> dict:
    return {"numbers": atoms.numbers.tolist(), "positions": np.round(atoms.positions, 8).tolist(),
            "cell": np.round(atoms.cell.array, 8).tolist()}


def _atoms_from_dict(d: dict) -> Atoms:
    return Atoms(numbers=d["numbers"], positions=d["positions"], cell=d["cell"], pbc=True)


def case_to_dict(case: SurfaceCase) -> dict:
    return {"id": case.id, "system": case.system, "miller": list(case.miller), "termination": case.termination,
            "shift": case.shift, "area": case.area, "thickness": case.thickness, "vacuum": case.vacuum,
            "lattice_source": case.lattice_source, "extra": case.extra,
            "slab": _atoms_to_dict(case.slab), "bulk": _atoms_to_dict(case.bulk)}


def case_from_dict(d: dict) -> SurfaceCase:
    return SurfaceCase(id=d["id"], system=d["system"], miller=tuple(d["miller"]), termination=d["termination"],
                       shift=d["shift"], slab=_atoms_from_dict(d["slab"]), bulk=_atoms_from_dict(d["bulk"]),
                       area=d["area"], thickness=d["thickness"], vacuum=d["vacuum"],
                       lattice_source=d.get("lattice_source", ""), extra=d.get("extra", {}))


def _system_cases(system: str, max_index: int, min_slab: float, min_vacuum: float, max_terminations: int,
                  use_cache: bool = True) -> tuple[list[SurfaceCase], list[dict]]:
    """Slabs of one named system, cached (slab generation costs pymatgen tens of seconds)."""
    from importlib.metadata import version

    from ..cache import ResultStore, key_of

    store = ResultStore(TASK)
    key = f"{system}-" + key_of(system, SURFACE_SYSTEMS.get(system), max_index, min_slab, min_vacuum,
                                max_terminations, version("pymatgen").split(".")[0], CASES_VERSION)
    rec = store.get("_cases", key) if use_cache else None
    if rec is not None:
        return [case_from_dict(d) for d in rec["cases"]], rec["skipped"]
    bulk, source = bulk_structure(system)
    cases, skipped = make_slabs(bulk, system=system, max_index=max_index, min_slab=min_slab,
                                min_vacuum=min_vacuum, max_terminations=max_terminations, lattice_source=source)
    dicts = [case_to_dict(c) for c in cases]
    store.put("_cases", key, {"system": system, "cases": dicts, "skipped": skipped,
                              "params": {"max_index": max_index, "min_slab": min_slab, "min_vacuum": min_vacuum,
                                         "max_terminations": max_terminations}})
    # return exactly what a later cached call returns (positions rounded to 1e-8 A), so that
    # result keys (geometry hashes) do not depend on whether the cases came from the cache
    return [case_from_dict(json.loads(json.dumps(d))) for d in dicts], skipped


CASES_VERSION = 2  # bump when slab construction changes (invalidates the cached case lists)


def build_cases(systems: Sequence[str] = tuple(DEFAULT_SYSTEMS), max_index: int = 2, min_slab: float = 10.0,
                min_vacuum: float = 10.0, max_terminations: int = 1, max_atoms: int | None = None,
                use_cache: bool = True):
    """Slabs of every named system; returns ``(cases, skipped DataFrame)``.

    Case lists are cached under ``data/results/surfaces/_cases`` so that the models, the
    GPAW reference and the book all use byte-identical geometries. Slabs above ``max_atoms``
    are listed as skipped (a preset's size cut, not a physical reason).
    """
    import pandas as pd

    if isinstance(systems, str):
        raise SurfaceError(f"systems must be a list of names, got the string {systems!r}")
    unknown = [s for s in systems if s not in SURFACE_SYSTEMS]
    if unknown:
        raise SurfaceError(f"unknown surface system(s) {unknown}; known: {', '.join(SURFACE_SYSTEMS)}")
    all_cases, skipped = [], []
    for system in systems:
        cases, skip = _system_cases(system, max_index, min_slab, min_vacuum, max_terminations, use_cache)
        skip = list(skip)
        for case in cases:
            if max_atoms is not None and len(case.slab) > max_atoms:
                skip.append({"system": system, "miller": miller_tag(case.miller),
                             "reason": f"{len(case.slab)} atoms > max_atoms={max_atoms} (this preset)"})
            else:
                all_cases.append(case)
        skipped += skip
    return all_cases, pd.DataFrame(skipped, columns=["system", "miller", "reason"])


# --------------------------------------------------------------------------------------
# energies
# --------------------------------------------------------------------------------------

def surface_energy(e_slab: float, n_slab: int, e_bulk_per_atom: float, area: float) -> float:
    """gamma = (E_slab - n_slab * e_bulk) / (2 A), eV/A^2 (a symmetric slab has two faces)."""
    if area <= 0:
        raise SurfaceError(f"area must be positive, got {area}")
    if n_slab <= 0:
        raise SurfaceError(f"n_slab must be positive, got {n_slab}")
    return (float(e_slab) - n_slab * float(e_bulk_per_atom)) / (2.0 * float(area))


def _energy(atoms: Atoms, calc) -> float:
    work = atoms.copy()
    work.calc = calc
    return float(work.get_potential_energy())


def evaluate(case: SurfaceCase, calc, relax: bool = False, fmax: float = 0.05, steps: int = 500,
             optimizer: str = "FIRE") -> dict:
    """gamma of one case with one calculator (static or positions relaxed at fixed cell)."""
    from ..relax import relax as do_relax

    e_bulk = _energy(case.bulk, calc) / len(case.bulk)
    row = {**case.summary(), "variant": "relaxed" if relax else "static", "e_bulk_per_atom": e_bulk}
    if relax:
        _, info = do_relax(case.slab, calc, fmax=fmax, steps=steps, optimizer=optimizer)
        e_slab = info["energy"]
        row.update(converged=info["converged"], fmax=info["fmax"], steps=info["steps"],
                   max_displacement=info["max_displacement"], e_slab_unrelaxed=info["energy_initial"])
    else:
        e_slab = _energy(case.slab, calc)
        row.update(converged=True, fmax=np.nan, steps=0, max_displacement=0.0)
    gamma = surface_energy(e_slab, len(case.slab), e_bulk, case.area)
    row.update(e_slab=e_slab, gamma_eV_A2=gamma, gamma_J_m2=gamma * EV_A2_TO_J_M2)
    return row


def surface_energies(records: Sequence[SurfaceCase], calc, relax: bool = False, fmax: float = 0.05,
                     steps: int = 500, progress: bool = False, model: str | None = None):
    """Re-score surfaces with any ASE calculator (e.g. a ScaledCalculator); one row per case.

    This is what chapter 8 (SI Fig. 5) calls to show how a one-label linear correction moves
    surface energies. ``model`` only labels the rows (default: ``calc.softening_model``).
    """
    import pandas as pd

    if calc is None:
        raise SurfaceError("surface_energies needs a calculator")
    rows = []
    it = records
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(records, desc="surfaces")
    label = model or getattr(calc, "softening_model", type(calc).__name__)
    for case in it:
        if not isinstance(case, SurfaceCase):
            raise SurfaceError(f"expected SurfaceCase records (from build_cases), got {type(case).__name__}")
        row = evaluate(case, calc, relax=relax, fmax=fmax, steps=steps)
        row["model"] = label
        rows.append(row)
    return pd.DataFrame(rows)


def _case_key(case: SurfaceCase, variant: str, fmax: float, steps: int) -> str:
    from ..cache import key_of
    from ..predict import geometry_hash

    return f"{case.id}-{variant}-" + key_of(geometry_hash([case.slab, case.bulk]), variant, fmax, steps)


def cached_compute(task: str, cases: Sequence, model: str, *, key: Callable[[Any], str],
                   elements: Callable[[Any], set], evaluate: Callable[[Any, Any], dict],
                   variant: str, progress: Any = True, compute_missing: bool = True, desc: str = "",
                   calc=None, records: list | None = None, finite: Sequence[str] | None = None):
    """Rows of ``cases`` for one registry ``model``, cached in ``ResultStore(task)`` (surfaces, defects).

    A case whose ``key(case)`` is in the store is read; the rest are computed with
    ``evaluate(case, calc)`` (the calculator made once, on the first miss) and stored.
    A case with elements (``elements(case)``) the model does not cover is stored and
    returned as skipped, with the reason. ``compute_missing=False`` only reads the cache.

    ``calc`` replaces the registry calculator; ``model`` is then a label and the store folder.
    ``records`` (a list) receives one task-contract record per case (``softening_lib.task``):
    a case whose evaluation raises is then recorded as skipped (an element the calculator
    does not cover) or failed, never stored, and the other cases go on; without ``records``
    the error propagates. ``finite``: the result keys that must be finite (else "failed").
    ``progress``: True/False or a tqdm-like bar advanced per case.
    """
    import pandas as pd

    from .. import models
    from .. import task as contract
    from ..cache import ResultStore
    from ..predict import calculator

    store = ResultStore(task)
    mid = models.model_id(model) if calc is None else model
    rows, todo = [], []
    for case in cases:
        k = key(case)
        rec = store.get(mid, k)
        if rec is not None:
            rows.append(rec)
            if records is not None:
                records.append(_contract_record(case, variant, model, rec, cached=True, finite=finite))
                contract.advance(progress if not isinstance(progress, bool) else None)
        else:
            todo.append((case, k))
    if records is not None and not compute_missing:
        for case, _ in todo:
            records.append(contract.record(f"{case.id}-{variant}", model, "skipped",
                                           "not in the cache (this preset reads it only)"))
            contract.advance(progress if not isinstance(progress, bool) else None)
    if todo and compute_missing:
        it = contract.progress_iter(todo, progress, desc or f"{model} {variant} {task}")
        holder = [calc]
        for case, k in it:
            try:
                if calc is None:
                    models.check_elements(model, set(elements(case)))
            except models.UnsupportedElementError as exc:
                rec = {**case.summary(), "variant": variant, "model": model, "skipped": str(exc)}
            else:
                def one(case=case):
                    holder[0] = holder[0] or calculator(model)
                    out = evaluate(case, holder[0])
                    out.update(model=model, model_id=mid, skipped="")
                    return out

                if records is None:
                    rec = one()
                else:
                    r = contract.run_case(one, f"{case.id}-{variant}", model, elements=set(elements(case)),
                                          finite=finite)
                    if r["status"] != "ok":
                        records.append(r)
                        continue
                    rec = {k2: v for k2, v in r.items() if k2 not in ("case", "status", "reason", "cached")}
            store.put(mid, k, rec)
            rows.append(rec)
            if records is not None:
                records.append(_contract_record(case, variant, model, rec, cached=False, finite=finite))
    df = pd.DataFrame(rows)
    if len(df) and "skipped" not in df:
        df["skipped"] = ""
    return df


def _contract_record(case, variant: str, model: str, rec: dict, cached: bool,
                     finite: Sequence[str] | None = None) -> dict:
    from .. import task as contract

    values = {k: v for k, v in rec.items() if k not in ("model", "status", "reason", "case", "cached")}
    if rec.get("skipped"):
        return contract.record(f"{case.id}-{variant}", model, "skipped", rec["skipped"], cached=cached, **values)
    return contract.run_case(lambda: values, f"{case.id}-{variant}", model, cached=cached, finite=finite)


def compute_cases(cases: Sequence[SurfaceCase], model: str, variant: str = "static", fmax: float = 0.05,
                  steps: int = 500, progress: Any = True, compute_missing: bool = True, calc=None,
                  records: list | None = None):
    """Model surface energies, cached per (model id, case, geometry, variant) in ResultStore("surfaces").

    Structures with elements the model does not cover are recorded as skipped (with reason).
    ``compute_missing=False`` only reads the cache (for a quick "default" book build).
    ``calc``/``records``: see :func:`cached_compute`.
    """
    if variant not in VARIANTS:
        raise SurfaceError(f"variant must be one of {VARIANTS}, got {variant!r}")
    return cached_compute(
        TASK, cases, model, variant=variant, progress=progress, compute_missing=compute_missing,
        key=lambda case: _case_key(case, variant, fmax, steps),
        elements=lambda case: set(case.slab.get_chemical_symbols()),
        evaluate=lambda case, calc: evaluate(case, calc, relax=(variant == "relaxed"), fmax=fmax, steps=steps),
        desc=f"{model} {variant} surfaces", calc=calc, records=records, finite=("gamma_eV_A2",))


# --------------------------------------------------------------------------------------
# the task contract (softening_lib.task): cases / compute / reference
# --------------------------------------------------------------------------------------

def preset_systems(preset: str = "default") -> list[str]:
    return {"smoke": ["Cu", "Al"], "default": list(DEFAULT_SYSTEMS), "full": list(DEFAULT_SYSTEMS)}[preset]


def cases(preset: str = "default", *, systems: Sequence[str] | None = None, max_index: int = 2,
          variants: Sequence[str] | None = None) -> list[dict]:
    """The chapter's (slab, variant) cases: smoke = Cu, Al, max index 1, <= 12 atoms, static;
    default / full = every system of :data:`DEFAULT_SYSTEMS`, static and relaxed (what the
    chapter shows; relaxations are the costly part)."""
    if preset not in ("smoke", "default", "full"):
        raise SurfaceError(f"preset must be smoke, default or full, got {preset!r}")
    smoke = preset == "smoke"
    built, _ = build_cases(list(systems) if systems is not None else preset_systems(preset),
                           max_index=1 if smoke else max_index, max_atoms=12 if smoke else None)
    variants = list(variants) if variants is not None else (["static"] if smoke else list(VARIANTS))
    return [{"id": f"{c.id}-{v}", "item": c, "variant": v} for v in variants for c in built]


def compute(model: str, cases: Sequence[dict], *, calc=None, progress=None,
            cached_only: Sequence[str] = ()) -> list[dict]:
    """One record per (slab, variant) case for ``model``: cached ones read, the rest computed.

    ``cached_only``: variants only read from the cache (the chapter's "default" build reads
    relaxations; a missing one is a skipped record, "not in the cache")."""
    return _compute_variants(compute_cases, model, cases, calc=calc, progress=progress, cached_only=cached_only)


def is_cached(model: str, case: dict) -> bool:
    """True when ``case``'s record for ``model`` is cached and ``ok`` (read only, no model
    loaded): the executor skips such cases before submitting, and counts them as cached."""
    return _variants_cached(compute, model, case)


def _variants_cached(compute_fn: Callable, model: str, case: dict) -> bool:
    records = compute_fn(model, [case], cached_only=(case["variant"],))
    return bool(records) and all(r.get("status") == "ok" and r.get("cached") for r in records)


def _compute_variants(compute_fn: Callable, model: str, cases: Sequence[dict], *, calc=None, progress=None,
                      cached_only: Sequence[str] = (), **kw: Any) -> list[dict]:
    """Run ``compute_fn`` (surfaces / defects ``compute_cases``) per variant, in the cases' order."""
    records: list[dict] = []
    for variant in dict.fromkeys(c["variant"] for c in cases):
        group = [c["item"] for c in cases if c["variant"] == variant]
        compute_fn(group, model, variant=variant, progress=progress if progress is not None else False,
                   calc=calc, records=records, compute_missing=variant not in cached_only, **kw)
    order = {c["id"]: i for i, c in enumerate(cases)}
    return sorted(records, key=lambda r: order.get(r["case"], len(order)))


def tables_from_records(records: Sequence[dict], models: Sequence[str], variants: Sequence[str]) -> dict:
    """``{model: {variant: table}}`` of the ``ok`` records of :func:`compute` (surfaces or
    defects): what the parity figures and tables read (skipped and failed cases are listed
    by ``task.show_skipped``, not drawn)."""
    import pandas as pd

    out = {}
    for m in models:
        out[m] = {}
        for v in variants:
            rows = [{k: val for k, val in r.items() if k not in ("case", "status", "reason", "cached")}
                    for r in records if r.get("model") == m and str(r.get("case", "")).endswith(f"-{v}")
                    and r.get("status") == "ok"]
            table = pd.DataFrame(rows)
            if len(table) and "skipped" not in table:
                table["skipped"] = ""
            out[m][v] = table
    return out


def reference(variant: str | None = None, **_: Any):
    """The GPAW-PBE reference: ``{variant: table}`` (empty tables while it is being computed)."""
    variants = [variant] if variant else list(VARIANTS)
    return {v: load_reference(v) for v in variants}


def model_tables(compute_fn: Callable, cases: Sequence, models: Sequence[str], variants: Sequence[str],
                 compute_relaxed: bool = False, what: str = "cases") -> dict:
    """``{model: {variant: table}}`` with ``compute_fn`` (:func:`compute_cases` or ``defects.compute_cases``).

    Statics are computed when missing; relaxations only with ``compute_relaxed`` (the "full"
    preset), else read from the cache. Prints how many of ``cases`` each table holds.
    """
    tables = {m: {v: compute_fn(cases, m, variant=v, compute_missing=(v == "static" or compute_relaxed))
                  for v in variants} for m in models}
    for m in models:
        for v in variants:
            print(f"{m} {v}: {len(tables[m][v])} of {len(cases)} {what} available")
    return tables


def reference_or_demo(compute_fn: Callable, cases: Sequence, reference: dict, variants: Sequence[str],
                      emt_systems: Sequence[str]) -> tuple[dict, str, bool]:
    """``(reference, label, demo)``: the GPAW reference when it holds anything, else ASE's EMT
    on the EMT metals among ``cases`` as a clearly labelled demonstration stand-in (cached
    like any model, model ``"emt"``). EMT is not DFT: ``demo=True`` says so."""
    if sum(len(r) for r in reference.values() if r is not None):
        return reference, "GPAW-PBE", False
    emt_cases = [c for c in cases if c.system in emt_systems]
    demo = {v: compute_fn(emt_cases, "emt", variant=v, progress=False) for v in variants}
    return demo, "EMT (demo stand-in, NOT DFT)", True


# --------------------------------------------------------------------------------------
# the GPAW reference (computed by this project; scripts/gpaw_surfaces_defects.py)
# --------------------------------------------------------------------------------------

REFERENCE_DIRS = ("surfaces_gpaw",)  # its folder(s) under data/reference


def reference_dir() -> Path:
    from .. import config

    return config.reference_dir() / REFERENCE_DIRS[0]


def reference_records(root: Path | None = None) -> list[dict]:
    """Every JSON record (one per GPAW calculation) under data/reference/surfaces_gpaw."""
    return json_records(Path(root) if root is not None else reference_dir())


def json_records(root: Path) -> list[dict]:
    """Every readable ``*.json`` record in ``root`` (sorted by name); a half-written file is skipped."""
    out = []
    for path in sorted(Path(root).glob("*.json")):
        try:
            out.append(json.loads(path.read_text()))
        except json.JSONDecodeError:
            continue
    return out


def load_reference(variant: str = "static", root: Path | None = None):
    """GPAW-PBE surface energies (one row per surface whose slab *and* bulk are done).

    Columns like :func:`evaluate`; relaxed slabs that did not reach fmax are kept with
    ``converged=False``. An empty table means the reference has not been computed yet.
    """
    import pandas as pd

    if variant not in VARIANTS:
        raise SurfaceError(f"variant must be one of {VARIANTS}, got {variant!r}")
    recs = reference_records(root)
    bulk = {r["case_id"]: r for r in recs if r.get("role") == "bulk" and r.get("status") == "done"}
    rows = []
    for r in recs:
        if r.get("role") != "slab" or r.get("variant") != variant or r.get("status") != "done":
            continue
        b = bulk.get(r["case_id"])
        if b is None:
            continue
        e_bulk = b["energy"] / b["n_atoms"]
        gamma = surface_energy(r["energy"], r["n_atoms"], e_bulk, r["area_A2"])
        rows.append({"id": r["case_id"], "system": r["system"], "miller": r["miller"], "variant": variant,
                     "n_atoms": r["n_atoms"], "area_A2": r["area_A2"], "e_slab": r["energy"],
                     "e_bulk_per_atom": e_bulk, "gamma_eV_A2": gamma, "gamma_J_m2": gamma * EV_A2_TO_J_M2,
                     "converged": bool(r.get("converged", True)), "fmax": r.get("fmax", np.nan),
                     "steps": r.get("steps", 0)})
    return pd.DataFrame(rows, columns=["id", "system", "miller", "variant", "n_atoms", "area_A2", "e_slab",
                                       "e_bulk_per_atom", "gamma_eV_A2", "gamma_J_m2", "converged", "fmax", "steps"])


def reference_status(cases: Sequence[SurfaceCase] | None = None, root: Path | None = None) -> dict:
    """How much of the GPAW reference exists: counts of done / failed records per variant."""
    recs = reference_records(root)
    out = {"records": len(recs)}
    for variant in VARIANTS:
        out[f"{variant}_done"] = len(load_reference(variant, root))
    out["failed"] = sum(r.get("status") == "failed" for r in recs)
    if cases is not None:
        out["planned"] = len(cases)
    return out


# --------------------------------------------------------------------------------------
# comparison and figure
# --------------------------------------------------------------------------------------

def compare(reference, model_table, converged_only: bool = True, col: str = "gamma_eV_A2"):
    """Join reference and model rows on ``id``; columns ``gamma_ref``, ``gamma_model``, ``error``.

    ``col`` is the quantity compared (``gamma_eV_A2`` here; the defect task passes ``e_f``).
    """
    import pandas as pd

    if reference is None or not len(reference) or model_table is None or not len(model_table):
        return pd.DataFrame(columns=["id", "gamma_ref", "gamma_model", "error"])
    m = model_table
    if "skipped" in m:
        m = m[m["skipped"].fillna("") == ""]
    ref = reference
    if converged_only:
        ref = ref[ref["converged"].astype(bool)]
        if "converged" in m:
            m = m[m["converged"].astype(bool)]
    keep = [c for c in ("id", "system", "miller", "label", col) if c in ref]
    j = ref[keep].merge(m[["id", col]], on="id", suffixes=("_ref", "_model"))
    j = j.rename(columns={f"{col}_ref": "gamma_ref", f"{col}_model": "gamma_model"})
    j["error"] = j["gamma_model"] - j["gamma_ref"]
    return j


def ratio_table(reference, model_tables: dict, variant: str = "static", col: str = "gamma_eV_A2"):
    """Model / reference ratio of every surface (rows, with system and Miller index) for each
    model (columns), plus the reference value itself: which systems and facets soften most.
    ``reference``: {variant: table}; ``model_tables``: {model: {variant: table}}."""
    import pandas as pd

    ref = reference.get(variant)
    out = None
    for model, by_variant in model_tables.items():
        j = compare(ref, by_variant.get(variant), col=col)
        if not len(j):
            continue
        keys = [c for c in ("id", "system", "miller", "label") if c in j]
        part = j[keys + ["gamma_ref"]].copy()
        part[model] = j["gamma_model"] / j["gamma_ref"]
        out = part if out is None else out.merge(part[["id", model]], on="id", how="outer")
    if out is None:
        return pd.DataFrame(columns=["id", "system", "gamma_ref"])
    return out.rename(columns={"gamma_ref": f"reference ({col})"}).sort_values(["system", "id"]).reset_index(drop=True)


def unconverged(model_tables: dict, reference: dict | None = None):
    """Relaxations that stopped before fmax (model and reference): listed, never silently used."""
    import pandas as pd

    rows = []
    sources = [(m, t) for m, t in model_tables.items()] + ([("reference", reference)] if reference else [])
    for who, by_variant in sources:
        for variant, t in (by_variant or {}).items():
            if t is None or not len(t) or "converged" not in t:
                continue
            bad = t[~t["converged"].fillna(True).astype(bool)]
            for _, r in bad.iterrows():
                rows.append({"who": who, "variant": variant, "id": r["id"], "fmax": r.get("fmax"),
                             "steps": r.get("steps")})
    return pd.DataFrame(rows, columns=["who", "variant", "id", "fmax", "steps"])


def parity_report(figure_fn: Callable, reference: dict, model_tables: dict, ref_label: str, demo: bool,
                  what: str = "surfaces"):
    """``(fig, summary, note, flagged)`` of a chapter's parity figure (Fig. 2a with
    :func:`parity_figure`, Fig. 2b with ``defects.parity_figure``): the figure (watermarked
    when ``demo``), its statistics, a caption note on the reference, and the relaxations that
    did not reach fmax (:func:`unconverged`; the statistics leave them out)."""
    fig, summary = figure_fn(reference, model_tables, ref_label=ref_label,
                             watermark="DEMO: EMT, not DFT" if demo else None)
    note = ("DEMO: EMT stands in for the pending GPAW reference; no softening conclusion can be drawn."
            if demo else f"{len(reference['static'])} static / {len(reference.get('relaxed', []))} relaxed GPAW {what}.")
    return fig, summary, note, unconverged(model_tables, reference)


def stats(joined) -> dict:
    """MAE (eV/A^2), fraction under-predicted, n, and the slope through the origin."""
    if joined is None or not len(joined):
        return {"n": 0, "mae": np.nan, "frac_under": np.nan, "slope": np.nan}
    x = joined["gamma_ref"].to_numpy(float)
    y = joined["gamma_model"].to_numpy(float)
    return {"n": int(len(x)), "mae": float(np.mean(np.abs(y - x))), "frac_under": float(np.mean(y < x)),
            "slope": float(np.dot(x, y) / np.dot(x, x)) if np.dot(x, x) > 0 else np.nan}


def parity_figure(reference: dict, model_tables: dict, ref_label: str = "GPAW-PBE",
                  quantity: str = "surface energy", unit: str = "eV/Å$^2$", col: str = "gamma_eV_A2",
                  watermark: str | None = None):
    """Fig. 2a: one column per model, rows static / relaxed; MAE and fraction under-predicted.

    ``reference``: {variant: reference table}; ``model_tables``: {model: {variant: table}}.
    Returns ``(fig, summary DataFrame)``.
    """
    import matplotlib.pyplot as plt
    import pandas as pd

    from .. import plots

    models_ = list(model_tables)
    # a variant without any reference value (e.g. no relaxed GPAW slab yet) gets no empty row
    present = [v for v in VARIANTS if v in reference]
    variants = [v for v in present if reference[v] is not None and len(reference[v])] or present[:1]
    ncol = max(1, len(models_))
    if len(variants) == 1 and ncol > 2:  # one row of many small panels reads badly: wrap to 2 columns
        nr = (ncol + 1) // 2
        fig, grid = plt.subplots(nr, 2, figsize=(7.0, 3.3 * nr), squeeze=False)
        flat = list(grid.ravel())
        for extra in flat[ncol:]:
            extra.set_visible(False)
        axes = [flat[:ncol]]
    else:
        fig, axes = plt.subplots(len(variants) or 1, ncol, figsize=(3.1 * ncol, 3.2 * max(1, len(variants))),
                                 squeeze=False)
    rows = []
    joined_all = {}
    lims = {}
    log_rows: set = set()
    for i, variant in enumerate(variants):  # one axis range per row (static and relaxed differ a lot)
        allv = []
        for j, model in enumerate(models_):
            jt = compare(reference[variant], model_tables[model].get(variant), col=col)
            joined_all[(variant, model)] = jt
            if len(jt):
                allv += [jt["gamma_ref"].to_numpy(), jt["gamma_model"].to_numpy()]
        hi = float(np.nanmax(np.concatenate(allv))) * 1.08 if allv else 1.0
        lo = min(0.0, float(np.nanmin(np.concatenate(allv))) * 1.08) if allv else 0.0
        lims[variant] = (lo, hi if hi > lo else lo + 1.0)
        if allv and wide_range(np.concatenate(allv)):  # e.g. unrelaxed interstitials at 10-25 eV next to
            vals = np.concatenate(allv)                 # 0-3 eV vacancies: a log axis keeps both readable
            lims[variant] = (float(np.nanmin(vals)) / 1.4, float(np.nanmax(vals)) * 1.4)
            log_rows.add(variant)
    for i, variant in enumerate(variants):
        lo, hi = lims[variant]
        for j, model in enumerate(models_):
            ax = axes[i][j]
            jt = joined_all[(variant, model)]
            st = stats(jt)
            rows.append({"variant": variant, "model": model, **st})
            note = {"n": st["n"]}
            if st["n"]:
                note.update({"MAE": f"{st['mae']:.3f} {unit.replace('$^2$', '²')}",
                             "under-predicted": f"{100 * st['frac_under']:.0f} %"})
            plots.parity(ax, jt["gamma_ref"] if len(jt) else [], jt["gamma_model"] if len(jt) else [],
                         model=model, xlabel="",
                         ylabel=f"{variant}: model ({unit})" if ax.get_subplotspec().is_first_col() else "",
                         lim=(lo, hi), s=14, alpha=0.75, annotate=note)
            if variant in log_rows:
                ax.set_xscale("log")
                ax.set_yscale("log")
                ax.set_xlim(lo, hi)
                ax.set_ylim(lo, hi)
            ax.set_title(f"{plots.label(model)}\n{variant}" + (" (log axes)" if variant in log_rows else ""),
                         fontsize=9)
            if watermark:
                ax.text(0.97, 0.05, watermark, transform=ax.transAxes, ha="right", va="bottom", fontsize=9,
                        color="0.45", fontweight="bold")
    fig.supxlabel(f"{ref_label}: {quantity} ({unit})", fontsize=10)
    fig.tight_layout()
    return fig, pd.DataFrame(rows)


def wide_range(values) -> bool:
    """Positive values spanning so much that a linear axis squeezes most of them into a corner
    (the largest more than 5x the median): plot them on log axes."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    return bool(len(v) > 2 and np.all(v > 0) and v.max() > 5 * np.median(v))


def parity_long_table(reference: dict, model_tables: dict, col: str = "gamma_eV_A2"):
    """One row per (variant, model, case) with the reference and model values, for
    :func:`softening_lib.plots.parity_interactive` (hover: case, system, Miller index / defect)."""
    import pandas as pd

    parts = []
    for variant, ref in reference.items():
        for model, by_variant in model_tables.items():
            jt = compare(ref, by_variant.get(variant), col=col)
            if len(jt):
                parts.append(jt.assign(model=model, variant=variant))
    if not parts:
        return pd.DataFrame(columns=["id", "model", "variant", "gamma_ref", "gamma_model"])
    out = pd.concat(parts, ignore_index=True)
    if "miller" in out:
        out["miller"] = out["miller"].astype(str)
    return out


def parity_interactive(reference: dict, model_tables: dict, ref_label: str = "GPAW-PBE",
                       quantity: str = "surface energy", unit: str = "eV/Å²", col: str = "gamma_eV_A2"):
    """Fig. 2a/2b interactive: every model on one parity plot (legend toggles a model), marker
    shape = static / relaxed; hover: case id, system, Miller index or defect label, both values.
    Log axes when the values span more than a linear axis can show."""
    from .. import plots

    table = parity_long_table(reference, model_tables, col=col)
    hover = [c for c in ("id", "system", "miller", "label", "variant") if c in table]
    log = wide_range(table[["gamma_ref", "gamma_model"]].to_numpy().ravel()) if len(table) else False
    return plots.parity_interactive(
        table, "gamma_ref", "gamma_model", hover=hover, symbol="variant", log=log,
        names={"id": "case", "label": "defect", "miller": "Miller index"},
        xlabel=f"{ref_label}: {quantity} ({unit})", ylabel=f"model: {quantity} ({unit})")


# --------------------------------------------------------------------------------------
# the public VASP data: Materials Project surface energies (Tran et al. 2016)
# --------------------------------------------------------------------------------------

