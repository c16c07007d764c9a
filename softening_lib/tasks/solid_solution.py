"""Chapter 4 (paper Fig. 2c): mixing energies of Ca_x Mg_(2-x) O_2 rocksalt solid solutions.

The recipe, as in Deng et al. (2025):

1. **Orderings.** Ca/Mg arrangements on the cation sublattice of a rocksalt supercell with
   ``N >= 8`` cations, at every composition step ``k/N`` (``k = 0..N`` Ca). Where the
   number of arrangements is small they are enumerated completely and reduced to the
   symmetry-distinct ones (spglib space-group operations of the supercell, acting as
   permutations of the cation sites); where it is large a seeded random sample of the
   distinct ones is taken. At most ``max_per_composition`` (the paper's 52) per
   composition. The chapter's set (:func:`reference_orderings`) is every distinct
   ordering of two 8-cation cells (1x1x2 conventional and 2x2x2 primitive): 44, 40 mixed. Each ordering carries its *multiplicity* (size of its symmetry orbit), so
   ``sum(multiplicity) = C(N, k)`` -- a check the tests make against brute force.
2. **Energies** with each model: ``mode="relaxed"`` relaxes cell and positions
   (fmax 0.05 eV/A, the paper's protocol); ``mode="static"`` evaluates the *common
   geometry* every method shares: ideal rocksalt sites on a cubic lattice whose constant
   follows Vegard's law between :data:`A_MGO` and :data:`A_CAO`. The project's GPAW
   reference is computed in the static mode first (see
   ``scripts/gpaw_solid_solution_migration.py``), so the static comparison is the
   apples-to-apples one until relaxed GPAW references exist.
3. **Mixing (formation) energy per cation** relative to MgO and CaO computed by the same
   method, in the same supercell and mode::

       E_mix(ordering) = E / N - f * e_CaO - (1 - f) * e_MgO,   f = k / N (Ca fraction)

   with ``e_X`` the energy per cation of the pure end member (k = 0 or k = N).
4. **Beyond the paper**: a regular-solution fit ``E_mix(f) = Omega f (1 - f)`` per cation
   site. At each composition the multiplicity-weighted mean of the orderings (the random-
   alloy average when all orderings are enumerated) is taken, then ``Omega`` is the least-
   squares slope through the origin of those means against ``f (1 - f)``. The miscibility-
   gap critical temperature of a regular solution is ``T_c = Omega / (2 k_B)``.

Chapter 8 re-scores with a corrected calculator through :func:`score` (``calc=``,
``model=`` any label) or :func:`rescore`.

The generic core (:class:`Sublattice`, :func:`enumerate_orderings`) works for any parent
lattice and pair of species; the tests use an fcc Cu/Au "solid solution" with EMT.
"""

from __future__ import annotations

import itertools
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
from ase import Atoms

from .. import cache, config

TASK = "solid_solution"
VERSION = "1"  # bump when the recipe changes: part of every cache key
K_B = 8.617333262e-5  # eV/K

#: approximate PBE lattice constants (A) of rocksalt MgO and CaO (Materials Project PBE
#: relaxations are 4.25-4.26 and 4.83-4.84 A); they only fix the *common* static geometry.
A_MGO = 4.26
A_CAO = 4.83

PAPER_NOTE = (
    "The paper's solid-solution DFT was never deposited. Our reference is GPAW-PBE computed "
    "by this project (plane waves, 800 eV, spin-paired), first as statics at a common "
    "Vegard-law geometry; relaxed references follow when the queue reaches them."
)


class CompositionError(ValueError):
    """A composition the chosen supercell cannot realise."""


# --------------------------------------------------------------------------------------
# parent lattices
# --------------------------------------------------------------------------------------

def rocksalt_supercell(name: str = "conv112", a: float = A_MGO) -> Atoms:
    """Mg/O rocksalt supercell. Names: ``convIJK`` = I x J x K conventional cubic cells
    (4 cations each), ``primIJK`` = I x J x K primitive fcc cells (1 cation each)."""
    from ase.build import bulk

    reps = _reps(name)
    if name.startswith("conv"):
        atoms = bulk("MgO", "rocksalt", a=a, cubic=True)
    elif name.startswith("prim"):
        atoms = bulk("MgO", "rocksalt", a=a)
    else:
        raise ValueError(f"unknown supercell {name!r}: use 'convIJK' or 'primIJK' (e.g. 'conv112')")
    return atoms.repeat(reps)


