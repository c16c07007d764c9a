"""High-energy states the paper's way: MLIP NVT MD at 1000 K, 10 frames, 4 of them strained.

>>> from softening_lib.sampling import sample_high_energy
>>> frames = sample_high_energy(atoms)            # CHGNet, 1000 K, 20 ps, 10 frames
>>> [f.info["strained"] for f in frames]

The protocol (Deng et al., npj Comput. Mater. 11, 9 (2025), Fig. 5b / Methods) and what
this implementation decides where the paper is silent:

* The starting structure is used **as is** (the WBM relaxed cell, no supercell), as in the
  paper.
* NVT MD with an MLIP (default ``chgnet-0.3.0``) at ``temperature_K=1000`` for
  ``total_time_ps=20`` with ``timestep_fs=2``. Default thermostat ``"berendsen"``
  (ASE ``NVTBerendsen``, ``taut = 100 * timestep`` = 200 fs): that is what
  ``chgnet.model.dynamics.MolecularDynamics(ensemble="nvt")`` does by default, the most
  likely tool of the paper (which names none). ``"langevin"`` (friction 0.01/fs) and
  ``"bussi"`` are available. Initial velocities: Maxwell-Boltzmann at the target
  temperature, centre-of-mass motion removed, drawn from ``numpy.random.default_rng(seed)``.
* ``n_frames=10`` frames evenly spaced in time: frame ``k`` (0-based) is the snapshot
  after step ``(k + 1) * n_steps // n_frames``, so the last frame is the end of the run
  and no frame is the (unperturbed) start.
* ``n_strained=4`` of the frames, chosen with the same seeded generator
  (``rng.choice(n_frames, n_strained, replace=False)``, then sorted), are strained:
  each of the three lattice vectors is independently multiplied by ``1 + s_i`` with
  ``s_i`` drawn from ``{+strain, -strain}`` (``strain=0.03``), atoms moving with the cell
  (fractional coordinates kept). So every lattice vector of a strained frame is exactly
  3 % longer or shorter than in the MD snapshot.
* Everything is recorded in ``atoms.info``: ``frame_id``, ``md_step``, ``md_time_ps``,
  ``md_total_time_ps`` (the length actually run, which may be shorter than the paper's
  20 ps in a cheap setting), thermostat, timestep, seed, model, ``strained``, ``strain_a``,
  ``strain_b``, ``strain_c`` (the fractional change of each lattice vector, 0 when
  unstrained), the instantaneous temperature and the MLIP energy of the snapshot.

:func:`sample_high_energy_batch` runs the same protocol (Berendsen only) for several
structures in lock-step, with one batched MLIP call per MD step for all of them: same
seeds, same frames, same ``info`` (plus ``md_batch_size``); for one structure and a
deterministic calculator it retraces :func:`sample_high_energy`'s trajectory to rounding.
With ``checkpoint=PATH`` it saves its whole state at every frame step (atomically, a
pickle-free ``.npz``) and a later call with the same inputs, settings and path resumes
there instead of starting over (see :func:`sample_high_energy_batch`).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from ase import Atoms, units

PAPER_PROTOCOL = {
    "temperature_K": 1000.0,
    "total_time_ps": 20.0,
    "n_frames": 10,
    "n_strained": 4,
    "strain": 0.03,
}


def _thermostat(atoms: Atoms, name: str, timestep_fs: float, temperature_K: float,
                rng: np.random.Generator, taut_fs: float | None, friction_per_fs: float):
    name = name.lower()
    dt = timestep_fs * units.fs
    if name == "berendsen":
        from ase.md.nvtberendsen import NVTBerendsen

        taut = (taut_fs if taut_fs is not None else 100 * timestep_fs) * units.fs
        return NVTBerendsen(atoms, dt, temperature_K=temperature_K, taut=taut), {"md_taut_fs": taut / units.fs}
    if name == "langevin":
        from ase.md.langevin import Langevin

        return (Langevin(atoms, dt, temperature_K=temperature_K, friction=friction_per_fs / units.fs, rng=rng,
                         fixcm=False),
                {"md_friction_per_fs": friction_per_fs})
    if name == "bussi":
        from ase.md.bussi import Bussi

        taut = (taut_fs if taut_fs is not None else 100 * timestep_fs) * units.fs
        return Bussi(atoms, dt, temperature_K=temperature_K, taut=taut, rng=rng), {"md_taut_fs": taut / units.fs}
    raise ValueError(f"unknown thermostat {name!r}; choose berendsen, langevin or bussi")


def strain_cell(atoms: Atoms, strains) -> Atoms:
    """A copy with lattice vector ``i`` scaled by ``1 + strains[i]`` (atoms follow the cell)."""
    out = atoms.copy()
    cell = np.array(atoms.cell) * (1.0 + np.asarray(strains, dtype=float))[:, None]
    out.set_cell(cell, scale_atoms=True)
    return out


def _n_md_steps(total_time_ps: float, timestep_fs: float, n_frames: int, n_strained: int) -> int:
    if n_strained > n_frames:
        raise ValueError(f"n_strained={n_strained} > n_frames={n_frames}")
    n_steps = int(round(total_time_ps * 1000.0 / timestep_fs))
    if n_steps < n_frames:
        raise ValueError(f"{n_steps} MD steps cannot give {n_frames} distinct frames")
    return n_steps


def _initial_state(atoms: Atoms, seed: int, temperature_K: float, calculator=None) -> tuple[np.random.Generator, Atoms]:
    """The seeded generator and a copy of ``atoms`` with Maxwell-Boltzmann momenta, no COM motion."""
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary

    rng = np.random.default_rng(seed)
    md_atoms = atoms.copy()
    if calculator is not None:
        md_atoms.calc = calculator
    MaxwellBoltzmannDistribution(md_atoms, temperature_K=temperature_K, rng=rng)
    Stationary(md_atoms)
    return rng, md_atoms


def _frame_plan(rng: np.random.Generator, n_steps: int, n_frames: int,
                n_strained: int) -> tuple[list[int], dict[int, np.ndarray]]:
    """MD steps of the frames and the strain signs of the strained ones (draws from ``rng``)."""
    frame_steps = [(k + 1) * n_steps // n_frames for k in range(n_frames)]
    strained_ids = sorted(int(i) for i in rng.choice(n_frames, n_strained, replace=False))
    signs = {i: rng.choice([-1.0, 1.0], size=3) for i in strained_ids}
    return frame_steps, signs


def _base_info(atoms: Atoms) -> dict[str, Any]:
    return {k: v for k, v in atoms.info.items() if isinstance(v, (str, int, float, bool, np.integer, np.floating))}


def _build_frames(atoms: Atoms, snapshots: list[tuple[int, Atoms, float, float]], signs: dict[int, np.ndarray], *,
                  model: str, thermostat: str, temperature_K: float, timestep_fs: float, n_steps: int,
                  n_frames: int, n_strained: int, strain: float, seed: int, md_wall: float,
                  thermo_info: dict[str, Any], sampler: str, extra_info: dict[str, Any] | None = None) -> list[Atoms]:
    """The labelled-to-be frames (strained where ``signs`` says) with the protocol in ``info``."""
    base_info = _base_info(atoms)
    source_id = base_info.get("material_id")
    frames = []
    for k, (step_k, snap, temp, e_mlip) in enumerate(snapshots):
        strains = signs[k] * strain if k in signs else np.zeros(3)
        frame = strain_cell(snap, strains) if k in signs else snap
        frame.arrays.pop("momenta", None)  # velocities are not part of a label
        frame.info = dict(base_info)
        frame.info.pop("corrected_energy", None)
        frame.info.pop("formation_energy_per_atom", None)
        frame.info.update({
            "frame_id": k,
            "source_material_id": source_id if source_id is not None else "",
            "sampler": sampler,
            "md_model": model,
            "md_thermostat": thermostat,
            "md_ensemble": "NVT",
            "md_temperature_K": float(temperature_K),
            "md_timestep_fs": float(timestep_fs),
            "md_total_time_ps": n_steps * timestep_fs / 1000.0,
            "md_n_steps": n_steps,
            "md_step": int(step_k),
            "md_time_ps": step_k * timestep_fs / 1000.0,
            "md_seed": int(seed),
            "md_instant_temperature_K": temp,
            "md_mlip_energy": e_mlip,
            "md_wall_time_s": round(md_wall, 1),
            "md_paper_protocol": bool(np.isclose(temperature_K, 1000.0) and np.isclose(n_steps * timestep_fs, 20000.0)
                                      and n_frames == 10 and n_strained == 4 and np.isclose(strain, 0.03)),
            "n_frames": int(n_frames),
            "strained": k in signs,
            "strain_a": float(strains[0]),
            "strain_b": float(strains[1]),
            "strain_c": float(strains[2]),
            "strain_magnitude": float(strain),
            "min_distance_A": float(_min_distance(frame)),
            **thermo_info,
            **(extra_info or {}),
        })
        frames.append(frame)
    return frames


def sample_high_energy(
    atoms: Atoms,
    model: str = "chgnet-0.3.0",
    calculator=None,
    *,
    temperature_K: float = 1000.0,
    total_time_ps: float = 20.0,
    timestep_fs: float = 2.0,
    n_frames: int = 10,
    n_strained: int = 4,
    strain: float = 0.03,
    seed: int = 0,
    thermostat: str = "berendsen",
    taut_fs: float | None = None,
    friction_per_fs: float = 0.01,
    log_every: int | None = None,
) -> list[Atoms]:
    """Run the MD and return ``n_frames`` unlabelled frames with the protocol in ``info``.

    ``calculator`` (an ASE calculator) overrides ``model`` (a registry name, see
    :func:`softening_lib.models.get_calculator`); ``model`` is still recorded.
    """
    if n_strained > n_frames:
        raise ValueError(f"n_strained={n_strained} > n_frames={n_frames}")
    if calculator is None:
        from .models import get_calculator

        calculator = get_calculator(model)
    n_steps = _n_md_steps(total_time_ps, timestep_fs, n_frames, n_strained)
    rng, md_atoms = _initial_state(atoms, seed, temperature_K, calculator)
    dyn, thermo_info = _thermostat(md_atoms, thermostat, timestep_fs, temperature_K, rng, taut_fs,
                                   friction_per_fs)
    frame_steps, signs = _frame_plan(rng, n_steps, n_frames, n_strained)

    source_id = _base_info(atoms).get("material_id")
    snapshots: list[tuple[int, Atoms, float, float]] = []
    t0 = time.time()
    step = 0
    for target in frame_steps:
        dyn.run(target - step)
        step = target
        snap = md_atoms.copy()
        snap.calc = None
        snapshots.append((step, snap, float(md_atoms.get_temperature()), float(md_atoms.get_potential_energy())))
        if log_every:
            print(f"[sampling] {source_id or atoms.get_chemical_formula()}: step {step}/{n_steps} "
                  f"T={snapshots[-1][2]:.0f} K ({time.time() - t0:.0f} s)", flush=True)
    md_wall = time.time() - t0
    return _build_frames(atoms, snapshots, signs, model=model, thermostat=thermostat, temperature_K=temperature_K,
                         timestep_fs=timestep_fs, n_steps=n_steps, n_frames=n_frames, n_strained=n_strained,
                         strain=strain, seed=seed, md_wall=md_wall, thermo_info=thermo_info,
                         sampler="softening_lib.sampling.sample_high_energy")


# --------------------------------------------------------------------------------------
# several structures in lock-step: one batched force call per MD step
# --------------------------------------------------------------------------------------

BatchForces = Callable[[Sequence[Atoms]], tuple[Sequence[float], Sequence[np.ndarray]]]


# --------------------------------------------------------------------------------------
# checkpoints of a batched run (resume after a kill)
# --------------------------------------------------------------------------------------

CHECKPOINT_FORMAT = "softening_lib.sampling.batch_checkpoint/1"


class CheckpointMismatchError(ValueError):
    """A checkpoint file exists but was written for other inputs or settings."""


def inputs_hash(structures: Sequence[Atoms]) -> str:
    """sha256 of what the MD of ``structures`` depends on: per structure the atomic numbers,
    positions, cell, pbc and masses (exact bytes)."""
    h = hashlib.sha256()
    h.update(f"{len(structures)}".encode())
    for a in structures:
        h.update(f"|{len(a)}|".encode())
        h.update(np.ascontiguousarray(a.numbers, dtype="<i8").tobytes())
        h.update(np.ascontiguousarray(a.positions, dtype="<f8").tobytes())
        h.update(np.ascontiguousarray(np.array(a.cell), dtype="<f8").tobytes())
        h.update(np.ascontiguousarray(a.pbc, dtype="u1").tobytes())
        h.update(np.ascontiguousarray(a.get_masses(), dtype="<f8").tobytes())
    return h.hexdigest()


def read_checkpoint_meta(path) -> dict[str, Any]:
    """The JSON metadata of a batch checkpoint (settings, step, ...), without its arrays."""
    try:
        with np.load(Path(path), allow_pickle=False) as z:
            meta = json.loads(str(z["meta"][()]))
    except Exception as exc:
        raise CheckpointMismatchError(f"cannot read MD checkpoint {path} ({type(exc).__name__}: {exc}); "
                                      f"delete it to start the batch over") from exc
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointMismatchError(f"{path} is not a {CHECKPOINT_FORMAT} checkpoint "
                                      f"(format {meta.get('format')!r}); delete it or pass another path")
    return meta


def _write_checkpoint(path: Path, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` + ``meta`` (as a JSON string array) to one .npz, atomically, without pickle."""
    buf = io.BytesIO()
    np.savez(buf, allow_pickle=False, meta=np.array(json.dumps(meta, sort_keys=True)), **arrays)
    from .cache import atomic_write_bytes

    atomic_write_bytes(path, buf.getvalue())  # a unique temporary (mkstemp) + os.replace


