"""The labelling campaign behind ``load("wbm-he-gpaw")``: WBM compounds, the paper's sampler, GPAW.

Run it (resumable; kill it any time)::

    SOFTENING_DATA_DIR=/work/shared/data OMP_NUM_THREADS=1 \\
        nice -n 5 python -m softening_lib.campaign run --n-compounds 60

    python -m softening_lib.campaign status     # compounds / frames done, timings, failures
    python -m softening_lib.campaign list       # the selection, in campaign order
    python -m softening_lib.campaign run --md-only --md-batch 64 --device cuda   # MD only (e.g. on a GPU);
                                                # a later plain ``run`` labels the sampled frames

For each selected compound: CHGNet NVT MD at 1000 K on the WBM relaxed cell
(:func:`softening_lib.sampling.sample_high_energy`), 10 frames (4 strained by +/-3 % per
lattice vector), each labelled with :func:`softening_lib.dft.label` (GPAW PBE). Output:

* ``data/reference/wbm_he_gpaw/<material_id>.extxyz.gz``: the labelled frames of one
  compound, written once the compound is done (temp file + ``os.replace``), so the
  directory only ever holds complete compounds;
* ``data/reference/wbm_he_gpaw/progress.json``: per compound timings, frame counts and
  failures, rewritten atomically after every compound or failure.

Work in progress (the sampled frames and each finished label) is kept in
``$SOFTENING_CACHE_DIR/wbm_he_gpaw_work/<material_id>/``, so a killed run resumes at the
frame it was on, without re-running the MD and without duplicates. Each work dir holds a
``settings.json`` with every setting that changes a frame or its label (MLIP, MD settings,
base seed, DFT settings, output folder; :func:`work_settings`): a run with other settings
refuses to reuse that work (:class:`CampaignSettingsError`) instead of silently mixing
another campaign's MD frames or labels into its own. Likewise a run refuses an output folder
whose ``progress.json`` records compounds made with other settings.

``--md-batch K`` (default 1: one compound's MD at a time through ASE) runs the MD of the
next ``K`` not-yet-sampled compounds together
(:func:`softening_lib.sampling.sample_high_energy_batch`: one batched CHGNet call per MD
step for all of them), caches each compound's frames in its work directory, then labels
the compounds one by one as before. A batch whose MD fails is redone compound by compound.
A batch's MD checkpoints itself at every frame step to
``$SOFTENING_CACHE_DIR/wbm_he_gpaw_work/md_batch_<hash of its material ids>.npz``
(:func:`batch_checkpoint_path`), so a run killed mid-batch resumes the batch at its last
frame step (bit for bit with a deterministic MLIP, to float32 noise with CHGNet). On a
restart a compound that belongs to an existing checkpoint is sampled with that
checkpoint's batch (whatever ``K`` is now) rather than with the next ``K``; the checkpoint
is deleted once the batch's frames are written. A checkpoint written with other MD settings
is moved aside (``.npz.stale``) and the batch starts over.

Selection rule (:func:`select_compounds`), deterministic: WBM compounds from the 972
relaxed structures with no element in :data:`softening_lib.dft.REFUSED_ELEMENTS`
(magnetic / +U / f block), no H (a 2 fs step is too long for H at 1000 K) or noble gas,
an even number of valence electrons per cell (an odd count is an open shell, e.g. Cu2+ in
Rb2CuCl4, which MP treats spin-polarised and a spin-paired label would misdescribe), at
most ``max_atoms`` atoms, and an estimated GPAW cost (valence electrons, volume, k-points,
cutoff) below ``max_cost``; ordered greedily so that each next compound brings the
chemical elements seen least so far (ties: cheaper first, then material id). When that pool
holds fewer than the compounds asked for, the greedy goes on among the compounds up to 1.5x,
2x, 3x ``max_cost`` (:data:`COST_TIERS`), so a longer selection only appends to a shorter one.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import gzip
import hashlib
import inspect
import io
import json
import math
import os
import re
import shutil
import sys
import time
import traceback
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms

from . import config
from .cache import atomic_write_bytes

DEFAULT_OUT = config.REPO_ROOT / "data" / "reference" / "wbm_he_gpaw"
#: the campaign's DFT settings on top of softening_lib.dft.DEFAULTS: a coarser k-point grid
#: (2.0 per reciprocal A, ~1 k-point per 3 A of period) keeps a frame at 1-3 min on one core;
#: see data/reference/gpaw_convergence/ for what it changes in the forces
CAMPAIGN_DFT = {"kpt_density": 2.0}
DEFAULT_MAX_COST = 30.0
EXCLUDED_EXTRA = frozenset({"H", "He", "Ne", "Ar", "Kr", "Xe", "Rn"})


class CampaignSettingsError(RuntimeError):
    """A run whose settings differ from those of work or output already on disk."""


#: the settings that change a sampled frame or its label (compared between runs)
FRAME_SETTINGS = ("model", "md", "base_seed", "dft")


def work_settings(*, model: str, md: dict[str, Any], base_seed: int, dft_settings: dict[str, Any],
                  out: Path | str) -> dict[str, Any]:
    """Everything that changes a compound's MD frames or their labels, JSON-normalised."""
    return json.loads(json.dumps({"model": model, "md": md, "base_seed": int(base_seed), "dft": dft_settings,
                                  "out": str(Path(out).resolve())}, sort_keys=True, default=_json_default))


def settings_hash(ws: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(ws, sort_keys=True).encode()).hexdigest()[:12]


