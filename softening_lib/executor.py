"""One executor for every long queue: Dask distributed.

    from softening_lib import executor
    out = executor.run_queue(items, fn, key=lambda it: it["id"], done=lambda it: store.has(...))

The contract (what makes a queue safe to kill, resume and spread over machines):

* one task = one item = one record, written by ``fn(item)`` itself, atomically
  (:func:`softening_lib.cache.atomic_write_text` / ``ResultStore.put`` / ``save_arrays``), so a
  killed task leaves either nothing or a whole record;
* ``fn`` is idempotent: computing an item twice gives the same record (a record may be written
  twice after a worker is killed between the write and the report; never two different ones);
* a finished record is never recomputed: items for which ``done(item)`` is true are not
  submitted, and the worker asks ``done(item)`` again before computing (another worker, or a
  run before a kill, may have finished it meanwhile);
* a task whose worker dies is run again elsewhere (Dask reschedules it; ``allowed_failures``
  deaths per task, default 3), an exception in ``fn`` is retried ``retries`` times, then the item
  is reported as failed and the queue goes on.

Where it runs (``scheduler``):

* ``None``: a :class:`distributed.LocalCluster` here, one single-threaded worker *process* per
  core (``workers`` or the cores this process may use, :func:`n_cores`; ``OMP_NUM_THREADS=1``
  and friends inside every worker);
* ``"tcp://host:8786"``: an existing cluster (``dask scheduler`` + ``dask worker --nthreads 1``
  on each node, or :func:`slurm_cluster`'s);
* ``"slurm"``: :func:`slurm_cluster` with ``workers`` jobs' worth of cores (see there).

The client prints the dashboard address and shows a progress bar. Command lines take the same
choice as ``--scheduler ADDRESS|slurm`` / ``--workers N`` (:func:`add_arguments`).
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from typing import Any, Callable, Hashable, Iterable, Sequence

#: environment of every worker process (one thread each: two torch or GPAW threads on one core
#: are several times slower than one)
WORKER_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
#: for a queue of GPAW calculations: N workers are N concurrent GPAW runs, so the machine-wide
#: "one GPAW at a time" lock of softening_lib.dft.gpaw_lock is off inside them
GPAW_ENV = {"SOFTENING_GPAW_LOCK": "0"}


def gpaw_env(workers: int, scheduler: Any = None) -> dict[str, str] | None:
    """``env`` for :func:`run_queue` of a GPAW queue: :data:`GPAW_ENV` when it starts a local
    cluster of several workers (several GPAW runs at once by design), else ``None`` (one worker
    keeps the machine-wide lock; an existing cluster's workers bring their own environment)."""
    return GPAW_ENV if workers > 1 and scheduler is None else None
DEFAULT_RETRIES = 2


def n_cores() -> int:
    """The cores this process may run on (``sched_getaffinity``; not GNU ``nproc``, which
    honours ``OMP_NUM_THREADS``)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def single_thread() -> None:
    """Make the calling process single-threaded for numpy/torch (idempotent)."""
    for k, v in WORKER_ENV.items():
        os.environ.setdefault(k, v)
    if "torch" in sys.modules or _importable("torch"):
        try:
            import torch

            if torch.get_num_threads() != 1:
                torch.set_num_threads(1)
        except Exception:  # noqa: BLE001 - torch is optional here
            pass


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


# --------------------------------------------------------------------------------------
# clusters
# --------------------------------------------------------------------------------------

def local_cluster(workers: int | None = None, *, env: dict[str, str] | None = None, dashboard: bool = True,
                  memory_limit: str | int = "auto", **kw: Any):
    """A :class:`distributed.LocalCluster`: ``workers`` (default :func:`n_cores`) worker processes
    with one thread each, ``OMP_NUM_THREADS=1`` inside; the dashboard on a free port."""
    from distributed import LocalCluster

    n = int(workers) if workers else n_cores()
    if n < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    return LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                        env={**WORKER_ENV, **(env or {})},
                        dashboard_address=":0" if dashboard else None,
                        memory_limit=memory_limit, **kw)


def slurm_cluster(jobs: int = 1, *, cores: int = 16, memory: str = "64GB", walltime: str = "04:00:00",
                  queue: str | None = None, account: str | None = None, python: str | None = None,
                  setup: Sequence[str] = (), local_directory: str | None = None, scale: bool = False,
                  **kw: Any):
    """The SLURM recipe (``dask-jobqueue``): each SLURM job is one node slice of ``cores`` cores
    running ``cores`` single-threaded worker processes, ``OMP_NUM_THREADS=1`` exported::

        cluster = executor.slurm_cluster(jobs=4, cores=32, memory="120GB", walltime="08:00:00",
                                         queue="compute", account="proj123",
                                         setup=["source /path/to/softening/.venv/bin/activate",
                                                "export SOFTENING_DATA_DIR=/shared/softening-data"])
        executor.run_queue(items, fn, key=..., done=..., scheduler=cluster)    # or
        python -m softening_lib compute ... --scheduler slurm --workers 128     # 4 jobs x 32

    The results folder (``SOFTENING_RESULTS_DIR``) must be on a file system every node sees;
    records are written atomically there by the workers. ``scale=True`` submits the jobs
    (``sbatch``) at once; otherwise :func:`run_queue` scales to ``jobs`` when it starts.
    """
    from dask_jobqueue import SLURMCluster

    prologue = [f"export {k}={v}" for k, v in WORKER_ENV.items()] + list(setup)
    cluster = SLURMCluster(cores=cores, processes=cores, memory=memory, walltime=walltime, queue=queue,
                           account=account, python=python or sys.executable, job_script_prologue=prologue,
                           local_directory=local_directory, **kw)
    cluster._softening_jobs = int(jobs)  # run_queue scales to this many jobs
    if scale:
        cluster.scale(jobs=int(jobs))
    return cluster


@contextlib.contextmanager
def client_for(scheduler: Any = None, workers: int | None = None, *, log: Callable[[str], Any] | None = print,
               **cluster_kw: Any):
    """A :class:`distributed.Client` for ``scheduler`` (see the module docstring); the cluster it
    started is closed on exit (an existing one is left running)."""
    from distributed import Client

    own = None
    if scheduler is not None and scheduler != "local":
        cluster_kw.pop("env", None)  # a remote cluster's workers have their own environment
    if scheduler is None or scheduler == "local":
        own = local_cluster(workers, **cluster_kw)
        client = Client(own)
    elif scheduler == "slurm":
        own = slurm_cluster(jobs=max(1, -(-int(workers or 16) // 16)), **cluster_kw)
        own.scale(jobs=own._softening_jobs)
        client = Client(own)
    elif isinstance(scheduler, str):
        client = Client(scheduler)
    else:  # a cluster object (LocalCluster, SLURMCluster, ...)
        if getattr(scheduler, "_softening_jobs", None) and not scheduler.workers:
            scheduler.scale(jobs=scheduler._softening_jobs)
        client = Client(scheduler)
    if log:
        n = len(client.scheduler_info().get("workers", {}))
        log(f"dask: scheduler {client.scheduler.address}, {n} worker(s) now; dashboard {client.dashboard_link}")
    try:
        yield client
    finally:
        client.close()
        if own is not None:
            own.close()


# --------------------------------------------------------------------------------------
# the queue
# --------------------------------------------------------------------------------------

def _run_item(fn: Callable[[Any], Any], done: Callable[[Any], bool] | None, item: Any,
              deadline: float | None = None) -> tuple[str, Any]:
    """What a worker runs for one item: ``("cached", None)`` if its record appeared meanwhile,
    ``("not started", None)`` past ``deadline`` (epoch seconds), else ``("computed", fn(item))``."""
    single_thread()
    if done is not None and done(item):
        return "cached", None
    if deadline is not None and time.time() > deadline:
        return "not started", None
    return "computed", fn(item)


class QueueResult(dict):
    """``{key: fn(item)}`` for the items computed by this run, with ``.cached`` (keys whose
    record was there before or appeared meanwhile), ``.failed`` (``{key: error text}``),
    ``.not_started`` (keys left when the deadline passed) and ``.seconds``."""

    cached: list
    failed: dict
    not_started: list
    seconds: float

    def summary(self) -> str:
        extra = f", {len(self.not_started)} not started (deadline)" if self.not_started else ""
        return (f"{len(self)} computed, {len(self.cached)} cached, {len(self.failed)} failed{extra} "
                f"in {self.seconds:.1f} s")


def run_queue(items: Iterable[Any], fn: Callable[[Any], Any], *, key: Callable[[Any], Hashable],
              done: Callable[[Any], bool] | None = None, scheduler: Any = None, workers: int | None = None,
              progress: bool = True, retries: int = DEFAULT_RETRIES,
              priority: Callable[[Any], float] | None = None, log: Callable[[str], Any] | None = print,
              client: Any = None, desc: str = "tasks", deadline: float | None = None,
              **cluster_kw: Any) -> QueueResult:
    """Run ``fn(item)`` for every item whose record is not there yet, on Dask (see the module
    docstring for the contract and for ``scheduler`` / ``workers``).

    ``key(item)``: a unique, stable name of the item's record (becomes the Dask key).
    ``done(item)``: true when the item's record exists (checked here before submitting, and on the
    worker before computing). ``priority(item)``: larger runs first (e.g. the largest supercells,
    so the workers drain evenly). ``client``: an existing :class:`distributed.Client` (then
    ``scheduler`` / ``workers`` are ignored). ``deadline`` (epoch seconds): no item starts after
    it (running ones finish). ``cluster_kw`` go to :func:`local_cluster` (e.g. ``env=GPAW_ENV``).
    ``fn``, ``done`` and the items must pickle (module-level functions, ``functools.partial``).
    Returns a :class:`QueueResult`.
    """
    from distributed import as_completed

    t0 = time.perf_counter()
    items = list(items)
    keys = [key(it) for it in items]
    if len(set(keys)) != len(keys):
        dup = sorted({str(k) for k in keys if keys.count(k) > 1})[:5]
        raise ValueError(f"run_queue: keys must be unique, repeated: {', '.join(dup)}")
    out = QueueResult()
    out.cached, out.failed, out.not_started = [], {}, []
    todo = []
    for k, it in zip(keys, items):
        if done is not None and done(it):
            out.cached.append(k)
        else:
            todo.append((k, it))
    if log:
        log(f"run_queue {desc}: {len(items)} items, {len(out.cached)} already done, {len(todo)} to run")
    if not todo:
        out.seconds = time.perf_counter() - t0
        return out
    ctx = contextlib.nullcontext(client) if client is not None else client_for(scheduler, workers, log=log,
                                                                               **cluster_kw)
    with ctx as cl:
        futures = {}
        for k, it in todo:
            prio = int(priority(it)) if priority is not None else 0
            fut = cl.submit(_run_item, fn, done, it, deadline, key=f"{desc}-{_key_text(k)}", pure=False,
                            retries=retries, priority=prio)
            futures[fut] = k
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(futures), desc=desc, unit="task")
        for fut in as_completed(list(futures)):
            k = futures[fut]
            try:
                state, value = fut.result()
            except Exception as exc:  # noqa: BLE001 - one item's error (or KilledWorker) never stops the queue
                out.failed[k] = f"{type(exc).__name__}: {exc}"
                if log:
                    log(f"run_queue {desc}: {k} FAILED ({out.failed[k][:300]})")
            else:
                if state == "cached":
                    out.cached.append(k)
                elif state == "not started":
                    out.not_started.append(k)
                else:
                    out[k] = value
            fut.release()
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
    out.seconds = time.perf_counter() - t0
    if log:
        log(f"run_queue {desc}: {out.summary()}")
    return out


def _key_text(k: Hashable) -> str:
    text = "-".join(map(str, k)) if isinstance(k, tuple) else str(k)
    return text.replace("/", "_")


def add_arguments(parser) -> None:
    """``--scheduler`` / ``--workers`` / ``--device`` for a command line (argparse)."""
    parser.add_argument("--scheduler", default=None,
                        help="Dask scheduler: omitted = a local cluster of --workers single-threaded processes; "
                             "tcp://HOST:PORT = an existing cluster; slurm = dask-jobqueue SLURM jobs "
                             "(softening_lib.executor.slurm_cluster)")
    parser.add_argument("--workers", type=int, default=None,
                        help=f"worker processes (default: the cores this process may use, {n_cores()} here)")
    parser.add_argument("--device", default=None, choices=["auto", "cpu", "cuda"],
                        help="where the MLIP runs (default $SOFTENING_DEVICE or cpu; auto = cuda when torch sees one)")


# --------------------------------------------------------------------------------------
# the queues of the book
# --------------------------------------------------------------------------------------

def _chapter_case(chapter: str, model: str, case: Any, device: str | None = None) -> dict:
    from . import task

    if device:
        from .devices import resolve

        os.environ["SOFTENING_DEVICE"] = resolve(device)  # predict.calculator's default in this worker
    return task.load_task(chapter).compute(model, [case])[0]


def _chapter_done(chapter: str, model: str, case: Any) -> bool:
    from . import task

    module = task.load_task(chapter)
    check = getattr(module, "is_cached", None)
    return bool(check(model, case)) if check is not None else False


def compute_chapter(chapter: str | int, models_: Sequence[str], preset: str = "default", *,
                    scheduler: Any = None, workers: int | None = None, device: str | None = None,
                    progress: bool = True, log: Callable[[str], Any] | None = print,
                    deadline: float | None = None, **params: Any) -> dict:
    """``compute`` of a chapter for several models, one Dask task per (model, case).

    For the CLI: ``python -m softening_lib compute --chapter 06 --model M --workers 16`` calls
    this when ``--workers`` or ``--scheduler`` is given. Each task runs the chapter's own
    ``compute(model, [case])`` (which caches its record); a task module with
    ``is_cached(model, case)`` has its finished cases skipped before submitting, and
    ``cost(case)`` orders the queue (most expensive first). Afterwards the records are read back
    through ``compute`` (cached) and one summary line per model is printed, as ``compute`` does.
    """
    from functools import partial

    from . import task

    label, name = task.resolve(chapter)
    module = task.load_task(chapter)
    cases = module.cases(preset, **params)
    case_id = {id(c): (c.get("id") if isinstance(c, dict) else str(c)) for c in cases}
    items = [(m, c) for m in models_ for c in cases]
    cost = getattr(module, "cost", None)

    res = run_queue(items, partial(_chapter_item, name, device), key=lambda it: (it[0], case_id[id(it[1])]),
                    done=partial(_chapter_item_done, name), scheduler=scheduler, workers=workers,
                    progress=progress, log=log, desc=f"{label}-{name}", deadline=deadline,
                    priority=(lambda it: cost(it[1])) if cost is not None else None)
    lines, failed = {}, 0
    for m in models_:
        records = module.compute(m, cases)  # reads what the workers cached
        lines[m] = task.summary_line(label, name, m, preset, records)
        failed += sum(r.get("status") == "failed" for r in records)
        if log:
            log(lines[m])
    return {"queue": res, "lines": lines, "failed": failed}


def cli_compute(chapters: Sequence[str], models_: Sequence[str], preset: str = "default", *,
                scheduler: Any = None, workers: int | None = None, device: str | None = None,
                progress: bool = True, **params: Any) -> int:
    """``python -m softening_lib compute ... --workers N | --scheduler ADDRESS``: every chapter's
    (model, case) tasks on the executor (:func:`compute_chapter`); exit status 1 when a case failed."""
    if device:
        from .devices import resolve

        os.environ["SOFTENING_DEVICE"] = resolve(device)
    failed = 0
    for chapter in chapters:
        failed += compute_chapter(chapter, models_, preset, scheduler=scheduler, workers=workers, device=device,
                                  progress=progress, **params)["failed"]
    return 1 if failed else 0


def _chapter_item(name: str, device: str | None, it: tuple) -> dict:
    return _chapter_case(name, it[0], it[1], device)


def _chapter_item_done(name: str, it: tuple) -> bool:
    return _chapter_done(name, it[0], it[1])


def _predict_item(device: str | None, kw: dict, it: tuple) -> int:
    from . import datasets, predict

    model, dataset = it
    frames = datasets.load(dataset)
    return len(predict.predict_cached(frames, model, dataset, progress=False, device=device, **kw))


def _predictions_done(it: tuple) -> bool:
    """Every material of the dataset has a cache file for the model (its geometry hash is
    checked again when the task reads it)."""
    from . import cache, config, datasets, models

    model, dataset = it
    root = config.results_dir() / "predictions" / cache.safe_name(dataset, "dataset") / cache.safe_name(
        models.model_id(model), "model id")
    if not root.is_dir():
        return False
    ids = {str(a.info.get("material_id", f"frame{i}")) for i, a in enumerate(datasets.load(dataset))}
    return all((root / f"{cache.safe_name(m, 'material_id')}.npz").is_file() for m in ids)


def predictions(models_: Sequence[str], datasets_: Sequence[str], *, scheduler: Any = None,
                workers: int | None = None, device: str | None = None, progress: bool = True,
                log: Callable[[str], Any] | None = print, **kw: Any) -> QueueResult:
    """Cached predictions (:func:`softening_lib.predict.predict_cached`) of every model on every
    dataset, one task per (model, dataset); ``kw`` go to ``predict_cached`` (``batch_size``,
    ``with_stress``, ...). Returns ``{(model, dataset): n frames}``."""
    from functools import partial

    items = [(m, d) for m in models_ for d in datasets_]
    return run_queue(items, partial(_predict_item, device, kw), key=lambda it: it, done=_predictions_done,
                     scheduler=scheduler, workers=workers, progress=progress, log=log, desc="predictions")


# --------------------------------------------------------------------------------------
# a demonstration queue (EMT): used by the tests and by ``python -m softening_lib.executor demo``
# --------------------------------------------------------------------------------------

def demo_items(n: int = 8) -> list[dict]:
    """``n`` small EMT cases: Cu/Al/Ni fcc cells, rattled with a per-item seed."""
    syms = ["Cu", "Al", "Ni", "Pd", "Ag", "Au", "Pt"]
    return [{"id": f"emt-{i:03d}", "symbol": syms[i % len(syms)], "seed": i, "size": 2 + (i % 2)} for i in range(n)]


def demo_path(out_dir: str, item: dict):
    from pathlib import Path

    return Path(out_dir) / f"{item['id']}.json"


def demo_done(out_dir: str, item: dict) -> bool:
    return demo_path(out_dir, item).is_file()


def demo_compute(out_dir: str, item: dict, delay: float = 0.0) -> dict:
    """One EMT record (energy, forces of a rattled supercell), written atomically."""
    import json

    import numpy as np
    from ase.build import bulk
    from ase.calculators.emt import EMT

    from .cache import atomic_write_text

    atoms = bulk(item["symbol"], "fcc", cubic=True).repeat(item["size"])
    atoms.rattle(0.05, seed=item["seed"])
    atoms.calc = EMT()
    t_start = time.time()
    if delay:
        time.sleep(delay)
    rec = {"id": item["id"], "energy": float(atoms.get_potential_energy()),
           "forces": np.asarray(atoms.get_forces()).round(12).tolist(), "pid": os.getpid(),
           "started": t_start}
    atomic_write_text(demo_path(out_dir, item), json.dumps(rec))
    return rec


def main(argv: list[str] | None = None) -> int:
    import argparse
    import tempfile
    from functools import partial

    ap = argparse.ArgumentParser(prog="python -m softening_lib.executor",
                                 description="demo: an EMT queue on the Dask executor")
    ap.add_argument("what", choices=["demo"])
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--delay", type=float, default=0.5)
    add_arguments(ap)
    args = ap.parse_args(argv)
    out = tempfile.mkdtemp(prefix="softening-executor-demo-")
    res = run_queue(demo_items(args.n), partial(demo_compute, out, delay=args.delay), key=lambda it: it["id"],
                    done=partial(demo_done, out), scheduler=args.scheduler, workers=args.workers, desc="demo")
    print(f"{len(res)} records in {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
