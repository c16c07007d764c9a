"""Batched model predictions (energy, forces, stress) for many labelled structures.

``predict(frames, model)`` evaluates a list of ASE Atoms with one registry model, using the
model's own batched API where it has one (CHGNet ``predict_structure`` on a list) and the
ASE calculator otherwise. ``predict_cached`` groups frames by material and keeps one
``.npz`` per (dataset, model, material) under the results store, keyed by a hash of the
geometries, so a killed run resumes and an unchanged run costs nothing.

Guards (see :mod:`softening_lib.structures`):

* every structure is checked by :func:`softening_lib.structures.validate` before a model
  sees it (finite positions and cell, a non-singular periodic cell, at least one atom, no two
  atoms closer than ``min_distance`` = 0.5 A); a bad one raises
  :class:`~softening_lib.structures.StructureError` naming it;
* a result with a non-finite energy, force or stress raises
  :class:`~softening_lib.structures.NonFiniteResultError` naming the structure and is
  never cached;
* batches are bounded by atoms, not by structures: at most ``max_atoms_per_batch`` atoms
  and ``batch_size`` structures go into one batched model call (:func:`batch_plan`); a
  structure larger than the ceiling is evaluated on its own. The default ceiling depends on
  where the model runs (:func:`atoms_per_batch`): :data:`CPU_ATOMS_PER_BATCH` = 256 on a CPU,
  where larger batches are *slower* per atom (measured here, one thread: 600 wbm-he-gpaw
  frames, TensorNet-MatPES 8.7 s at 32 atoms per batch, 12.4 s at 1024; CHGNet 6.5 s at 128,
  12.3 s at 1024; 60 PhononDB supercells of 64-128 atoms, TensorNet 21.6 s at <= 512, 48.7 s
  at 2000: the per-edge tensors of a large batch no longer fit in cache), and
  :data:`MAX_ATOMS_PER_BATCH` = 2000 on a GPU, where the bound is memory (two 1000-atom
  cells in one CHGNet batch took 10 GB).
"""

from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict
from contextlib import contextmanager
from typing import Any, Iterable, Sequence

import numpy as np
from ase import Atoms

from . import cache, config, models
from .structures import MIN_DISTANCE, StructureError, check_result, describe, validate

log = logging.getLogger(__name__)

GPA_TO_EV_A3 = 1 / 160.21766208

#: the most atoms one batched model call may hold on a GPU (graph memory grows with atoms x neighbours)
MAX_ATOMS_PER_BATCH = 2000
#: the default ceiling on a CPU: past a few hundred atoms a batch gets slower per atom (see above)
CPU_ATOMS_PER_BATCH = 256


class PredictionError(RuntimeError):
    pass