def fcc_supercell(name: str, symbol: str, a: float) -> Atoms:
    """fcc supercell of one element (``convIJK`` / ``primIJK``), e.g. for EMT tests."""
    from ase.build import bulk

    reps = _reps(name)
    atoms = bulk(symbol, "fcc", a=a, cubic=name.startswith("conv"))
    return atoms.repeat(reps)


def _reps(name: str) -> tuple[int, int, int]:
    digits = name[4:]
    if len(digits) != 3 or not digits.isdigit():
        raise ValueError(f"supercell name {name!r} must look like 'conv112' or 'prim222'")
    return tuple(int(c) for c in digits)  # type: ignore[return-value]


@dataclass
class Sublattice:
    """A parent structure and the sites on which ``host`` and ``solute`` species mix.

    ``a_host`` / ``a_solute``: lattice constants of the pure end members; the static
    (common) geometry of an ordering scales the parent cell by Vegard's law.
    """

    name: str
    parent: Atoms  # built at lattice constant a_ref
    sites: list[int]
    host: str
    solute: str
    a_ref: float
    a_host: float
    a_solute: float
    label: str = ""

    @property
    def n_sites(self) -> int:
        return len(self.sites)

    def counts_for_fraction(self, fraction: float) -> int:
        """Number of solute atoms for a solute fraction; :class:`CompositionError` if the
        supercell cannot realise it."""
        k = fraction * self.n_sites
        if not (-1e-9 <= fraction <= 1 + 1e-9) or abs(k - round(k)) > 1e-6:
            allowed = ", ".join(f"{i}/{self.n_sites}" for i in range(self.n_sites + 1))
            raise CompositionError(
                f"{self.solute} fraction {fraction:g} cannot be realised on the {self.n_sites}-site "
                f"{self.solute}/{self.host} sublattice of supercell {self.name!r} (fraction*N = {k:g} is "
                f"not an integer). Allowed fractions: {allowed}. Choose one of these or a larger supercell."
            )
        return int(round(k))

    def structure(self, occupancy: Sequence[int], geometry: str = "vegard") -> Atoms:
        """Atoms for an occupancy vector (1 = solute) at the Vegard-law common geometry."""
        occ = np.asarray(occupancy, dtype=int)
        if occ.shape != (self.n_sites,):
            raise ValueError(f"occupancy must have {self.n_sites} entries, got {occ.shape}")
        atoms = self.parent.copy()
        symbols = atoms.get_chemical_symbols()
        for site, o in zip(self.sites, occ):
            symbols[site] = self.solute if o else self.host
        atoms.set_chemical_symbols(symbols)
        if geometry == "vegard":
            f = occ.mean()
            a = (1 - f) * self.a_host + f * self.a_solute
            atoms.set_cell(atoms.cell.array * (a / self.a_ref), scale_atoms=True)
        elif geometry != "parent":
            raise ValueError(f"geometry must be 'vegard' or 'parent', got {geometry!r}")
        return atoms


def camgo_sublattice(supercell: str = "conv112") -> Sublattice:
    """The paper's system: Ca/Mg on the cation sites of rocksalt MgO (anions stay O)."""
    parent = rocksalt_supercell(supercell, a=A_MGO)
    sites = [i for i, s in enumerate(parent.get_chemical_symbols()) if s == "Mg"]
    if len(sites) < 8:
        raise ValueError(f"supercell {supercell!r} has {len(sites)} cations; the chapter uses >= 8")
    return Sublattice(name=supercell, parent=parent, sites=sites, host="Mg", solute="Ca",
                      a_ref=A_MGO, a_host=A_MGO, a_solute=A_CAO, label="Ca_x Mg_(2-x) O_2")


def alloy_sublattice(supercell: str, host: str, solute: str, a_host: float, a_solute: float) -> Sublattice:
    """A binary fcc substitutional alloy (e.g. Cu/Au for EMT tests)."""
    parent = fcc_supercell(supercell, host, a_host)
    return Sublattice(name=supercell, parent=parent, sites=list(range(len(parent))), host=host,
                      solute=solute, a_ref=a_host, a_host=a_host, a_solute=a_solute,
                      label=f"{solute}_x {host}_(1-x)")


# --------------------------------------------------------------------------------------
# symmetry-distinct orderings
# --------------------------------------------------------------------------------------

