"""matcalc 0.7.0's ``SofteningBenchmark`` next to this package's pipeline, on the same frames.

    pip install --no-deps matcalc==0.7.0 matminer==0.10.1     # the [bench] extra (see pyproject)
    SOFTENING_DATA_DIR=... OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_matcalc.py [--n-compounds 20]

Frames: ``datasets.load("wbm-he-gpaw")`` (600 GPAW-labelled high-energy frames, 60 compounds;
``--n-compounds N`` keeps the first N compounds). For every registry model that runs here and
covers a compound's elements:

matcalc    ``SofteningBenchmark(<those frames as its dataset file>).run(calc, name)``: one
           ``run_pes_calc`` (ASE, per structure) per frame, ``curve_fit`` slope per compound
matcalc, as loaded (matgl models) the same, with the potential in training mode, as
           ``matgl.load_model`` returns it and matcalc uses it (the registry puts it in eval
           mode; training mode builds a double-backward graph on every force call)
pipeline   ``softening_lib.predict.predict`` (validated, batched: CHGNet, matgl, SevenNet) +
           ``metrics.softening_scale`` per compound
bare       the same batches straight through the model's batched call (graph conversion +
           forward/backward, no validation, no result checks, no slope), with the same
           inference settings as the pipeline (parameters not requiring grad, matgl
           ``calc_stresses`` off): energies + forces, nothing else

What each side computes: matcalc's ``run_pes_calc`` asks the ASE calculator for energy, forces
and stress of every frame (its default, as users run it); the softening scale needs only the
forces, so the pipeline runs ``predict(..., with_stress=False)`` (energies + forces). That
skipped stress is part of the speed-up and the printout says so.

It prints per model: the speed-up matcalc-time / pipeline-time (target >= 3), pipeline-time /
bare-time (target <= 1.15), and the largest per-compound difference of the slopes. Then the
pipeline's throughput (frames/s) on the Dask executor with 1 and 2 workers (one task per
compound, models loaded on the workers beforehand) and the parallel efficiency. Timings on a
shared machine are noisy: best of ``--repeats``, interleaved.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from functools import partial
from pathlib import Path

import numpy as np


def load_frames(n_compounds: int | None):
    from softening_lib import datasets

    frames = datasets.load("wbm-he-gpaw")
    ids = list(dict.fromkeys(a.info["material_id"] for a in frames))
    if n_compounds:
        keep = set(ids[:n_compounds])
        frames = [a for a in frames if a.info["material_id"] in keep]
    return frames


def matcalc_dataset(frames, path: Path) -> Path:
    """The frames as matcalc's dataset: {material_id: {frame_key: {"structure", "vasp_f"}}}."""
    from monty.serialization import dumpfn
    from pymatgen.io.ase import AseAtomsAdaptor

    data: dict = {}
    for a in frames:
        mid = str(a.info["material_id"])
        data.setdefault(mid, {})[f"frame{int(a.info['frame_id'])}"] = {
            "structure": AseAtomsAdaptor.get_structure(a), "vasp_f": np.asarray(a.get_forces()).tolist()}
    dumpfn(data, path)
    return path


def covered(model: str, frames):
    from softening_lib import models

    out = []
    for a in frames:
        try:
            models.check_elements(model, set(a.get_chemical_symbols()))
        except models.UnsupportedElementError:
            continue
        out.append(a)
    return out


def pipeline(frames, model: str, batch_size: int) -> dict[str, float]:
    from softening_lib import metrics, predict

    out = predict.predict(frames, model, batch_size=batch_size, with_stress=False)
    by: dict[str, list[int]] = {}
    for i, a in enumerate(frames):
        by.setdefault(str(a.info["material_id"]), []).append(i)
    return {m: metrics.softening_scale([frames[i].get_forces() for i in idx], [out["forces"][i] for i in idx])
            for m, idx in by.items()}