def _check_positive_int(value: Any, what: str, fix: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{what} must be an integer >= 1, got {value!r}; {fix}")
    return int(value)


def _check_frames(frames: Any) -> list:
    if isinstance(frames, Atoms):
        raise ValueError("frames must be a list of ase.Atoms, got a single Atoms; wrap it: [atoms]")
    if frames is None or isinstance(frames, (str, bytes, dict)):
        raise ValueError(f"frames must be a list of ase.Atoms, got {type(frames).__name__}")
    frames = list(frames)
    for i, a in enumerate(frames):
        if not isinstance(a, Atoms):
            raise ValueError(f"frames[{i}] is a {type(a).__name__}, not an ase.Atoms; convert it first")
    return frames


def batch_plan(sizes: Sequence[int], max_atoms_per_batch: int = MAX_ATOMS_PER_BATCH,
               max_structures: int | None = None) -> list[list[int]]:
    """Split structures of ``sizes`` atoms into batches (lists of indices, input order kept)
    holding at most ``max_atoms_per_batch`` atoms and ``max_structures`` structures each.
    A structure larger than the ceiling gets a batch of its own."""
    max_atoms_per_batch = _check_positive_int(max_atoms_per_batch, "max_atoms_per_batch",
                                              f"it bounds the memory of one model call (default {MAX_ATOMS_PER_BATCH})")
    if max_structures is not None:
        max_structures = _check_positive_int(max_structures, "batch_size", "it is the most structures per batch")
    batches: list[list[int]] = []
    current: list[int] = []
    atoms_in = 0
    for i, n in enumerate(sizes):
        n = int(n)
        if n < 0:
            raise ValueError(f"sizes[{i}] is negative ({n})")
        full = current and (atoms_in + n > max_atoms_per_batch
                            or (max_structures is not None and len(current) >= max_structures))
        if full:
            batches.append(current)
            current, atoms_in = [], 0
        current.append(i)
        atoms_in += n
    if current:
        batches.append(current)
    return batches


def atoms_per_batch(calc=None, family: str | None = None) -> int:
    """The default atom ceiling of one batched call for ``calc``: :data:`MAX_ATOMS_PER_BATCH`
    when its model sits on a GPU, :data:`CPU_ATOMS_PER_BATCH` otherwise (see the module notes)."""
    module = model_module(calc, family) if calc is not None and family else None
    param = next(module.parameters(), None) if module is not None else None
    on_gpu = param is not None and param.device.type != "cpu"
    return MAX_ATOMS_PER_BATCH if on_gpu else CPU_ATOMS_PER_BATCH


def geometry_hash(frames: Sequence[Atoms]) -> str:
    h = hashlib.sha256()
    for atoms in frames:
        h.update(np.ascontiguousarray(atoms.numbers, dtype=np.int64).tobytes())
        h.update(np.round(np.ascontiguousarray(atoms.positions, dtype=float), 6).tobytes())
        h.update(np.round(np.ascontiguousarray(atoms.cell.array, dtype=float), 6).tobytes())
    return h.hexdigest()[:16]


_CALC_CACHE: "OrderedDict[str, Any]" = OrderedDict()


def calculator(model: str, device: str | None = None, **kw: Any):
    """A calculator per model name, loaded once per process (weights are slow to load).

    ``device``: ``"auto"``, ``"cpu"``, ``"cuda"``; ``None`` = ``$SOFTENING_DEVICE`` (set by
    ``--device``) or the CPU (:func:`softening_lib.devices.resolve`)."""
    from .devices import calculator_kwargs

    kw = {**calculator_kwargs(model, device), **kw}
    key = f"{model}|{sorted(kw.items())}"
    if key not in _CALC_CACHE:
        calc = models.get_calculator(model, **kw)
        if str(kw.get("device", "cpu")).startswith("cuda"):
            from .devices import move_matgl

            move_matgl(calc, kw["device"])  # the registry's matgl factory builds on the CPU
        _CALC_CACHE[key] = calc
        while len(_CALC_CACHE) > 4:
            _CALC_CACHE.popitem(last=False)
    return _CALC_CACHE[key]


@contextmanager
def frozen_params(module):
    """Inference setting for a batched call: ``module`` (a ``torch.nn.Module`` or ``None``) in
    eval mode, its parameters not requiring gradients, for the duration.

    * eval mode: matgl's ``Potential.forward`` asks autograd for ``create_graph=True`` (a
      double-backward graph, needed only to train on forces) whenever the module is in training
      mode, which is how ``matgl.load_model`` returns it; in eval mode the force backward is a
      plain one (measured here, 600 wbm-he-gpaw frames: TensorNet-MatPES 1.18x, M3GNet-MP 1.43x
      faster, forces equal within 2e-6 eV/Å: float32 rounding of a different backward graph);
    * no parameter gradients: the backward (``autograd.grad`` w.r.t. positions) records and
      keeps nothing for weight gradients.

    The flags (``training`` of every submodule, ``requires_grad`` of every parameter) are
    restored after, so a model shared with fine-tuning code is left as found."""
    params = [p for p in module.parameters() if p.requires_grad] if module is not None else []
    modes = [(m, m.training) for m in module.modules()] if module is not None else []
    for p in params:
        p.requires_grad_(False)
    if module is not None:
        module.eval()
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)
        for m, mode in modes:
            m.training = mode


