"""Readers of the public VASP references the book compares against, registered in
:data:`softening_lib.datasets.READERS` (core code: no task module is imported to read a dataset).

* ``mp-surfaces-tran2016``: Materials Project surface energies (Tran et al., Sci. Data 3,
  160080 (2016)) -- :func:`read_mp_surfaces` (chapter 2's :mod:`softening_lib.tasks.surfaces`
  re-exports it).
* ``mg-approxneb-mpcontribs``: Rutt et al. (2022) ApproxNEB barriers on MPContribs --
  :func:`read_mpcontribs_approxneb` (chapter 4's :mod:`softening_lib.tasks.migration`
  re-exports it, with :func:`kra_barrier`).
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from . import config

EV_A2_TO_J_M2 = 16.021766208


class SurfaceError(ValueError):
    """Bad input to the surface task (unknown system, impossible slab, bad parameters)."""


def miller_tag(miller: Sequence[int]) -> str:
    return "".join(f"m{-i}" if i < 0 else str(i) for i in miller)


def kra_barrier(energies: Sequence[float]) -> float:
    """``E_KRA = max_i E_i - (E_0 + E_N) / 2`` over the whole path (end images included)."""
    e = np.asarray(energies, dtype=float)
    if e.ndim != 1 or len(e) < 2:
        raise ValueError("need the energies of at least the two end images")
    if not np.all(np.isfinite(e)):
        raise ValueError("energies must be finite (a failed image?)")
    return float(e.max() - 0.5 * (e[0] + e[-1]))


# --------------------------------------------------------------------------------------
# Materials Project surface energies (Tran et al. 2016)
# --------------------------------------------------------------------------------------

MP_SURFACES = "mp-surfaces-tran2016"
MP_API_URL = "https://api.materialsproject.org/materials/surface_properties/"


def parse_mp_surfaces(data: Any, source: str = MP_SURFACES):
    """Tran et al. / MP surface documents -> one row per facet.

    Accepts the Dryad file ``surfaces.json`` (a list of documents) or an MP API response
    (``{"data": [...]}``). Each document: ``material_id``, ``pretty_formula``, ``polymorph``,
    ``surfaces`` = [{``miller_index``, ``surface_energy`` (J/m^2), ``surface_energy_EV_PER_ANG2``,
    ``is_reconstructed``, ``area_fraction``, ...}], ``weighted_surface_energy`` ...
    """
    import pandas as pd

    docs = data.get("data", data) if isinstance(data, dict) else data
    if not isinstance(docs, list):
        raise SurfaceError("MP surface data must be a list of documents or {'data': [...]}")
    rows = []
    for doc in docs:
        for surf in doc.get("surfaces") or []:
            ev = surf.get("surface_energy_EV_PER_ANG2", surf.get("surface_energy_ev_per_ang2"))
            jm = surf.get("surface_energy")
            if ev is None and jm is None:
                raise SurfaceError(f"{doc.get('material_id')}: a surface without surface energy")
            ev = float(ev) if ev is not None else float(jm) / EV_A2_TO_J_M2
            jm = float(jm) if jm is not None else ev * EV_A2_TO_J_M2
            miller = tuple(int(i) for i in surf["miller_index"])
            rows.append({"material_id": doc.get("material_id") or doc.get("task_id"),
                         "formula": doc.get("pretty_formula") or doc.get("formula_pretty"),
                         "polymorph": doc.get("polymorph"), "miller": miller_tag(miller),
                         "miller_index": miller, "gamma_eV_A2": ev, "gamma_J_m2": jm,
                         "is_reconstructed": bool(surf.get("is_reconstructed", False)),
                         "area_fraction": surf.get("area_fraction"), "source": source})
    return pd.DataFrame(rows)


def fetch_mp_surfaces(material_ids: Sequence[str] | None = None, api_key: str | None = None) -> dict:
    """Surface documents from the MP API (needs ``MP_API_KEY``); returns ``{"data": [...]}``."""
    import requests

    key = api_key or os.environ.get("MP_API_KEY")
    if not key:
        raise SurfaceError("the Materials Project API needs a key: set MP_API_KEY (free at "
                           "https://next-gen.materialsproject.org/api), or download surfaces.json "
                           "from Dryad doi:10.5061/dryad.f2n6f into the mirror")
    docs, skip = [], 0
    while True:
        params = {"_all_fields": "true", "_limit": 500, "_skip": skip}
        if material_ids:
            params["material_ids"] = ",".join(material_ids)
        resp = requests.get(MP_API_URL, params=params, headers={"X-API-KEY": key}, timeout=60)
        resp.raise_for_status()
        batch = resp.json().get("data", [])
        docs += batch
        if len(batch) < 500:
            break
        skip += 500
    return {"data": docs}


def read_mp_surfaces(subset: Iterable[str] | None = None, path: str | Path | None = None, **_: Any):
    """Reader of dataset ``mp-surfaces-tran2016``: a table of facets (see :func:`parse_mp_surfaces`).

    Looks for ``surfaces.json`` (Dryad) in the repo / mirror / download cache; when it is not
    there and ``SOFTENING_ONLINE=1`` with ``MP_API_KEY`` set, fetches the MP API and caches the
    response as ``mp_api_surface_properties.json``. ``subset``: material ids or formulas.
    """
    from . import datasets
    from .cache import atomic_write_text

    if path is None:
        found = None
        for name in ("surfaces.json", "mp_api_surface_properties.json"):
            found = datasets.locate(MP_SURFACES, name, required=False, download=False)
            if found is not None:
                break
        if found is None and config.online() and os.environ.get("MP_API_KEY"):
            data = fetch_mp_surfaces()
            found = config.cache_dir() / "downloads" / MP_SURFACES / "mp_api_surface_properties.json"
            atomic_write_text(found, json.dumps(data))
        if found is None:
            raise datasets.DatasetUnavailableError(
                f"{MP_SURFACES}: no surfaces.json here. Download it from Dryad (doi:10.5061/dryad.f2n6f) "
                f"into {config.cache_dir() / 'downloads' / MP_SURFACES}/ or the mirror, or set "
                "SOFTENING_ONLINE=1 and MP_API_KEY to fetch it from the Materials Project API.")
        path = found
    with open(path) as fh:
        table = parse_mp_surfaces(json.load(fh))
    if subset is not None:
        wanted = set(subset)
        table = table[table["material_id"].isin(wanted) | table["formula"].isin(wanted)]
    return table.reset_index(drop=True)


# --------------------------------------------------------------------------------------
# Rutt et al. (2022) ApproxNEB data on MPContribs
# --------------------------------------------------------------------------------------

MPCONTRIBS_PROJECT = "mg_cathode_screening_2022"
MPCONTRIBS_API = "https://contribs-api.materialsproject.org"
MPCONTRIBS_DATASET = "mg-approxneb-mpcontribs"


def mpcontribs_cache_dir() -> Path:
    path = config.cache_dir() / "downloads" / MPCONTRIBS_DATASET
    path.mkdir(parents=True, exist_ok=True)
    return path


def parse_aneb_wf_data(data: dict, material_id: str = "", formula: str = "") -> list[dict]:
    """One MPContribs ``aneb_wf_data`` attachment -> one record per hop.

    The attachment (as uploaded by the project's own notebook) holds ``hop_data``:
    ``{hop_key: [end point, image 1..5, end point]}``, each entry a task document with
    ``input_structure`` (pymatgen dict) and, when the calculation finished, ``output``
    with ``energy`` (eV, VASP PBE(+U) MP-compatible) and possibly ``structure``.
    Hops with a missing image are kept with ``complete=False`` and ``e_kra=None``.
    """
    from pymatgen.core import Structure
    from pymatgen.io.ase import AseAtomsAdaptor

    out = []
    for hop_key, entries in (data.get("hop_data") or {}).items():
        energies, images = [], []
        for ent in entries:
            out_doc = ent.get("output") or {}
            e = out_doc.get("energy")
            energies.append(float(e) if e is not None else None)
            sdict = out_doc.get("structure") or ent.get("input_structure")
            images.append(AseAtomsAdaptor.get_atoms(Structure.from_dict(sdict)) if sdict else None)
        complete = len(energies) >= 3 and all(e is not None for e in energies)
        out.append({"material_id": material_id, "formula": formula, "hop_key": str(hop_key),
                    "n_images": len(entries) - 2, "energies": energies, "images": images,
                    "complete": complete, "e_kra": kra_barrier(energies) if complete else None,
                    "dataset": MPCONTRIBS_DATASET})
    return out


def read_mpcontribs_approxneb(subset: Iterable[str] | None = None, path: str | Path | None = None,
                              **_: Any) -> list[dict]:
    """Reader registered for the manifest entry ``mg-approxneb-mpcontribs``.

    Reads ``<material_id>.aneb_wf_data.json[.gz]`` files from ``path`` (default: the
    download cache, filled by :func:`fetch_mpcontribs_approxneb`); returns one record per
    hop (see :func:`parse_aneb_wf_data`).
    """
    from .datasets import DatasetUnavailableError

    root = Path(path) if path is not None else mpcontribs_cache_dir()
    files = sorted(root.glob("*.aneb_wf_data.json")) + sorted(root.glob("*.aneb_wf_data.json.gz"))
    if not files:
        raise DatasetUnavailableError(
            f"no MPContribs ApproxNEB attachments under {root}. With the internet and a Materials "
            f"Project API key run: MP_API_KEY=... SOFTENING_ONLINE=1 python -c 'from softening_lib.tasks "
            f"import migration; migration.fetch_mpcontribs_approxneb()' (project {MPCONTRIBS_PROJECT})."
        )
    wanted = set(subset) if subset is not None else None
    out = []
    for f in files:
        mid = f.name.split(".aneb_wf_data")[0]
        if wanted is not None and mid not in wanted:
            continue
        opener = gzip.open if f.suffix == ".gz" else open
        with opener(f, "rt") as fh:
            blob = json.load(fh)
        formula = blob.pop("_formula", "") if isinstance(blob, dict) else ""
        out.extend(parse_aneb_wf_data(blob, material_id=mid, formula=formula))
    return out