def _diff(old: dict[str, Any], new: dict[str, Any], keys=None) -> list[str]:
    keys = keys or sorted(set(old) | set(new))
    return [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys if old.get(k) != new.get(k)]


def _legacy_frame_settings(work: Path) -> dict[str, Any]:
    """What the frames in a work dir made before settings.json say about their MD settings."""
    path = work / "sampled.extxyz"
    if not path.is_file():
        return {}
    try:
        info = read_extxyz(path)[0].info
    except Exception:
        return {}
    return {k: info.get(k) for k in ("md_model", "md_seed", "md_timestep_fs", "md_temperature_K", "md_thermostat")}


def check_work_dir(material_id: str, ws: dict[str, Any]) -> Path:
    """The work dir of ``material_id`` if it holds nothing or work made with settings ``ws``;
    otherwise :class:`CampaignSettingsError` naming the compound and the settings that differ."""
    from .cache import read_json, safe_name

    work = work_root() / safe_name(material_id, "material_id")
    if not work.is_dir():
        return work
    has_work = (work / "sampled.extxyz").is_file() or any(work.glob("frame_*"))
    stored = read_json(work / "settings.json", None)
    if stored is not None and has_work and stored != ws:
        raise CampaignSettingsError(
            f"{material_id}: its work dir {work} holds MD frames/labels made with other settings "
            f"({'; '.join(_diff(stored, ws))}); refusing to mix them. Finish that campaign with its own "
            f"settings, or delete {work} to start this compound over")
    if stored is None and has_work:  # a work dir from before settings.json: check what the frames say
        legacy = _legacy_frame_settings(work)
        expected = {"md_model": ws["model"], "md_seed": seed_for(material_id, ws["base_seed"]),
                    "md_timestep_fs": float(ws["md"]["timestep_fs"]), "md_temperature_K": float(ws["md"]["temperature_K"]),
                    "md_thermostat": ws["md"]["thermostat"]}
        differ = [f"{k}: {legacy[k]!r} -> {expected[k]!r}" for k in expected
                  if legacy.get(k) is not None and legacy[k] != expected[k]]
        if differ:
            raise CampaignSettingsError(
                f"{material_id}: its work dir {work} (made before settings.json) holds MD frames made with other "
                f"settings ({'; '.join(differ)}); refusing to mix them. Delete {work} to start this compound over")
    return work


def claim_work_dir(material_id: str, ws: dict[str, Any]) -> Path:
    """:func:`check_work_dir`, then create it and record ``ws`` in its ``settings.json``."""
    work = check_work_dir(material_id, ws)
    work.mkdir(parents=True, exist_ok=True)
    atomic_write_json(work / "settings.json", ws)
    return work


def check_progress_settings(progress: dict[str, Any], ws: dict[str, Any], out: Path) -> None:
    """Refuse an output folder whose compounds were made with other frame settings."""
    old = progress.get("settings") or {}
    if not progress.get("compounds") or not old:
        return
    old_ws = {"model": old.get("model"), "md": old.get("md"), "base_seed": old.get("base_seed"), "dft": old.get("dft")}
    new_ws = {k: ws[k] for k in FRAME_SETTINGS}
    differ = _diff(old_ws, new_ws, FRAME_SETTINGS)
    if differ:
        raise CampaignSettingsError(
            f"{out} already holds {len(progress['compounds'])} compounds made with other settings "
            f"({'; '.join(differ)}); refusing to mix them in one dataset. Use another --out for these settings, "
            "or run with the recorded ones (progress.json 'settings')")


def work_root() -> Path:
    path = config.cache_dir() / "wbm_he_gpaw_work"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _log(msg: str) -> None:
    print(f"[{time.strftime('%Y-%m-%d %H:%M:%S')}] {msg}", flush=True)


# --------------------------------------------------------------------------------------
# selection
# --------------------------------------------------------------------------------------

_VALENCE_CACHE: dict[str, int] = {}


def valence_electrons(symbol: str, xc: str = "PBE") -> int:
    """Valence electrons of GPAW's setup (read from the setup file header)."""
    if symbol not in _VALENCE_CACHE:
        from .dft import find_setup

        path = find_setup(symbol, xc)
        if path is None:
            raise FileNotFoundError(f"no {xc} setup for {symbol}")
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt") as fh:
            head = fh.read(4000)
        m = re.search(r'valence="([0-9.]+)"', head)
        _VALENCE_CACHE[symbol] = int(round(float(m.group(1)))) if m else 8
    return _VALENCE_CACHE[symbol]


def estimated_cost(atoms: Atoms, **dft_settings: Any) -> float:
    """A relative GPAW cost: k-points/2 x plane waves x bands^2 (arbitrary units)."""
    from .dft import resolve_settings

    s = resolve_settings(atoms, **dft_settings)
    n_e = sum(valence_electrons(x) for x in atoms.get_chemical_symbols())
    n_pw = atoms.get_volume() * s["ecut"] ** 1.5
    n_k = max(1.0, np.prod(s["kpts"]) / 2.0)
    n_bands = max(8.0, 0.6 * n_e + 4)
    return float(n_k * n_pw * n_bands**2 / 1e9)


