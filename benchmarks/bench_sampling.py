"""Cost per MD step of the campaign's CHGNet MD: batched lock-step vs one compound at a time.

    SOFTENING_DATA_DIR=... OMP_NUM_THREADS=1 nice -n 15 .venv/bin/python benchmarks/bench_sampling.py --k 8 --steps 200

The K structures are the campaign's first K compounds (``campaign.select_compounds``, the
WBM relaxed cells), each with its campaign seed, the campaign's MD protocol (NVT Berendsen,
1000 K, 2 fs) but only ``--steps`` steps and ``--n-frames`` (default 1) frames:

one-by-one  ``sample_high_energy`` per compound (ASE ``NVTBerendsen`` + CHGNet's ASE
            calculator): what ``campaign run`` does with ``--md-batch 1``
batched     ``sample_high_energy_batch`` of all K (one batched CHGNet forward per step):
            ``campaign run --md-batch K``

Prints wall and CPU seconds per compound-step (one MD step of one compound) and the
ratios one-by-one/batched, the largest force difference between the batched call and the
ASE calculator on the starting cells (float32 batching noise), and the projected MD hours
of the campaign (``--n-compounds`` compounds x 10,000 steps). Timings on a shared machine
are noisy: compare within one run; use CPU time when the machine is loaded.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import numpy as np


def _timed(fn):
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w0, time.process_time() - c0


def main(argv=None):
    warnings.filterwarnings("ignore")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--k", type=int, default=8, help="number of compounds (batch size)")
    parser.add_argument("--steps", type=int, default=300, help="MD steps per compound")
    parser.add_argument("--model", default="chgnet-0.3.0")
    parser.add_argument("--timestep-fs", type=float, default=2.0)
    parser.add_argument("--n-frames", type=int, default=1,
                        help="frames per compound (the campaign: 10; building a frame costs a neighbour list, "
                             "a fixed cost outside the MD loop that would blur a short run's per-step time)")
    parser.add_argument("--n-compounds", type=int, default=60, help="campaign size for the projection")
    parser.add_argument("--paper-steps", type=int, default=10_000, help="MD steps per compound in the campaign")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    from softening_lib import campaign, datasets, predict
    from softening_lib.sampling import sample_high_energy, sample_high_energy_batch

    ids = campaign.select_compounds(args.k, **campaign.CAMPAIGN_DFT)
    by_id = {a.info["material_id"]: a for a in datasets.load("wbm-equilibrium", subset=ids)}
    structures = [by_id[m] for m in ids]
    seeds = [campaign.seed_for(m) for m in ids]
    calc = predict.calculator(args.model)
    md = {"temperature_K": 1000.0, "total_time_ps": args.steps * args.timestep_fs / 1000.0,
          "timestep_fs": args.timestep_fs, "n_frames": args.n_frames, "n_strained": min(4, args.n_frames // 2),
          "strain": 0.03,
          "thermostat": "berendsen"}
    n_atoms = [len(a) for a in structures]
    names = ", ".join(f"{m} {by_id[m].info.get('formula', '')}" for m in ids)
    print(f"model {args.model}; {len(ids)} compounds {names}; "
          f"{min(n_atoms)}-{max(n_atoms)} atoms; {args.steps} steps each; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}; "
          f"torch threads {torch.get_num_threads()}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores",
          flush=True)

    # warm-up (weights, graph converter, first-call overheads) and the batching noise of the forces
    batched_f = predict.predict(structures, args.model, calc=calc, batch_size=len(structures), with_stress=False)["forces"]
    dev = 0.0
    for atoms, fb in zip(structures, batched_f):
        work = atoms.copy()
        work.calc = calc
        dev = max(dev, float(np.abs(work.get_forces() - fb).max()))

    batch, w_b, c_b = _timed(lambda: sample_high_energy_batch(structures, model=args.model, calculator=calc,
                                                                seeds=seeds, **md))
    print(f"batched     done: {w_b:.1f} s wall, {c_b:.1f} s CPU", flush=True)
    single, w_s, c_s = _timed(lambda: [sample_high_energy(a, model=args.model, calculator=calc, seed=s, **md)
                                       for a, s in zip(structures, seeds)])
    print(f"one-by-one  done: {w_s:.1f} s wall, {c_s:.1f} s CPU", flush=True)

    n = len(structures) * args.steps
    for name, w, c in [("one-by-one (ASE)", w_s, c_s), (f"batched (K={len(structures)})", w_b, c_b)]:
        print(f"{name:22s} {1e3 * w / n:7.2f} ms wall, {1e3 * c / n:7.2f} ms CPU per compound-step")
    print(f"speed-up batched vs one-by-one: {w_s / w_b:.2f}x wall, {c_s / c_b:.2f}x CPU")
    first = max(float(np.abs(a[0].positions - b[0].positions).max()) for a, b in zip(single, batch))
    print(f"max |F(batched call) - F(ASE calculator)| on the starting cells: {dev:.1e} eV/A; "
          f"max position difference at frame 0 (step {batch[0][0].info['md_step']}): {first:.1e} A")
    hours = lambda per_step: args.n_compounds * args.paper_steps * per_step / 3600  # noqa: E731
    print(f"projected campaign MD ({args.n_compounds} compounds x {args.paper_steps} steps, CPU): "
          f"one-by-one {hours(c_s / n):.1f} h, batched {hours(c_b / n):.1f} h")


if __name__ == "__main__":
    main()