def site_permutations(sub: Sublattice, symprec: float = 1e-4) -> np.ndarray:
    """Space-group operations of the parent supercell as permutations of the mixing sites.

    Returns an int array (n_ops, n_sites): ``perm[g, i]`` is the site that site ``i`` maps
    to under operation ``g``. Duplicates are removed; the identity is included.
    """
    import spglib

    atoms = sub.parent
    cell = (atoms.cell.array, atoms.get_scaled_positions(), atoms.numbers)
    sym = spglib.get_symmetry(cell, symprec=symprec)
    pos = atoms.get_scaled_positions()[sub.sites]
    perms = []
    for rot, trans in zip(sym["rotations"], sym["translations"]):
        new = (pos @ rot.T + trans) % 1.0
        d = new[:, None, :] - pos[None, :, :]
        d -= np.round(d)
        dist = np.linalg.norm(d @ atoms.cell.array, axis=2)
        target = np.argmin(dist, axis=1)
        if not np.all(dist[np.arange(len(pos)), target] < 1e-3) or len(set(target)) != len(pos):
            raise RuntimeError("a symmetry operation does not map the mixing sites onto themselves")
        perms.append(target)
    return np.unique(np.array(perms, dtype=int), axis=0)


@dataclass(frozen=True)
class Ordering:
    """One symmetry-distinct arrangement: ``occupancy[i] = 1`` puts the solute on site ``i``."""

    supercell: str
    n_sites: int
    n_solute: int
    occupancy: tuple[int, ...]
    multiplicity: int  # size of the symmetry orbit (number of equivalent arrangements)
    host: str = "Mg"
    solute: str = "Ca"

    @property
    def fraction(self) -> float:
        return self.n_solute / self.n_sites

    @property
    def id(self) -> str:
        bits = "".join(str(b) for b in self.occupancy)
        return f"{self.solute}{self.host}-{self.supercell}-{self.n_solute:02d}-{int(bits, 2):0{(self.n_sites + 3) // 4}x}"


def _codes(configs: np.ndarray) -> np.ndarray:
    """Integer code of 0/1 rows (first site = most significant bit)."""
    n = configs.shape[-1]
    weights = (1 << np.arange(n - 1, -1, -1, dtype=np.int64))
    return configs.astype(np.int64) @ weights


def _canonical(configs: np.ndarray, perms: np.ndarray) -> np.ndarray:
    """Smallest code over the orbit of each configuration (rows of 0/1)."""
    # config permuted by g: new[perm[g, i]] = old[i]  <=>  new = old[inv[g]]
    inv = np.argsort(perms, axis=1)
    out = np.empty(len(configs), dtype=np.int64)
    for start in range(0, len(configs), 4096):
        block = configs[start:start + 4096]
        images = block[:, inv]  # (m, G, n)
        out[start:start + 4096] = _codes(images).min(axis=1)
    return out


def _decode(code: int, n: int) -> tuple[int, ...]:
    return tuple(int(c) for c in format(int(code), f"0{n}b"))


def orbit_size(occupancy: Sequence[int], perms: np.ndarray) -> int:
    occ = np.asarray(occupancy, dtype=int)[None, :]
    inv = np.argsort(perms, axis=1)
    return int(len(np.unique(_codes(occ[:, inv])[0])))


