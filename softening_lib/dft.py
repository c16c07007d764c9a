"""Our own DFT labels: GPAW plane-wave statics with every setting recorded.

>>> from softening_lib.dft import label
>>> labelled_atoms, record = label(atoms)                 # PBE, defaults below
>>> labelled_atoms.get_forces()                           # GPAW forces (eV/A)
>>> record["ecut_eV"], record["kpts"], record["scf_iterations"], record["wall_time_s"]

GPAW is an optional extra. Install it with::

    apt-get install -y libxc-dev libopenblas-dev; CC=g++ pip install gpaw

PAW setups come from the ``gpaw-data`` wheel (installed with gpaw; PBE, LDA, RPBE, ...).
Functionals it does not ship (PBEsol) are generated once with GPAW's own generator
(``gpaw-setup -f PBEsol <element>``) into ``$SOFTENING_CACHE_DIR/gpaw-setups`` (default
``~/.cache/softening_lib/gpaw-setups``), which :func:`ensure_setups` does automatically and
says so. ``GPAW_SETUP_PATH`` entries are searched first.

Default settings (:data:`DEFAULTS`) and why:

``xc="PBE"``
    the functional of the Materials Project / MPtrj labels the models were trained on.
``ecut=None`` -> 520 eV, or 800 eV when O or F is present
    520 eV is MP's ENCUT. GPAW's O and F setups are harder than VASP's: on MgO the slope
    of GPAW against VASP forces was 1.036 at 520 eV and 1.004 at 800 eV, so oxides and
    fluorides get 800 eV.
``kpt_density=3.0`` (k-points per reciprocal Angstrom, ASE/GPAW convention with 2*pi)
    a Gamma-centred Monkhorst-Pack grid with ``n_i = max(1, ceil(kpt_density * |b_i|))``
    where ``|b_i| = 2*pi / d_i``; roughly one k-point per 2 A of real-space period
    (a 4 A axis gets 5 points, an 8 A axis 3, a 12 A supercell axis 2). Chosen by the scan
    of :func:`convergence_scan` on rattled Si, Cu, MgO and LiF cells
    (``data/reference/gpaw_convergence/scan_*``, shown in the book's appendix): ionic
    insulators are converged at any density tried, while Si and Cu need ~3 for force errors of
    a few meV/A (at 2, the WBM campaign's cheaper choice, their force slopes are a few per
    cent off). The same scan confirms 520 eV (Si, Cu) and 800 eV with O or F.
``smearing=0.05`` eV Fermi-Dirac; forces are derivatives of the free energy, which is what
    GPAW returns as ``energy`` here (``free_energy``; the extrapolated zero-width energy is
    recorded as ``energy_zero_width``).
``spinpol=False``: spin-paired. Hence chemistries MP treats as magnetic or with +U are
    refused (:data:`REFUSED_ELEMENTS`) unless ``force=True``.
``convergence``: energy 1e-5 eV per valence electron, density 1e-5, eigenstates 1e-8,
    ``maxiter=200``; a label that does not converge raises :class:`SCFNotConvergedError`.

Energies are GPAW total energies *relative to GPAW's isolated-atom references*: they are
not comparable to VASP or MP energies in absolute terms, only differences on one
composition with one setting are meaningful.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms

INSTALL_HINT = "apt-get install -y libxc-dev libopenblas-dev; CC=g++ pip install gpaw"

#: elements MP treats with +U (with O/F) or which are routinely magnetic, plus the f block
MAGNETIC_OR_U = ("Co", "Cr", "Fe", "Mn", "Mo", "Ni", "V", "W")
F_BLOCK = tuple(
    "La Ce Pr Nd Pm Sm Eu Gd Tb Dy Ho Er Tm Yb Lu Ac Th Pa U Np Pu Am Cm Bk Cf Es Fm Md No Lr".split()
)
REFUSED_ELEMENTS = frozenset(MAGNETIC_OR_U + F_BLOCK)
HARD_ELEMENTS = frozenset({"O", "F"})  # trigger the 800 eV cutoff

DEFAULTS: dict[str, Any] = {
    "xc": "PBE",
    "ecut": None,  # None -> 520 eV, 800 eV with O or F
    "ecut_default": 520.0,
    "ecut_hard": 800.0,
    "kpt_density": 3.0,
    "kpts": None,  # explicit (n1, n2, n3) overrides kpt_density
    "smearing": 0.05,
    "spinpol": False,
    "convergence": {"energy": 1e-5, "density": 1e-5, "eigenstates": 1e-8},
    "maxiter": 200,
    "symmetry": "default",  # GPAW default: uses the (rarely non-trivial) symmetry of the frame
    "txt": None,  # GPAW log file; None -> no log
}


class DFTError(RuntimeError):
    """Base class of every labelling error."""


class GPAWUnavailableError(DFTError, ImportError):
    """GPAW cannot be imported here."""


class UnsupportedChemistryError(DFTError, ValueError):
    """The structure needs spin polarisation / +U that this spin-paired PBE setup does not do."""


class SCFNotConvergedError(DFTError):
    """The self-consistent field did not converge; the caller should record and skip."""


class SetupError(DFTError):
    """A PAW setup is missing and could not be generated."""


# --------------------------------------------------------------------------------------
# environment
# --------------------------------------------------------------------------------------

def gpaw_available() -> tuple[bool, str]:
    try:
        import gpaw  # noqa: F401
    except Exception as exc:  # pragma: no cover - environment dependent
        return False, f"GPAW is not importable ({exc}). Install it with: {INSTALL_HINT}"
    return True, f"gpaw {gpaw.__version__}"


def _import_gpaw():
    try:
        import gpaw
    except Exception as exc:
        raise GPAWUnavailableError(
            f"GPAW is not importable ({exc}); DFT labelling needs it. Install it with: {INSTALL_HINT}"
        ) from exc
    return gpaw


def setup_cache_dir() -> Path:
    from . import config

    path = config.cache_dir() / "gpaw-setups"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _register_setup_path() -> None:
    gpaw = _import_gpaw()
    cache = str(setup_cache_dir())
    if cache not in [str(p) for p in gpaw.setup_paths]:
        gpaw.setup_paths.append(cache)  # after GPAW_SETUP_PATH and gpaw-data


def find_setup(symbol: str, xc: str) -> Path | None:
    """The PAW setup file GPAW will use for ``symbol`` with functional ``xc`` (or None)."""
    gpaw = _import_gpaw()
    _register_setup_path()
    for root in gpaw.setup_paths:
        for name in (f"{symbol}.{xc}", f"{symbol}.{xc}.gz"):
            path = Path(root) / name
            if path.is_file():
                return path
    return None


def ensure_setups(symbols, xc: str = "PBE", verbose: bool = True) -> dict[str, Path]:
    """Find (or generate, for functionals gpaw-data lacks) the PAW setups of ``symbols``."""
    out = {}
    for sym in sorted(set(symbols)):
        path = find_setup(sym, xc)
        if path is None:
            path = generate_setup(sym, xc, verbose=verbose)
        out[sym] = path
    return out


def generate_setup(symbol: str, xc: str, verbose: bool = True) -> Path:
    """Generate a PAW setup with GPAW's generator (``gpaw-setup -f <xc> <symbol>``)."""
    _import_gpaw()
    target = setup_cache_dir()
    cmd = [sys.executable, "-c", "import sys; from gpaw.atom.gpaw_setup import main; sys.exit(main())",
           "-f", xc, symbol]
    if verbose:
        print(f"[softening_lib.dft] no {xc} PAW setup for {symbol} in GPAW's setup paths; generating it "
              f"with `gpaw-setup -f {xc} {symbol}` into {target}", file=sys.stderr, flush=True)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, cwd=target, capture_output=True, text=True, env=env)
    path = target / f"{symbol}.{xc}"
    if proc.returncode != 0 or not path.is_file():
        raise SetupError(
            f"could not generate the {xc} PAW setup of {symbol} (gpaw-setup -f {xc} {symbol} in {target}, "
            f"exit {proc.returncode}): {proc.stderr.strip()[-500:]}. Generate it by hand, or put a "
            f"{symbol}.{xc} setup on GPAW_SETUP_PATH."
        )
    return path


