"""Few-shot fine-tuning of a universal MLIP on a handful of DFT-labelled structures.

>>> from softening_lib import finetune
>>> calc, record = finetune.finetune(frames, model="chgnet-0.3.0")          # paper protocol
>>> calc, record = finetune.finetune(frames, model="chgnet-0.3.0", from_scratch=True)
>>> record["train_ids"], record["val_ids"], record["wall_seconds"]

``frames`` are ASE Atoms whose calculator holds the DFT labels (a SinglePointCalculator
with forces, and energy / stress where the data set has them; see
:func:`softening_lib.datasets.labelled`). Each model family is trained with its own
library's trainer:

* CHGNet (``chgnet-0.3.0``): :class:`chgnet.trainer.Trainer` on a
  :class:`chgnet.data.dataset.StructureData` split by
  :func:`chgnet.data.dataset.get_train_val_test_loader` after seeding Python's ``random``
  (CHGNet's split is unseeded otherwise).
* matgl (``m3gnet-*``, ``tensornet-*``): :class:`matgl.utils.training.PotentialLightningModule`
  with a Lightning trainer (M3GNet graphs built with ``include_line_graph=False`` as matgl's
  training utilities require here).
* MACE: ``mace_run_train`` with ``--foundation_model`` (and ``--multiheads_finetuning False``,
  which is the only way to fine-tune offline); see :func:`finetune_mace`.

The default is the paper's protocol (Deng et al., npj Comput. Mater. 11, 9 (2025), Methods):
all parameters trainable; energy / force / stress loss weights 0.1 / 100 / 0.1 as printed in
the paper; MSE; Adam with learning rate 1e-3 cosine-decayed to 1e-5 over 100 epochs; 9:1
train / validation split; the checkpoint with the best validation force MAE (the last epoch
when training on one structure). ``from_scratch=True`` trains the same architecture from a
random initialisation on the same data (the paper's SI Figs. 3-4 comparison).

Decisions where the paper is silent, recorded in every settings record:

* batch size 1 (the paper gives none; with <= 10 structures it means one optimiser step per
  structure per epoch);
* CHGNet's ``CosLR`` sets ``T_max = 10 * epochs`` and steps at most 10 times per epoch, so on
  a handful of structures it never reaches the final rate; we replace it with a
  ``CosineAnnealingLR`` whose ``T_max`` is the real number of scheduler steps, so the rate
  does reach ``lr_final`` at the last epoch;
* the validation split keeps at least one structure whenever there are two or more;
* when the labels hold energies, the DFT energies are shifted by one constant per atom (the
  mean of E_DFT - E_model over the training structures, with the pretrained model) so that
  a different DFT code's energy zero (e.g. GPAW vs VASP) does not swamp the loss; the shift
  is recorded (``energy_shift_per_atom``) and the fine-tuned model predicts energies in the
  pretrained model's reference. Forces and stresses are unaffected.
"""

from __future__ import annotations

import copy
import logging
import os
import random
import re
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from ase import Atoms

log = logging.getLogger(__name__)

GPA_PER_EV_A3 = 160.21766208


class FineTuneError(RuntimeError):
    pass


@dataclass
class FineTuneSettings:
    """The knobs of one fine-tuning run (defaults: the paper's protocol)."""

    epochs: int = 100
    learning_rate: float = 1e-3
    learning_rate_final: float = 1e-5
    energy_weight: float = 0.1
    force_weight: float = 100.0
    stress_weight: float = 0.1
    criterion: str = "MSE"
    optimizer: str = "Adam"
    val_fraction: float = 0.1
    batch_size: int = 1
    seed: int = 0
    from_scratch: bool = False
    checkpoint: str = "best_val_force_mae"  # or "last"
    align_energy: bool = True
    device: str = "cpu"
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


PAPER_SETTINGS = FineTuneSettings()


# --------------------------------------------------------------------------------------
# labels
# --------------------------------------------------------------------------------------

