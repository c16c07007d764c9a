"""The data layer: one manifest entry (``data/datasets.yml``) plus one reader per dataset.

>>> from softening_lib import datasets
>>> datasets.status()                         # local / mirrored / downloadable / missing
>>> frames = datasets.load("wbm-he-gpaw")      # list of labelled ASE Atoms
>>> refs = datasets.load("jageo-pbe-68", subset=["mp-1000"])   # phonon force sets

Where a file comes from, in order: the repository (``local`` datasets the project computed
itself), the offline mirror ``$SOFTENING_DATA_DIR/<mirror>/``, the download cache
(``$SOFTENING_CACHE_DIR/downloads``), and, only with ``SOFTENING_ONLINE=1``, a pooch download
from the manifest URL. Every file with a hash in the manifest is checked before use; a
mismatch is refused with :class:`DatasetHashError` naming the file.

Labelled structures are ASE ``Atoms`` whose calculator is a ``SinglePointCalculator`` with
the DFT energy / forces / stress, so ``atoms.get_forces()`` gives the DFT forces;
``atoms.info`` carries ``material_id``, ``frame_id`` and ``dataset``.
"""

from __future__ import annotations

import ast
import gzip
import hashlib
import io
import json
import tarfile
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import yaml
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

from . import config

MANIFEST = config.manifest_path()  # data/datasets.yml in a checkout, else the wheel's copy


class DatasetError(RuntimeError):
    pass