def _sha12(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


# --------------------------------------------------------------------------------------
# settings
# --------------------------------------------------------------------------------------

def check_chemistry(atoms: Atoms, force: bool = False) -> None:
    """Refuse chemistries a spin-paired, +U-free PBE label would misdescribe."""
    bad = sorted(set(atoms.get_chemical_symbols()) & REFUSED_ELEMENTS)
    if bad and not force:
        anions = sorted(set(atoms.get_chemical_symbols()) & HARD_ELEMENTS)
        extra = f" together with {'/'.join(anions)} (Materials Project applies +U there)" if anions else ""
        raise UnsupportedChemistryError(
            f"{atoms.get_chemical_formula(mode='metal')} contains {', '.join(bad)}{extra}: these are "
            "magnetic, +U (Co Cr Fe Mn Mo Ni V W in oxides/fluorides) or f-block chemistries, and this "
            "labeller runs spin-paired PBE without +U, so its labels would not be comparable to the "
            "MP-trained models' reference. Pass force=True to label anyway (and say so)."
        )


def forces_vanish_by_symmetry(atoms: Atoms, symprec: float = 1e-5) -> bool:
    """True when every atom sits on a site whose point group leaves no vector invariant
    (e.g. diamond or rock-salt sites), so its force is zero by symmetry alone.

    For each atom, the site-symmetry rotations ``R`` (Cartesian) map the force onto itself;
    the invariant part is ``P F`` with ``P = mean(R)``. When ``P`` vanishes for all atoms no
    DFT code can give a residual force there, whatever its setups or cutoff, and a reference
    calculation on the undisplaced cell can be skipped.
    """
    import spglib

    cell = (np.asarray(atoms.cell), atoms.get_scaled_positions(), atoms.numbers)
    ops = spglib.get_symmetry(cell, symprec=symprec)
    if ops is None:
        return False
    lat = np.asarray(atoms.cell).T  # columns a, b, c: r = lat @ x
    inv = np.linalg.inv(lat)
    frac = atoms.get_scaled_positions()
    for i, x in enumerate(frac):
        site = []
        for rot, tr in zip(ops["rotations"], ops["translations"]):
            d = rot @ x + tr - x
            if np.allclose(d - np.round(d), 0.0, atol=symprec * 10):
                site.append(lat @ rot @ inv)
        if np.abs(np.mean(site, axis=0)).max() > 1e-8:
            return False
    return True


def kpts_from_density(atoms: Atoms, density: float) -> tuple[int, int, int]:
    """Gamma-centred grid ``n_i = ceil(density * 2*pi*|b_i|)`` (non-periodic axes: 1)."""
    recip = atoms.cell.reciprocal()  # without 2*pi
    out = []
    for i in range(3):
        if not atoms.pbc[i]:
            out.append(1)
            continue
        n = math.ceil(density * 2 * math.pi * float(np.linalg.norm(recip[i])) - 1e-6)
        out.append(max(1, n))
    return tuple(out)


def resolve_settings(atoms: Atoms, **settings: Any) -> dict[str, Any]:
    unknown = set(settings) - set(DEFAULTS)
    if unknown:
        raise TypeError(f"unknown DFT setting(s) {sorted(unknown)}; known: {sorted(DEFAULTS)}")
    s = {**DEFAULTS, **settings}
    s["convergence"] = {**DEFAULTS["convergence"], **(settings.get("convergence") or {})}
    if s["ecut"] is None:
        hard = set(atoms.get_chemical_symbols()) & HARD_ELEMENTS
        s["ecut"] = s["ecut_hard"] if hard else s["ecut_default"]
    s["ecut"] = float(s["ecut"])
    s["kpts"] = tuple(int(k) for k in s["kpts"]) if s["kpts"] is not None else kpts_from_density(
        atoms, s["kpt_density"])
    return s


# --------------------------------------------------------------------------------------
# cost model: how long one static takes (queues order their work and report CPU hours by it)
# --------------------------------------------------------------------------------------

#: valence electrons of the gpaw-data PBE setups (elements the book's references use; others 8)
SETUP_VALENCE = {"H": 1, "Li": 1, "Be": 2, "B": 3, "C": 4, "N": 5, "O": 6, "F": 7, "Na": 7, "Mg": 10,
                 "Al": 3, "Si": 4, "P": 5, "S": 6, "Cl": 7, "K": 9, "Ca": 10, "Sc": 11, "Zn": 12, "Ga": 13,
                 "As": 5, "Se": 6, "Br": 7, "Cu": 11, "Ag": 17, "Au": 11, "Pd": 16, "Pt": 16, "Ni": 16,
                 "Sn": 14, "Pb": 14, "Sb": 15, "Te": 6, "I": 7, "Ba": 10, "Sr": 10}
#: t = COST_ITER * n_k(irreducible) * (COST_FFT * n_b * n_pw * log2(8 n_pw) + COST_DENSE * n_b^2 * n_pw)
#: + 10 s: an FFT-bound and a dense-linear-algebra term per band, k-point and SCF iteration.
#: COST_FFT was fitted on a timed Al(111) 6-atom slab (21 IBZ k-points, 4912 plane waves,
#: ~0.24 s CPU per k-point and SCF iteration on one core of the project machine); COST_DENSE
#: assumes ~2 GFLOP/s BLAS. Against the 63 committed surfaces/defects records (2026-11-26) the
#: model is calibrated on average and CPU / estimate spans 0.55-3.3: it cannot see the SCF
#: iteration count (~40 for Al3Sc and Pd(110) against ~15) or FFT grids GPAW enlarges for
#: symmetry (an oblique Al(210) slab); ``tests/test_dft.py`` checks every record with a CPU time.
#: (An FFT term on GPAW's grid formula instead of the plane-wave count fitted worse.)
COST_FFT = 2.2e-7
COST_DENSE = 5.0e-9
COST_ITER = 15
_BOHR = 0.52917721


def irreducible_kpoints(atoms: Atoms, kpts) -> int:
    """Irreducible k-points of a Gamma-centred grid on ``atoms`` (spglib, time reversal)."""
    import spglib

    mapping, _grid = spglib.get_ir_reciprocal_mesh(
        [int(k) for k in kpts], (atoms.cell.array, atoms.get_scaled_positions(), atoms.numbers),
        is_shift=[0, 0, 0], symprec=1e-3)
    return int(len(np.unique(mapping)))


def estimate_cpu_seconds(atoms: Atoms, **settings: Any) -> float:
    """Rough CPU seconds (one core, +/- a factor 2-3) of one static :func:`label` of ``atoms``
    with ``settings`` (those of :func:`resolve_settings`, e.g. ``kpts`` or ``kpt_density``).
    Relaxations cost about ``n_steps / 2`` statics (later steps reuse the wave functions)."""
    s = resolve_settings(atoms, **settings)
    nv = sum(SETUP_VALENCE.get(sym, 8) for sym in atoms.get_chemical_symbols())
    nbands = max(8, int(0.6 * nv + 4))  # about GPAW's default for metals
    kcut = math.sqrt(2 * s["ecut"] / 27.211386)
    npw = abs(atoms.get_volume()) / _BOHR ** 3 * kcut ** 3 / (6 * math.pi ** 2)
    nk = irreducible_kpoints(atoms, s["kpts"])
    return COST_ITER * nk * (COST_FFT * nbands * npw * math.log2(8 * npw)
                             + COST_DENSE * nbands ** 2 * npw) + 10.0


# --------------------------------------------------------------------------------------
# the labeller
# --------------------------------------------------------------------------------------

def _gpaw_has_fftw() -> bool:
    """Was GPAW built with FFTW (``make gpaw`` does so when libfftw3-dev is installed)?
    Same numbers either way; FFTW saves ~10-20 % CPU on 30-atom cells (``scripts/bench_gpaw_fftw.py``)."""
    try:
        from gpaw.fftw import have_fftw
    except ImportError:  # pragma: no cover - older GPAW
        return False
    return bool(have_fftw())


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - someone else's process
        return True
    return True


def _high_priority_waiting(lock_dir: Path) -> bool:
    for marker in lock_dir.glob("gpaw.lock.want-*"):
        try:
            pid = int(marker.name.rsplit("-", 1)[1])
        except ValueError:
            continue
        if pid != os.getpid() and _pid_alive(pid):
            return True
        if not _pid_alive(pid):
            marker.unlink(missing_ok=True)
    return False


@contextlib.contextmanager
def gpaw_lock(priority: str | None = None):
    """One GPAW calculation at a time per machine (per cache dir): an exclusive ``flock``.

    Every :func:`label` holds ``$SOFTENING_CACHE_DIR/gpaw.lock`` while GPAW runs, so a
    campaign, a validation script and a notebook share the CPU by taking turns frame by
    frame instead of oversubscribing it. ``SOFTENING_GPAW_LOCK=0`` switches it off.

    ``priority`` (default ``$SOFTENING_GPAW_LOCK_PRIORITY`` or ``"high"``): a ``"low"``
    process (e.g. the long validation frames) takes the lock only while no ``"high"`` one
    is waiting for it, so it fills the gaps (the campaign's MD) instead of stalling the
    campaign. Yields the seconds spent waiting.
    """
    if os.environ.get("SOFTENING_GPAW_LOCK", "1") == "0":
        yield 0.0
        return
    from . import config

    priority = priority or os.environ.get("SOFTENING_GPAW_LOCK_PRIORITY", "high")
    lock_dir = config.cache_dir()
    path = lock_dir / "gpaw.lock"
    marker = lock_dir / f"gpaw.lock.want-{os.getpid()}"
    with open(path, "a+") as fh:
        t0 = time.time()
        if priority == "low":
            while True:
                if not _high_priority_waiting(lock_dir):
                    try:
                        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        pass
                time.sleep(5.0)
        else:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                fh.seek(0)
                holder = fh.read().strip() or "?"
                print(f"[softening_lib.dft] waiting for the GPAW lock {path} held by pid {holder[:160]} "
                      "(one GPAW calculation at a time on this machine; SOFTENING_GPAW_LOCK=0 bypasses it)",
                      file=sys.stderr, flush=True)
                marker.touch()
                try:
                    fcntl.flock(fh, fcntl.LOCK_EX)
                finally:
                    marker.unlink(missing_ok=True)
        try:
            fh.seek(0)
            fh.truncate()
            fh.write(f"{os.getpid()} {priority} {' '.join(sys.argv)[:200]}\n")
            fh.flush()
            yield time.time() - t0
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
    time.sleep(1.0)  # give a process blocked on the lock the chance to take it


def label(atoms: Atoms, *, force: bool = False, **settings: Any) -> tuple[Atoms, dict[str, Any]]:
    """Label ``atoms`` with a GPAW plane-wave static; returns (labelled copy, settings record).

    The copy carries a SinglePointCalculator with ``energy`` (= free energy), ``forces`` and
    ``stress`` (eV/A^3, ASE sign convention), and ``atoms.info["dft"]`` plus flat
    ``dft_*`` keys with the record. Raises :class:`UnsupportedChemistryError`,
    :class:`SCFNotConvergedError`, :class:`GPAWUnavailableError`.
    """
    from .datasets import labelled
    from .structures import check_result, describe, validate

    validate(atoms)  # StructureError naming the structure, before GPAW sees it
    check_chemistry(atoms, force=force)
    gpaw = _import_gpaw()
    os.environ["OMP_NUM_THREADS"] = "1"  # honoured by BLAS when not yet initialised
    from gpaw import GPAW, PW, FermiDirac

    s = resolve_settings(atoms, **settings)
    setups = ensure_setups(atoms.get_chemical_symbols(), s["xc"])
    work = atoms.copy()
    work.calc = None
    kwargs: dict[str, Any] = dict(
        mode=PW(s["ecut"]),
        xc=s["xc"],
        kpts={"size": s["kpts"], "gamma": True},
        occupations=FermiDirac(s["smearing"]),
        spinpol=bool(s["spinpol"]),
        convergence=dict(s["convergence"]),
        maxiter=int(s["maxiter"]),
        txt=s["txt"],
    )
    if s["symmetry"] != "default":
        kwargs["symmetry"] = s["symmetry"]
    with gpaw_lock() as lock_wait:
        t0 = time.time()
        cpu0 = time.process_time()
        calc = GPAW(**kwargs)
        work.calc = calc
        try:
            free_energy = work.get_potential_energy(force_consistent=True)
            forces = work.get_forces()
            stress = work.get_stress(voigt=True)
        except gpaw.KohnShamConvergenceError as exc:
            raise SCFNotConvergedError(
                f"GPAW SCF did not converge for {atoms.get_chemical_formula(mode='metal')} "
                f"(material {atoms.info.get('material_id', '?')}, frame {atoms.info.get('frame_id', '?')}) "
                f"within maxiter={s['maxiter']} ({exc}); record it and skip this structure"
            ) from exc
        try:
            e0 = float(work.get_potential_energy())
        except Exception:  # pragma: no cover
            e0 = float(free_energy)
        wall = time.time() - t0
        cpu = time.process_time() - cpu0
    try:
        niter = int(calc.get_number_of_iterations())
    except Exception:  # pragma: no cover
        niter = -1
    record = {
        "code": "GPAW",
        "code_version": gpaw.__version__,
        "fft": "FFTW" if _gpaw_has_fftw() else "numpy",
        "python": platform.python_version(),
        "mode": "pw",
        "xc": s["xc"],
        "ecut_eV": s["ecut"],
        "kpts": list(s["kpts"]),
        "kpts_gamma_centred": True,
        "kpt_density_per_A": float(s["kpt_density"]) if settings.get("kpts") is None else None,
        "smearing": f"fermi-dirac {s['smearing']} eV",
        "smearing_eV": float(s["smearing"]),
        "spinpol": bool(s["spinpol"]),
        "convergence": dict(s["convergence"]),
        "maxiter": int(s["maxiter"]),
        "setups": {sym: f"{p.name} sha256:{_sha12(p)}" for sym, p in setups.items()},
        "energy_reference": "GPAW total energy relative to isolated-atom setup references (not VASP-comparable)",
        "energy_is": "free energy (Fermi-Dirac), consistent with forces",
        "energy_zero_width": e0,
        "wall_time_s": round(wall, 2),
        "cpu_time_s": round(cpu, 2),
        "lock_wait_s": round(lock_wait, 1),
        "scf_iterations": niter,
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "forced_chemistry": bool(force and set(atoms.get_chemical_symbols()) & REFUSED_ELEMENTS),
        "host": platform.node(),
    }
    check_result(f"GPAW result for {describe(atoms)}", energy=free_energy, forces=forces, stress=stress)
    out = atoms.copy()
    out.calc = None
    labelled(out, energy=free_energy, forces=forces, stress=stress, **record_to_info(record))
    return out, record


def _same_geometry(a: Atoms, b: Atoms) -> bool:
    return (len(a) == len(b) and list(a.numbers) == list(b.numbers)
            and np.allclose(a.positions, b.positions, atol=1e-6) and np.allclose(a.cell.array, b.cell.array, atol=1e-6))


def label_queue(frames, out: str | Path, *, labeller=None, log=print, **settings: Any) -> list[Atoms]:
    """Label ``frames`` one by one into ``out`` (extxyz), resumable after a kill.

    Finished labels are kept in ``<out stem>.partial.extxyz``, rewritten atomically (unique
    temporary file + ``os.replace``) after every frame. On a restart the partial file is read
    back; a torn or unreadable one, or one holding frames of another queue (different
    geometry), is set aside as ``*.corrupt-<time>`` and the queue starts over (never stops).
    ``out`` is written atomically at the end and the partial file removed. ``labeller``
    replaces :func:`label` (tests); it gets ``(atoms, **settings)``."""
    from ase.io import read, write

    from .cache import atomic_write_text, set_aside

    labeller = labeller or label
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    frames = list(frames)
    partial = out.with_suffix(".partial.extxyz")
    done: list[Atoms] = []
    if partial.is_file():
        try:
            done = read(partial, index=":", format="extxyz")
        except Exception as exc:  # torn by a kill mid-write by an older writer, or a flipped byte
            set_aside(partial, f"unreadable ({type(exc).__name__}: {exc})")
            done = []
        if done and (len(done) > len(frames) or not all(_same_geometry(d, f) for d, f in zip(done, frames))):
            set_aside(partial, "holding frames of another queue")
            done = []
        if done and not all(d.calc is not None and "forces" in d.calc.results for d in done):
            set_aside(partial, "holding frames without labels")
            done = []

    def text(items) -> str:
        import io

        buf = io.StringIO()
        write(buf, items, format="extxyz")
        return buf.getvalue()

    for i, atoms in enumerate(frames):
        if i < len(done):
            continue
        t0 = time.time()
        lab, record = labeller(atoms, **settings)
        lab.info.update({k: v for k, v in atoms.info.items() if k not in lab.info})
        lab.info.update(record_to_info(record))
        done.append(lab)
        atomic_write_text(partial, text(done))
        if log:
            log(f"label_queue {out.name}: {i + 1}/{len(frames)} ({time.time() - t0:.0f} s)")
    atomic_write_text(out, text(done))
    partial.unlink(missing_ok=True)
    return done


def record_to_info(record: dict[str, Any]) -> dict[str, Any]:
    """Flatten a record into extxyz-safe ``atoms.info`` keys (scalars and strings only)."""
    import json

    out = {}
    for key, value in record.items():
        if isinstance(value, (dict, list, tuple)):
            out[f"dft_{key}"] = json.dumps(value, sort_keys=True)
        elif value is None:
            continue
        else:
            out[f"dft_{key}"] = value
    return out


def which_gpaw_setup() -> str | None:  # pragma: no cover - convenience for the CLI
    return shutil.which("gpaw-setup")


# --------------------------------------------------------------------------------------
# convergence scan: what the defaults above rest on (forces against cutoff and k-points)
# --------------------------------------------------------------------------------------

#: cutoffs (eV) scanned at :data:`SCAN_FIXED_KPT_DENSITY`; the largest is the reference
SCAN_CUTOFFS = (400.0, 520.0, 650.0, 800.0, 1000.0, 1200.0)
#: k-point densities (per A^-1) scanned at the material's default cutoff; the largest is the
#: reference. Metals get a denser top point: their forces converge slowest in k.
SCAN_KPT_DENSITIES = (1.5, 2.0, 2.5, 3.0, 4.0, 5.0)
SCAN_KPT_DENSITIES_METAL = (1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0)
SCAN_FIXED_KPT_DENSITY = 2.0  # the WBM campaign's density
SCAN_RATTLE = 0.08  # A, Gaussian, seeded
SCAN_STRAIN = 0.02  # random symmetric strain (max component), so the cell has no symmetry left


def convergence_structures(seed: int = 7) -> dict[str, Atoms]:
    """The structures of the convergence scan (``data/reference/gpaw_convergence/scan_*``):
    Si, Cu, MgO and LiF at PBE-like lattice constants (conventional cubic cells: 8, 4, 8 and 8
    atoms; Cu is the metal), each strained by a seeded random symmetric strain (<= 2 %) and rattled
    (0.08 A), so every force and stress component is non-zero and no symmetry reduces the
    k-points. Deterministic for a given ``seed``."""
    from ase.build import bulk

    cells = {
        "Si": bulk("Si", "diamond", a=5.47, cubic=True),
        "Cu": bulk("Cu", "fcc", a=3.63, cubic=True),
        "MgO": bulk("MgO", "rocksalt", a=4.25, cubic=True),
        "LiF": bulk("LiF", "rocksalt", a=4.07, cubic=True),
    }
    rng = np.random.default_rng(seed)
    out = {}
    for name, atoms in cells.items():
        eps = rng.uniform(-SCAN_STRAIN, SCAN_STRAIN, (3, 3))
        eps = (eps + eps.T) / 2
        atoms.set_cell(atoms.cell.array @ (np.eye(3) + eps), scale_atoms=True)
        atoms.positions += rng.normal(0.0, SCAN_RATTLE, atoms.positions.shape)
        atoms.info.update(material_id=f"scan-{name}", formula=name, metal=name == "Cu")
        out[name] = atoms
    return out


def scan_settings(atoms: Atoms, cutoffs=SCAN_CUTOFFS, kpt_densities=None,
                  fixed_kpt_density: float = SCAN_FIXED_KPT_DENSITY) -> list[dict[str, Any]]:
    """The (ecut, kpt_density) points of the scan of ``atoms``: a cutoff series at
    ``fixed_kpt_density`` and a k-point series at the material's default cutoff; a shared point
    is computed once; ``atoms.info["metal"]`` selects the denser k series by default. Each
    point: ``{"series": [...], "ecut": .., "kpt_density": ..}``."""
    if kpt_densities is None:
        kpt_densities = SCAN_KPT_DENSITIES_METAL if atoms.info.get("metal") else SCAN_KPT_DENSITIES
    default_ecut = resolve_settings(atoms)["ecut"]
    points: dict[tuple[float, float], dict[str, Any]] = {}
    for e in cutoffs:
        points.setdefault((float(e), float(fixed_kpt_density)), {"series": []})["series"].append("ecut")
    for k in kpt_densities:
        points.setdefault((default_ecut, float(k)), {"series": []})["series"].append("kpt_density")
    return [{"ecut": e, "kpt_density": k, **v} for (e, k), v in points.items()]


def _scan_key(ecut: float, kpt_density: float) -> str:
    return f"ecut={ecut:g}|kpt_density={kpt_density:g}"


def convergence_scan(atoms: Atoms, path: str | Path, *, cutoffs=SCAN_CUTOFFS, kpt_densities=None,
                     fixed_kpt_density: float = SCAN_FIXED_KPT_DENSITY, labeller=None,
                     log=print) -> dict[str, Any]:
    """Label ``atoms`` at every point of :func:`scan_settings` (cheapest first) and keep the
    forces, stress and settings record of each in the JSON file ``path``, rewritten atomically
    after every point: a killed scan resumes where it stopped; points already there are not
    recomputed (a file made for another structure is refused). ``labeller`` replaces
    :func:`label` (tests). Returns the file's content; :func:`scan_table` turns it into errors."""
    from .cache import atomic_write_text

    labeller = labeller or label
    path = Path(path)
    sig = hashlib.sha256(np.concatenate([atoms.cell.array.ravel(), atoms.positions.ravel()]).round(8).tobytes()
                         + "".join(atoms.get_chemical_symbols()).encode()).hexdigest()[:16]
    data = json.loads(path.read_text()) if path.is_file() else {}
    if data and data.get("structure_sha") != sig:
        raise ValueError(f"{path} holds a scan of another structure (sha {data.get('structure_sha')} != {sig}); "
                         "move it aside or choose another path")
    data.update({"name": atoms.info.get("formula", atoms.get_chemical_formula()), "structure_sha": sig,
                 "symbols": atoms.get_chemical_symbols(), "cell": atoms.cell.array.tolist(),
                 "positions": atoms.positions.tolist(), "default_ecut": resolve_settings(atoms)["ecut"],
                 "fixed_kpt_density": float(fixed_kpt_density)})
    data.setdefault("points", {})
    points = scan_settings(atoms, cutoffs, kpt_densities, fixed_kpt_density)
    points.sort(key=lambda p: estimate_cpu_seconds(atoms, ecut=p["ecut"], kpt_density=p["kpt_density"]))
    for i, p in enumerate(points, 1):
        key = _scan_key(p["ecut"], p["kpt_density"])
        if key in data["points"]:
            data["points"][key]["series"] = p["series"]
            continue
        lab, rec = labeller(atoms, ecut=p["ecut"], kpt_density=p["kpt_density"])
        data["points"][key] = {**p, "kpts": list(rec.get("kpts", [])), "forces": lab.get_forces().tolist(),
                               "stress": lab.get_stress(voigt=True).tolist(),
                               "cpu_time_s": rec.get("cpu_time_s"), "wall_time_s": rec.get("wall_time_s"),
                               "scf_iterations": rec.get("scf_iterations"), "code_version": rec.get("code_version")}
        atomic_write_text(path, json.dumps(data, indent=1) + "\n")
        if log:
            log(f"[{time.strftime('%H:%M:%S')}] scan {data['name']} {i}/{len(points)}: {key}, kpts {rec.get('kpts')}, "
                f"{rec.get('cpu_time_s', float('nan')):.0f} CPU s")
    atomic_write_text(path, json.dumps(data, indent=1) + "\n")
    return data


def scan_table(data: dict[str, Any]):
    """Errors of every scan point against its series' reference (largest cutoff at the fixed
    k-point density; densest k-grid at the default cutoff): force MAE and largest deviation
    (eV/A), slope through the origin of point against reference forces, largest stress
    deviation (GPa). One row per (series, point)."""
    import pandas as pd
    from ase.units import GPa

    from .metrics import mae, softening_scale

    pts = list(data["points"].values())
    rows = []
    for series in ("ecut", "kpt_density"):
        members = sorted((p for p in pts if series in p["series"]), key=lambda p: p[series])
        if not members:
            continue
        ref = members[-1]
        fr, sr = np.asarray(ref["forces"]).ravel(), np.asarray(ref["stress"])
        for p in members:
            f, s = np.asarray(p["forces"]).ravel(), np.asarray(p["stress"])
            rows.append({"material": data["name"], "series": series, "ecut": p["ecut"],
                         "kpt_density": p["kpt_density"], "kpts": "x".join(map(str, p["kpts"])),
                         "is_reference": p is ref, "force_mae": mae(fr, f),
                         "force_max_dev": float(np.abs(f - fr).max()),
                         "slope_vs_reference": softening_scale(fr, f),
                         "stress_max_dev_GPa": float(np.abs(s - sr).max() / GPa),
                         "max_abs_force_reference": float(np.abs(fr).max()), "cpu_time_s": p.get("cpu_time_s")})
    return pd.DataFrame(rows)
