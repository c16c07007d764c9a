"""Frames per second of the softening-scale pipeline vs the alternatives, side by side.

    SOFTENING_DATA_DIR=... .venv/bin/python benchmarks/bench_softening.py --frames 50 --model chgnet-0.3.0

On the same frames (phonon displaced supercells of PhononDB-PBEsol, smallest first) and
the same model, interleaved repeats, best-of per method:

pipeline   ``softening_lib.predict.predict`` (what ``predict_cached`` runs on a cache miss):
           the model's batched API, forces (+ energy), no stress
(a) ASE    one ``atoms.calc = calc; atoms.get_forces()`` per structure, as matcalc's
           ``SofteningBenchmark`` does (the calculator computes what it always computes)
(b) bare   the model's batched forward + backward on graphs built in the same batches
           (CHGNet: ``graph_converter`` + ``model(graphs, task="ef")``); (b0) the same on
           graphs built beforehand (pure network time)

Prints frames/s and the ratios pipeline/(a) (target >= 3) and pipeline-time/(b)-time
(target <= 1.15). Timings on a shared machine are noisy: compare within one run only.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import numpy as np


def load_frames(n: int, max_atoms: int = 64, dataset: str = "phonondb-pbesol"):
    from softening_lib.tasks import high_energy as he

    if dataset != "phonondb-pbesol":  # e.g. wbm-he-gpaw: the paper's kind of frames (small cells)
        from softening_lib import datasets

        return [a for a in datasets.load(dataset) if len(a) <= max_atoms][:n]
    frames: list = []
    for mp_id in he.phonondb_subset(60):
        fr, _ = he.load_frames("phonondb-pbesol", [mp_id])
        frames += [a for a in fr if not a.info.get("residual_reference") and len(a) <= max_atoms]
        if len(frames) >= n:
            break
    return frames[:n]


def run_pipeline(frames, model, batch_size):
    from softening_lib import predict

    return predict.predict(frames, model, batch_size=batch_size, with_stress=False)


def run_ase_loop(frames, calc):
    out = []
    for atoms in frames:
        work = atoms.copy()
        work.calc = calc
        out.append(work.get_forces())
    return out


def run_bare_chgnet(frames, chgnet, batch_size, graphs=None):
    import torch
    from pymatgen.io.ase import AseAtomsAdaptor

    out = []
    for i in range(0, len(frames), batch_size):
        if graphs is None:
            batch = [chgnet.graph_converter(AseAtomsAdaptor.get_structure(a)) for a in frames[i:i + batch_size]]
        else:
            batch = graphs[i:i + batch_size]
        pred = chgnet(batch, task="ef")
        out += [f.detach().numpy() for f in pred["f"]]
        del pred
    torch.set_grad_enabled(True)
    return out


def main(argv=None):
    warnings.filterwarnings("ignore")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=50)
    parser.add_argument("--model", default="chgnet-0.3.0")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-atoms", type=int, default=64, help="use frames up to this size")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--dataset", default="phonondb-pbesol",
                        help="phonondb-pbesol (displaced supercells, <= max-atoms) or a labelled set such as "
                             "wbm-he-gpaw (small high-energy cells, the paper's use case)")
    args = parser.parse_args(argv)

    from pymatgen.io.ase import AseAtomsAdaptor

    from softening_lib import predict

    frames = load_frames(args.frames, args.max_atoms, args.dataset)
    n_atoms = sum(len(a) for a in frames)
    calc = predict.calculator(args.model)
    chgnet = getattr(calc, "model", None) if args.model.startswith("chgnet") else None
    print(f"model {args.model}; {len(frames)} frames, {n_atoms} atoms ({min(map(len, frames))}-{max(map(len, frames))} per frame); "
          f"batch {args.batch_size}; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    methods = {"pipeline": lambda: run_pipeline(frames, args.model, args.batch_size),
               "(a) ASE loop": lambda: run_ase_loop(frames, calc)}
    graphs = None
    if chgnet is not None:
        graphs = [chgnet.graph_converter(AseAtomsAdaptor.get_structure(a)) for a in frames]
        methods["(b) bare batched"] = lambda: run_bare_chgnet(frames, chgnet, args.batch_size)
        methods["(b0) bare, graphs prebuilt"] = lambda: run_bare_chgnet(frames, chgnet, args.batch_size, graphs)
    run_pipeline(frames[:2], args.model, args.batch_size)  # warm-up
    times: dict[str, list[float]] = {k: [] for k in methods}
    results = {}
    for _ in range(args.repeats):
        for name, fn in methods.items():
            t0 = time.perf_counter()
            results[name] = fn()
            times[name].append(time.perf_counter() - t0)
    ref = results["pipeline"]["forces"]
    for name in methods:
        other = results[name]["forces"] if name == "pipeline" else results[name]
        dev = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) for a, b in zip(ref, other))
        best = min(times[name])
        print(f"{name:28s} {len(frames) / best:8.2f} frames/s  best {best:7.2f} s  "
              f"(all: {', '.join(f'{t:.2f}' for t in times[name])})  max |dF| vs pipeline {dev:.1e} eV/Å")
    t = {k: min(v) for k, v in times.items()}
    print(f"speed-up pipeline vs (a) ASE loop: {t['(a) ASE loop'] / t['pipeline']:.2f}x  (target >= 3)")
    if "(b) bare batched" in t:
        print(f"pipeline time / (b) bare batched time: {t['pipeline'] / t['(b) bare batched']:.2f}  (target <= 1.15)")
        print(f"pipeline time / (b0) graphs prebuilt:  {t['pipeline'] / t['(b0) bare, graphs prebuilt']:.2f}")


if __name__ == "__main__":
    main()