class UnknownDatasetError(DatasetError, KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


class DatasetUnavailableError(DatasetError):
    pass


class DatasetHashError(DatasetError):
    pass


@lru_cache(maxsize=1)
def manifest() -> dict[str, dict[str, Any]]:
    with open(MANIFEST) as fh:
        return yaml.safe_load(fh)


def entry(name: str) -> dict[str, Any]:
    if not isinstance(name, str):
        raise UnknownDatasetError(f"dataset name must be a string, got {type(name).__name__} {name!r}")
    entries = manifest()
    if name not in entries:
        raise UnknownDatasetError(f"unknown dataset {name!r}; known: {', '.join(sorted(entries))}")
    return entries[name]


# --------------------------------------------------------------------------------------
# hashing and locating files
# --------------------------------------------------------------------------------------

_HASH_CACHE: dict[tuple[str, float, int], str] = {}


def sha256(path: Path) -> str:
    stat = path.stat()
    key = (str(path), stat.st_mtime, stat.st_size)
    if key not in _HASH_CACHE:
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        _HASH_CACHE[key] = h.hexdigest()
    return _HASH_CACHE[key]


def git_blob_sha1(path: Path) -> str:
    data = path.read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def verify(path: Path, expected: str | None, kind: str = "sha256") -> None:
    if not expected:
        return
    actual = sha256(path) if kind == "sha256" else git_blob_sha1(path)
    if actual != expected:
        raise DatasetHashError(
            f"{path} fails its {kind} check (expected {expected}, got {actual}); refusing to use it. "
            "Delete the file (or fix the mirror) and fetch it again."
        )


def _download_dir() -> Path:
    path = config.cache_dir() / "downloads"
    path.mkdir(parents=True, exist_ok=True)
    return path


def locate(name: str, filename: str, *, url: str | None = None, expected: str | None = None,
           hash_kind: str = "sha256", required: bool = True, download: bool = True) -> Path | None:
    """Path of one file of dataset ``name``, verified against its hash."""
    ent = entry(name)
    spec = (ent.get("files") or {}).get(filename, {}) or {}
    url = url or spec.get("url")
    expected = expected if expected is not None else spec.get("sha256")
    candidates = []
    if ent.get("local") and config.local_path(ent["local"]) is not None:
        candidates.append(config.local_path(ent["local"]) / filename)
    root = config.data_dir()
    if root is not None and ent.get("mirror"):
        candidates.append(root / ent["mirror"] / filename)
    candidates.append(_download_dir() / name / filename)
    for path in candidates:
        if path.is_file():
            verify(path, expected, hash_kind)
            return path
    if download and config.online() and url:
        return _download(name, filename, url, expected, hash_kind)
    if not required:
        return None
    where = " or ".join(str(p) for p in candidates[:-1]) or "(no mirror configured)"
    raise DatasetUnavailableError(
        f"dataset {name!r}: file {filename!r} not found (looked in {where}; "
        f"download cache {candidates[-1]}). "
        + (f"Set SOFTENING_ONLINE=1 to download it from {url}, or place it in the mirror "
           f"($SOFTENING_DATA_DIR/{ent.get('mirror', '')}/)." if url else
           "It has no public download URL; set SOFTENING_DATA_DIR to a mirror that holds it.")
    )


class UnpinnedDownloadError(DatasetError):
    """A download whose manifest entry has no pinned hash: refused (a changed or tampered
    file upstream would be used without notice)."""


def _check_pinned(name: str, filename: str, expected: str | None, hash_kind: str) -> None:
    import re

    pattern = r"[0-9a-f]{64}" if hash_kind == "sha256" else r"[0-9a-f]{40}"
    if not (isinstance(expected, str) and re.fullmatch(pattern, expected)):
        raise UnpinnedDownloadError(
            f"dataset {name!r}: file {filename!r} has no pinned {hash_kind} in data/datasets.yml "
            f"(got {expected!r}); refusing to download it unverified. Fetch it by hand, check it, put its "
            f"{hash_kind} in the manifest (or place the file in the mirror $SOFTENING_DATA_DIR/{entry(name).get('mirror', '')}/)")


def _download(name: str, filename: str, url: str, expected: str | None, hash_kind: str) -> Path:
    import pooch

    from .cache import safe_name, under_root

    _check_pinned(name, filename, expected, hash_kind)
    target = _download_dir() / safe_name(name, "dataset")
    under_root(target / filename, _download_dir(), "download path")
    known = f"sha256:{expected}" if (expected and hash_kind == "sha256") else None
    path = Path(pooch.retrieve(url, known_hash=known, fname=filename, path=target, progressbar=True))
    if hash_kind != "sha256":
        verify(path, expected, hash_kind)
    return path


# --------------------------------------------------------------------------------------
# labelled structures
# --------------------------------------------------------------------------------------

def labelled(atoms: Atoms, *, energy: float | None = None, forces=None, stress=None,
             **info: Any) -> Atoms:
    """Attach DFT labels to ``atoms`` (as a SinglePointCalculator) and ids to ``atoms.info``."""
    results: dict[str, Any] = {}
    if energy is not None:
        results["energy"] = float(energy)
        results["free_energy"] = float(energy)
    who = f"{info.get('material_id', '?')} frame {info.get('frame_id', '?')}"
    if energy is not None and not np.isfinite(float(energy)):
        raise DatasetError(f"energy of {who} is {energy}; a label must be finite: drop the frame")
    if forces is not None:
        forces = np.asarray(forces, dtype=float)
        if forces.shape == (len(atoms), 3) and not np.all(np.isfinite(forces)):
            raise DatasetError(f"forces of {who} hold non-finite values; a label must be finite: drop the frame")
        if forces.shape != (len(atoms), 3):
            raise DatasetError(
                f"forces of {info.get('material_id', '?')} frame {info.get('frame_id', '?')} have "
                f"shape {forces.shape}, expected ({len(atoms)}, 3)"
            )
        results["forces"] = forces
    if stress is not None:
        stress = np.asarray(stress, dtype=float)
        if stress.shape == (3, 3):
            from ase.stress import full_3x3_to_voigt_6_stress

            stress = full_3x3_to_voigt_6_stress(stress)
        results["stress"] = stress
    atoms.calc = SinglePointCalculator(atoms, **results)
    atoms.info.update(info)
    return atoms


@dataclass
class PhononReference:
    """A DFT finite-displacement phonon calculation: enough to rebuild it with phonopy."""

    material_id: str
    dataset: str
    formula: str
    unitcell: Atoms
    supercell_matrix: np.ndarray
    primitive_matrix: Any  # 3x3 array or "auto" or None
    displacement_dataset: dict  # phonopy "dataset" with forces per displacement
    functional: str
    extra: dict = field(default_factory=dict)

    def phonopy(self, with_forces: bool = True):
        """A phonopy object with the DFT displacements (and forces) of this reference."""
        from phonopy import Phonopy

        from .phonopy_io import atoms_to_phonopy

        ph = Phonopy(atoms_to_phonopy(self.unitcell), supercell_matrix=self.supercell_matrix,
                     primitive_matrix=self.primitive_matrix)
        dataset = self.displacement_dataset
        if not with_forces:
            dataset = {"natom": dataset["natom"], "first_atoms": [
                {k: v for k, v in d.items() if k != "forces"} for d in dataset["first_atoms"]]}
        ph.dataset = dataset
        return ph

    def frames(self) -> list[Atoms]:
        """The displaced supercells as labelled Atoms (DFT forces attached)."""
        from .phonopy_io import phonopy_to_atoms

        ph = self.phonopy(with_forces=False)
        out = []
        for i, (cell, disp) in enumerate(zip(ph.supercells_with_displacements,
                                             self.displacement_dataset["first_atoms"])):
            atoms = phonopy_to_atoms(cell)
            labelled(atoms, forces=disp["forces"], material_id=self.material_id, frame_id=i,
                     dataset=self.dataset, formula=self.formula)
            out.append(atoms)
        return out


def _private_tmp():
    """A temporary folder unique to this call (``tempfile``), removed afterwards."""
    import tempfile
    from contextlib import contextmanager

    @contextmanager
    def cm():
        with tempfile.TemporaryDirectory(prefix="softening-") as d:
            yield Path(d)

    return cm()


def _extract_member(archive: Path, suffix: str, mode: str) -> bytes:
    with tarfile.open(archive, mode) as tar:
        for member in tar.getmembers():
            if member.name.endswith(suffix):
                handle = tar.extractfile(member)
                assert handle is not None
                return handle.read()
    raise DatasetError(f"{archive} has no member ending in {suffix!r}")


def _index_table(name: str, filename: str):
    import pandas as pd

    return pd.read_csv(locate(name, filename))


def read_phonondb_pbesol(subset: Iterable[str] | None = None, **_: Any) -> list[PhononReference]:
    from phonopy.interface.calculator import read_crystal_structure
    from phonopy.file_IO import parse_FORCE_SETS

    from .phonopy_io import phonopy_to_atoms

    name = "phonondb-pbesol"
    ent = entry(name)
    index = _index_table(name, "index_all_10034.csv.gz").set_index("mp_id")
    ids = list(subset) if subset is not None else list(index.index[index["included_here"] == 1])
    out = []
    for mp_id in ids:
        if mp_id not in index.index:
            raise DatasetError(f"{mp_id} is not in PhononDB ({name}); see index_all_10034.csv.gz")
        row = index.loc[mp_id]
        tar_name = row["tar_lzma_name"]
        url = ent["per_material"]["url"].format(tar_lzma_name=tar_name)
        path = locate(name, f"tarred/{tar_name}", url=url, expected=row["git_blob_sha1"],
                      hash_kind="git-blob-sha1")
        conf = _extract_member(path, "phonopy.conf", "r:xz").decode()
        settings = {}
        for line in conf.splitlines():
            if "=" in line:
                key, value = (s.strip() for s in line.split("=", 1))
                settings[key.upper()] = value
        dim = np.array([int(x) for x in settings["DIM"].split()])
        scm = np.diag(dim) if dim.size == 3 else dim.reshape(3, 3)
        prim = settings.get("PRIMITIVE_AXIS")
        if prim:
            from fractions import Fraction

            prim = np.array([float(Fraction(x)) for x in prim.split()]).reshape(3, 3)
        poscar = _extract_member(path, "POSCAR-unitcell", "r:xz").decode()
        with _private_tmp() as tmp:  # unique per call: two runs never share a temporary name
            poscar_path = tmp / "POSCAR-unitcell"
            poscar_path.write_text(poscar)
            cell, _ = read_crystal_structure(str(poscar_path), interface_mode="vasp")
            fs_path = tmp / "FORCE_SETS"
            fs_path.write_bytes(_extract_member(path, "FORCE_SETS", "r:xz"))
            dataset = parse_FORCE_SETS(filename=str(fs_path))
        unit = phonopy_to_atoms(cell)
        out.append(PhononReference(
            material_id=mp_id, dataset=name, formula=unit.get_chemical_formula(mode="metal", empirical=True),
            unitcell=unit, supercell_matrix=scm, primitive_matrix=prim,
            displacement_dataset=dataset, functional="PBEsol",
            extra={"has_BORN_nac": bool(row["has_BORN_nac"]), "space_group": row["mdr_space_group"]},
        ))
    return out


@lru_cache(maxsize=2)
def _jageo_yaml_members(path: str) -> dict[str, bytes]:
    out = {}
    with tarfile.open(path, "r:xz") as tar:
        for member in tar.getmembers():
            if member.name.endswith("phonopy.yaml"):
                mp_id = member.name.split("/")[-2]
                handle = tar.extractfile(member)
                assert handle is not None
                out[mp_id] = handle.read()
    return out


# Upstream ids whose file is a byte copy of another entry's (kept out of the statistics):
# Materials Project mp-2201 is PbSe (PhononDB lists it so), but its JaGeo phonopy.yaml is
# byte-identical to mp-9935's (GeSb, same cell, same forces).
JAGEO_MISLABELLED = {"mp-2201": "mp-2201 is PbSe in the Materials Project"}


def jageo_duplicates() -> dict[str, str]:
    """``{mp_id: reason}`` of JaGeo-68 entries whose phonopy.yaml is an exact copy of
    another entry's, so one material is not counted twice (one id of each group is kept,
    preferring ids not in :data:`JAGEO_MISLABELLED`)."""
    members = _jageo_yaml_members(str(locate("jageo-pbe-68", "dft_pbe_phonopy_yaml.tar.xz")))
    groups: dict[str, list[str]] = {}
    for mp_id, data in members.items():
        groups.setdefault(hashlib.sha256(data).hexdigest(), []).append(mp_id)
    out = {}
    for ids in groups.values():
        if len(ids) < 2:
            continue
        ids = sorted(ids, key=lambda m: (m in JAGEO_MISLABELLED, int(m.split("-")[-1])))
        for dup in ids[1:]:
            why = f"; {JAGEO_MISLABELLED[dup]}" if dup in JAGEO_MISLABELLED else ""
            out[dup] = f"phonopy.yaml is an exact copy of {ids[0]}'s (upstream duplicate{why})"
    return out


def read_jageo_pbe_68(subset: Iterable[str] | None = None, **_: Any) -> list[PhononReference]:
    import phonopy

    from .phonopy_io import phonopy_to_atoms

    name = "jageo-pbe-68"
    path = locate(name, "dft_pbe_phonopy_yaml.tar.xz")
    members = _jageo_yaml_members(str(path))
    ids = list(subset) if subset is not None else sorted(members)
    out = []
    for mp_id in ids:
        if mp_id not in members:
            raise DatasetError(f"{mp_id} is not in {name} (68 materials: see its index.csv)")
        with _private_tmp() as tmp:
            yaml_path = tmp / "phonopy.yaml"
            yaml_path.write_bytes(members[mp_id])
            ph = phonopy.load(str(yaml_path), produce_fc=False, log_level=0)
        unit = phonopy_to_atoms(ph.unitcell)
        out.append(PhononReference(
            material_id=mp_id, dataset=name, formula=phonopy_to_atoms(ph.primitive).get_chemical_formula(mode="metal", empirical=True),
            unitcell=unit, supercell_matrix=np.array(ph.supercell_matrix),
            primitive_matrix=np.array(ph.primitive_matrix) if ph.primitive_matrix is not None else None,
            displacement_dataset=ph.dataset, functional="PBE",
        ))
    return out


def read_phonondb_pbe_103(**_: Any):
    """DFT phonon-frequency quantiles (long table) of the 103 PBE compounds."""
    import pandas as pd

    name = "phonondb-pbe-103"
    q = pd.read_csv(locate(name, "freq_quantiles_dft.csv"))
    k = pd.read_csv(locate(name, "dft_kappa_300K.csv"))
    return q.merge(k[["material_id", "spg_num", "kappa_tot_avg_dft_300K_W_per_mK"]], on="material_id")


def _structure_to_atoms(struct_dict: dict | str) -> Atoms:
    from pymatgen.core import Structure
    from pymatgen.io.ase import AseAtomsAdaptor

    if isinstance(struct_dict, str):
        struct_dict = ast.literal_eval(struct_dict)
    return AseAtomsAdaptor.get_atoms(Structure.from_dict(struct_dict))


def _open_json(path: Path) -> Any:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as fh:
        return json.load(fh)


def read_wbm_equilibrium(subset: Iterable[str] | None = None, **_: Any) -> list[Atoms]:
    name = "wbm-equilibrium"
    data = _open_json(locate(name, "wbm-random-pbe52-equilibrium-2025.1.json.gz"))
    wanted = set(subset) if subset is not None else None
    out = []
    for rec in data:
        if wanted is not None and rec["material_id"] not in wanted:
            continue
        atoms = _structure_to_atoms(rec["structure"])
        labelled(atoms, energy=float(rec["energy"]), material_id=rec["material_id"], frame_id=0,
                 dataset=name, formula=rec["formula"],
                 corrected_energy=float(rec["corrected_energy"]),
                 formation_energy_per_atom=float(rec["formation_energy_per_atom"]))
        out.append(atoms)
    return out


def parse_wbm_high_energy(data: dict, dataset: str = "wbm-he-figshare",
                          subset: Iterable[str] | None = None) -> list[Atoms]:
    """``{wbm_id: {frame_id: {structure, vasp_e, vasp_f, [vasp_s]}}}`` -> labelled Atoms."""
    if not isinstance(data, dict):
        raise DatasetError(f"data must be the WBM high-energy JSON dict {{wbm_id: {{frame_id: ...}}}}, "
                           f"got {type(data).__name__}")
    subset = check_subset(subset)
    wanted = set(subset) if subset is not None else None
    out = []
    for wbm_id, frames in data.items():
        if wanted is not None and wbm_id not in wanted:
            continue
        for frame_id, rec in frames.items():
            atoms = _structure_to_atoms(rec["structure"])
            stress = rec.get("vasp_s")
            if stress is not None:
                # VASP/pymatgen stress is in kBar with the opposite sign convention to ASE
                stress = -0.1 * np.asarray(stress, dtype=float) / 160.21766208
            labelled(atoms, energy=rec.get("vasp_e"), forces=rec["vasp_f"], stress=stress,
                     material_id=wbm_id, frame_id=str(frame_id), dataset=dataset,
                     formula=atoms.get_chemical_formula(mode="metal"))
            out.append(atoms)
    return out


def read_wbm_high_energy(subset: Iterable[str] | None = None, **_: Any) -> list[Atoms]:
    path = locate("wbm-he-figshare", "WBM_high_energy_states.json")
    return parse_wbm_high_energy(_open_json(path), subset=subset)


def read_wbm_he_gpaw(subset: Iterable[str] | None = None, **_: Any) -> list[Atoms]:
    from ase.io import read

    root = config.local_path(entry("wbm-he-gpaw")["local"])
    if root is None:
        raise DatasetUnavailableError(
            "wbm-he-gpaw is computed by the book (data/reference/wbm_he_gpaw of its source "
            "checkout); an installed package does not hold it")
    files = sorted(root.glob("*.extxyz.gz")) + sorted(root.glob("*.extxyz"))
    if not files:
        raise DatasetUnavailableError(
            f"no GPAW-labelled frames under {root} yet; run the labelling campaign "
            "(python -m softening_lib.campaign, see data/reference/wbm_he_gpaw/PROVENANCE.md)"
        )
    wanted = set(subset) if subset is not None else None
    out = []
    for path in files:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt") as fh:
            for atoms in read(fh, index=":", format="extxyz"):
                if wanted is not None and atoms.info.get("material_id") not in wanted:
                    continue
                atoms.info.setdefault("dataset", "wbm-he-gpaw")
                out.append(atoms)
    return out


def read_wbm_he_trajectory_gpaw(subset: Iterable[str] | None = None, **_: Any) -> list[Atoms]:
    """The GPAW-labelled MD trajectory frames (one ``frame_XXX.extxyz`` per finished frame, by
    compound folder), sorted by compound and frame; a trajectory still being labelled reads as
    the frames it has."""
    from ase.io import read

    root = config.local_path(entry("wbm-he-trajectory-gpaw")["local"])
    if root is None or not root.is_dir():
        raise DatasetUnavailableError(
            "wbm-he-trajectory-gpaw is computed by the book (data/reference/wbm_he_trajectory_gpaw of "
            "its source checkout, scripts/gpaw_trajectory.py); an installed package does not hold it")
    wanted = set(subset) if subset is not None else None
    out = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        if wanted is not None and folder.name not in wanted:
            continue
        frames = []
        for path in sorted(folder.glob("frame_*.extxyz")):
            atoms = read(path, index=0, format="extxyz")
            atoms.info.setdefault("material_id", folder.name)
            atoms.info.setdefault("dataset", "wbm-he-trajectory-gpaw")
            frames.append(atoms)
        out.extend(sorted(frames, key=lambda a: int(a.info["frame_id"])))
    if not out:
        raise DatasetUnavailableError(f"no labelled trajectory frames under {root} yet (scripts/gpaw_trajectory.py)")
    return out


def read_mp_elemental_refs(**_: Any) -> dict[str, float]:
    """{element: MP GGA energy per atom (eV/atom)} of the lowest-energy elemental entry."""
    data = _open_json(locate("mp-elemental-refs", "2023-02-07-mp-elemental-reference-entries.json.gz"))
    out = {}
    for el, ent in data.items():
        natoms = sum(ent["composition"].values())
        out[el] = float(ent["energy"]) / natoms
    return out


def read_mp_element_structures(subset: Iterable[str] | None = None, **_: Any) -> dict[str, Atoms]:
    """{element: lowest-energy MP elemental structure} (energy per atom in atoms.info)."""
    data = _open_json(locate("mp-element-structures", "MP-PBE-Element-Refs.json.gz"))
    wanted = set(subset) if subset is not None else None
    out = {}
    for el, rec in data.items():
        if wanted is not None and el not in wanted:
            continue
        energies = np.asarray(rec["energy_per_atom"], dtype=float)
        i = int(np.argmin(energies))
        atoms = _structure_to_atoms(rec["structure"][i])
        atoms.info.update(material_id=f"{el}-ref", energy_per_atom=float(energies[i]), dataset="mp-element-structures")
        out[el] = atoms
    return out


READERS: dict[str, Callable[..., Any]] = {
    "phonondb_pbesol": read_phonondb_pbesol,
    "jageo_pbe_68": read_jageo_pbe_68,
    "phonondb_pbe_103": read_phonondb_pbe_103,
    "wbm_equilibrium": read_wbm_equilibrium,
    "wbm_high_energy": read_wbm_high_energy,
    "wbm_he_gpaw": read_wbm_he_gpaw,
    "wbm_he_trajectory_gpaw": read_wbm_he_trajectory_gpaw,
    "mp_elemental_refs": read_mp_elemental_refs,
    "mp_element_structures": read_mp_element_structures,
}


# readers of the public VASP references (they lived in task modules; core code never imports those)
from .public_refs import read_mp_surfaces, read_mpcontribs_approxneb  # noqa: E402

READERS["mp_surfaces_tran2016"] = read_mp_surfaces
READERS["mpcontribs_approxneb"] = read_mpcontribs_approxneb


def check_subset(subset: Any, what: str = "subset") -> list[str] | None:
    """``subset`` as a list of ids (``None`` stays ``None``), or :class:`ValueError` naming it."""
    if subset is None:
        return None
    if isinstance(subset, (str, bytes)):
        raise ValueError(f"{what} must be a list of ids, got the string {subset!r}; write {what}=[{subset!r}]")
    if isinstance(subset, dict):
        raise ValueError(f"{what} must be a list of ids, got a dict; pass list(its keys)")
    try:
        ids = list(subset)
    except TypeError:
        raise ValueError(f"{what} must be a list of ids, got {type(subset).__name__} {subset!r}") from None
    bad = [x for x in ids if not isinstance(x, str)]
    if bad:
        raise ValueError(f"{what} holds non-string ids {bad[:5]!r}; ids are strings such as 'mp-149'")
    return ids


def register_reader(key: str, func: Callable[..., Any]) -> None:
    if not isinstance(key, str) or not key:
        raise ValueError(f"reader key must be a non-empty string, got {key!r}")
    if not callable(func):
        raise ValueError(f"reader for {key!r} must be callable, got {type(func).__name__}")
    READERS[key] = func


def load(name: str, subset: Iterable[str] | None = None, **kw: Any) -> Any:
    """Load dataset ``name`` through its reader (see the manifest for what each returns).

    ``subset``: a list (or other iterable) of ids, e.g. ``["mp-149"]``; a bare string is refused
    (it would be read as its characters and select nothing)."""
    ent = entry(name)
    subset = check_subset(subset)
    reader = READERS.get(ent["reader"])
    if reader is None:
        raise DatasetError(f"dataset {name!r} names reader {ent['reader']!r}, which is not registered")
    return reader(subset=subset, **kw)


def fingerprint(name: str) -> str:
    """A short id of a dataset's content (manifest hashes + local files), for cache keys."""
    ent = entry(name)
    h = hashlib.sha256(name.encode())
    for filename, spec in sorted((ent.get("files") or {}).items()):
        h.update(f"{filename}:{(spec or {}).get('sha256')}".encode())
    if ent.get("local") and config.local_path(ent["local"]) is not None:
        root = config.local_path(ent["local"])
        for path in sorted(root.glob("*")):
            if path.is_file() and path.name != "PROVENANCE.md":
                h.update(path.name.encode())
                h.update(sha256(path).encode())
    return h.hexdigest()[:16]


def status():
    """A table: for each dataset, is it local, mirrored, downloadable or missing here."""
    import pandas as pd

    rows = []
    for name, ent in manifest().items():
        files = list((ent.get("files") or {}).keys())
        where = []
        state = "missing"
        if ent.get("local"):
            root = config.local_path(ent["local"]) or Path(ent["local"])
            n = len(list(root.glob("*.extxyz*"))) if config.local_path(ent["local"]) and root.is_dir() else 0
            state = "local" if n else "missing (not computed yet)"
            where.append(str(root))
        else:
            found = [_safe_locate(name, f) for f in files]
            if files and all(found):
                state = "mirrored" if config.data_dir() else "cached"
            elif any((ent.get("files") or {}).get(f, {}) and (ent["files"][f] or {}).get("url") for f in files):
                state = "downloadable" if config.online() else "downloadable (offline now)"
        rows.append({"dataset": name, "status": state, "title": ent.get("title", ""),
                     "license": ent.get("license", ""), "doi": ent.get("doi") or "",
                     "citation": ent.get("citation", "")})
    return pd.DataFrame(rows)


def _safe_locate(name: str, filename: str) -> bool:
    try:
        return locate(name, filename, required=False, download=False) is not None
    except DatasetError:
        return False
