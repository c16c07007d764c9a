"""Chapter 11: your own system -- sample, label one structure with GPAW, fit, correct, check.

The paper's recipe for a system nobody has labelled (Deng et al. 2025, Figs. 5-6):

1. sample high-energy frames with the MLIP itself (1000 K NVT MD, 10 frames, 4 strained
   by +/-3 % per lattice vector: :func:`softening_lib.sampling.sample_high_energy`);
2. label them with DFT (:func:`softening_lib.dft.label`, GPAW-PBE here);
3. measure the softening scale ``s`` of each model on them;
4. fit the one-label correction ``c`` on ONE frame
   (:func:`softening_lib.correction.fit_scale`) and check it on the other frames.

:func:`get_frames` decides where the labelled frames come from, in order: the project's
shipped GPAW labels (``load("wbm-he-gpaw")``, when ``structure`` is a WBM id that the
campaign labelled), a fresh sampling + GPAW labelling (GPAW installed and
``allow_gpaw=True``), or -- without GPAW -- the shipped example :data:`EXAMPLE`, saying so.
``structure`` may be a WBM id (``wbm-1-25229``), a structure file ASE can read, or an
``ase.build.bulk`` spec ``"bulk:Si:diamond:5.43"``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from ase import Atoms

from .. import correction, datasets, metrics, predict

EXAMPLE = "wbm-1-25229"  # LiGa, labelled by the campaign (data/reference/wbm_he_gpaw)

PRESETS: dict[str, dict[str, Any]] = {
    # MD length, frames sampled, frames labelled with GPAW when labelling fresh
    "smoke": {"total_time_ps": 0.2, "n_frames": 10, "n_label": 2,
              "dft": {"kpt_density": 1.5, "ecut": 350.0}},
    "default": {"total_time_ps": 20.0, "n_frames": 10, "n_label": 3, "dft": {"kpt_density": 2.0}},
    "full": {"total_time_ps": 20.0, "n_frames": 10, "n_label": 10, "dft": {"kpt_density": 2.0}},
}


class NoLabelsError(RuntimeError):
    pass


def resolve_structure(structure: str) -> Atoms:
    """A WBM id, a file path or ``bulk:<symbol(s)>:<crystalstructure>:<a>`` -> Atoms."""
    if structure.startswith("wbm-"):
        found = datasets.load("wbm-equilibrium", subset=[structure])
        if not found:
            raise NoLabelsError(f"{structure} is not among the 972 WBM structures of wbm-equilibrium")
        atoms = found[0]
        atoms.calc = None
        return atoms
    if structure.startswith("bulk:"):
        from ase.build import bulk

        parts = structure.split(":")[1:]
        name = parts[0]
        kw: dict[str, Any] = {}
        if len(parts) > 1 and parts[1]:
            kw["crystalstructure"] = parts[1]
        if len(parts) > 2 and parts[2]:
            kw["a"] = float(parts[2])
        atoms = bulk(name, **kw)
        atoms.info.update(material_id=structure, formula=atoms.get_chemical_formula(mode="metal"))
        return atoms
    path = Path(structure)
    if path.is_file():
        from ase.io import read

        atoms = read(path)
        atoms.info.setdefault("material_id", path.stem)
        atoms.info.setdefault("formula", atoms.get_chemical_formula(mode="metal"))
        return atoms
    raise NoLabelsError(f"cannot understand structure {structure!r}: give a WBM id, a file, or bulk:Si:diamond:5.43")


def shipped_frames(material_id: str) -> list[Atoms]:
    try:
        frames = datasets.load("wbm-he-gpaw", subset=[material_id])
    except datasets.DatasetError:
        return []
    return sorted(frames, key=lambda a: int(a.info["frame_id"]))


def get_frames(structure: str = EXAMPLE, preset: str = "default", model: str = "chgnet-0.3.0",
               allow_gpaw: bool = True, seed: int = 0) -> tuple[list[Atoms], dict[str, Any]]:
    """Labelled frames of ``structure`` and a note on where they came from."""
    from ..dft import gpaw_available

    frames = shipped_frames(structure) if structure.startswith("wbm-") else []
    if frames:
        return frames, {"source": "shipped", "structure": structure,
                        "text": f"{len(frames)} frames of {structure} labelled by this project's GPAW-PBE "
                                "campaign (data/reference/wbm_he_gpaw, see its PROVENANCE.md)"}
    ok, why = gpaw_available()
    if ok and allow_gpaw:
        return label_fresh(structure, preset=preset, model=model, seed=seed)
    example = shipped_frames(EXAMPLE)
    if not example:
        raise NoLabelsError(f"no shipped labels for {structure}, GPAW unavailable ({why}) and the example "
                            f"{EXAMPLE} is not in data/reference/wbm_he_gpaw either")
    reason = why if not ok else "GPAW labelling switched off (allow_gpaw=False)"
    return example, {"source": "example", "structure": EXAMPLE, "requested": structure,
                     "text": f"{structure} cannot be labelled here ({reason}); showing the shipped "
                             f"GPAW labels of {EXAMPLE} instead"}


def label_fresh(structure: str, preset: str = "default", model: str = "chgnet-0.3.0",
                seed: int = 0) -> tuple[list[Atoms], dict[str, Any]]:
    """Sample with ``model`` and label ``n_label`` frames (the unstrained first, then strained)."""
    from ..dft import label
    from ..sampling import sample_high_energy

    p = PRESETS[preset]
    atoms = resolve_structure(structure)
    t0 = time.time()
    frames = sample_high_energy(atoms, model=model, total_time_ps=p["total_time_ps"],
                                n_frames=p["n_frames"], seed=seed)
    md_s = time.time() - t0
    # label a mix: frame 0 (the training label) and spread the rest over the run
    picks = sorted(set(np.linspace(0, len(frames) - 1, p["n_label"]).round().astype(int).tolist()))
    labelled = []
    for k in picks:
        lab, _ = label(frames[k], **p["dft"])
        labelled.append(lab)
    return labelled, {"source": "gpaw", "structure": structure, "md_seconds": round(md_s, 1),
                      "dft_seconds": round(sum(a.info.get("dft_wall_time_s", 0) for a in labelled), 1),
                      "text": f"{len(labelled)} of {len(frames)} sampled frames of {structure} labelled here with "
                              f"GPAW ({p['total_time_ps']} ps MD, preset {preset})"}


def evaluate(frames: Sequence[Atoms], models: Sequence[str], train_frame: int = 0):
    """One row per model: softening scale on all frames, c fitted on ``train_frame``, and
    held-out force MAE before/after the correction (other frames)."""
    import pandas as pd

    dft = [np.asarray(a.get_forces()) for a in frames]
    rows, parity = [], {}
    for model in models:
        out = predict.predict(list(frames), model)
        mlip = out["forces"]
        row = {"model": model, "n_frames": len(frames), "n_components": int(sum(f.size for f in dft)),
               "softening_scale": metrics.softening_scale(dft, mlip),
               "mae": metrics.mae(dft, mlip), "cmae": metrics.cmae(dft, mlip)}
        if len(frames) >= 2:
            h = correction.heldout_scores(dft, mlip, train=[train_frame])[0]
            row.update(c=h["c"], mae_heldout_raw=h["mae_raw"], mae_heldout_corrected=h["mae_corrected"],
                       s_heldout_raw=h["s_raw"], s_heldout_corrected=h["s_corrected"])
        else:
            row.update(c=correction.fit_scale(dft[0], mlip[0]))
        rows.append(row)
        parity[model] = (np.concatenate([f.ravel() for f in dft]), np.concatenate([f.ravel() for f in mlip]),
                         np.concatenate([np.full(f.size, i) for i, f in enumerate(dft)]))
    return pd.DataFrame(rows), parity


def parity_figure(parity: dict, table, train_frame: int = 0, title: str = ""):
    import matplotlib.pyplot as plt

    n = len(parity)
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 4.2), squeeze=False)
    for ax, (model, (x, y, frame)) in zip(axes[0], parity.items()):
        row = table.set_index("model").loc[model]
        train = frame == train_frame
        ax.scatter(x[~train], y[~train], s=8, alpha=0.6, color="#E69F00", label="other frames")
        ax.scatter(x[train], y[train], s=10, alpha=0.8, color="#C0392B", label=f"frame {train_frame} (the label)")
        lim = float(max(np.abs(x).max(), np.abs(y).max())) * 1.05
        ax.plot([-lim, lim], [-lim, lim], color="k", lw=0.8)
        ax.plot([-lim, lim], [-lim * row.softening_scale, lim * row.softening_scale], "--", color="#2C7FB8",
                lw=1.2, label=f"slope s = {row.softening_scale:.3f}")
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_aspect("equal")
        ax.set_xlabel("GPAW force component (eV/Å)")
        ax.set_ylabel(f"{model} force component (eV/Å)")
        ax.legend(fontsize=8, loc="upper left")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def run(structure: str = EXAMPLE, models: Sequence[str] = ("chgnet-0.3.0",), preset: str = "default",
        train_frame: int = 0, allow_gpaw: bool = True) -> dict[str, Any]:
    frames, note = get_frames(structure, preset=preset, model=models[0] if models else "chgnet-0.3.0",
                              allow_gpaw=allow_gpaw)
    table, parity = evaluate(frames, models, train_frame=train_frame)
    return {"frames": frames, "note": note, "table": table, "parity": parity}


# --------------------------------------------------------------------------------------
# the task contract (softening_lib.task): cases / compute / reference
# --------------------------------------------------------------------------------------

TASK = "your_own_system"


def cases(preset: str = "default", *, structure: str = EXAMPLE, train_frame: int = 0,
          allow_gpaw: bool = True) -> list[dict]:
    """One case: the structure whose labelled frames the chapter scores (see :func:`get_frames`)."""
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {preset!r}")
    return [{"id": structure, "structure": structure, "preset": preset, "train_frame": train_frame,
             "allow_gpaw": allow_gpaw}]


def compute(model: str, cases: Sequence[dict], *, calc=None, progress=None) -> list[dict]:
    """Per structure: softening scale, MAE, c and held-out MAEs of ``model`` on the labelled frames
    (not cached: a few single points; fresh GPAW labels are the slow part, done by :func:`get_frames`)."""
    from .. import task

    def one(case: dict) -> dict:
        frames, note = get_frames(case["structure"], preset=case["preset"], model=model,
                                  allow_gpaw=case["allow_gpaw"])
        if calc is not None:
            out = predict.predict(list(frames), model, calc=calc)
            dft = [np.asarray(a.get_forces()) for a in frames]
            row = {"softening_scale": metrics.softening_scale(dft, out["forces"]), "mae": metrics.mae(dft, out["forces"])}
        else:
            table, _ = evaluate(frames, [model], train_frame=case["train_frame"])
            row = table.iloc[0].drop(labels=["model"]).to_dict()
        return {**row, "source": note["source"], "frames_of": note["structure"]}

    out = []
    for case in task.progress_iter(list(cases), progress, desc=f"your system {model}"):
        out.append(task.run_case(one, case["id"], model, case, finite=("softening_scale",)))
    return out


def reference(structure: str = EXAMPLE, **_: Any) -> list[Atoms]:
    """The shipped GPAW-PBE labels of ``structure`` (empty when it has none; the chapter may label afresh)."""
    return shipped_frames(structure) if structure.startswith("wbm-") else []