def candidate_table(max_atoms: int = 8, **dft_settings: Any):
    import pandas as pd

    from . import datasets
    from .dft import REFUSED_ELEMENTS

    rows = []
    for atoms in datasets.load("wbm-equilibrium"):
        symbols = set(atoms.get_chemical_symbols())
        reason = ""
        if symbols & REFUSED_ELEMENTS:
            reason = "magnetic/+U/f-block: " + " ".join(sorted(symbols & REFUSED_ELEMENTS))
        elif symbols & EXCLUDED_EXTRA:
            reason = "H or noble gas: " + " ".join(sorted(symbols & EXCLUDED_EXTRA))
        elif len(atoms) > max_atoms:
            reason = f"{len(atoms)} atoms > {max_atoms}"
        elif sum(valence_electrons(x) for x in atoms.get_chemical_symbols()) % 2:
            reason = "odd number of valence electrons (open shell: a spin-paired label is questionable)"
        cost = estimated_cost(atoms, **dft_settings) if not reason else math.nan
        rows.append({"material_id": atoms.info["material_id"], "formula": atoms.info["formula"],
                     "n_atoms": len(atoms), "elements": " ".join(sorted(symbols)),
                     "cost": cost, "excluded": reason})
    return pd.DataFrame(rows)


#: If fewer than ``n`` compounds cost at most ``max_cost``, the selection goes on among those up
#: to these multiples of ``max_cost``, one tier after the other (the 30-unit pool of 8-atom cells
#: holds 54 compounds; 60 need the 1.5x tier)
COST_TIERS = (1.0, 1.5, 2.0, 3.0)


def select_compounds(n: int, max_atoms: int = 8, max_cost: float = DEFAULT_MAX_COST,
                     **dft_settings: Any) -> list[str]:
    """The campaign's compounds, in order (see the module docstring for the rule).

    Greedy within the cheapest tier (cost <= ``max_cost``) first; when that pool runs out
    before ``n``, the greedy goes on (same element counts) in the next tier of
    :data:`COST_TIERS`. A selection of ``n`` is therefore always the first ``n`` of any
    larger one: growing the campaign never drops a compound already labelled.

    Costs are estimated with the campaign's DFT settings (:data:`CAMPAIGN_DFT`, overridden by
    ``dft_settings``): the library's default k-point density ranks the compounds differently."""
    table = candidate_table(max_atoms=max_atoms, **{**CAMPAIGN_DFT, **dft_settings})
    ok = table[table.excluded == ""].sort_values(["cost", "material_id"])
    seen: Counter = Counter()
    chosen: list[str] = []
    lower = -math.inf
    for factor in COST_TIERS:
        upper = factor * max_cost
        remaining = list(ok[(ok.cost > lower) & (ok.cost <= upper)].itertuples())
        lower = upper
        while remaining and len(chosen) < n:
            best = min(remaining, key=lambda r: (sum(seen[e] for e in r.elements.split()) / len(r.elements.split()),
                                                 r.cost, r.material_id))
            remaining.remove(best)
            chosen.append(best.material_id)
            seen.update(best.elements.split())
    return chosen


# --------------------------------------------------------------------------------------
# io helpers
# --------------------------------------------------------------------------------------

def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=1, sort_keys=True, default=_json_default) + "\n").encode())


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def frames_to_extxyz(frames: list[Atoms]) -> str:
    from ase.io import write

    buf = io.StringIO()
    write(buf, frames, format="extxyz")
    return buf.getvalue()


def read_extxyz(path: Path) -> list[Atoms]:
    from ase.io import read

    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as fh:
        return read(fh, index=":", format="extxyz")


def load_progress(out: Path) -> dict[str, Any]:
    path = out / "progress.json"
    if path.is_file():
        return json.loads(path.read_text())
    return {"compounds": {}, "failures": {}}


def seed_for(material_id: str, base_seed: int = 0) -> int:
    digest = hashlib.sha256(f"{base_seed}:{material_id}".encode()).hexdigest()
    return int(digest[:8], 16)


# --------------------------------------------------------------------------------------
# one compound
# --------------------------------------------------------------------------------------

def sampled_path(material_id: str) -> Path:
    """Where a compound's sampled (unlabelled) MD frames are cached until it is done."""
    return work_root() / material_id / "sampled.extxyz"


_CHECKPOINT_RE = re.compile(r"^md_batch_[0-9a-f]{16}\.npz$")


def batch_checkpoint_path(material_ids: list[str]) -> Path:
    """The MD checkpoint of the batch of ``material_ids`` (in batch order) in the work dir."""
    digest = hashlib.sha256("\n".join(material_ids).encode()).hexdigest()[:16]
    return work_root() / f"md_batch_{digest}.npz"


def batch_checkpoints() -> dict[Path, dict[str, Any]]:
    """{path: metadata} of the batch MD checkpoints in the work dir (unreadable ones skipped)."""
    from .sampling import CheckpointMismatchError, read_checkpoint_meta

    found = {}
    for path in sorted(work_root().iterdir()):
        if not _CHECKPOINT_RE.match(path.name):
            continue
        try:
            found[path] = read_checkpoint_meta(path)
        except CheckpointMismatchError as exc:
            _log(f"campaign: ignoring {path}: {exc}")
    return found