@contextmanager
def matgl_stress(potential, want: bool):
    """``potential.calc_stresses`` set to ``want and potential.calc_stresses`` for the duration:
    with ``want=False`` matgl's ``Potential`` neither makes the strain tensor a leaf that
    requires grad nor differentiates w.r.t. it (forces only), restored after."""
    old = getattr(potential, "calc_stresses", False)
    potential.calc_stresses = bool(want and old)
    try:
        yield
    finally:
        potential.calc_stresses = old


def model_module(calc, family: str | None):
    """The ``torch.nn.Module`` a batched path calls (for :func:`frozen_params`), else ``None``."""
    import torch

    m = {"chgnet": lambda: calc.model, "matgl": lambda: calc.potential,
         "sevenn": lambda: calc.model}.get(family or "", lambda: None)()
    return m if isinstance(m, torch.nn.Module) else None


def _check(out: dict, frames: Sequence[Atoms]) -> dict:
    """Refuse non-finite energy / forces / stress, naming the structure (never cached)."""
    for i, atoms in enumerate(frames):
        check_result(f"model result for {describe(atoms, index=i)}", energy=out["energy"][i],
                     forces=out["forces"][i], stress=out["stress"][i], allow_nan_stress=True)
    return out


def _predict_chgnet(frames: Sequence[Atoms], calc, batch_size: int, with_stress: bool = True,
                    max_atoms_per_batch: int = MAX_ATOMS_PER_BATCH) -> dict:
    from pymatgen.io.ase import AseAtomsAdaptor

    structures = [AseAtomsAdaptor.get_structure(a) for a in frames]
    preds = []
    for batch in batch_plan([len(a) for a in frames], max_atoms_per_batch, batch_size):
        got = calc.model.predict_structure([structures[i] for i in batch], task="efs" if with_stress else "ef",
                                           batch_size=len(batch))
        preds.extend([got] if isinstance(got, dict) else list(got))
    energies = [float(p["e"]) * len(a) for p, a in zip(preds, frames)]  # CHGNet: eV/atom
    forces = [np.asarray(p["f"], dtype=float) for p in preds]
    # CHGNet stress is in GPa, sign convention as ASE; convert to eV/A^3 Voigt
    from ase.stress import full_3x3_to_voigt_6_stress

    stress = [full_3x3_to_voigt_6_stress(np.asarray(p["s"], dtype=float)) * GPA_TO_EV_A3 if "s" in p
              else np.full(6, np.nan) for p in preds]
    return {"energy": np.array(energies), "forces": forces, "stress": np.array(stress)}


def _predict_matgl(frames: Sequence[Atoms], calc, batch_size: int, with_stress: bool = True,
                   max_atoms_per_batch: int = MAX_ATOMS_PER_BATCH) -> dict:
    """matgl (M3GNet, TensorNet) in batches: the calculator's own graph conversion
    (``calc._atoms2graph.get_graph``, as ``PESCalculator.calculate`` does per structure), graphs
    collated with ``torch_geometric``'s ``Batch`` as matgl's ``collate_fn_pes`` does, then one
    ``calc.potential(batch, lattices, state_attr)`` call per batch. :mod:`softening_lib.matgl_fix`
    is applied (idempotent). Stress (GPa from the potential) is converted with the calculator's
    own factor, so it matches ``PESCalculator`` (eV/Å³ with the registry's ``stress_unit``).
    Without stress (``with_stress=False``) the potential runs with ``calc_stresses`` off."""
    from . import matgl_fix

    matgl_fix.apply()
    want_stress = bool(with_stress and calc.potential.calc_stresses)
    with matgl_stress(calc.potential, want_stress):
        return _matgl_batches(frames, calc, batch_size, max_atoms_per_batch, want_stress)