def bare(frames, calc, batch_size: int) -> list:
    """Graph conversion + the model's batched forward/backward, same batches, nothing else."""
    import torch

    from softening_lib import predict

    family = predict.batched_family(calc)
    with predict.frozen_params(predict.model_module(calc, family)):
        if family == "matgl":
            with predict.matgl_stress(calc.potential, False):
                return _bare(frames, calc, batch_size, family)
        return _bare(frames, calc, batch_size, family)


def _bare(frames, calc, batch_size: int, family: str) -> list:
    import torch

    from softening_lib import predict

    plan = predict.batch_plan([len(a) for a in frames], predict.atoms_per_batch(calc, family), batch_size)
    out = []
    if family == "chgnet":
        from pymatgen.io.ase import AseAtomsAdaptor

        for b in plan:
            graphs = [calc.model.graph_converter(AseAtomsAdaptor.get_structure(frames[i])) for i in b]
            pred = calc.model(graphs, task="ef")
            out += [f.detach().numpy() for f in pred["f"]]
        torch.set_grad_enabled(True)
    elif family == "matgl":
        from torch_geometric.data import Batch

        pot = calc.potential
        for b in plan:
            got = [calc._atoms2graph.get_graph(frames[i]) for i in b]
            g = Batch.from_data_list([x[0] for x in got])
            lat = torch.stack([torch.as_tensor(np.asarray(x[1]), dtype=torch.float32).reshape(3, 3) for x in got])
            st = torch.stack([torch.as_tensor(np.asarray(x[2]), dtype=torch.float32).reshape(-1) for x in got])
            out.append(pot(g, lat, st)[1].detach().numpy())
    elif family == "sevenn":
        import sevenn._keys as KEY
        from sevenn.atom_graph_data import AtomGraphData
        from sevenn.train.dataload import unlabeled_atoms_to_graph
        from torch_geometric.data import Batch

        calc.model.set_is_batch_data(True)
        try:
            for b in plan:
                g = Batch.from_data_list([AtomGraphData.from_numpy_dict(unlabeled_atoms_to_graph(frames[i], calc.cutoff))
                                          for i in b])
                out.append(calc.model(g)[KEY.PRED_FORCE].detach().numpy())
        finally:
            calc.model.set_is_batch_data(False)
    else:
        raise ValueError("no batched path")
    return out


def run_matcalc(dataset: Path, calc, name: str):
    from matcalc.benchmark import SofteningBenchmark

    bm = SofteningBenchmark(benchmark_name=dataset)
    table = bm.run(calc, name)
    return {str(r["material_id"]): float(r[f"softening_scale_{name}"]) for _, r in table.iterrows()
            if r[f"softening_scale_{name}"] is not None}


# --- the Dask part: one task per compound ---------------------------------------------

def _compound_task(model: str, batch_size: int, frames) -> dict:
    return pipeline(frames, model, batch_size)


def _warm(model: str) -> str:
    from softening_lib import executor, predict

    executor.single_thread()
    predict.calculator(model)
    return model


def throughput(frames, model: str, batch_size: int, workers: int) -> float:
    from distributed import Client

    from softening_lib import executor

    by: dict[str, list] = {}
    for a in frames:
        by.setdefault(str(a.info["material_id"]), []).append(a)
    items = list(by.values())
    cluster = executor.local_cluster(workers, dashboard=False)
    client = Client(cluster)
    try:
        client.run(_warm, model)
        client.submit(_compound_task, model, batch_size, items[0], pure=False).result()  # first-call warm-up
        t0 = time.perf_counter()
        res = executor.run_queue(items, partial(_compound_task, model, batch_size),
                                 key=lambda fr: fr[0].info["material_id"], client=client, progress=False, log=None,
                                 desc=f"bench-{workers}")
        dt = time.perf_counter() - t0
        assert len(res) == len(items), res.failed
    finally:
        client.close()
        cluster.close()
    return len(frames) / dt