def _load_checkpoint(path: Path, settings: dict[str, Any]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Meta and arrays of the checkpoint at ``path``; refuses (:class:`CheckpointMismatchError`)
    one whose settings differ from ``settings``."""
    meta = read_checkpoint_meta(path)
    saved = meta.get("settings", {})
    diffs = []
    for key in sorted(set(saved) | set(settings)):
        if saved.get(key) != settings.get(key):
            if key == "inputs_sha256":
                diffs.append("the input structures (numbers/positions/cell/pbc/masses) differ")
            else:
                diffs.append(f"{key}: checkpoint {saved.get(key)!r}, now {settings.get(key)!r}")
    if diffs:
        raise CheckpointMismatchError(f"MD checkpoint {path} was written for other inputs/settings: "
                                      f"{'; '.join(diffs)}. Delete it or pass another checkpoint path.")
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: np.array(z[k]) for k in z.files if k != "meta"}
    return meta, arrays


def _default_batch_forces(model: str, calculator, batch_size: int) -> BatchForces:
    """(energies, forces) of a list of cells through :func:`softening_lib.predict.predict`: the
    model's batched API for CHGNet (one forward for the whole list), a per-structure loop over
    the ASE calculator otherwise (e.g. EMT), which is ``reset()`` before each structure so that
    no state (EMT's neighbour list with its skin, whose pair order changes the rounding) is
    carried from one call to the next: the forces then depend on the positions only, and a
    run resumed from a checkpoint is bit for bit an uninterrupted one."""
    from . import models, predict

    state = {"calc": calculator}

    def forces(cells: Sequence[Atoms]):
        calc = state["calc"]
        if calc is None:
            models.check_elements(model, set().union(*(set(a.get_chemical_symbols()) for a in cells)))
            calc = state["calc"] = predict.calculator(model)
        if type(calc).__name__ == "CHGNetCalculator" and hasattr(calc, "model"):
            out = predict.predict(cells, model, batch_size=batch_size, calc=calc, with_stress=False)
            return out["energy"], out["forces"]
        energies, forces_ = [], []
        for cell in cells:
            calc.reset()
            out = predict.predict([cell], model, calc=calc, with_stress=False)
            energies.append(out["energy"][0])
            forces_.append(out["forces"][0])
        return energies, forces_

    return forces


def _kinetic_temperature(p: np.ndarray, masses: np.ndarray) -> float:
    """``Atoms.get_temperature()`` of momenta ``p`` (no constraints), with ASE's arithmetic."""
    ekin = 0.5 * np.vdot(p, p / masses[:, np.newaxis])
    return 2 * ekin / (len(p) * 3 * units.kB)


def sample_high_energy_batch(
    structures: Sequence[Atoms],
    model: str = "chgnet-0.3.0",
    calculator=None,
    *,
    seeds: Sequence[int],
    temperature_K: float = 1000.0,
    total_time_ps: float = 20.0,
    timestep_fs: float = 2.0,
    n_frames: int = 10,
    n_strained: int = 4,
    strain: float = 0.03,
    thermostat: str = "berendsen",
    taut_fs: float | None = None,
    friction_per_fs: float = 0.01,
    log_every: int | None = None,
    batch_forces: BatchForces | None = None,
    checkpoint: str | os.PathLike | None = None,
) -> list[list[Atoms]]:
    """:func:`sample_high_energy` for several structures at once; one list of frames per structure.

    The MD of all ``structures`` advances in lock-step with **one** force call per MD step
    for all of them (``batch_forces``; by default :func:`softening_lib.predict.predict`
    with ``calculator`` or the registry ``model``: CHGNet's batched forward, or a loop over
    an ASE calculator such as EMT). Only ``thermostat="berendsen"``: the integrator is
    ASE's ``NVTBerendsen`` (``fixcm=True``) re-implemented in numpy step for step (velocity
    rescaling from the current temperature, clamped to [0.9, 1.1]; half kick; mean momentum
    removed; drift; new forces; half kick), so one structure with a deterministic calculator
    follows :func:`sample_high_energy`'s trajectory to rounding. Structure ``i`` uses
    ``np.random.default_rng(seeds[i])`` exactly as :func:`sample_high_energy` with
    ``seed=seeds[i]`` does (initial momenta, strained frames, strain signs).

    ``batch_forces(cells) -> (energies, forces)`` replaces the force call (cells: a list of
    ``Atoms`` without calculator). The frames carry the same ``info`` as
    :func:`sample_high_energy`'s, with ``sampler`` ``...sample_high_energy_batch``,
    ``md_batch_size`` and ``md_batch_wall_time_s`` (the wall time of the whole batch);
    ``md_wall_time_s`` is the batch wall time divided by the batch size (each structure's
    share, so per-compound sums stay sums of machine time).
    ``friction_per_fs`` is accepted for signature compatibility (Langevin only) and unused.

    ``checkpoint`` (a file path, ``.npz``): after every frame step (every
    ``n_steps // n_frames`` steps, where the snapshots are taken) the whole state is written
    there atomically (temp file + ``os.replace``; ``np.savez`` arrays, no pickle, the
    metadata as a JSON string): the step, each structure's positions, momenta and cell, the
    snapshots so far (positions, momenta, temperature, MLIP energy), the frame plan
    (strained frame ids and strain signs from the seeded generators), the protocol keywords,
    model name, seeds and :func:`inputs_hash` of the structures. If the file exists when
    the call starts, the run resumes from it: the forces are recomputed at the saved
    positions (the Berendsen step is deterministic given positions, momenta and forces), so
    with a deterministic calculator (EMT) the frames are bit for bit those of an
    uninterrupted run; with CHGNet (float32, possibly batched differently) the restart
    forces match the lost ones to float32 noise only, so the continued trajectory agrees
    with an uninterrupted one only to that noise, amplified by the chaotic MD over the
    remaining steps (statistically the same protocol, not the same numbers). A checkpoint
    written for other structures, seeds or settings is refused with
    :class:`CheckpointMismatchError` (a ``ValueError``) naming what differs; the model is
    compared by its name only (a custom ``calculator``/``batch_forces`` is not identified).
    The file is **kept** after success: it then holds the finished run, and a call with
    the same arguments returns the same frames from it without any force call (the
    campaign deletes it once the frames are written). ``md_wall_time_s`` and
    ``md_batch_wall_time_s`` of a resumed run add up the MD wall time of all sessions.
    """
    structures = list(structures)
    if not isinstance(thermostat, str):
        raise TypeError(f"thermostat must be one name for the whole batch, got {thermostat!r}")
    if thermostat.lower() != "berendsen":
        raise ValueError(f"sample_high_energy_batch implements only thermostat='berendsen', not {thermostat!r}; "
                         f"use sample_high_energy for {thermostat!r}")
    seeds = list(seeds)
    if len(seeds) != len(structures):
        raise ValueError(f"{len(seeds)} seeds for {len(structures)} structures: give one seed per structure")
    if not structures:
        return []
    constrained = [i for i, a in enumerate(structures) if a.constraints]
    if constrained:
        raise ValueError(f"structures {constrained} carry constraints, which the batched integrator does not "
                         f"implement; use sample_high_energy")
    n_steps = _n_md_steps(total_time_ps, timestep_fs, n_frames, n_strained)
    if batch_forces is None:
        batch_forces = _default_batch_forces(model, calculator, batch_size=len(structures))

    dt = timestep_fs * units.fs
    taut = (taut_fs if taut_fs is not None else 100 * timestep_fs) * units.fs
    thermo_info = {"md_taut_fs": taut / units.fs}
    tautscl = dt / taut

    starts, plans, masses, pos, mom, cells = [], [], [], [], [], []
    for atoms, seed in zip(structures, seeds):
        rng, md_atoms = _initial_state(atoms, int(seed), temperature_K)
        plans.append(_frame_plan(rng, n_steps, n_frames, n_strained))
        starts.append(md_atoms)
        masses.append(md_atoms.get_masses())
        pos.append(md_atoms.get_positions())
        mom.append(md_atoms.get_momenta())
        cells.append(Atoms(numbers=md_atoms.numbers, positions=pos[-1], cell=md_atoms.cell, pbc=md_atoms.pbc))
    frame_steps = plans[0][0]

    def evaluate():
        for c, r in zip(cells, pos):
            c.positions = r
        e, f = batch_forces(cells)
        return [float(x) for x in e], [np.asarray(x, dtype=float) for x in f]

    names = [str(a.info.get("material_id") or a.get_chemical_formula()) for a in structures]
    snapshots: list[list[tuple[int, Atoms, float, float]]] = [[] for _ in structures]
    plan_arrays = {}
    for i, (_, signs) in enumerate(plans):
        ids_i = sorted(signs)
        plan_arrays[f"strained_ids_{i}"] = np.array(ids_i, dtype=np.int64)
        plan_arrays[f"signs_{i}"] = np.array([signs[k] for k in ids_i], dtype=float).reshape(len(ids_i), 3)
    settings = {"model": str(model), "thermostat": "berendsen", "temperature_K": float(temperature_K),
                "total_time_ps": float(total_time_ps), "timestep_fs": float(timestep_fs),
                "taut_fs": float(taut / units.fs), "n_steps": int(n_steps), "n_frames": int(n_frames),
                "n_strained": int(n_strained), "strain": float(strain), "seeds": [int(x) for x in seeds],
                "n_structures": len(structures), "names": names, "inputs_sha256": inputs_hash(structures)}
    ckpt_path = Path(checkpoint) if checkpoint is not None else None
    step = 0
    wall_before = 0.0
    if ckpt_path is not None and ckpt_path.is_file():
        meta, arrays = _load_checkpoint(ckpt_path, settings)
        for key, ref in plan_arrays.items():
            if not np.array_equal(arrays[key], ref):
                raise CheckpointMismatchError(f"MD checkpoint {ckpt_path}: its frame plan ({key}) differs from the "
                                              f"one the seeds give now (numpy's generator changed?); delete it")
        step, wall_before = int(meta["step"]), float(meta["wall_s"])
        snap_steps = [int(x) for x in arrays["snap_steps"]]
        if not snap_steps or snap_steps != frame_steps[:len(snap_steps)] or snap_steps[-1] != step:
            raise CheckpointMismatchError(f"MD checkpoint {ckpt_path} is inconsistent (step {step}, snapshots at "
                                          f"{snap_steps}); delete it")
        for i, start in enumerate(starts):
            pos[i], mom[i] = arrays[f"pos_{i}"], arrays[f"mom_{i}"]
            cells[i].cell = arrays[f"cell_{i}"]
            for k, step_k in enumerate(snap_steps):
                snap = start.copy()
                snap.calc = None
                snap.set_positions(arrays[f"snap_pos_{i}"][k])
                snap.set_momenta(arrays[f"snap_mom_{i}"][k])
                snapshots[i].append((step_k, snap, float(arrays[f"snap_temp_{i}"][k]),
                                     float(arrays[f"snap_energy_{i}"][k])))
        if log_every:
            print(f"[sampling-batch] {len(structures)} structures: resuming from {ckpt_path} at step "
                  f"{step}/{n_steps} ({wall_before:.0f} s of MD done before)", flush=True)

    def save_checkpoint(elapsed: float) -> None:
        arrays = dict(plan_arrays)
        arrays["snap_steps"] = np.array([s[0] for s in snapshots[0]], dtype=np.int64)
        for i in range(len(structures)):
            arrays[f"pos_{i}"], arrays[f"mom_{i}"] = pos[i], mom[i]
            arrays[f"cell_{i}"] = np.array(cells[i].cell)
            arrays[f"snap_pos_{i}"] = np.array([s[1].positions for s in snapshots[i]])
            arrays[f"snap_mom_{i}"] = np.array([s[1].get_momenta() for s in snapshots[i]])
            arrays[f"snap_temp_{i}"] = np.array([s[2] for s in snapshots[i]], dtype=float)
            arrays[f"snap_energy_{i}"] = np.array([s[3] for s in snapshots[i]], dtype=float)
        _write_checkpoint(ckpt_path, {"format": CHECKPOINT_FORMAT, "settings": settings, "step": step,
                                      "wall_s": elapsed, "finished": step == n_steps}, arrays)

    t0 = time.time()
    if step < n_steps:
        energies, forces = evaluate()
    for target in frame_steps:
        if target <= step:
            continue
        while step < target:
            for i in range(len(structures)):  # NVTBerendsen.step, first half
                old_temperature = _kinetic_temperature(mom[i], masses[i])
                with np.errstate(divide="ignore"):
                    scl = np.sqrt(1.0 + (temperature_K / old_temperature - 1.0) * tautscl)
                scl = min(max(scl, 0.9), 1.1)
                p = scl * mom[i]
                p += 0.5 * dt * forces[i]
                psum = p.sum(axis=0) / float(len(p))
                p = p - psum
                pos[i] = pos[i] + dt * p / masses[i][:, np.newaxis]
                mom[i] = p
            energies, forces = evaluate()
            for i in range(len(structures)):  # second half kick
                mom[i] = mom[i] + 0.5 * dt * forces[i]
            step += 1
        for i, start in enumerate(starts):
            snap = start.copy()
            snap.calc = None
            snap.set_positions(pos[i])
            snap.set_momenta(mom[i])
            snapshots[i].append((step, snap, float(snap.get_temperature()), energies[i]))
        if log_every:
            temps = " ".join(f"{n}:{s[-1][2]:.0f}K" for n, s in zip(names, snapshots))
            print(f"[sampling-batch] {len(structures)} structures: step {step}/{n_steps} {temps} "
                  f"({wall_before + time.time() - t0:.0f} s)", flush=True)
        if ckpt_path is not None:
            save_checkpoint(wall_before + time.time() - t0)
    md_wall = wall_before + time.time() - t0

    extra = {"md_batch_size": len(structures), "md_batch_wall_time_s": round(md_wall, 1)}
    return [_build_frames(atoms, snaps, plan[1], model=model, thermostat=thermostat, temperature_K=temperature_K,
                          timestep_fs=timestep_fs, n_steps=n_steps, n_frames=n_frames, n_strained=n_strained,
                          strain=strain, seed=int(seed), md_wall=md_wall / len(structures),
                          thermo_info=thermo_info, sampler="softening_lib.sampling.sample_high_energy_batch",
                          extra_info=extra)
            for atoms, snaps, plan, seed in zip(structures, snapshots, plans, seeds)]


def _min_distance(atoms: Atoms) -> float:
    if len(atoms) < 2 and not atoms.pbc.any():
        return float("inf")
    from ase.neighborlist import neighbor_list

    d = neighbor_list("d", atoms, 4.0)
    return float(d.min()) if len(d) else float("inf")