def _matgl_batches(frames: Sequence[Atoms], calc, batch_size: int, max_atoms_per_batch: int,
                   want_stress: bool) -> dict:
    """The batched calls of :func:`_predict_matgl` (which sets ``calc_stresses`` around them)."""
    import torch
    from ase.stress import full_3x3_to_voigt_6_stress
    from torch_geometric.data import Batch

    potential = calc.potential
    device = potential.data_mean.device
    energies: list[float] = [0.0] * len(frames)
    forces: list[np.ndarray] = [np.zeros((0, 3))] * len(frames)
    stress = np.full((len(frames), 6), np.nan)
    for batch in batch_plan([len(a) for a in frames], max_atoms_per_batch, batch_size):
        graphs, lats, states = [], [], []
        for i in batch:
            g, lat, state_default = calc._atoms2graph.get_graph(frames[i])
            state = calc.state_attr if calc.state_attr is not None else state_default
            graphs.append(g)
            lats.append(torch.as_tensor(np.asarray(lat), dtype=torch.float32).reshape(3, 3))
            states.append(torch.as_tensor(np.asarray(state), dtype=torch.float32).reshape(-1))
        g = Batch.from_data_list(graphs)
        lat = torch.stack(lats).to(device)
        state_attr = torch.stack(states).to(device)
        res = potential(g, lat, state_attr)
        e = res[0].detach().cpu().numpy().reshape(-1)
        f = res[1].detach().cpu().numpy()
        offsets = np.cumsum([0] + [len(frames[i]) for i in batch])
        for k, i in enumerate(batch):
            energies[i] = float(e[k])
            forces[i] = np.asarray(f[offsets[k]:offsets[k + 1]], dtype=float)
        if want_stress:
            s = res[2].detach().cpu().numpy().reshape(len(batch), 3, 3)
            for k, i in enumerate(batch):
                if all(frames[i].pbc):
                    stress[i] = full_3x3_to_voigt_6_stress(s[k]) * calc.conversion_factor
        del res
    return {"energy": np.array(energies), "forces": forces, "stress": stress}


def _predict_sevenn(frames: Sequence[Atoms], calc, batch_size: int, with_stress: bool = True,
                    max_atoms_per_batch: int = MAX_ATOMS_PER_BATCH) -> dict:
    """SevenNet in batches: the calculator's graph conversion (``unlabeled_atoms_to_graph``
    with its cutoff), graphs collated with ``torch_geometric``'s ``Batch`` (as sevenn's own
    ``inference`` script does), the model switched to batch mode for the call and back after.
    Stress as ``SevenNetCalculator`` gives it (eV/Å³, ASE sign and Voigt order)."""
    import torch
    from sevenn.atom_graph_data import AtomGraphData
    from sevenn.train.dataload import unlabeled_atoms_to_graph
    from torch_geometric.data import Batch
    import sevenn._keys as KEY

    model = calc.model
    if not hasattr(model, "set_is_batch_data"):  # a TorchScript (deployed) model: one by one
        return _predict_ase(frames, calc, with_stress=with_stress)
    energies: list[float] = [0.0] * len(frames)
    forces: list[np.ndarray] = [np.zeros((0, 3))] * len(frames)
    stress = np.full((len(frames), 6), np.nan)
    model.set_is_batch_data(True)
    try:
        for batch in batch_plan([len(a) for a in frames], max_atoms_per_batch, batch_size):
            data = [AtomGraphData.from_numpy_dict(unlabeled_atoms_to_graph(frames[i], calc.cutoff)) for i in batch]
            g = Batch.from_data_list(data).to(calc.device)
            out = model(g)
            e = out[KEY.PRED_TOTAL_ENERGY].detach().cpu().numpy().reshape(-1)
            f = out[KEY.PRED_FORCE].detach().cpu().numpy()
            s = (-out[KEY.PRED_STRESS]).detach().cpu().numpy().reshape(len(batch), 6)[:, [0, 1, 2, 4, 5, 3]]
            offsets = np.cumsum([0] + [len(frames[i]) for i in batch])
            for k, i in enumerate(batch):
                energies[i] = float(e[k])
                forces[i] = np.asarray(f[offsets[k]:offsets[k + 1]], dtype=float)
                if with_stress and all(frames[i].pbc):
                    stress[i] = s[k]
            del out
    finally:
        model.set_is_batch_data(False)
    return {"energy": np.array(energies), "forces": forces, "stress": stress}