def enumerate_orderings(sub: Sublattice | str = "conv112", n_solute: int | None = None, *,
                        fraction: float | None = None, max_per_composition: int = 52,
                        seed: int = 0, exhaustive_limit: int = 300_000,
                        max_attempts: int = 200_000) -> list[Ordering]:
    """Symmetry-distinct orderings at one composition or (default) at every composition.

    ``n_solute`` or ``fraction`` picks one composition (a fraction the supercell cannot
    realise raises :class:`CompositionError`). Where ``C(N, k) <= exhaustive_limit`` all
    arrangements are enumerated and reduced by symmetry; if more than
    ``max_per_composition`` distinct ones remain, a seeded random subset is kept (the
    same ``seed`` gives the same subset). Otherwise random arrangements are drawn
    (seeded) until ``max_per_composition`` distinct ones are found.
    """
    if isinstance(sub, str):
        sub = camgo_sublattice(sub)
    n = sub.n_sites
    if fraction is not None:
        if n_solute is not None:
            raise TypeError("give n_solute or fraction, not both")
        n_solute = sub.counts_for_fraction(fraction)
    if n_solute is not None and not 0 <= n_solute <= n:
        raise CompositionError(f"n_solute={n_solute} outside 0..{n} for supercell {sub.name!r}")
    ks = [n_solute] if n_solute is not None else list(range(n + 1))
    perms = site_permutations(sub)
    out: list[Ordering] = []
    for k in ks:
        rng = np.random.default_rng([seed, k, n])
        total = math.comb(n, k)
        if total <= exhaustive_limit:
            configs = np.zeros((total, n), dtype=np.int8)
            for row, combo in enumerate(itertools.combinations(range(n), k)):
                configs[row, list(combo)] = 1
            canon = _canonical(configs, perms)
            codes, mult = np.unique(canon, return_counts=True)  # sorted: reproducible
            if len(codes) > max_per_composition:
                keep = np.sort(rng.choice(len(codes), size=max_per_composition, replace=False))
                codes, mult = codes[keep], mult[keep]
            for code, m in zip(codes, mult):
                out.append(Ordering(sub.name, n, k, _decode(code, n), int(m), sub.host, sub.solute))
        else:
            found: dict[int, None] = {}
            attempts = 0
            while len(found) < max_per_composition and attempts < max_attempts:
                batch = np.zeros((256, n), dtype=np.int8)
                for row in batch:
                    row[rng.choice(n, size=k, replace=False)] = 1
                for code in _canonical(batch, perms):
                    if len(found) < max_per_composition:
                        found.setdefault(int(code), None)
                attempts += 256
            for code in found:
                occ = _decode(code, n)
                out.append(Ordering(sub.name, n, k, occ, orbit_size(occ, perms), sub.host, sub.solute))
    return out


def reference_orderings(max_16: int = 0, seed: int = 0) -> list[Ordering]:
    """The ordering set of the chapter and of the GPAW queue: every symmetry-distinct
    ordering of the two 8-cation cells, ``conv112`` (1x1x2 conventional, 28 orderings) and
    ``prim222`` (2x2x2 primitive, 16) -- 44 orderings, 40 of them mixed, all 16-atom cells a
    GPAW static can afford -- plus, if ``max_16 > 0``, up to ``max_16`` seeded orderings
    per composition of the 16-cation ``conv221`` cell (32 atoms)."""
    out = enumerate_orderings("conv112", seed=seed) + enumerate_orderings("prim222", seed=seed)
    if max_16 > 0:
        out += enumerate_orderings("conv221", max_per_composition=max_16, seed=seed)
    return out


def sublattice_of(ordering: Ordering) -> Sublattice:
    if (ordering.host, ordering.solute) == ("Mg", "Ca"):
        return camgo_sublattice(ordering.supercell)
    raise ValueError(f"no built-in sublattice for {ordering.solute}/{ordering.host}; pass sub=")


# --------------------------------------------------------------------------------------
# relaxation
# --------------------------------------------------------------------------------------

def relax(atoms: Atoms, calc, *, fmax: float = 0.05, relax_cell: bool = True,
          max_steps: int = 500) -> tuple[Atoms, dict]:
    """Relax positions (and the cell) with ``calc`` through ``softening_lib.relax.relax``;
    returns (atoms, info) with ``converged``, ``fmax`` (final max force, eV/A, cell-filter
    forces included) and ``steps``. A relaxation that stops at ``max_steps`` is returned with
    ``converged=False`` and the ``fmax`` it reached (flagged by :func:`unconverged`).

    BFGS with a ``FrechetCellFilter`` for the cell (BFGS took 13 steps where FIRE took 25
    on a CHGNet test ordering).
    """
    from ..relax import relax as shared

    out, info = shared(atoms, calc, fmax=fmax, steps=max_steps,
                       cell_filter="frechet" if relax_cell else None, optimizer="BFGS")
    info = dict(info)
    info["relaxer"] = "softening_lib.relax BFGS" + ("+FrechetCellFilter" if relax_cell else "")
    return out, info


# --------------------------------------------------------------------------------------
# scoring
# --------------------------------------------------------------------------------------

def model_key(model: str, calc=None) -> str:
    """The result-store folder of a model: the registry's model id (name + weights hash),
    or ``model`` itself, a plain label, when a custom calculator ``calc`` is scored
    (chapter 8's corrected models) or the name is not in the registry."""
    if calc is not None:
        return model
    from .. import models

    try:
        return models.model_id(model)
    except Exception:
        return model


