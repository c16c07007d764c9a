"""softening_lib outside the book: point it at your DFT-labelled frames, get your model's softening.

Three functions, re-exported by the package (``import softening_lib`` stays light: this
module is imported on first use):

``softening_lib.measure(frames, model_or_calc)``
    one row per material: frames, atoms, the softening scale ``s`` (slope through the origin
    of model against DFT force components, paper Fig. 5) with a bootstrap 95 % interval,
    force MAE, cMAE (MAE of ``F_model / s``), the model id.
``softening_lib.correct(model_or_calc, labelled_frames)``
    the paper's one-label linear correction (Eq. 4): ``(ScaledCalculator, c)`` with the
    closed form ``c = sum F_model . F_DFT / sum F_model^2``.
``softening_lib.phonon_ratio(phonopy_yaml_or_object, model_or_calc)``
    a DFT phonopy force set against the model at the DFT geometry: the force-constant ratio
    (slope of the harmonic forces) and the maximum-frequency ratio.

Frames are ASE ``Atoms`` (or files ASE reads: extxyz, a VASP OUTCAR or vasprun.xml, an ASE
database) whose DFT forces are ``atoms.arrays["dft_forces"]``, the calculator's results
(``atoms.calc.results["forces"]``, which is how extxyz ``forces`` and OUTCARs load) or
``atoms.arrays["forces"]``, in that order; ``atoms.info["material_id"]`` groups them (a file
without it is one group, a bare Atoms list groups by formula). ``model_or_calc`` is a registry
name (``python -m softening_lib models``), an import path ``package.module:factory`` or any
ASE calculator. Predictions of named models are cached under ``<cache dir>/measure/<model
id>/`` (``SOFTENING_CACHE_DIR``, default ``~/.cache/softening_lib``), keyed by the geometries;
a bare calculator is never cached.

An exact example: EMT forces taken as "DFT", the "model" is EMT scaled by 0.8.

>>> import softening_lib
>>> from ase.build import bulk
>>> from ase.calculators.emt import EMT
>>> from softening_lib.models import ScaledCalculator
>>> frames = []
>>> for i in range(4):
...     atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
...     atoms.rattle(0.1, seed=i)
...     atoms.calc = EMT()
...     atoms.arrays["dft_forces"] = atoms.get_forces()   # the labels
...     atoms.info["material_id"] = "Cu-rattled"
...     frames.append(atoms)
>>> table = softening_lib.measure(frames, ScaledCalculator(EMT(), 0.8))
>>> print(table[["material", "n_frames", "n_atoms", "s", "s_low", "s_high", "cmae", "model"]].round(9).to_string(index=False))
  material  n_frames  n_atoms   s  s_low  s_high  cmae   model
Cu-rattled         4        4 0.8    0.8     0.8   0.0 EMT*0.8

Command line: ``python -m softening_lib measure --model chgnet-0.3.0 frames.extxyz --out s.csv``
(:func:`main`).
"""

from __future__ import annotations

import argparse
import sys
import types
from collections import OrderedDict
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

__all__ = ["measure", "correct", "phonon_ratio", "read_frames", "dft_forces", "main",
           "MeasureError", "FramesError"]

SOURCE_KEY = "softening_source"  # atoms.info: the file a frame was read from
INDEX_KEY = "softening_index"  # atoms.info: its index in that file
COLUMNS = ["material", "formula", "n_frames", "n_atoms", "s", "s_low", "s_high", "mae", "cmae", "model"]
CHUNK = 64  # frames per prediction call (progress granularity)


class MeasureError(RuntimeError):
    """Bad input for :func:`measure`, :func:`correct` or :func:`phonon_ratio` (the message
    names the file, frame or model)."""


class FramesError(MeasureError):
    """A file that cannot be read, or a frame without DFT forces."""


# --------------------------------------------------------------------------------------
# frames
# --------------------------------------------------------------------------------------

