"""Build the tiny MACE test model shipped in data/reference/tiny_mace/.

A ScaleShiftMACE with 8 scalar + 8 vector channels, r_max 4 Å, two interactions, for
Al, Ni, Cu, briefly fitted (a few hundred Adam steps on CPU) to EMT energies and forces of
rattled, strained fcc cells. It is a *test fixture* for the MACE code paths (registry import
path, MACECalculator, ``mace_run_train --foundation_model``), not a universal potential:
MACE-MP-0 weights are not on this machine.

    .venv/bin/python scripts/build_tiny_mace.py            # writes tiny_mace.model + PROVENANCE.md

Deterministic: seeds fixed; the data are generated here from ASE's EMT.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path

import mace  # noqa: F401  (import mace before e3nn)
import numpy as np
import torch
from ase.build import bulk
from ase.calculators.emt import EMT
from e3nn import o3
from mace import data as mace_data
from mace import modules, tools
from mace.tools import torch_geometric

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "data" / "reference" / "tiny_mace"
ELEMENTS = ["Al", "Ni", "Cu"]
R_MAX = 4.0
SEED = 0


def emt_frames(n: int = 36, seed: int = SEED):
    """Rattled (0.1 Å), strained (+-3 %) 4-atom fcc cells of Al, Ni, Cu and random Cu/Ni/Al mixes."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        base = ELEMENTS[i % 3]
        atoms = bulk(base, "fcc", a={"Al": 4.05, "Ni": 3.52, "Cu": 3.61}[base], cubic=True)
        if i % 2:
            atoms.symbols[:] = rng.choice(ELEMENTS, size=len(atoms))
        strain = 1 + rng.uniform(-0.03, 0.03, 3)
        atoms.set_cell(atoms.cell * strain[:, None], scale_atoms=True)
        atoms.positions += rng.normal(0, 0.1, atoms.positions.shape)
        atoms.calc = EMT()
        e, f, s = atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()
        atoms.calc = None
        atoms.info["REF_energy"] = e
        atoms.arrays["REF_forces"] = f
        atoms.info["REF_stress"] = s
        out.append(atoms)
    return out


def build(seed: int = SEED) -> torch.nn.Module:
    torch.manual_seed(seed)
    z_table = tools.AtomicNumberTable([13, 28, 29])
    interaction = modules.interaction_classes["RealAgnosticResidualInteractionBlock"]
    return modules.ScaleShiftMACE(
        r_max=R_MAX, num_bessel=4, num_polynomial_cutoff=5, max_ell=1,
        interaction_cls=interaction, interaction_cls_first=interaction,
        num_interactions=2, num_elements=len(z_table), hidden_irreps=o3.Irreps("8x0e+8x1o"),
        MLP_irreps=o3.Irreps("8x0e"), gate=torch.nn.functional.silu,
        atomic_energies=np.zeros(len(z_table)), avg_num_neighbors=12.0,
        atomic_numbers=z_table.zs, correlation=2, radial_type="bessel", radial_MLP=[16, 16],
        atomic_inter_scale=1.0, atomic_inter_shift=0.0,
    )


def fit(model, frames, steps: int = 300, lr: float = 5e-3):
    z_table = tools.AtomicNumberTable([13, 28, 29])
    keyspec = mace_data.KeySpecification(info_keys={"energy": "REF_energy", "stress": "REF_stress"},
                                         arrays_keys={"forces": "REF_forces"})
    configs = [mace_data.config_from_atoms(a, key_specification=keyspec) for a in frames]
    graphs = [mace_data.AtomicData.from_config(c, z_table=z_table, cutoff=R_MAX) for c in configs]
    loader = torch_geometric.dataloader.DataLoader(graphs, batch_size=len(graphs), shuffle=False)
    batch = next(iter(loader)).to_dict()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for step in range(steps):
        out = model(batch, training=True, compute_force=True)
        n = batch["ptr"][1:] - batch["ptr"][:-1]
        le = torch.mean(((out["energy"] - batch["energy"]) / n) ** 2)
        lf = torch.mean((out["forces"] - batch["forces"]) ** 2)
        loss = le + 10 * lf
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
    return losses


def main() -> None:
    torch.set_default_dtype(torch.float64)
    torch.set_num_threads(1)
    t0 = time.time()
    frames = emt_frames()
    model = build()
    # the E0s: mean EMT energy per atom (EMT's zero is the isolated-atom-ish reference)
    losses = fit(model, frames)
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / "tiny_mace.model"
    model = model.to(torch.float64).eval()
    torch.save(model, path)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    n_par = sum(p.numel() for p in model.parameters())
    meta = {"file": path.name, "sha256": sha, "bytes": path.stat().st_size, "n_parameters": n_par,
            "elements": ELEMENTS, "r_max": R_MAX, "hidden_irreps": "8x0e+8x1o", "num_interactions": 2,
            "correlation": 2, "max_ell": 1, "fit_steps": len(losses), "loss_first": losses[0],
            "loss_last": losses[-1], "seed": SEED, "mace_torch": mace.__version__ if hasattr(mace, "__version__") else "?",
            "torch": torch.__version__, "build_seconds": round(time.time() - t0, 1)}
    (OUT / "tiny_mace.json").write_text(json.dumps(meta, indent=1))
    (OUT / "PROVENANCE.md").write_text(f"""# tiny_mace.model: a tiny self-built MACE (test fixture)

Built by `scripts/build_tiny_mace.py` (this repository), deterministic (seed {SEED}).

- Architecture: `mace.modules.ScaleShiftMACE`, hidden irreps 8x0e+8x1o, 2 interactions
  (RealAgnosticResidualInteractionBlock), correlation 2, max_ell 1, r_max {R_MAX} Å,
  Bessel radial basis (4), radial MLP [16, 16]; {n_par:,} parameters; float64.
- Elements: Al, Ni, Cu. E0s are zero; no physical meaning beyond the toy fit.
- Weights: random initialisation (torch seed {SEED}) then {len(losses)} full-batch Adam steps
  (lr 5e-3, loss = per-atom energy MSE + 10 x force MSE) on 36 rattled (0.1 Å), strained
  (+-3 %) 4-atom fcc cells of Al, Ni, Cu and random mixtures labelled with ASE's EMT.
  Loss {losses[0]:.4g} -> {losses[-1]:.4g}.
- Saved with `torch.save(model)` (whole module), the format MACECalculator and
  `mace_run_train --foundation_model` read. sha256 `{sha}`.
- Software: mace-torch 0.3.16, torch {torch.__version__}.

What it is for: exercising the MACE code paths (the registry's import-path factory
`softening_lib.finetune:tiny_mace_calculator`, `MACECalculator`, and fine-tuning with
`mace_run_train --foundation_model ... --multiheads_finetuning False`) without the
MACE-MP-0 weights, which are not on this machine. It is NOT a universal potential and
never appears in the book's model comparisons.

License: CC BY 4.0 (this project). EMT: K. W. Jacobsen, P. Stoltze, J. K. Norskov,
Surf. Sci. 366, 394 (1996).
""")
    print(json.dumps(meta, indent=1))


if __name__ == "__main__":
    sys.exit(main())