def _get_calc(model: str, calc):
    if calc is not None:
        return calc
    from ..predict import calculator

    return calculator(model)


def score(orderings: Sequence[Ordering], model: str, *, mode: str = "relaxed", calc=None,
          fmax: float = 0.05, max_steps: int = 500, sub: Sublattice | None = None,
          store: cache.ResultStore | None = None, progress: bool = True, compute: bool = True):
    """Energies of ``orderings`` with one model; a tidy table with mixing energies.

    ``mode``: ``"relaxed"`` (cell + positions, fmax) or ``"static"`` (Vegard common geometry).
    ``calc``: use this calculator instead of the registry's (e.g. a corrected one for
    chapter 8); ``model`` is then only the label and cache key. ``compute=False`` returns
    what is cached and skips the rest (the book's default preset).
    """
    import pandas as pd
    from tqdm.auto import tqdm

    if mode not in ("relaxed", "static"):
        raise ValueError(f"mode must be 'relaxed' or 'static', got {mode!r}")
    store = store or cache.ResultStore(TASK)
    mkey = model_key(model, calc)
    rows, todo = [], []
    for o in orderings:
        key = cache.key_of(VERSION, o.id, mode, fmax if mode == "relaxed" else None)
        rec = store.get(mkey, key)
        if rec is None:
            todo.append((o, key))
        else:
            rows.append(rec)
    if todo and compute:
        if calc is None:
            from .. import models

            models.check_elements(model, {todo[0][0].host, todo[0][0].solute, "O"} if sub is None
                                  else set(sub.parent.get_chemical_symbols()) | {todo[0][0].solute})
        c = _get_calc(model, calc)
        for o, key in tqdm(todo, desc=f"{TASK} {mode} {model}", disable=not progress):
            s = sub if sub is not None else sublattice_of(o)
            atoms = s.structure(o.occupancy, geometry="vegard")
            t0 = time.time()
            if mode == "relaxed":
                atoms, info = relax(atoms, c, fmax=fmax, relax_cell=True, max_steps=max_steps)
                energy = float(atoms.get_potential_energy())
            else:
                atoms.calc = c
                energy = float(atoms.get_potential_energy())
                info = {"converged": True, "fmax": float(np.linalg.norm(atoms.get_forces(), axis=1).max()),
                        "steps": 0}
            rec = {
                "model": model, "model_key": mkey, "mode": mode, "ordering_id": o.id,
                "supercell": o.supercell, "n_sites": o.n_sites, "n_solute": o.n_solute,
                "fraction": o.fraction, "multiplicity": o.multiplicity,
                "occupancy": "".join(map(str, o.occupancy)), "energy": energy,
                "energy_per_site": energy / o.n_sites, "volume_per_site": atoms.get_volume() / o.n_sites,
                "n_atoms": len(atoms), "converged": bool(info.get("converged")),
                "fmax": float(info.get("fmax", np.nan)), "steps": int(info.get("steps", 0)),
                "fmax_target": fmax if mode == "relaxed" else None, "seconds": round(time.time() - t0, 2),
                "version": VERSION,
            }
            store.put(mkey, key, rec)
            rows.append(rec)
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    return mixing_energies(table)


def rescore(calc, label: str, *, orderings: Sequence[Ordering] | None = None, mode: str = "relaxed", **kw):
    """Chapter 8 entry point: the same table with a corrected calculator ``calc``."""
    return score(orderings if orderings is not None else reference_orderings(), label, mode=mode, calc=calc, **kw)


def mixing_energies(table):
    """Add ``e_mix`` (eV per mixing site) relative to the end members of the same model,
    mode and supercell. Groups without both end members get NaN and ``end_members=False``."""
    table = table.copy()
    table["e_mix"] = np.nan
    table["end_members"] = False
    for _, grp in table.groupby(["model", "mode", "supercell"], sort=False):
        n = int(grp["n_sites"].iloc[0])
        host = grp[grp["n_solute"] == 0]
        sol = grp[grp["n_solute"] == n]
        if host.empty or sol.empty:
            continue
        if "converged" in grp and not (host["converged"].astype(bool).all() and sol["converged"].astype(bool).all()):
            continue  # an end member that did not reach fmax is no reference for mixing energies
        e_h = float(host["energy_per_site"].iloc[0])
        e_s = float(sol["energy_per_site"].iloc[0])
        f = grp["fraction"].to_numpy()
        table.loc[grp.index, "e_mix"] = grp["energy_per_site"].to_numpy() - f * e_s - (1 - f) * e_h
        table.loc[grp.index, "end_members"] = True
    return table