def batched_family(calc) -> str | None:
    """Which batched path :func:`predict` takes for ``calc``: ``"chgnet"``, ``"matgl"``,
    ``"sevenn"`` or ``None`` (one ASE call per structure)."""
    name = type(calc).__name__
    if name == "CHGNetCalculator" and hasattr(calc, "model"):
        return "chgnet"
    if name in ("PESCalculator", "M3GNetCalculator") and hasattr(calc, "potential") and hasattr(calc, "_atoms2graph"):
        if not (getattr(calc.potential, "calc_charge", False) or getattr(calc.potential, "calc_magmom", False)):
            return "matgl"
    if name == "SevenNetCalculator" and hasattr(calc, "model") and hasattr(calc, "cutoff"):
        return "sevenn"
    return None


def _predict_ase(frames: Sequence[Atoms], calc, progress: bool = False, with_stress: bool = True) -> dict:
    energies, forces, stress = [], [], []
    iterator: Iterable = frames
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(frames, desc="frames", leave=False)
    for atoms in iterator:
        work = atoms.copy()
        work.calc = calc
        try:
            energies.append(work.get_potential_energy())
            forces.append(np.array(work.get_forces(), dtype=float))
        except Exception:
            # a calculator that raised half-way (EMT on an element it lacks) keeps a half-set state;
            # the process-wide calculator is reused for the next material, so start it afresh
            getattr(calc, "reset", lambda: None)()
            raise
        if with_stress and all(work.pbc):
            try:
                stress.append(np.array(work.get_stress(), dtype=float))
            except Exception:  # calculators without stress
                stress.append(np.full(6, np.nan))
        else:
            stress.append(np.full(6, np.nan))
    return {"energy": np.array(energies), "forces": forces, "stress": np.array(stress)}


def predict(frames: Sequence[Atoms], model: str, batch_size: int = 16, progress: bool = False,
            calc=None, with_stress: bool = True, *, max_atoms_per_batch: int | None = None,
            min_distance: float = MIN_DISTANCE, require_pbc: bool = True, batched: bool = True,
            device: str | None = None) -> dict:
    """Energies (n,), forces (list of (n_i, 3)) and Voigt stress (n, 6, eV/Å³) of ``frames``.

    Batched for CHGNet, the matgl models (M3GNet, TensorNet) and SevenNet
    (:func:`batched_family`); ``batched=False`` evaluates one structure at a time through the
    ASE calculator (the reference the batched paths are tested against). ``device``
    (``"auto"``, ``"cpu"``, ``"cuda"``; default ``$SOFTENING_DEVICE`` or cpu) picks where a
    registry model runs (:func:`softening_lib.devices.resolve`); ignored when ``calc`` is given.

    ``calc`` overrides the registry calculator (e.g. a :class:`~softening_lib.models.ScaledCalculator`).
    ``with_stress=False`` skips the stress where that saves time (CHGNet's task ``"ef"``,
    matgl's ``calc_stresses`` off for the call; the stress is then NaN). Batched calls run
    in eval mode with the model's parameters not requiring gradients (:func:`frozen_params`).
    One batched call holds at most ``batch_size`` structures and ``max_atoms_per_batch`` atoms
    (:func:`batch_plan`; ``None``: :func:`atoms_per_batch`, 256 on a CPU, 2000 on a GPU). Every structure is validated first
    (:func:`softening_lib.structures.validate` with ``min_distance`` / ``require_pbc``);
    non-finite results raise :class:`~softening_lib.structures.NonFiniteResultError`.
    """
    frames = _check_frames(frames)
    if not isinstance(model, str) or not model:
        raise ValueError(f"model must be a registry name or 'package.module:factory' string, got {model!r}")
    batch_size = _check_positive_int(batch_size, "batch_size", "it is the most structures per model call")
    if max_atoms_per_batch is not None:
        _check_positive_int(max_atoms_per_batch, "max_atoms_per_batch",
                            f"it bounds one model call (default None: {CPU_ATOMS_PER_BATCH} on a CPU, "
                            f"{MAX_ATOMS_PER_BATCH} on a GPU)")
    if not frames:
        return {"energy": np.zeros(0), "forces": [], "stress": np.zeros((0, 6))}
    for i, atoms in enumerate(frames):
        validate(atoms, index=i, min_distance=min_distance, require_pbc=require_pbc)
    if calc is None:
        symbols = set().union(*(set(a.get_chemical_symbols()) for a in frames))
        models.check_elements(model, symbols)
        calc = calculator(model, device=device)
    family = batched_family(calc) if batched else None
    if max_atoms_per_batch is None:
        max_atoms_per_batch = atoms_per_batch(calc, family)
    with frozen_params(model_module(calc, family)):
        out = _predict_family(frames, calc, family, batch_size, progress, with_stress, max_atoms_per_batch)
    return _check(out, frames)