def sample_batch(compounds: list[Atoms], *, model: str, md: dict[str, Any], base_seed: int,
                 calculator=None, checkpoint: Path | None = None, write: set[str] | None = None,
                 device: str = "cpu") -> None:
    """The MD of several compounds in one lock-step run; each compound's frames are written
    atomically to :func:`sampled_path` (what :func:`run_compound` then reuses).

    ``checkpoint``: the run's checkpoint file (resumed if it is there, deleted once all
    frames are written). ``write``: the material ids whose frames to write (default all)."""
    from .sampling import sample_high_energy_batch

    ids = [a.info["material_id"] for a in compounds]
    seeds = [seed_for(m, base_seed) for m in ids]
    names = ", ".join(f"{m} {a.info.get('formula', '')}" for m, a in zip(ids, compounds))
    _log(f"batched MD of {len(ids)} compounds ({names}): "
         f"{model} NVT {md['temperature_K']:.0f} K, {md['total_time_ps']} ps, dt {md['timestep_fs']} fs")
    batches = sample_high_energy_batch(compounds, model=model, calculator=calculator, seeds=seeds, log_every=1,
                                       checkpoint=checkpoint, **md)
    for mid, frames in zip(ids, batches):
        if write is None or mid in write:
            for f in frames:
                f.info["md_device"] = device
            sampled_path(mid).parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(sampled_path(mid), frames_to_extxyz(frames).encode())
    if checkpoint is not None:
        checkpoint.unlink(missing_ok=True)
    _log(f"batched MD done in {float(batches[0][0].info['md_batch_wall_time_s']):.0f} s "
         f"({float(batches[0][0].info['md_wall_time_s']):.0f} s per compound)")


def sample_compound(atoms: Atoms, *, model: str, md: dict[str, Any], base_seed: int, calculator=None,
                    device: str = "cpu") -> list[Atoms]:
    """One compound's MD on its own (:func:`softening_lib.sampling.sample_high_energy`); the
    frames (``info["md_device"]`` says where the MD ran) are written atomically to
    :func:`sampled_path`, where :func:`run_compound` picks them up."""
    from .sampling import sample_high_energy

    mid = atoms.info["material_id"]
    seed = seed_for(mid, base_seed)
    _log(f"{mid} {atoms.info['formula']} ({len(atoms)} atoms): {model} NVT MD "
         f"{md['temperature_K']:.0f} K, {md['total_time_ps']} ps, dt {md['timestep_fs']} fs, seed {seed}, {device}")
    if calculator is None:
        from .models import get_calculator

        calculator = get_calculator(model, device=device)
    frames = sample_high_energy(atoms, model=model, calculator=calculator, seed=seed, log_every=1, **md)
    for f in frames:
        f.info["md_device"] = device
    sampled_path(mid).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(sampled_path(mid), frames_to_extxyz(frames).encode())
    _log(f"{mid}: MD done in {float(frames[0].info['md_wall_time_s']):.0f} s")
    return frames


def run_compound(atoms: Atoms, out: Path, *, model: str, md: dict[str, Any], dft_settings: dict[str, Any],
                 base_seed: int, calculator=None) -> dict[str, Any]:
    from .dft import SCFNotConvergedError, label

    mid = atoms.info["material_id"]
    work = claim_work_dir(mid, work_settings(model=model, md=md, base_seed=base_seed,
                                             dft_settings=dft_settings, out=out))
    sampled = sampled_path(mid)
    seed = seed_for(mid, base_seed)
    t0 = time.time()
    md_wall = 0.0
    if sampled.is_file():
        frames = read_extxyz(sampled)
        batch_note = (f" (batched MD of {frames[0].info['md_batch_size']} compounds)"
                      if "md_batch_size" in frames[0].info else "")
        _log(f"{mid}: reusing the {len(frames)} sampled frames in {sampled}{batch_note}")
        md_wall = float(frames[0].info.get("md_wall_time_s", 0.0))
    else:
        frames = sample_compound(atoms, model=model, md=md, base_seed=base_seed, calculator=calculator)
        md_wall = float(frames[0].info["md_wall_time_s"])
    labelled_frames: list[Atoms] = []
    failures = []
    dft_wall = 0.0
    for frame in frames:
        k = int(frame.info["frame_id"])
        done_path = work / f"frame_{k:02d}.extxyz"
        fail_path = work / f"frame_{k:02d}.failed.json"
        if done_path.is_file():
            labelled_frames.append(read_extxyz(done_path)[0])
            dft_wall += float(labelled_frames[-1].info.get("dft_wall_time_s", 0.0))
            continue
        if fail_path.is_file():
            failures.append(json.loads(fail_path.read_text()))
            continue
        try:
            lab, rec = label(frame, **dft_settings)
        except SCFNotConvergedError as exc:
            info = {"frame_id": k, "error": "SCFNotConvergedError", "message": str(exc)}
            atomic_write_json(fail_path, info)
            failures.append(info)
            _log(f"{mid}: frame {k} FAILED (SCF not converged), skipped")
            continue
        lab.info["dataset"] = "wbm-he-gpaw"
        lab.info["material_id"] = mid
        atomic_write_bytes(done_path, frames_to_extxyz([lab]).encode())
        labelled_frames.append(lab)
        dft_wall += rec["wall_time_s"]
        fmax = float(np.linalg.norm(lab.get_forces(), axis=1).max())  # largest force on an atom
        how = ("strained " + "/".join(f"{float(frame.info[f'strain_{v}']):+.0%}" for v in "abc")
               if frame.info["strained"] else "unstrained")
        _log(f"{mid}: frame {k} {how} "
             f"labelled in {rec['wall_time_s']:.0f} s ({rec['scf_iterations']} SCF it., kpts {rec['kpts']}, "
             f"{rec['ecut_eV']:.0f} eV), max |F| {fmax:.2f} eV/A")
    labelled_frames.sort(key=lambda a: int(a.info["frame_id"]))
    summary = {
        "formula": atoms.info["formula"], "n_atoms": len(atoms),
        "n_frames": len(labelled_frames), "n_failed": len(failures), "failures": failures,
        "md_wall_s": round(md_wall, 1), "dft_wall_s": round(dft_wall, 1),
        "s_per_frame": round(dft_wall / max(1, len(labelled_frames)), 1),
        "md_seed": seed, "md_total_time_ps": float(frames[0].info["md_total_time_ps"]),
        "md_batch_size": int(frames[0].info.get("md_batch_size", 1)),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "session_wall_s": round(time.time() - t0, 1),
    }
    if labelled_frames:
        data = gzip.compress(frames_to_extxyz(labelled_frames).encode(), mtime=0)
        atomic_write_bytes(out / f"{mid}.extxyz.gz", data)
    shutil.rmtree(work, ignore_errors=True)
    return summary