def regular_solution_fit(table) -> dict[str, float]:
    """Omega (eV per site) and T_c = Omega / (2 k_B) from a mixing-energy table of one
    model and mode (all supercells pooled). At each composition the multiplicity-weighted
    mean of the orderings is used; Omega is the least-squares slope through the origin of
    those means against f (1 - f)."""
    t = table.dropna(subset=["e_mix"])
    if "converged" in t:  # relaxations that stopped before fmax are flagged (unconverged), not fitted
        t = t[t["converged"].fillna(True).astype(bool)]
    t = t[(t["fraction"] > 0) & (t["fraction"] < 1)]
    if t.empty:
        return {"omega_eV": np.nan, "Tc_K": np.nan, "n_compositions": 0, "n_orderings": 0}
    means = t.groupby(t["fraction"].round(8)).apply(
        lambda g: np.average(g["e_mix"], weights=g["multiplicity"]), include_groups=False)
    x = means.index.to_numpy() * (1 - means.index.to_numpy())
    y = means.to_numpy()
    omega = float(np.sum(x * y) / np.sum(x * x))
    return {"omega_eV": omega, "Tc_K": omega / (2 * K_B), "n_compositions": int(len(means)),
            "n_orderings": int(len(t))}


def unconverged(tables: dict[str, Any]):
    """Relaxations that stopped before fmax, one row per (model, ordering) with the fmax they
    reached: listed, and left out of :func:`regular_solution_fit` (the figure draws them as
    crosses). An unconverged end member leaves the mixing energies of its supercell NaN."""
    import pandas as pd

    cols = ["model", "mode", "ordering_id", "fraction", "fmax", "steps"]
    rows = [t.loc[~t["converged"].astype(bool), [c for c in cols if c in t]].assign(model=name)
            for name, t in tables.items() if t is not None and len(t) and "converged" in t]
    rows = [r for r in rows if len(r)]
    return pd.concat(rows, ignore_index=True)[cols] if rows else pd.DataFrame(columns=cols)


def matched_errors(tables: dict[str, Any], reference, mode: str = "relaxed"):
    """Each model's mixing energies against the reference's, ordering by ordering, on the
    orderings both have (end members left out: their mixing energy is zero by construction;
    relaxations that did not converge, on either side, left out as in the fits).

    One row per model: ``n`` orderings compared, ``mean_model_meV`` / ``mean_ref_meV`` (their
    means over those orderings), ``ratio_pct`` = 100 (mean_model / mean_ref - 1), ``mae_meV``,
    ``mse_meV`` (mean signed error) and ``frac_below`` (share of orderings where the model's
    mixing energy is below the reference's). Unlike a regular-solution fit this needs no full
    composition range, so it holds for a reference that covers only some orderings."""
    import pandas as pd

    cols = ["model", "mode", "n", "mean_model_meV", "mean_ref_meV", "ratio_pct", "mae_meV", "mse_meV", "frac_below"]
    if reference is None or not len(reference):
        return pd.DataFrame(columns=cols)

    def usable(t):
        t = t[t["mode"] == mode]
        t = t[(t["n_solute"] > 0) & (t["n_solute"] < t["n_sites"])]
        if "converged" in t:
            t = t[t["converged"].astype(bool)]
        return t[np.isfinite(t["e_mix"].astype(float))].set_index("ordering_id")["e_mix"].astype(float)

    ref = usable(reference)
    rows = []
    for name, tab in tables.items():
        if tab is None or not len(tab) or "e_mix" not in tab:
            continue
        mod = usable(tab)
        common = ref.index.intersection(mod.index)
        if not len(common):
            continue
        d = mod[common] - ref[common]
        rows.append({"model": name, "mode": mode, "n": int(len(common)),
                     "mean_model_meV": 1000 * float(mod[common].mean()), "mean_ref_meV": 1000 * float(ref[common].mean()),
                     "ratio_pct": 100 * (float(mod[common].mean()) / float(ref[common].mean()) - 1),
                     "mae_meV": 1000 * float(d.abs().mean()), "mse_meV": 1000 * float(d.mean()),
                     "frac_below": float((d < 0).mean())})
    return pd.DataFrame(rows, columns=cols)