def _predict_family(frames, calc, family, batch_size, progress, with_stress, max_atoms_per_batch) -> dict:
    if family == "chgnet":
        out = _predict_chgnet(frames, calc, batch_size, with_stress=with_stress,
                              max_atoms_per_batch=max_atoms_per_batch)
    elif family == "matgl":
        out = _predict_matgl(frames, calc, batch_size, with_stress=with_stress,
                             max_atoms_per_batch=max_atoms_per_batch)
    elif family == "sevenn":
        out = _predict_sevenn(frames, calc, batch_size, with_stress=with_stress,
                              max_atoms_per_batch=max_atoms_per_batch)
    else:
        out = _predict_ase(frames, calc, progress=progress, with_stress=with_stress)
    return out


def predict_cached(frames: Sequence[Atoms], model: str, dataset: str, progress: bool = True,
                   batch_size: int = 16, calc=None, cache_tag: str | None = None,
                   with_stress: bool = True, *, max_atoms_per_batch: int | None = None,
                   min_distance: float = MIN_DISTANCE, require_pbc: bool = True,
                   device: str | None = None) -> list[dict]:
    """Per-frame predictions for ``frames`` (grouped by ``atoms.info['material_id']``), cached.

    Returns one dict per frame: material_id, frame_id, energy, forces, stress.
    Materials the model cannot handle (unsupported element) are skipped with a log line and
    listed in the returned dicts' absence; see :func:`skipped_materials`.
    A cache entry written with ``with_stress=False`` is recomputed when stress is asked for.
    A torn cache file is set aside (``*.corrupt-<time>``) and recomputed; a cache file with
    non-finite numbers is set aside too. ``dataset``, ``cache_tag`` and material ids become
    path components and are checked by :func:`softening_lib.cache.safe_name`.
    """
    frames = _check_frames(frames)
    if not isinstance(model, str) or not model:
        raise ValueError(f"model must be a registry name or 'package.module:factory' string, got {model!r}")
    _check_positive_int(batch_size, "batch_size", "it is the most structures per model call")
    groups: "OrderedDict[str, list[int]]" = OrderedDict()
    for i, atoms in enumerate(frames):
        groups.setdefault(str(atoms.info.get("material_id", f"frame{i}")), []).append(i)
    tag = cache_tag if cache_tag is not None else models.model_id(model)
    base = config.results_dir() / "predictions"
    root = base / cache.safe_name(dataset, "dataset") / cache.safe_name(
        tag, "cache_tag" if cache_tag is not None else "model id")
    cache.under_root(root, base, "prediction cache folder")
    results: list[dict | None] = [None] * len(frames)
    iterator: Iterable = groups.items()
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(list(groups.items()), desc=f"{model} on {dataset}", unit="material")
    _SKIPPED.pop((model, dataset), None)
    for material_id, idx in iterator:
        sub = [frames[i] for i in idx]
        ghash = geometry_hash(sub)
        path = cache.under_root(root / f"{cache.safe_name(material_id, 'material_id')}.npz", root, "cache file")
        data = cache.load_arrays(path)  # a torn file is set aside and None returned
        if data is not None and not _finite_cache(data, with_stress):
            cache.set_aside(path, "holding non-finite numbers")
            data = None
        stale = data is None or str(data.get("geometry_hash")) != ghash
        if not stale and with_stress and not bool(data.get("has_stress", True)):
            stale = True
        if stale:
            try:
                out = predict(sub, model, batch_size=batch_size, calc=calc, with_stress=with_stress,
                              max_atoms_per_batch=max_atoms_per_batch, min_distance=min_distance,
                              require_pbc=require_pbc, device=device)
            except models.UnsupportedElementError as exc:
                _SKIPPED.setdefault((model, dataset), {})[material_id] = str(exc)
                log.warning("skipping %s: %s", material_id, exc)
                continue
            natoms = np.array([len(a) for a in sub])
            cache.save_arrays(path, energy=out["energy"], forces=np.concatenate(out["forces"]),
                              stress=out["stress"], natoms=natoms, geometry_hash=np.array(ghash),
                              has_stress=np.array(bool(with_stress)))
            data = cache.load_arrays(path)
            if data is None:
                raise PredictionError(f"{path} could not be read back right after it was written "
                                      "(disk full? another process?); run again")
        splits = np.cumsum(data["natoms"])[:-1]
        forces = np.split(data["forces"], splits)
        for j, i in enumerate(idx):
            results[i] = {"material_id": material_id, "frame_id": frames[i].info.get("frame_id", j),
                          "energy": float(data["energy"][j]), "forces": forces[j],
                          "stress": data["stress"][j]}
    return [r for r in results if r is not None]