# --------------------------------------------------------------------------------------
# the campaign
# --------------------------------------------------------------------------------------

@contextlib.contextmanager
def exclusive_run(out: Path):
    """Hold an exclusive ``flock`` for the campaign writing to ``out`` (lock file in the
    cache dir, keyed on the resolved path), so two ``campaign run`` processes never label the same
    frames twice or race on ``progress.json``; a second one fails at once and says who holds it.
    The lock dies with its process, so a killed run never leaves a stale lock behind."""
    import fcntl

    key = hashlib.sha1(str(Path(out).resolve()).encode()).hexdigest()[:12]
    path = config.cache_dir() / f"campaign-{key}.lock"  # beside gpaw.lock, not among the work dirs
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            raise RuntimeError(f"a campaign run is already writing to {out} ({holder}; lock {path}): "
                               "wait for it to finish or stop it, then run again (it resumes)") from None
        try:
            fh.seek(0)
            fh.truncate()
            fh.write(f"pid {os.getpid()}")
            fh.flush()
            yield path
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _one_run_per_output(fn):
    """Run ``fn`` (whose argument ``out`` is the output folder) inside :func:`exclusive_run`."""
    sig = inspect.signature(fn)

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        bound = sig.bind(*args, **kwargs)
        bound.apply_defaults()
        with exclusive_run(Path(bound.arguments["out"])):
            return fn(*args, **kwargs)

    return wrapper