def fit_table(tables: dict[str, Any]):
    """One row per (model, mode): Omega, T_c, mean and max mixing energy."""
    import pandas as pd

    rows = []
    for name, tab in tables.items():
        if tab is None or len(tab) == 0:
            continue
        for mode, grp in tab.groupby("mode"):
            fit = regular_solution_fit(grp)
            rows.append({"model": name, "mode": mode, **fit,
                         "mean_e_mix_meV": 1000 * float(grp["e_mix"].mean()),
                         "n_unconverged": int((~grp["converged"].astype(bool)).sum())})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------
# reference (GPAW, computed by this project)
# --------------------------------------------------------------------------------------

REFERENCE_LABEL = "gpaw-pbe"
REFERENCE_DIRS = ("solid_solution_gpaw",)  # its folder(s) under data/reference


def reference_dir() -> Path:
    return config.reference_dir() / REFERENCE_DIRS[0]


def load_reference(mode: str | None = None, root: Path | None = None):
    """The project's GPAW-PBE records (one JSON per calculation) as a mixing-energy table,
    or an empty table when none exist yet. Records with ``status != "ok"`` are skipped.
    ``root``: another reference folder (e.g. a k-point check written with ``--reference-dir``)."""
    import pandas as pd

    rows = []
    root = Path(root) if root is not None else reference_dir()
    for path in sorted(root.glob("*.json")) if root.is_dir() else []:
        try:
            rec = json.loads(path.read_text())
        except json.JSONDecodeError:
            continue
        if rec.get("status") != "ok" or (mode is not None and rec.get("mode") != mode):
            continue
        rows.append({k: rec[k] for k in (
            "mode", "ordering_id", "supercell", "n_sites", "n_solute", "fraction", "multiplicity",
            "occupancy", "energy", "energy_per_site", "volume_per_site", "n_atoms", "converged", "fmax")
            if k in rec} | {"model": REFERENCE_LABEL, "model_key": REFERENCE_LABEL})
    table = pd.DataFrame(rows)
    return mixing_energies(table) if not table.empty else table


def reference_status(orderings: Sequence[Ordering], mode: str = "static") -> dict[str, int]:
    ref = load_reference(mode)
    done = set(ref["ordering_id"]) if len(ref) else set()
    wanted = {o.id for o in orderings}
    return {"done": len(done & wanted), "wanted": len(wanted)}


# --------------------------------------------------------------------------------------
# figure
# --------------------------------------------------------------------------------------

def figure_2c(tables: dict[str, Any], *, mode: str = "relaxed", reference=None,
              reference_note: str = "", ax=None, fit_reference: bool = True):
    """Mixing energy per cation vs Ca fraction, one point per ordering, reference in black,
    each model in its colour, with its regular-solution curve (dashed). ``fit_reference=False``
    draws the reference's points without a curve (a reference that covers only some orderings
    would give a biased fit: the per-composition means would miss orderings)."""
    import matplotlib.pyplot as plt

    from .. import plots

    if ax is None:
        fig, ax = plt.subplots(figsize=(6.0, 4.2))
    else:
        fig = ax.figure
    fgrid = np.linspace(0, 1, 101)
    series = {}
    if reference is not None and len(reference):
        series[REFERENCE_LABEL] = reference[reference["mode"] == mode]
    for name, tab in tables.items():
        if tab is not None and len(tab):
            series[name] = tab[tab["mode"] == mode]
    offsets = np.linspace(-0.006, 0.006, max(len(series), 1))
    for off, (name, tab) in zip(offsets, series.items()):
        tab = tab.dropna(subset=["e_mix"])
        if tab.empty:
            continue
        col = "black" if name == REFERENCE_LABEL else plots.color(name)
        lab = "GPAW-PBE (this project)" if name == REFERENCE_LABEL else plots.label(name)
        ok = tab["converged"].astype(bool) if "converged" in tab else np.ones(len(tab), bool)
        ax.scatter(tab["fraction"][ok] + off, 1000 * tab["e_mix"][ok], s=14, color=col, alpha=0.7, lw=0,
                   label=lab, zorder=3 if name == REFERENCE_LABEL else 2)
        if (~ok).any():  # relaxations that did not reach fmax: shown, flagged, not fitted
            ax.scatter(tab["fraction"][~ok] + off, 1000 * tab["e_mix"][~ok], s=30, color=col, marker="x",
                       lw=1, label=f"{lab}: not converged", zorder=2)
        fit = regular_solution_fit(tab)
        if np.isfinite(fit["omega_eV"]) and (fit_reference or name != REFERENCE_LABEL):
            ax.plot(fgrid, 1000 * fit["omega_eV"] * fgrid * (1 - fgrid), color=col, lw=1, ls="--")
    ax.axhline(0, color="0.5", lw=0.6)
    ax.set_xlabel("Ca fraction  x/2  in  Ca$_x$Mg$_{2-x}$O$_2$")
    ax.set_ylabel("mixing energy (meV / cation)")
    ax.set_xlim(-0.03, 1.03)
    title = {"relaxed": "relaxed (cell + positions, fmax 0.05 eV/Å)",
             "static": "static, common Vegard-law geometry"}[mode]
    ax.set_title(title, fontsize=10)
    if reference_note:  # under the title, where it cannot cover data or legend
        ax.set_title(ax.get_title() + "\n" + reference_note, fontsize=9, color="0.2")
    ax.legend(fontsize=8, loc="lower center", framealpha=0.9)  # inside the dome, clear of the points
    return fig