def read_frames(paths: str | Path | Iterable[str | Path], index: str = ":") -> list:
    """Every frame of every file (anything ``ase.io.read`` reads), each noting its file and
    index in ``atoms.info`` (for error messages and as the default group)."""
    from ase import Atoms
    from ase.io import read

    if isinstance(paths, (str, Path)):
        paths = [paths]
    out = []
    for path in paths:
        p = Path(path)
        if not p.exists():
            raise FramesError(f"{p}: no such file")
        if p.is_dir():
            raise FramesError(f"{p}: is a folder, not a file of frames")
        try:
            got = read(str(p), index=index)
        except Exception as exc:  # ASE raises many kinds for unreadable files
            raise FramesError(f"{p}: ASE cannot read it ({type(exc).__name__}: {exc})") from None
        got = [got] if isinstance(got, Atoms) else list(got)
        if not got:
            raise FramesError(f"{p}: holds no frames")
        for i, atoms in enumerate(got):
            atoms.info[SOURCE_KEY] = str(p)
            atoms.info[INDEX_KEY] = i
        out.extend(got)
    return out


def _label(atoms, i: int) -> str:
    if SOURCE_KEY in atoms.info:
        return f"{atoms.info[SOURCE_KEY]}: frame {atoms.info.get(INDEX_KEY, i)}"
    mid = atoms.info.get("material_id")
    return f"frame {i}" + (f" (material {mid})" if mid is not None else "")


def dft_forces(atoms, label: str = "frame") -> np.ndarray:
    """The DFT forces a frame carries: ``arrays["dft_forces"]``, else the calculator's
    ``results["forces"]``, else ``arrays["forces"]``; a :class:`FramesError` naming
    ``label`` when it has none, or forces of the wrong shape or not finite."""
    calc_results = getattr(atoms.calc, "results", None) or {}
    if "dft_forces" in atoms.arrays:
        forces = atoms.arrays["dft_forces"]
    elif "forces" in calc_results:
        forces = calc_results["forces"]
    elif "forces" in atoms.arrays:
        forces = atoms.arrays["forces"]
    else:
        raise FramesError(f"{label}: no DFT forces (looked for arrays 'dft_forces', the "
                          "calculator's 'forces' and arrays 'forces')")
    forces = np.asarray(forces, dtype=float)
    if forces.shape != (len(atoms), 3):
        raise FramesError(f"{label}: DFT forces have shape {forces.shape}, expected ({len(atoms)}, 3)")
    if not np.all(np.isfinite(forces)):
        raise FramesError(f"{label}: DFT forces hold non-finite values")
    return forces


def _as_frames(frames: Any) -> list:
    from ase import Atoms

    if isinstance(frames, (str, Path)):
        return read_frames(frames)
    if isinstance(frames, Atoms):
        return [frames]
    frames = list(frames)
    if frames and all(isinstance(f, (str, Path)) for f in frames):
        return read_frames(frames)
    bad = [i for i, f in enumerate(frames) if not isinstance(f, Atoms)]
    if bad:
        raise MeasureError(f"frame {bad[0]} is a {type(frames[bad[0]]).__name__}, not an ASE Atoms")
    if not frames:
        raise MeasureError("no frames given")
    return frames


def _group_of(atoms, group_by: str | None) -> str:
    if group_by is None:
        return "all"
    if group_by == "formula":
        return str(atoms.info.get("formula") or atoms.get_chemical_formula(mode="metal", empirical=True))
    value = atoms.info.get(group_by)
    if value is not None:
        return str(value)
    if SOURCE_KEY in atoms.info:  # a file without ids: the file is the material
        return str(atoms.info[SOURCE_KEY])
    return atoms.get_chemical_formula(mode="metal", empirical=True)


# --------------------------------------------------------------------------------------
# the model
# --------------------------------------------------------------------------------------