@_one_run_per_output
def run(n_compounds: int = 60, out: Path = DEFAULT_OUT, *, max_atoms: int = 8, max_cost: float = DEFAULT_MAX_COST,
        model: str = "chgnet-0.3.0", total_time_ps: float = 20.0, timestep_fs: float = 2.0,
        thermostat: str = "berendsen", base_seed: int = 0, max_hours: float | None = None,
        only: list[str] | None = None, dft_settings: dict[str, Any] | None = None,
        md_batch: int = 1, md_only: bool = False, device: str = "cpu") -> dict[str, Any]:
    """Label the selection (resumable). ``md_batch=K > 1``: the MD of the next ``K`` compounds
    not yet sampled runs as one batch (:func:`sample_batch`) before they are labelled.

    ``md_only``: run only the MD of every compound not yet sampled and leave the frames in the
    work dirs (no GPAW), e.g. on a GPU machine (``device="cuda"``: the MLIP runs there; the
    frames record it in ``info["md_device"]``); a later run without ``md_only`` labels them."""
    from . import datasets

    if int(md_batch) < 1:
        raise ValueError(f"md_batch must be >= 1, got {md_batch}")
    md_batch = int(md_batch)
    if md_batch > 1 and thermostat.lower() != "berendsen":
        raise ValueError(f"--md-batch > 1 implements only the berendsen thermostat, not {thermostat!r}")
    os.environ["OMP_NUM_THREADS"] = "1"
    try:
        import torch

        torch.set_num_threads(1)
    except Exception:  # pragma: no cover
        pass
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    dft_settings = {**CAMPAIGN_DFT, **(dft_settings or {})}
    md = {"temperature_K": 1000.0, "total_time_ps": float(total_time_ps), "timestep_fs": float(timestep_fs),
          "n_frames": 10, "n_strained": 4, "strain": 0.03, "thermostat": thermostat}
    ws = work_settings(model=model, md=md, base_seed=base_seed, dft_settings=dft_settings, out=out)
    check_progress_settings(load_progress(out), ws, out)  # before anything is computed
    if only:
        from .cache import safe_name

        for m in only:
            safe_name(m, "material id in --only")
    ids = list(only) if only else select_compounds(n_compounds, max_atoms=max_atoms, max_cost=max_cost,
                                                   **dft_settings)
    progress = load_progress(out)
    progress["settings"] = {"model": model, "md": md, "dft": dft_settings, "dft_defaults": "softening_lib.dft.DEFAULTS",
                            "max_atoms": max_atoms, "max_cost": max_cost, "base_seed": base_seed,
                            "md_batch": md_batch, "selection": ids}
    structures = {a.info["material_id"]: a for a in datasets.load("wbm-equilibrium", subset=ids)}
    todo = [m for m in ids if not (out / f"{m}.extxyz.gz").is_file() and m not in progress["failures"]]
    for m in todo:  # refuse another campaign's work before computing anything
        check_work_dir(m, ws)
    done_before = len(ids) - len(todo)
    _log(f"campaign: {len(ids)} compounds selected, {done_before} already done/failed, {len(todo)} to go; "
         f"output {out}")
    calc = None
    no_batch: set[str] = set()  # compounds whose batched MD failed: sampled one by one

    def finished(m: str) -> bool:
        return (out / f"{m}.extxyz.gz").is_file() or m in load_progress(out)["failures"]

    def needs_md(m: str) -> bool:
        return not sampled_path(m).is_file() and not finished(m)

    if md_batch > 1:  # checkpoints left by a kill between a batch's last frame write and its deletion
        for path, meta in batch_checkpoints().items():
            if not any(needs_md(m) for m in meta["settings"]["names"]):
                _log(f"campaign: removing {path.name}: all its compounds are sampled or done")
                path.unlink(missing_ok=True)
    t_start = time.time()
    for i, mid in enumerate(todo):
        if max_hours is not None and time.time() - t_start > max_hours * 3600:
            _log(f"campaign: stopping after {max_hours} h as asked")
            break
        if calc is None:
            from .models import get_calculator

            calc = get_calculator(model, **({"device": device} if device != "cpu" else {}))
        if md_batch > 1 and mid not in no_batch and not sampled_path(mid).is_file():
            pending = [m for m in todo[i:] if m not in no_batch and not sampled_path(m).is_file()][:md_batch]
            for path, meta in batch_checkpoints().items():  # prefer resuming a killed batch
                names = list(meta["settings"]["names"])
                if mid in names and all(m in structures for m in names) and not set(names) & no_batch:
                    if names != pending:
                        _log(f"campaign: resuming the checkpointed batch {', '.join(names)} ({path.name}, "
                             f"step {meta['step']}/{meta['settings']['n_steps']}) instead of {', '.join(pending)}")
                    pending = names
                    break
            ckpt = batch_checkpoint_path(pending)
            try:
                from .sampling import CheckpointMismatchError

                for m in pending:
                    if needs_md(m):
                        claim_work_dir(m, ws)
                kw = dict(model=model, md=md, base_seed=base_seed, calculator=calc, checkpoint=ckpt,
                          write={m for m in pending if needs_md(m)}, device=device)
                try:
                    sample_batch([structures[m] for m in pending], **kw)
                except CheckpointMismatchError as exc:
                    stale = ckpt.with_name(ckpt.name + ".stale")
                    os.replace(ckpt, stale)
                    _log(f"campaign: {exc} Moved it to {stale.name}; starting the batch over")
                    sample_batch([structures[m] for m in pending], **kw)
            except KeyboardInterrupt:
                raise
            except Exception as exc:
                no_batch.update(pending)
                ckpt.unlink(missing_ok=True)  # these compounds are now sampled one by one
                _log(f"campaign: batched MD of {', '.join(pending)} FAILED ({type(exc).__name__}: {exc}); "
                     f"sampling these compounds one by one")
        if md_only:
            if not sampled_path(mid).is_file():
                claim_work_dir(mid, ws)
                try:
                    sample_compound(structures[mid], model=model, md=md, base_seed=base_seed, calculator=calc,
                                    device=device)
                except KeyboardInterrupt:
                    raise
                except Exception as exc:  # the labelling run meets it again and records it
                    _log(f"campaign: MD of {mid} FAILED ({type(exc).__name__}: {exc}); left for the labelling run")
            continue
        _log(f"campaign: compound {done_before + i + 1}/{len(ids)}: {mid}")
        try:
            summary = run_compound(structures[mid], out, model=model, md=md, dft_settings=dft_settings,
                                   base_seed=base_seed, calculator=calc)
        except (KeyboardInterrupt, CampaignSettingsError):
            raise
        except Exception as exc:  # record and go on
            from .dft import UnsupportedChemistryError

            progress = load_progress(out)
            progress["failures"][mid] = {"error": type(exc).__name__, "message": str(exc)[:2000],
                                         "traceback": traceback.format_exc()[-3000:],
                                         "when": time.strftime("%Y-%m-%dT%H:%M:%S")}
            atomic_write_json(out / "progress.json", progress)
            _log(f"campaign: {mid} FAILED ({type(exc).__name__}: {exc}); recorded in progress.json")
            if isinstance(exc, UnsupportedChemistryError):
                continue
            continue
        progress = load_progress(out)
        progress["compounds"][mid] = summary
        progress["totals"] = _totals(progress)
        progress["settings"] = progress.get("settings") or {}
        progress["settings"].update({"model": model, "md": md, "dft": dft_settings, "dft_defaults": "softening_lib.dft.DEFAULTS",
                                     "max_atoms": max_atoms, "max_cost": max_cost, "base_seed": base_seed,
                                     "md_batch": md_batch})
        atomic_write_json(out / "progress.json", progress)
        t = progress["totals"]
        _log(f"campaign: {mid} done: {summary['n_frames']} frames, {summary['s_per_frame']} s/frame, "
             f"MD {summary['md_wall_s']} s. Totals: {t['compounds']} compounds, {t['frames']} frames, "
             f"{t['cpu_hours']:.2f} h")
    return load_progress(out)


# --------------------------------------------------------------------------------------
# the campaign on the Dask executor: MD and labels as separate tasks
# --------------------------------------------------------------------------------------

def _md_task(ids: list[str], ws: dict[str, Any], model: str, md: dict[str, Any], base_seed: int,
             device: str) -> list[str]:
    """One MD task (a Dask task): the MD of ``ids`` (lock-step when more than one), each
    compound's frames written atomically to :func:`sampled_path`."""
    from . import datasets

    os.environ["SOFTENING_DEVICE"] = device  # predict.calculator's device for the batched MD
    need = [m for m in ids if not sampled_path(m).is_file()]
    if not need:
        return ids
    for m in need:
        claim_work_dir(m, ws)
    structures = {a.info["material_id"]: a for a in datasets.load("wbm-equilibrium", subset=ids)}
    if len(ids) > 1:
        sample_batch([structures[m] for m in ids], model=model, md=md, base_seed=base_seed,
                     checkpoint=batch_checkpoint_path(ids), write=set(need), device=device)
    else:
        sample_compound(structures[ids[0]], model=model, md=md, base_seed=base_seed, device=device)
    return ids