def labels_of(frames: Sequence[Atoms]) -> dict[str, Any]:
    """DFT labels of ``frames``: forces always; energies / stresses only if every frame has them."""
    if not frames:
        raise FineTuneError("no structures to fine-tune on")
    forces, energies, stresses = [], [], []
    for i, atoms in enumerate(frames):
        calc = atoms.calc
        results = getattr(calc, "results", {}) if calc is not None else {}
        if "forces" not in results:
            raise FineTuneError(
                f"frame {i} ({atoms.info.get('material_id', '?')}/{atoms.info.get('frame_id', i)}) "
                "has no DFT forces; attach labels with datasets.labelled(atoms, forces=...)"
            )
        forces.append(np.asarray(results["forces"], dtype=float))
        energies.append(results.get("energy"))
        stress = results.get("stress")
        stresses.append(None if stress is None or not all(atoms.pbc) else np.asarray(stress, dtype=float))
    out: dict[str, Any] = {"forces": forces, "energies": None, "stresses": None}
    if all(e is not None and np.isfinite(e) for e in energies):
        out["energies"] = np.array(energies, dtype=float)
    if all(s is not None and np.all(np.isfinite(s)) for s in stresses):
        from ase.stress import voigt_6_to_full_3x3_stress

        out["stresses"] = [voigt_6_to_full_3x3_stress(s) if s.shape == (6,) else s for s in stresses]
    return out


def frame_ids(frames: Sequence[Atoms]) -> list[str]:
    return [f"{a.info.get('material_id', 'm')}/{a.info.get('frame_id', i)}" for i, a in enumerate(frames)]


def split_sizes(n: int, val_fraction: float = 0.1) -> tuple[int, int]:
    """(n_train, n_val): 9:1 for 10, at least one validation structure when n >= 2, none for 1."""
    if n < 1:
        raise FineTuneError("need at least one structure")
    if n == 1:
        return 1, 0
    n_val = max(1, int(round(val_fraction * n)))
    return n - n_val, n_val


# --------------------------------------------------------------------------------------
# CHGNet
# --------------------------------------------------------------------------------------

def _chgnet_base(from_scratch: bool, seed: int):
    import torch
    from chgnet.model import CHGNet

    from .chatter import quiet

    with quiet():
        pretrained = CHGNet.load(model_name="0.3.0", use_device="cpu", verbose=False)
    if not from_scratch:
        return pretrained, pretrained
    torch.manual_seed(seed)
    with quiet():
        scratch = CHGNet(**pretrained.model_args)  # same architecture, random initialisation
    return scratch, pretrained