class _Model:
    """A registry name / import path (cached predictions) or a bare calculator (not cached)."""

    def __init__(self, model_or_calc: Any):
        from . import models

        if isinstance(model_or_calc, str):
            name = model_or_calc.strip()
            try:
                models.resolve(name)
                models.check_available(name)
            except (models.ModelError, KeyError, ValueError) as exc:
                raise MeasureError(f"model {name!r}: {exc}") from None
            self.name, self.calc, self.id = name, None, models.model_id(name)
        elif hasattr(model_or_calc, "get_property") or hasattr(model_or_calc, "get_forces"):
            self.calc = model_or_calc
            self.name = str(getattr(model_or_calc, "softening_model", type(model_or_calc).__name__))
            self.id = self.name
        else:
            raise MeasureError(f"model_or_calc must be a registry name, an import path "
                               f"'package.module:factory' or an ASE calculator, got "
                               f"{type(model_or_calc).__name__}")
        self.cached = self.calc is None

    def calculator(self):
        from . import predict

        return self.calc if self.calc is not None else predict.calculator(self.name)

    def check(self, frames: Sequence) -> None:
        """Raise UnsupportedElementError for an element a registry model does not cover."""
        if self.calc is None:
            from . import models

            models.check_elements(self.name, set().union(*(set(a.get_chemical_symbols()) for a in frames)))

    def _cache_path(self, frames: Sequence) -> Path:
        from . import cache, config, predict

        return config.cache_dir() / "measure" / cache._safe(self.id) / f"{predict.geometry_hash(frames)}.npz"

    def forces(self, frames: Sequence, batch_size: int = 16, bar=None) -> list[np.ndarray]:
        """Model forces of ``frames`` (cached for named models), ``bar`` updated per chunk."""
        from . import cache, predict

        path = self._cache_path(frames) if self.cached else None
        data = cache.load_arrays(path) if path is not None else None
        natoms = np.array([len(a) for a in frames])
        if data is not None and np.array_equal(data.get("natoms"), natoms):
            if bar is not None:
                bar.update(len(frames))
            return np.split(data["forces"], np.cumsum(natoms)[:-1])
        self.check(frames)
        out: list[np.ndarray] = []
        for start in range(0, len(frames), CHUNK):
            chunk = list(frames[start:start + CHUNK])
            got = predict.predict(chunk, self.name, batch_size=batch_size, calc=self.calc, with_stress=False)
            out.extend(np.asarray(f, dtype=float) for f in got["forces"])
            if bar is not None:
                bar.update(len(chunk))
        if path is not None:
            cache.save_arrays(path, forces=np.concatenate(out), natoms=natoms)
        return out


# --------------------------------------------------------------------------------------
# the API
# --------------------------------------------------------------------------------------