def _md_done(out: Path, ids: list[str]) -> bool:
    return all(sampled_path(m).is_file() or (out / f"{m}.extxyz.gz").is_file() for m in ids)


def _frame_paths(mid: str, k: int) -> tuple[Path, Path]:
    from .cache import safe_name

    work = work_root() / safe_name(mid, "material_id")
    return work / f"frame_{k:02d}.extxyz", work / f"frame_{k:02d}.failed.json"


def _label_done(out: Path, item: tuple[str, int]) -> bool:
    mid, k = item
    done_path, fail_path = _frame_paths(mid, k)
    return done_path.is_file() or fail_path.is_file() or (out / f"{mid}.extxyz.gz").is_file()


def _label_task(ws: dict[str, Any], dft_settings: dict[str, Any], labeller, item: tuple[str, int]) -> str:
    """One label task (a Dask task): frame ``k`` of compound ``mid``, written atomically to the
    compound's work dir as :func:`run_compound` does (an SCF failure as ``frame_kk.failed.json``)."""
    from .dft import SCFNotConvergedError, label

    mid, k = item
    claim_work_dir(mid, ws)
    done_path, fail_path = _frame_paths(mid, k)
    frame = next(f for f in read_extxyz(sampled_path(mid)) if int(f.info["frame_id"]) == k)
    try:
        lab, rec = (labeller or label)(frame, **dft_settings)
    except SCFNotConvergedError as exc:
        atomic_write_json(fail_path, {"frame_id": k, "error": "SCFNotConvergedError", "message": str(exc)})
        return "failed"
    lab.info["dataset"] = "wbm-he-gpaw"
    lab.info["material_id"] = mid
    atomic_write_bytes(done_path, frames_to_extxyz([lab]).encode())
    _log(f"{mid}: frame {k} labelled in {rec.get('wall_time_s', 0):.0f} s (dask)")
    return "done"