# --------------------------------------------------------------------------------------
# the task contract (softening_lib.task): cases / compute / reference
# --------------------------------------------------------------------------------------

def preset_orderings(preset: str = "default", *, max_per_composition_16: int = 0, seed: int = 0) -> list[Ordering]:
    """The chapter's orderings: smoke = the 1x1x2 cell at Ca 0, 2, 4, 8; default = the 44 of
    :func:`reference_orderings` (+ ``max_per_composition_16`` from the 16-cation cell); full = + 52."""
    if preset == "smoke":
        return [o for o in enumerate_orderings("conv112", seed=seed) if o.n_solute in (0, 2, 4, 8)]
    if preset not in ("default", "full"):
        raise ValueError(f"preset must be smoke, default or full, got {preset!r}")
    return reference_orderings(max_16=max_per_composition_16 if preset == "default" else 52, seed=seed)


def cases(preset: str = "default", *, max_per_composition_16: int = 0, seed: int = 0,
          modes: Sequence[str] | None = None, fmax: float = 0.05) -> list[dict]:
    """(ordering, mode) cases: static (Vegard geometry) and relaxed (cell + positions); smoke: static only."""
    orderings = preset_orderings(preset, max_per_composition_16=max_per_composition_16, seed=seed)
    modes = list(modes) if modes is not None else (["static"] if preset == "smoke" else ["static", "relaxed"])
    return [{"id": f"{o.id}-{mode}", "item": o, "mode": mode, "fmax": fmax} for mode in modes for o in orderings]


def compute(model: str, cases: Sequence[dict], *, calc=None, progress=None,
            cached_only: Sequence[str] = ()) -> list[dict]:
    """One record per (ordering, mode): the model's energy, cached in ``data/results/solid_solution``
    (the same keys as :func:`score`); the missing ones computed. ``cached_only``: modes only
    read from the cache (the chapter's "default" build reads relaxations; a missing one is a
    skipped record, "not in the cache")."""
    from .. import task

    store = cache.ResultStore(TASK)
    mkey = model_key(model, calc)
    out = []
    for case in task.progress_iter(list(cases), progress, desc=f"{TASK} {model}"):
        o, mode, fmax = case["item"], case["mode"], case.get("fmax", 0.05)
        key = cache.key_of(VERSION, o.id, mode, fmax if mode == "relaxed" else None)
        if mode in cached_only and store.get(mkey, key) is None:
            out.append(task.record(case["id"], model, "skipped", "not in the cache (this preset reads it only)"))
            continue

        def one(o=o, mode=mode, fmax=fmax, key=key):
            score([o], model, mode=mode, calc=calc, fmax=fmax, progress=False)
            rec = store.get(mkey, key)
            return {k: rec.get(k) for k in ("mode", "n_solute", "fraction", "energy", "energy_per_site",
                                              "converged", "fmax", "steps")}

        out.append(task.run_case(one, case["id"], model, cached=store.get(mkey, key) is not None,
                                 elements={o.host, o.solute, "O"}, finite=("energy",)))
    return out


def reference(mode: str | None = None, **_: Any):
    """The GPAW-PBE energies of the orderings (this project's queue; empty while pending)."""
    return load_reference(mode)