def measure(frames, model_or_calc, *, group_by: str | None = "material_id", n_boot: int = 1000,
            seed: int = 0, batch_size: int = 16, progress: bool | None = None):
    """The softening of a model on DFT-labelled frames: a pandas table, one row per group.

    ``frames``: ASE ``Atoms`` with DFT forces, or file path(s) ASE reads. ``group_by``: the
    ``atoms.info`` key naming the material (``"formula"``: the chemical formula; ``None``: all
    frames pooled). Columns: ``material``, ``formula``, ``n_frames``, ``n_atoms`` (atoms per
    frame, the largest), ``s`` (:func:`softening_lib.metrics.softening_scale`, pooled over the
    group's frames), ``s_low`` / ``s_high`` (percentile bootstrap 95 % interval,
    :func:`softening_lib.metrics.bootstrap_ci`, ``n_boot`` resamples of whole frames, of force
    components when the group has one frame; NaN with ``n_boot=0``), ``mae``, ``cmae``
    (:func:`softening_lib.metrics.mae` / ``cmae``, eV/Å), ``model`` (the model id), and
    ``error`` when a group could not be computed (an element the model does not cover, a
    model error). ``progress``: a tqdm bar over frames (default: for more than 100 frames).

    >>> import softening_lib
    >>> from ase.build import bulk
    >>> from ase.calculators.emt import EMT
    >>> from softening_lib.models import ScaledCalculator
    >>> atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    >>> atoms.rattle(0.1, seed=1)
    >>> atoms.arrays["dft_forces"] = EMT().get_forces(atoms)
    >>> row = softening_lib.measure([atoms], ScaledCalculator(EMT(), 0.8)).iloc[0]
    >>> print(round(row["s"], 12), row["material"], row["n_frames"])
    0.8 Cu 1
    """
    import pandas as pd

    from . import metrics

    frames = _as_frames(frames)
    model = _Model(model_or_calc)
    groups: "OrderedDict[str, list[int]]" = OrderedDict()
    dft: list[np.ndarray] = []
    for i, atoms in enumerate(frames):
        dft.append(dft_forces(atoms, _label(atoms, i)))  # every frame checked before the model runs
        groups.setdefault(_group_of(atoms, group_by), []).append(i)
    bar = None
    if progress or (progress is None and len(frames) > 100):
        from tqdm.auto import tqdm

        bar = tqdm(total=len(frames), desc=f"{model.id}", unit="frame", file=sys.stderr)
    rows = []
    try:
        for name, idx in groups.items():
            sub = [frames[i] for i in idx]
            row: dict[str, Any] = {
                "material": name,
                "formula": str(sub[0].info.get("formula") or sub[0].get_chemical_formula(mode="metal")),
                "n_frames": len(idx), "n_atoms": max(len(a) for a in sub),
                "s": np.nan, "s_low": np.nan, "s_high": np.nan, "mae": np.nan, "cmae": np.nan,
                "model": model.id,
            }
            try:
                pred = model.forces(sub, batch_size=batch_size, bar=bar)
            except Exception as exc:  # an element it does not cover, a calculator error
                if bar is not None:
                    bar.update(len(sub))
                row["error"] = f"{type(exc).__name__}: {exc}"
                rows.append(row)
                continue
            x = [dft[i] for i in idx]
            try:
                row["s"] = metrics.softening_scale(x, pred)
                row["mae"] = metrics.mae(x, pred)
                row["cmae"] = metrics.cmae(x, pred, scale=row["s"])
                if n_boot > 0:
                    xs, ys = metrics._flatten(x), metrics._flatten(pred)
                    labels = np.concatenate([np.full(f.size, j) for j, f in enumerate(x)]) if len(x) > 1 else None
                    _, row["s_low"], row["s_high"] = metrics.bootstrap_ci(
                        (xs, ys), metrics.softening_scale, n_boot=n_boot, seed=seed, groups=labels)
            except metrics.MetricError as exc:
                row["error"] = f"MetricError: {exc}"
            rows.append(row)
    finally:
        if bar is not None:
            bar.close()
    table = pd.DataFrame(rows)
    cols = COLUMNS + (["error"] if "error" in table else [])
    if "error" in table:
        table["error"] = table["error"].fillna("")
        if (table["error"] != "").all():
            raise MeasureError(f"model {model.id} gave no result for any material: "
                               + "; ".join(f"{m}: {e}" for m, e in zip(table["material"], table["error"])))
    return table[cols]


def correct(model_or_calc, labelled_frames, *, batch_size: int = 16):
    """The paper's one-label linear correction (Eq. 4): ``(ScaledCalculator, c)``.

    ``c = sum F_model . F_DFT / sum F_model^2`` over the force components of
    ``labelled_frames`` (one DFT-labelled structure in the paper; a list, or file paths, are
    pooled; :func:`softening_lib.correction.fit_scale`). The calculator returns ``c`` times
    the model's energy, forces and stress.

    >>> import softening_lib
    >>> from ase.build import bulk
    >>> from ase.calculators.emt import EMT
    >>> from softening_lib.models import ScaledCalculator
    >>> atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    >>> atoms.rattle(0.1, seed=2)
    >>> atoms.arrays["dft_forces"] = EMT().get_forces(atoms)
    >>> calc, c = softening_lib.correct(ScaledCalculator(EMT(), 0.8), atoms)
    >>> round(c, 12)                      # undoes the softening
    1.25
    >>> bool(abs(calc.get_forces(atoms) - atoms.arrays["dft_forces"]).max() < 1e-12)
    True
    """
    from . import correction, metrics

    frames = _as_frames(labelled_frames)
    model = _Model(model_or_calc)
    dft = [dft_forces(a, _label(a, i)) for i, a in enumerate(frames)]
    try:
        pred = model.forces(frames, batch_size=batch_size)
        c = correction.fit_scale(dft, pred)
    except metrics.MetricError as exc:
        raise MeasureError(f"cannot fit the correction of {model.id}: {exc}") from None
    return correction.apply(model.calculator(), c), c


