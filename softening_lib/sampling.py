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
"""

from __future__ import annotations

import time
from typing import Any

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
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary

    if calculator is None:
        from .models import get_calculator

        calculator = get_calculator(model)
    rng = np.random.default_rng(seed)
    md_atoms = atoms.copy()
    md_atoms.calc = calculator
    n_steps = int(round(total_time_ps * 1000.0 / timestep_fs))
    if n_steps < n_frames:
        raise ValueError(f"{n_steps} MD steps cannot give {n_frames} distinct frames")
    MaxwellBoltzmannDistribution(md_atoms, temperature_K=temperature_K, rng=rng)
    Stationary(md_atoms)
    dyn, thermo_info = _thermostat(md_atoms, thermostat, timestep_fs, temperature_K, rng, taut_fs,
                                   friction_per_fs)
    frame_steps = [(k + 1) * n_steps // n_frames for k in range(n_frames)]
    strained_ids = sorted(int(i) for i in rng.choice(n_frames, n_strained, replace=False))
    signs = {i: rng.choice([-1.0, 1.0], size=3) for i in strained_ids}

    base_info = {k: v for k, v in atoms.info.items() if isinstance(v, (str, int, float, bool, np.integer, np.floating))}
    source_id = base_info.get("material_id")
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
            "sampler": "softening_lib.sampling.sample_high_energy",
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
        })
        frames.append(frame)
    return frames


def _min_distance(atoms: Atoms) -> float:
    if len(atoms) < 2 and not atoms.pbc.any():
        return float("inf")
    from ase.neighborlist import neighbor_list

    d = neighbor_list("d", atoms, 4.0)
    return float(d.min()) if len(d) else float("inf")