_SKIPPED: dict[tuple[str, str], dict[str, str]] = {}


def _finite_cache(data: dict, with_stress: bool) -> bool:
    try:
        ok = bool(np.all(np.isfinite(data["energy"])) and np.all(np.isfinite(data["forces"])))
        stress = np.asarray(data["stress"], dtype=float)
        # all-NaN rows are the "no stress" marker (molecules, with_stress=False)
        rows_ok = np.all(np.isfinite(stress), axis=-1) | np.all(np.isnan(stress), axis=-1)
        return ok and bool(np.all(rows_ok))
    except (KeyError, TypeError, ValueError):
        return False


def skipped_materials(model: str, dataset: str) -> dict[str, str]:
    """{material_id: reason} skipped by the last :func:`predict_cached` call for this pair."""
    return dict(_SKIPPED.get((model, dataset), {}))


def frame_table(frames: Sequence[Atoms], predictions: dict[str, list[dict]]):
    """A tidy table: one row per (model, frame) with DFT and model forces side by side."""
    import pandas as pd

    frames = _check_frames(frames)
    if not isinstance(predictions, dict):
        raise ValueError(f"predictions must be a dict {{model: predict_cached(...) output}}, "
                         f"got {type(predictions).__name__}")
    by_key = {}
    for atoms in frames:
        key = (str(atoms.info.get("material_id")), str(atoms.info.get("frame_id")))
        by_key[key] = atoms
    rows = []
    for model, preds in predictions.items():
        for p in preds:
            atoms = by_key.get((str(p["material_id"]), str(p["frame_id"])))
            if atoms is None:
                continue
            dft_energy = atoms.calc.results.get("energy") if atoms.calc is not None else None
            rows.append({
                "model": model, "material_id": p["material_id"], "frame_id": p["frame_id"],
                "formula": atoms.info.get("formula", atoms.get_chemical_formula(mode="metal")),
                "n_atoms": len(atoms), "dft_energy": dft_energy, "model_energy": p["energy"],
                "dft_forces": np.asarray(atoms.get_forces()), "model_forces": p["forces"],
            })
    return pd.DataFrame(rows)