def _load_phonopy(obj: Any):
    if isinstance(obj, (str, Path)):
        import phonopy

        path = Path(obj)
        if not path.is_file():
            raise FramesError(f"{path}: no such file")
        try:
            return phonopy.load(str(path), produce_fc=False, log_level=0)
        except Exception as exc:
            raise FramesError(f"{path}: phonopy cannot load it ({type(exc).__name__}: {exc})") from None
    if hasattr(obj, "displacement_dataset") and hasattr(obj, "phonopy"):  # datasets.PhononReference
        return obj.phonopy(with_forces=True)
    if hasattr(obj, "supercells_with_displacements") and hasattr(obj, "dataset"):
        return obj
    raise MeasureError(f"expected a phonopy.yaml path, a Phonopy object or a PhononReference, "
                       f"got {type(obj).__name__}")


def phonon_ratio(phonopy_yaml_or_object, model_or_calc, *, mesh: float = 40.0,
                 symmetrize: bool = True, batch_size: int = 16) -> dict:
    """A DFT finite-displacement force set against the model, both at the DFT geometry.

    The model's forces on the DFT displaced supercells (its forces on the undisplaced
    supercell subtracted, as phonopy's residual-force treatment does) give model force
    constants; both sets of force constants go through the same phonopy settings (``mesh``,
    symmetrisation). Returns a dict: ``fc_ratio`` (softening scale of the harmonic forces
    ``-Phi u`` of the DFT displacements, model against DFT: chapter 6's
    ``softening_scale_dft_disp``), ``s_forces`` (the same on the raw residual-subtracted
    forces), ``max_freq_dft_thz``, ``max_freq_model_thz``, ``freq_ratio`` (model / DFT; a PES
    scaled by ``s`` has ``freq_ratio = sqrt(s)``), ``sqrt_fc_ratio``, ``min_freq_model_thz``,
    ``n_displacements``, ``n_atoms_supercell``, ``max_abs_residual`` (eV/Å), ``formula``,
    ``model``. No relaxation with the model (chapter 6 also relaxes; this isolates the PES
    curvature). Frequencies are on the phonopy ``mesh`` only (chapter 6 also takes a band
    path, which moves its maxima by ~1e-4 relative); ``fc_ratio`` is chapter 6's number.

    >>> import softening_lib
    >>> from ase.build import bulk
    >>> from ase.calculators.emt import EMT
    >>> from phonopy import Phonopy
    >>> from softening_lib.models import ScaledCalculator
    >>> from softening_lib.phonopy_io import atoms_to_phonopy, phonopy_to_atoms
    >>> ph = Phonopy(atoms_to_phonopy(bulk("Cu", "fcc", a=3.6)), supercell_matrix=[[2, 0, 0], [0, 2, 0], [0, 0, 2]])
    >>> ph.generate_displacements(distance=0.01)
    >>> ph.forces = [EMT().get_forces(phonopy_to_atoms(cell)) for cell in ph.supercells_with_displacements]
    >>> r = softening_lib.phonon_ratio(ph, ScaledCalculator(EMT(), 0.8))
    >>> round(r["fc_ratio"], 9), round(r["freq_ratio"], 9), round(r["sqrt_fc_ratio"], 9)
    (0.8, 0.894427191, 0.894427191)
    """
    from phonopy import Phonopy

    from . import metrics
    from .phonopy_io import harmonic_forces, phonopy_to_atoms

    ph = _load_phonopy(phonopy_yaml_or_object)
    model = _Model(model_or_calc)
    dataset = ph.dataset or {}
    if "first_atoms" in dataset:
        if not dataset["first_atoms"] or any("forces" not in d for d in dataset["first_atoms"]):
            raise FramesError("the phonopy force set holds no DFT forces for its displacements")
        bare = {"natom": dataset["natom"], "first_atoms": [
            {"number": d["number"], "displacement": np.asarray(d["displacement"], dtype=float)}
            for d in dataset["first_atoms"]]}
    elif "displacements" in dataset:
        if dataset.get("forces") is None:
            raise FramesError("the phonopy force set holds no DFT forces for its displacements")
        bare = {"displacements": np.asarray(dataset["displacements"], dtype=float)}
    else:
        raise FramesError("the phonopy object holds no displacement dataset")
    dft = [np.asarray(f, dtype=float) for f in ph.forces]
    frames = [phonopy_to_atoms(c) for c in ph.supercells_with_displacements] + [phonopy_to_atoms(ph.supercell)]
    pred = model.forces(frames, batch_size=batch_size)
    residual = pred[-1]
    mod = [f - residual for f in pred[:-1]]

    def fc_of(forces):
        p = Phonopy(ph.unitcell, supercell_matrix=ph.supercell_matrix, primitive_matrix=ph.primitive_matrix)
        p.dataset = bare
        p.forces = np.array(forces)
        p.produce_force_constants()
        if symmetrize:
            p.symmetrize_force_constants()
        p.run_mesh(mesh, with_eigenvectors=False, is_gamma_center=True)
        return p, np.asarray(p.get_mesh_dict()["frequencies"])

    ph_dft, f_dft = fc_of(dft)
    ph_mod, f_mod = fc_of(mod)
    fc_ratio = metrics.softening_scale(harmonic_forces(ph_dft.force_constants, bare),
                                       harmonic_forces(ph_mod.force_constants, bare))
    return {
        "formula": phonopy_to_atoms(ph.primitive).get_chemical_formula(mode="metal", empirical=True),
        "model": model.id, "n_displacements": len(dft), "n_atoms_supercell": len(frames[-1]),
        "fc_ratio": fc_ratio, "sqrt_fc_ratio": float(np.sqrt(max(fc_ratio, 0.0))),
        "s_forces": metrics.softening_scale(dft, mod),
        "max_freq_dft_thz": float(f_dft.max()), "max_freq_model_thz": float(f_mod.max()),
        "freq_ratio": float(f_mod.max() / f_dft.max()), "min_freq_model_thz": float(f_mod.min()),
        "max_abs_residual": float(np.abs(residual).max()),
    }