def run_dask(n_compounds: int = 60, out: Path = DEFAULT_OUT, *, scheduler: Any = None, workers: int | None = None,
             max_atoms: int = 8, max_cost: float = DEFAULT_MAX_COST, model: str = "chgnet-0.3.0",
             total_time_ps: float = 20.0, timestep_fs: float = 2.0, thermostat: str = "berendsen",
             base_seed: int = 0, only: list[str] | None = None, dft_settings: dict[str, Any] | None = None,
             md_batch: int = 1, device: str = "cpu", labeller=None, progress: bool = True) -> dict[str, Any]:
    """:func:`run` on the Dask executor (:mod:`softening_lib.executor`): the MD (``md_batch``
    compounds per task) and every frame's label are separate tasks, so N workers label N frames at
    once; then :func:`run` (in this process) assembles each finished compound's
    ``<material_id>.extxyz.gz`` and ``progress.json`` from the work dirs (no computing left but
    what failed in a worker). Same files, same resume rules as :func:`run`; a killed worker's task
    runs again elsewhere. ``labeller`` replaces :func:`softening_lib.dft.label` (tests; it must pickle)."""
    from functools import partial

    from . import executor
    from .devices import resolve

    device = resolve(device)
    dft_settings = {**CAMPAIGN_DFT, **(dft_settings or {})}
    md = {"temperature_K": 1000.0, "total_time_ps": float(total_time_ps), "timestep_fs": float(timestep_fs),
          "n_frames": 10, "n_strained": 4, "strain": 0.03, "thermostat": thermostat}
    if md_batch > 1 and thermostat.lower() != "berendsen":
        raise ValueError(f"--md-batch > 1 implements only the berendsen thermostat, not {thermostat!r}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ws = work_settings(model=model, md=md, base_seed=base_seed, dft_settings=dft_settings, out=out)
    with exclusive_run(out):
        check_progress_settings(load_progress(out), ws, out)
        ids = list(only) if only else select_compounds(n_compounds, max_atoms=max_atoms, max_cost=max_cost,
                                                       **dft_settings)
        failures = load_progress(out)["failures"]
        todo = [m for m in ids if not (out / f"{m}.extxyz.gz").is_file() and m not in failures]
        for m in todo:
            check_work_dir(m, ws)
        needs_md = [m for m in todo if not sampled_path(m).is_file()]
        groups = [needs_md[i:i + md_batch] for i in range(0, len(needs_md), md_batch)]
        with executor.client_for(scheduler, workers, env=executor.GPAW_ENV) as client:
            executor.run_queue(groups, partial(_md_task, ws=ws, model=model, md=md, base_seed=base_seed,
                                               device=device), key=lambda g: "md-" + "+".join(g),
                               done=partial(_md_done, out), client=client, progress=progress, desc="campaign-md")
            items = [(m, int(f.info["frame_id"])) for m in todo if sampled_path(m).is_file()
                     for f in read_extxyz(sampled_path(m))]
            executor.run_queue(items, partial(_label_task, ws, dft_settings, labeller), key=lambda it: it,
                               done=partial(_label_done, out), client=client, progress=progress,
                               desc="campaign-label")
    return run(n_compounds, out, max_atoms=max_atoms, max_cost=max_cost, model=model, total_time_ps=total_time_ps,
               timestep_fs=timestep_fs, thermostat=thermostat, base_seed=base_seed, only=only,
               dft_settings=dft_settings, md_batch=md_batch, device=device)


def _totals(progress: dict[str, Any]) -> dict[str, Any]:
    comps = progress["compounds"].values()
    frames = sum(c["n_frames"] for c in comps)
    dft = sum(c["dft_wall_s"] for c in comps)
    md = sum(c["md_wall_s"] for c in comps)
    return {"compounds": len(progress["compounds"]), "frames": frames,
            "failed_compounds": len(progress["failures"]),
            "failed_frames": sum(c["n_failed"] for c in comps),
            "dft_wall_s": round(dft, 1), "md_wall_s": round(md, 1),
            "s_per_frame_mean": round(dft / max(1, frames), 1),
            "cpu_hours": round((dft + md) / 3600, 3)}


def status(out: Path = DEFAULT_OUT) -> str:
    progress = load_progress(Path(out))
    lines = []
    t = _totals(progress)
    lines.append(f"{t['compounds']} compounds, {t['frames']} frames done; {t['failed_compounds']} compounds and "
                 f"{t['failed_frames']} frames failed; {t['s_per_frame_mean']} s per frame (DFT wall), "
                 f"{t['cpu_hours']:.2f} h MD+DFT wall")
    for mid, c in sorted(progress["compounds"].items(), key=lambda kv: kv[1]["finished"]):
        lines.append(f"  {mid:14s} {c['formula']:12s} {c['n_atoms']:2d} atoms  {c['n_frames']:2d} frames  "
                     f"{c['s_per_frame']:6.1f} s/frame  MD {c['md_wall_s']:6.0f} s  {c['finished']}")
    for mid, f in progress["failures"].items():
        lines.append(f"  FAILED {mid}: {f['error']}: {f['message'][:200]}")
    in_progress = [p.name for p in work_root().iterdir() if p.is_dir()]
    if in_progress:
        lines.append(f"in progress (work dirs): {', '.join(in_progress)}")
    for path, meta in batch_checkpoints().items():
        lines.append(f"interrupted batched MD ({path.name}): {', '.join(meta['settings']['names'])} at step "
                     f"{meta['step']}/{meta['settings']['n_steps']}, {meta['wall_s']:.0f} s of MD done")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m softening_lib.campaign", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_run = sub.add_parser("run", help="label compounds (resumable)")
    p_run.add_argument("--n-compounds", type=int, default=60)
    p_run.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p_run.add_argument("--max-atoms", type=int, default=8)
    p_run.add_argument("--max-cost", type=float, default=DEFAULT_MAX_COST)
    p_run.add_argument("--model", default="chgnet-0.3.0")
    p_run.add_argument("--total-time-ps", type=float, default=20.0)
    p_run.add_argument("--timestep-fs", type=float, default=2.0)
    p_run.add_argument("--thermostat", default="berendsen")
    p_run.add_argument("--seed", type=int, default=0)
    p_run.add_argument("--max-hours", type=float, default=None)
    p_run.add_argument("--only", nargs="*", default=None, help="material ids instead of the selection rule")
    p_run.add_argument("--kpt-density", type=float, default=None)
    p_run.add_argument("--md-batch", type=int, default=1,
                       help="run the MD of this many compounds together (one batched force call per step); "
                            "1 = one compound at a time through ASE")
    p_run.add_argument("--md-only", action="store_true",
                       help="only the MD: sample every compound not sampled yet, label nothing (a later run labels)")
    p_run.add_argument("--device", default="cpu", help="where the MLIP of the MD runs: cpu, cuda or auto")
    p_run.add_argument("--workers", type=int, default=None,
                       help="run on the Dask executor: MD and each frame's label as separate tasks on this many "
                            "single-threaded workers (default without --workers/--scheduler: this one process)")
    p_run.add_argument("--scheduler", default=None, help="Dask scheduler address, or slurm (softening_lib.executor)")
    p_list = sub.add_parser("list", help="print the selection")
    p_list.add_argument("--n-compounds", type=int, default=60)
    p_list.add_argument("--max-atoms", type=int, default=8)
    p_list.add_argument("--max-cost", type=float, default=DEFAULT_MAX_COST)
    p_status = sub.add_parser("status", help="progress so far")
    p_status.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    if args.cmd == "run":
        dft_settings = {}
        if args.kpt_density is not None:
            dft_settings["kpt_density"] = args.kpt_density
        if (args.workers or args.scheduler) and not args.md_only:
            run_dask(args.n_compounds, args.out, scheduler=args.scheduler, workers=args.workers,
                     max_atoms=args.max_atoms, max_cost=args.max_cost, model=args.model,
                     total_time_ps=args.total_time_ps, timestep_fs=args.timestep_fs, thermostat=args.thermostat,
                     base_seed=args.seed, only=args.only, dft_settings=dft_settings, md_batch=args.md_batch,
                     device=args.device)
        else:
            from .devices import resolve

            run(args.n_compounds, args.out, max_atoms=args.max_atoms, max_cost=args.max_cost, model=args.model,
                total_time_ps=args.total_time_ps, timestep_fs=args.timestep_fs, thermostat=args.thermostat,
                base_seed=args.seed, max_hours=args.max_hours, only=args.only, dft_settings=dft_settings,
                md_batch=args.md_batch, md_only=args.md_only, device=resolve(args.device))
        print(status(args.out))
    elif args.cmd == "list":
        table = candidate_table(max_atoms=args.max_atoms, **CAMPAIGN_DFT).set_index("material_id")
        for i, mid in enumerate(select_compounds(args.n_compounds, args.max_atoms, args.max_cost, **CAMPAIGN_DFT)):
            r = table.loc[mid]
            print(f"{i + 1:3d} {mid:14s} {r.formula:12s} {r.n_atoms:2d} atoms  cost {r.cost:6.2f}  {r.elements}")
    elif args.cmd == "status":
        print(status(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