def _n_scheduler_calls(n_batches: int) -> int:
    """How many times chgnet.trainer.Trainer._train steps its scheduler per epoch."""
    marks = set(int(v) for v in np.arange(1, 11) * n_batches // 10)
    return len([m for m in marks if 1 <= m <= n_batches])


def _chgnet_loss(trainer, loader) -> dict[str, float]:
    """Mean combined loss and MAEs of the trainer's model on ``loader`` (no update)."""
    model = trainer.model
    model.eval()
    total, n = 0.0, 0
    maes: dict[str, list[tuple[float, int]]] = {k: [] for k in trainer.targets}
    for graphs, targets in loader:
        for g in graphs:
            g.atom_frac_coord.requires_grad = "f" in trainer.targets
        prediction = model(graphs, task=trainer.targets)
        out = trainer.criterion(targets, prediction)
        total += float(out["loss"].detach()) * len(graphs)
        n += len(graphs)
        for k in trainer.targets:
            maes[k].append((float(out[f"{k}_MAE"].detach()), int(out[f"{k}_MAE_size"])))
    res = {"loss": total / max(n, 1)}
    for k, vals in maes.items():
        size = sum(s for _, s in vals)
        res[f"{k}_mae"] = sum(v * s for v, s in vals) / size if size else float("nan")
    return res


def finetune_chgnet(frames: Sequence[Atoms], settings: FineTuneSettings | None = None,
                    progress: bool = False, keep_history: bool = True):
    """Fine-tune (or train from scratch) CHGNet 0.3.0 on ``frames``; (calculator, record)."""
    import torch
    from chgnet.data.dataset import StructureData, get_train_val_test_loader
    from chgnet.model import CHGNetCalculator
    from chgnet.trainer import Trainer
    from pymatgen.io.ase import AseAtomsAdaptor
    from torch.optim.lr_scheduler import CosineAnnealingLR

    settings = copy.deepcopy(settings or FineTuneSettings())
    t0 = time.perf_counter()
    labels = labels_of(frames)
    ids = frame_ids(frames)
    n_train, n_val = split_sizes(len(frames), settings.val_fraction)
    has_energy = labels["energies"] is not None
    # CHGNet always predicts energy; without energy labels it trains on forces only
    targets = ("e" if has_energy else "") + "f" + ("s" if labels["stresses"] is not None else "")

    model, pretrained = _chgnet_base(settings.from_scratch, settings.seed)
    structures = [AseAtomsAdaptor.get_structure(a) for a in frames]
    natoms = np.array([len(a) for a in frames])
    shift = 0.0
    if has_energy:
        e_per_atom = labels["energies"] / natoms
        if settings.align_energy:
            preds = pretrained.predict_structure(structures, task="e", batch_size=4)
            preds = [preds] if isinstance(preds, dict) else preds
            e_model = np.array([float(p["e"]) for p in preds])
            shift = float(np.mean(e_per_atom - e_model))  # refined below to the training set
    else:
        # phonon force sets etc.: no energies (placeholder labels, never used: targets="f")
        e_per_atom = np.full(len(frames), np.nan)
        settings.notes.append("labels hold no energies: trained on forces only")
    if labels["stresses"] is None:
        settings.notes.append("labels hold no stresses: stress not trained")

    # seeded split through CHGNet's own loader factory
    random.seed(settings.seed)
    torch.manual_seed(settings.seed)
    np.random.seed(settings.seed)
    stresses_vasp = None
    if labels["stresses"] is not None:
        # StructureData expects VASP stress (kBar, compressive positive) and multiplies by -0.1
        stresses_vasp = [np.asarray(s) * GPA_PER_EV_A3 * -10.0 for s in labels["stresses"]]
    dataset = StructureData(structures=structures, energies=list(e_per_atom), forces=labels["forces"],
                            stresses=stresses_vasp, structure_ids=ids, shuffle=False)
    n = len(frames)
    train_loader, val_loader, _ = get_train_val_test_loader(
        dataset, batch_size=settings.batch_size, train_ratio=(n_train + 0.5) / n,
        val_ratio=(n_val + 0.5) / n if n_val else 0.0, return_test=True, pin_memory=False)
    train_idx = list(train_loader.sampler.indices)
    val_idx = list(val_loader.sampler.indices)
    assert len(train_idx) == n_train and len(val_idx) == n_val, (len(train_idx), len(val_idx))
    if has_energy and settings.align_energy:
        # one constant per atom, from the training structures only
        preds_e = np.array([float(p["e"]) for p in (
            pretrained.predict_structure([structures[i] for i in train_idx], task="e", batch_size=4)
            if n_train > 1 else [pretrained.predict_structure(structures[train_idx[0]], task="e")])])
        shift = float(np.mean(e_per_atom[train_idx] - preds_e))
        dataset.energies = list(e_per_atom - shift)

    e_weight = settings.energy_weight if has_energy else 0.0
    trainer = Trainer(model=model, targets=targets, energy_loss_ratio=e_weight,
                      force_loss_ratio=settings.force_weight, stress_loss_ratio=settings.stress_weight,
                      optimizer=settings.optimizer, scheduler="CosLR", criterion=settings.criterion,
                      epochs=settings.epochs, learning_rate=settings.learning_rate,
                      torch_seed=settings.seed, data_seed=settings.seed, use_device=settings.device,
                      print_freq=10**9)
    calls = _n_scheduler_calls(len(train_loader))
    trainer.scheduler = CosineAnnealingLR(trainer.optimizer, T_max=max(1, settings.epochs * calls),
                                          eta_min=settings.learning_rate_final)
    trainer.model.to(trainer.device)
    for p in trainer.model.parameters():  # all parameters trainable (incl. the AtomRef)
        p.requires_grad = True

    before = _chgnet_loss(trainer, train_loader)
    use_last = n_val == 0 or settings.checkpoint == "last"
    best_state, best_val, best_epoch = None, float("inf"), settings.epochs - 1
    history: list[dict] = []
    iterator = range(settings.epochs)
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(iterator, desc="fine-tune" if not settings.from_scratch else "scratch", leave=False)
    import contextlib
    import io

    for epoch in iterator:
        with contextlib.redirect_stdout(io.StringIO()):
            train_mae = trainer._train(train_loader, epoch)
            val_mae = trainer._validate(val_loader) if n_val else {}
        row = {"epoch": epoch, "lr": trainer.optimizer.param_groups[0]["lr"],
               **{f"train_{k}_mae": v for k, v in train_mae.items()},
               **{f"val_{k}_mae": v for k, v in val_mae.items()}}
        history.append(row)
        if not np.isfinite(train_mae.get("f", 0.0)):
            raise FineTuneError(f"training diverged at epoch {epoch} (non-finite force MAE); lower the learning rate")
        if not use_last and val_mae.get("f", np.inf) < best_val:
            best_val, best_epoch = float(val_mae["f"]), epoch
            best_state = copy.deepcopy(trainer.model.state_dict())
    if best_state is not None:
        trainer.model.load_state_dict(best_state)
    after = _chgnet_loss(trainer, train_loader)
    trainer.model.eval()
    calc = CHGNetCalculator(model=trainer.model, use_device=settings.device)
    wall = time.perf_counter() - t0
    tag = "chgnet-0.3.0:scratch" if settings.from_scratch else "chgnet-0.3.0:ft"
    calc.softening_model = f"{tag}{len(frames)}-seed{settings.seed}"
    record = {
        "model": "chgnet-0.3.0", "method": "scratch" if settings.from_scratch else "finetune",
        "trainer": "chgnet.trainer.Trainer (_train/_validate per epoch, best-val-force-MAE state kept in memory)",
        "settings": settings.as_dict(), "targets": targets, "n_structures": len(frames),
        "n_train": n_train, "n_val": n_val, "train_ids": [ids[i] for i in train_idx],
        "val_ids": [ids[i] for i in val_idx], "checkpoint_epoch": best_epoch,
        "checkpoint_rule": "last epoch" if use_last else "best validation force MAE",
        "best_val_force_mae": None if use_last else best_val,
        "train_loss_before": before["loss"], "train_loss_after": after["loss"],
        "train_force_mae_before": before.get("f_mae"), "train_force_mae_after": after.get("f_mae"),
        "energy_shift_per_atom": shift, "scheduler": f"CosineAnnealingLR(T_max={settings.epochs * calls}, "
        f"eta_min={settings.learning_rate_final}), {calls} steps/epoch",
        "n_parameters": int(sum(p.numel() for p in trainer.model.parameters())),
        "wall_seconds": wall, "torch_threads": torch.get_num_threads(),
        "history": history if keep_history else [],
    }
    return calc, record


# --------------------------------------------------------------------------------------
# matgl (M3GNet / TensorNet)
# --------------------------------------------------------------------------------------

def _matgl_loss(module, loader) -> float:
    """Mean weighted training loss (matgl's own ``step``: the loss the trainer minimises) over ``loader``."""
    total, n = 0.0, 0
    for batch in loader:
        results, size = module.step(batch)
        total += float(results["Total_Loss"].detach()) * size
        n += size
    return total / max(n, 1)


def finetune_matgl(frames: Sequence[Atoms], model: str = "m3gnet-mp-2021.2.8",
                   settings: FineTuneSettings | None = None, progress: bool = False):
    """Fine-tune a matgl potential with matgl's Lightning training module; (calculator, record)."""
    import lightning as L
    import matgl
    import torch
    from matgl.ext.ase import PESCalculator
    from matgl.ext.pymatgen import Structure2Graph
    from matgl.graph.data import MGLDataLoader, MGLDataset, collate_fn_pes
    from matgl.utils.training import PotentialLightningModule
    from pymatgen.io.ase import AseAtomsAdaptor

    from . import matgl_fix
    from . import models as registry

    matgl_fix.apply()  # train with the same message direction the weights were made with
    settings = copy.deepcopy(settings or FineTuneSettings())
    t0 = time.perf_counter()
    labels = labels_of(frames)
    ids = frame_ids(frames)
    n_train, n_val = split_sizes(len(frames), settings.val_fraction)
    spec = registry.get_spec(model)
    registry.check_available(model)
    potential = matgl.load_model(registry.matgl_weights_dir(model))  # every file sha256-checked
    if settings.from_scratch:
        torch.manual_seed(settings.seed)
        fresh = type(potential.model)(**potential.model.hparams) if hasattr(potential.model, "hparams") else None
        if fresh is None:
            raise FineTuneError(f"cannot rebuild {model} from its hyper-parameters for a from-scratch run")
        potential.model = fresh
    element_types = potential.model.element_types
    cutoff = float(potential.model.cutoff)
    converter = Structure2Graph(element_types=element_types, cutoff=cutoff)
    structures = [AseAtomsAdaptor.get_structure(a) for a in frames]
    energies = labels["energies"]
    has_energy = energies is not None
    if not has_energy:
        with torch.no_grad():
            energies = np.array([0.0 for _ in frames])
        settings.notes.append("labels hold no energies: energy loss weight set to 0")
    stresses = labels["stresses"] or [np.zeros((3, 3)) for _ in frames]
    shift = 0.0
    rng = np.random.default_rng(settings.seed)
    order = rng.permutation(len(frames))
    train_idx, val_idx = list(order[:n_train]), list(order[n_train:])
    if has_energy and settings.align_energy:
        calc0 = PESCalculator(potential, stress_unit="eV/A3")
        e_model = []
        for i in train_idx:
            a = frames[i].copy()
            a.calc = calc0
            e_model.append(a.get_potential_energy() / len(a))
        shift = float(np.mean(energies[train_idx] / np.array([len(frames[i]) for i in train_idx]) - e_model))
        energies = energies - shift * np.array([len(a) for a in frames])
    # matgl's model stress is in GPa with ASE's sign (its PESCalculator only rescales it)
    labels_dict = {"energies": list(energies), "forces": [f.tolist() for f in labels["forces"]],
                   "stresses": [(np.asarray(s) * GPA_PER_EV_A3).tolist() for s in stresses]}
    tmp = tempfile.mkdtemp(prefix="matgl_ft_")
    include_line_graph = False  # matgl's training utilities here need it off (see module doc)
    dataset = MGLDataset(structures=structures, converter=converter, labels=labels_dict,
                         include_line_graph=include_line_graph, save_cache=False, root=tmp)
    train_set = torch.utils.data.Subset(dataset, train_idx)
    val_set = torch.utils.data.Subset(dataset, val_idx if val_idx else train_idx)
    from functools import partial

    collate = partial(collate_fn_pes, include_line_graph=include_line_graph, include_stress=True)
    torch.manual_seed(settings.seed)
    train_loader, val_loader = MGLDataLoader(train_data=train_set, val_data=val_set, collate_fn=collate,
                                             batch_size=settings.batch_size, num_workers=0)
    optimizer = torch.optim.Adam(potential.model.parameters(), lr=settings.learning_rate)
    # Lightning steps a bare scheduler once per epoch
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, settings.epochs),
                                                           eta_min=settings.learning_rate_final)
    refs = getattr(potential, "element_refs", None)
    refs = getattr(refs, "property_offset", None) if refs is not None else None
    has_stress = labels["stresses"] is not None
    module = PotentialLightningModule(
        model=potential.model, element_refs=refs, data_std=potential.data_std,
        data_mean=potential.data_mean, optimizer=optimizer, scheduler=scheduler,
        energy_weight=settings.energy_weight if has_energy else 0.0, force_weight=settings.force_weight,
        stress_weight=settings.stress_weight if has_stress else 0.0,
        loss="mse_loss", include_line_graph=include_line_graph)
    best = {"val": float("inf"), "state": None, "epoch": settings.epochs - 1}
    use_last = n_val == 0 or settings.checkpoint == "last"
    history: list[dict] = []
    train_loss_before = _matgl_loss(module, train_loader)

    class _Best(L.Callback):
        def on_validation_epoch_end(self, trainer, pl_module):
            val = trainer.callback_metrics.get("val_Force_MAE")
            if val is not None and not use_last and float(val) < best["val"]:
                best.update(val=float(val), state=copy.deepcopy(potential.model.state_dict()),
                            epoch=trainer.current_epoch)

        def on_train_epoch_end(self, trainer, pl_module):
            m = trainer.callback_metrics
            history.append({"epoch": int(trainer.current_epoch),
                            "train_loss": float(m["train_Total_Loss"]) if "train_Total_Loss" in m else None,
                            "val_force_mae": float(m["val_Force_MAE"]) if "val_Force_MAE" in m else None,
                            "lr": float(optimizer.param_groups[0]["lr"])})

    L.seed_everything(settings.seed, verbose=False)
    trainer = L.Trainer(max_epochs=settings.epochs, accelerator="cpu", logger=False,
                        enable_checkpointing=False, enable_progress_bar=progress,
                        enable_model_summary=False, callbacks=[_Best()], inference_mode=False,
                        default_root_dir=tmp, num_sanity_val_steps=0)
    trainer.fit(module, train_dataloaders=train_loader, val_dataloaders=val_loader)
    if best["state"] is not None:
        potential.model.load_state_dict(best["state"])
    train_loss_after = _matgl_loss(module, train_loader)  # the returned weights, same loss as training
    potential.eval()  # the Potential too, not only its model: in training mode it asks for create_graph=True
    calc = PESCalculator(potential, stress_unit="eV/A3")
    calc.softening_model = f"{model}:{'scratch' if settings.from_scratch else 'ft'}{len(frames)}-seed{settings.seed}"
    record = {
        "model": model, "method": "scratch" if settings.from_scratch else "finetune",
        "trainer": "matgl.utils.training.PotentialLightningModule + lightning.Trainer",
        "settings": settings.as_dict(), "n_structures": len(frames), "n_train": n_train, "n_val": n_val,
        "train_ids": [ids[i] for i in train_idx], "val_ids": [ids[i] for i in val_idx],
        "checkpoint_epoch": best["epoch"], "best_val_force_mae": None if use_last else best["val"],
        "checkpoint_rule": "last epoch" if use_last else "best validation force MAE",
        "energy_shift_per_atom": shift, "include_line_graph": include_line_graph,
        "train_loss_before": train_loss_before, "train_loss_after": train_loss_after, "history": history,
        "n_parameters": int(sum(p.numel() for p in potential.model.parameters())),
        "wall_seconds": time.perf_counter() - t0,
    }
    return calc, record