def main(argv=None) -> int:
    warnings.filterwarnings("ignore")
    import logging

    logging.disable(logging.WARNING)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-compounds", type=int, default=None, help="first N compounds only (default: all 60)")
    ap.add_argument("--models", nargs="*", default=None, help="default: every runnable registry model")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--workers", type=int, nargs="*", default=[1, 2], help="worker counts for the throughput")
    ap.add_argument("--throughput-model", default="chgnet-0.3.0")
    args = ap.parse_args(argv)

    from softening_lib import models, predict

    frames = load_frames(args.n_compounds)
    names, skipped = models.runnable(args.models or list(models.REGISTRY))
    print(f"{len(frames)} frames, {len({a.info['material_id'] for a in frames})} compounds, "
          f"{sum(map(len, frames))} atoms; batch {args.batch_size}; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}; "
          f"load average {os.getloadavg()[0]:.1f} on {len(os.sched_getaffinity(0))} cores")
    print("matcalc: energy + forces + stress per frame (run_pes_calc, its default); pipeline and bare: "
          "energies + forces only (the softening scale needs forces; stress skipped is part of the speed-up)")
    for n, why in skipped.items():
        print(f"  not run here: {n}: {why[:100]}")
    rows = []
    tmp = Path(tempfile.mkdtemp(prefix="bench-matcalc-"))
    for name in names:
        sub = covered(name, frames)
        if not sub:
            print(f"{name:24s} covers no compound of these frames; skipped")
            continue
        calc = predict.calculator(name)
        if predict.batched_family(calc) is None:
            print(f"{name:24s} has no batched path (ASE calculator); skipped")
            continue
        ds = matcalc_dataset(sub, tmp / f"{name}.json.gz")
        pipeline(sub[:4], name, args.batch_size)  # warm-up (lazy imports, first-call costs)
        times: dict[str, list[float]] = {"matcalc": [], "pipeline": [], "bare": [], "matcalc_loaded": []}
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            s_mc = run_matcalc(ds, calc, name.replace("-", "_"))
            t1 = time.perf_counter()
            s_pl = pipeline(sub, name, args.batch_size)
            t2 = time.perf_counter()
            bare(sub, calc, args.batch_size)
            t3 = time.perf_counter()
            times["matcalc"].append(t1 - t0)
            times["pipeline"].append(t2 - t1)
            times["bare"].append(t3 - t2)
            if predict.batched_family(calc) == "matgl":  # matcalc as its users run it: training mode
                calc.potential.train()
                try:
                    t4 = time.perf_counter()
                    run_matcalc(ds, calc, name.replace("-", "_"))
                    times["matcalc_loaded"].append(time.perf_counter() - t4)
                finally:
                    calc.potential.eval()
        t = {k: min(v) for k, v in times.items() if v}
        common = sorted(set(s_mc) & set(s_pl))
        dev = max(abs(s_mc[m] - s_pl[m]) for m in common)
        rows.append((name, len(sub), t, dev, len(common)))
        print(f"{name:24s} {len(sub):4d} frames  matcalc {t['matcalc']:7.2f} s  pipeline {t['pipeline']:6.2f} s  "
              f"bare {t['bare']:6.2f} s  speed-up {t['matcalc'] / t['pipeline']:5.2f}x (>= 3)  "
              f"pipeline/bare {t['pipeline'] / t['bare']:4.2f} (<= 1.15)  "
              f"max |s_matcalc - s_pipeline| {dev:.1e} over {len(common)} compounds", flush=True)
        if "matcalc_loaded" in t:
            print(f"{'':24s} matcalc on the potential as matgl.load_model returns it (training mode: a double-backward "
                  f"graph per force call) {t['matcalc_loaded']:7.2f} s: speed-up {t['matcalc_loaded'] / t['pipeline']:5.2f}x",
                  flush=True)
    if args.workers and args.throughput_model in names:
        tp = {}
        sub = covered(args.throughput_model, frames)
        for w in args.workers:
            tp[w] = throughput(sub, args.throughput_model, args.batch_size, w)
        base = tp[min(tp)]
        for w, v in tp.items():
            print(f"dask executor, {args.throughput_model}, {w} worker(s): {v:6.1f} frames/s, "
                  f"parallel efficiency {v / base / (w / min(tp)):.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