# --------------------------------------------------------------------------------------
# python -m softening_lib measure
# --------------------------------------------------------------------------------------

def main(argv: Sequence[str] | None = None) -> int:
    """``python -m softening_lib measure --model M FRAMES... [--group-by KEY] [--out t.csv|t.json]``"""
    parser = argparse.ArgumentParser(
        prog="python -m softening_lib measure",
        description="The softening scale of a model on DFT-labelled frames (any file ASE reads: "
                    "extxyz with forces / dft_forces, a VASP OUTCAR or vasprun.xml, an ASE database), "
                    "one row per material.")
    parser.add_argument("frames", nargs="+", metavar="FRAMES", help="labelled frame files")
    parser.add_argument("--model", "-m", required=True,
                        help="registry name (python -m softening_lib models) or package.module:factory")
    parser.add_argument("--group-by", default="material_id",
                        help="atoms.info key naming the material (default material_id; 'formula'; "
                             "'none': pool everything); a file without it is one material")
    parser.add_argument("--out", "-o", help="write the table: a .csv or .json file")
    parser.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples (default 1000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(list(argv) if argv is not None else None)
    out = Path(args.out) if args.out else None
    if out is not None and out.suffix.lower() not in (".csv", ".json"):
        print(f"error: --out {out}: give a .csv or .json file", file=sys.stderr)
        return 2
    try:
        model = _Model(args.model)  # a misspelt model fails before any file is read
        frames = read_frames(args.frames)
        table = measure(frames, model.name, group_by=None if args.group_by.lower() == "none" else args.group_by,
                        n_boot=args.n_boot, seed=args.seed, batch_size=args.batch_size,
                        progress=False if args.no_progress else None)
    except MeasureError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    import pandas as pd

    with pd.option_context("display.width", 120, "display.max_columns", 20,
                           "display.float_format", "{:.4f}".format):
        print(table.to_string(index=False))
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.suffix.lower() == ".csv":
            table.to_csv(out, index=False)
        else:
            out.write_text(table.to_json(orient="records", indent=1, double_precision=15) + "\n")
        print(f"wrote {out}", file=sys.stderr)
    if "error" in table:
        for material, error in zip(table["material"], table["error"]):
            if error:
                print(f"warning: {material} skipped: {error}", file=sys.stderr)
    return 0


class _CallableModule(types.ModuleType):
    """``softening_lib.measure`` is this module and, called, :func:`measure` (so both
    ``softening_lib.measure(frames, model)`` and ``softening_lib.measure.main`` work)."""

    def __call__(self, *args: Any, **kwargs: Any):
        return measure(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