# --------------------------------------------------------------------------------------
# MACE
# --------------------------------------------------------------------------------------

def mace_calculator(model_paths: str | Sequence[str] | None = None, device: str = "cpu",
                    default_dtype: str = "float64", **kw: Any):
    """An ASE calculator for a MACE model file (an import-path factory for the registry).

    ``model_paths`` defaults to ``$SOFTENING_MACE_MODEL`` or the tiny self-built model
    shipped in ``data/reference/tiny_mace/`` (a test fixture, not a universal potential).
    Registry use: ``get_calculator("softening_lib.finetune:mace_calculator")``.
    """
    import mace  # noqa: F401  (before e3nn)
    from mace.calculators import MACECalculator

    if model_paths is None:
        model_paths = os.environ.get("SOFTENING_MACE_MODEL") or str(tiny_mace_path())
    calc = MACECalculator(model_paths=model_paths, device=device, default_dtype=default_dtype, **kw)
    return calc


REFERENCE_DIRS = ("tiny_mace",)  # its folder(s) under data/reference


def tiny_mace_path() -> Path:
    from . import config

    return config.reference_dir() / REFERENCE_DIRS[0] / "tiny_mace.model"


def tiny_mace_calculator(**kw: Any):
    """Registry factory for the tiny self-built MACE (``softening_lib.finetune:tiny_mace_calculator``)."""
    path = tiny_mace_path()
    if not path.is_file():
        raise FineTuneError(f"{path} is missing; build it with `python scripts/build_tiny_mace.py`")
    return mace_calculator(model_paths=str(path), **kw)


def _write_extxyz(path: Path, frames: Sequence[Atoms], energy_shift: float = 0.0) -> None:
    from ase.io import write

    out = []
    for atoms in frames:
        res = atoms.calc.results
        a = Atoms(atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
        a.info["REF_energy"] = float(res["energy"]) - energy_shift * len(a) if "energy" in res else 0.0
        a.arrays["REF_forces"] = np.asarray(res["forces"], dtype=float)
        if "stress" in res and all(atoms.pbc):
            from ase.stress import voigt_6_to_full_3x3_stress

            s = np.asarray(res["stress"], dtype=float)
            a.info["REF_stress"] = voigt_6_to_full_3x3_stress(s) if s.shape == (6,) else s
        a.info["config_type"] = "Default"
        out.append(a)
    write(path, out, format="extxyz")


#: sha256 of model files trusted to be unpickled (a MACE ``.model`` is a pickled torch module:
#: loading it runs code). The tiny self-built MACE of data/reference/tiny_mace (its PROVENANCE.md).
TRUSTED_MODEL_SHA256 = {
    "37edb302c676d8b60076c742a64ae7b1ce4fb4966067e23cc4617af3c94621ec",  # data/reference/tiny_mace/tiny_mace.model
}


def check_trusted_model(path: str | Path, expected_sha256: str | None = None) -> str:
    """The sha256 of the code-bearing model file ``path`` if it is trusted (listed in
    :data:`TRUSTED_MODEL_SHA256` or equal to ``expected_sha256``); else :class:`FineTuneError`.

    Called before anything unpickles the file (``torch.load(weights_only=False)`` here and in
    ``mace_run_train``)."""
    from .datasets import sha256

    path = Path(path)
    if not path.is_file():
        raise FineTuneError(f"foundation_model {path} is not a file; give the path of a MACE .model file")
    actual = sha256(path)
    if expected_sha256 is not None and actual != expected_sha256:
        raise FineTuneError(f"foundation_model {path} has sha256 {actual}, not the expected {expected_sha256}; "
                            "refusing to unpickle it (a changed or tampered model file runs code when loaded)")
    if expected_sha256 is None and actual not in TRUSTED_MODEL_SHA256:
        raise FineTuneError(f"foundation_model {path} (sha256 {actual}) is a pickled model, which runs code when "
                            "loaded, and its hash is not trusted; check where it came from and pass "
                            "foundation_sha256='<its sha256>'")
    return actual


def _load_foundation(path: str | Path, expected_sha256: str | None = None):
    import torch

    try:  # a plain state dict / tensors: no code runs
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception:
        check_trusted_model(path, expected_sha256)  # a whole pickled module: only from a trusted file
        return torch.load(str(path), map_location="cpu", weights_only=False)  # noqa: S614 (hash-checked above)


def finetune_mace(frames: Sequence[Atoms], foundation_model: str | Path,
                  settings: FineTuneSettings | None = None, workdir: str | Path | None = None,
                  r_max: float | None = None, extra_args: Sequence[str] = (),
                  timeout: float | None = None, foundation_sha256: str | None = None):
    """Fine-tune a MACE model file with ``mace_run_train --foundation_model`` ; (calculator, record).

    Works for any MACE model file (MACE-MP-0 where its weights exist, or the tiny self-built
    model in tests). ``--multiheads_finetuning False``: multi-head fine-tuning needs the
    MP replay data, which needs the network.

    The foundation model file is unpickled (here and by ``mace_run_train``), which runs code:
    it must be trusted first (:func:`check_trusted_model`: its sha256 listed in
    :data:`TRUSTED_MODEL_SHA256` or given as ``foundation_sha256``).
    """
    import subprocess
    import sys

    import mace  # noqa: F401
    import torch

    settings = copy.deepcopy(settings or FineTuneSettings())
    check_trusted_model(foundation_model, foundation_sha256)
    t0 = time.perf_counter()
    labels = labels_of(frames)
    ids = frame_ids(frames)
    n_train, n_val = split_sizes(len(frames), settings.val_fraction)
    rng = np.random.default_rng(settings.seed)
    order = rng.permutation(len(frames))
    train_idx, val_idx = list(order[:n_train]), list(order[n_train:])
    work = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="mace_ft_"))
    work.mkdir(parents=True, exist_ok=True)
    has_energy = labels["energies"] is not None
    has_stress = labels["stresses"] is not None
    _write_extxyz(work / "train.xyz", [frames[i] for i in train_idx])
    if val_idx:
        _write_extxyz(work / "valid.xyz", [frames[i] for i in val_idx])
    if r_max is None:
        r_max = float(_load_foundation(foundation_model, foundation_sha256).r_max)
    r_max = float(r_max)
    exe = Path(sys.executable).with_name("mace_run_train")
    cmd = [str(exe) if exe.exists() else "mace_run_train",
           "--name", "ft", "--foundation_model", str(foundation_model),
           "--multiheads_finetuning", "False",
           "--train_file", str(work / "train.xyz"),
           "--energy_key", "REF_energy", "--forces_key", "REF_forces", "--stress_key", "REF_stress",
           "--energy_weight", str(settings.energy_weight if has_energy else 0.0),
           "--forces_weight", str(settings.force_weight),
           "--stress_weight", str(settings.stress_weight if has_stress else 0.0),
           "--loss", "stress" if has_stress else "weighted",
           "--E0s", "foundation" if has_energy else "average",
           "--lr", str(settings.learning_rate), "--scheduler", "ReduceLROnPlateau",
           "--max_num_epochs", str(settings.epochs), "--batch_size", str(settings.batch_size),
           "--valid_batch_size", str(settings.batch_size), "--seed", str(settings.seed),
           "--device", settings.device, "--default_dtype", "float64", "--r_max", str(r_max),
           "--model_dir", str(work), "--checkpoints_dir", str(work / "checkpoints"),
           "--results_dir", str(work / "results"), "--log_dir", str(work / "logs"),
           "--eval_interval", "1", "--patience", str(max(settings.epochs, 1) * 10),
           "--error_table", "PerAtomRMSEstressvirials" if has_stress else "PerAtomRMSE",
           "--save_cpu", *extra_args]
    if val_idx:
        cmd += ["--valid_file", str(work / "valid.xyz")]
    else:
        cmd += ["--valid_fraction", "0.5"] if len(train_idx) > 1 else ["--valid_file", str(work / "train.xyz")]
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    proc = subprocess.run(cmd, cwd=work, capture_output=True, text=True, env=env, timeout=timeout)
    if proc.returncode != 0:
        raise FineTuneError(f"mace_run_train failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    model_file = work / "ft.model"
    if not model_file.is_file():
        candidates = sorted(work.glob("*.model"))
        if not candidates:
            raise FineTuneError(f"mace_run_train wrote no .model file in {work}")
        model_file = candidates[0]
    val_initial, val_epochs = None, []
    for log_file in sorted((work / "logs").glob("*.log")):
        if "debug" in log_file.name:
            continue
        for line in log_file.read_text().splitlines():
            m = re.search(r"(Initial|Epoch (\d+)):.*?loss=([0-9.eE+-]+)", line)
            if m and m.group(1) == "Initial":
                val_initial = float(m.group(3))
            elif m:
                val_epochs.append((int(m.group(2)), float(m.group(3))))
    calc = mace_calculator(model_paths=str(model_file), device=settings.device)
    calc.softening_model = f"mace:ft{len(frames)}-seed{settings.seed}"
    record = {
        "model": str(foundation_model), "method": "finetune", "trainer": "mace_run_train",
        "command": cmd, "settings": settings.as_dict(), "n_structures": len(frames),
        "n_train": n_train, "n_val": n_val, "train_ids": [ids[i] for i in train_idx],
        "val_ids": [ids[i] for i in val_idx], "model_file": str(model_file),
        "validation_loss_initial": val_initial, "validation_loss_by_epoch": val_epochs,
        "log_tail": (proc.stdout + proc.stderr)[-2000:], "wall_seconds": time.perf_counter() - t0,
        "notes": ["MACE's own scheduler (ReduceLROnPlateau) and its best-validation checkpoint "
                  "are used; the cosine schedule of the CHGNet path is not available in mace_run_train"],
    }
    return calc, record


# --------------------------------------------------------------------------------------
# one entry point
# --------------------------------------------------------------------------------------

def finetune(frames: Sequence[Atoms], model: str = "chgnet-0.3.0", from_scratch: bool = False,
             seed: int = 0, settings: FineTuneSettings | None = None, progress: bool = False, **kw: Any):
    """Fine-tune ``model`` on ``frames`` with the paper's protocol; (ASE calculator, record).

    ``settings`` overrides the defaults (``FineTuneSettings(epochs=2)`` for a smoke run);
    ``from_scratch`` and ``seed`` are shortcuts for the same fields.
    """
    from . import models as registry

    settings = copy.deepcopy(settings or FineTuneSettings())
    settings.from_scratch = bool(from_scratch or settings.from_scratch)
    settings.seed = int(seed if seed else settings.seed)
    spec = registry.get_spec(model)
    from .chatter import quiet

    if spec.family == "chgnet":
        with quiet(not progress):  # CHGNet's "initialized", "StructureData imported", "will run on cpu"
            return finetune_chgnet(frames, settings, progress=progress, **kw)
    if spec.family == "matgl":
        with quiet(not progress):
            return finetune_matgl(frames, model=model, settings=settings, progress=progress)
    if spec.family == "mace":
        from .models import _mace_weight_candidates

        registry.check_available(model)
        path = next(p for p in _mace_weight_candidates() if p.is_file())
        return finetune_mace(frames, path, settings=settings, **kw)
    if Path(model).suffix == ".model" and Path(model).is_file():
        return finetune_mace(frames, model, settings=settings, **kw)
    raise FineTuneError(f"no fine-tuning path for {model!r} (family {spec.family}); "
                        "use a CHGNet, matgl or MACE model")


def linear_correction(dft_forces, model_forces) -> float:
    """The closed-form one-label scale c = Σ F_model·F_DFT / Σ F_model² (apply with ScaledCalculator)."""
    from .metrics import correction_factor

    return correction_factor(dft_forces, model_forces)
