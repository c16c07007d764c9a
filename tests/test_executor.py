"""softening_lib.executor: the Dask queue (resume, kill a worker mid-task, SLURM recipe)."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from functools import partial

import pytest

pytest.importorskip("distributed")

from softening_lib import executor  # noqa: E402


def _records(folder):
    return {p.stem: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))}


def test_n_cores_is_the_affinity():
    assert executor.n_cores() == len(os.sched_getaffinity(0))


def test_serial_demo_is_deterministic(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for folder in (a, b):
        for it in executor.demo_items(3):
            executor.demo_compute(str(folder), it)
    ra, rb = _records(a), _records(b)
    assert ra.keys() == rb.keys()
    for k in ra:
        assert ra[k]["energy"] == rb[k]["energy"] and ra[k]["forces"] == rb[k]["forces"]


def test_done_items_are_never_submitted(tmp_path):
    items = executor.demo_items(4)
    for it in items:
        executor.demo_compute(str(tmp_path), it)
    before = {p: p.stat().st_mtime_ns for p in tmp_path.glob("*.json")}
    res = executor.run_queue(items, partial(executor.demo_compute, str(tmp_path)), key=lambda it: it["id"],
                             done=partial(executor.demo_done, str(tmp_path)), progress=False, log=None)
    assert len(res) == 0 and sorted(res.cached) == sorted(it["id"] for it in items)
    assert {p: p.stat().st_mtime_ns for p in tmp_path.glob("*.json")} == before


def test_kill_a_worker_mid_task(tmp_path):
    """A 2-worker LocalCluster; one worker process is SIGKILLed while it computes; every record
    comes out exactly once and equal to a serial run."""
    from distributed import Client

    items = executor.demo_items(8)
    serial = tmp_path / "serial"
    for it in items:
        executor.demo_compute(str(serial), it)
    out = tmp_path / "dask"
    killed = {}

    cluster = executor.local_cluster(2, dashboard=False)
    client = Client(cluster)
    try:
        def killer():
            deadline = time.time() + 60
            while time.time() < deadline and not killed:
                busy = {w: ks for w, ks in client.processing().items() if ks}
                started = [p for p in out.glob("*.json")]
                if busy and len(started) >= 1:  # the queue is running: kill a busy worker now
                    addr = sorted(busy)[0]
                    pid = client.run(os.getpid, workers=[addr])[addr]
                    killed.update(addr=addr, pid=pid, at=time.time(), keys=[str(k).split("demo-", 1)[-1] for k in busy[addr]],
                                  before={p.stem for p in out.glob("*.json")})
                    os.kill(pid, signal.SIGKILL)
                    return
                time.sleep(0.05)

        t = threading.Thread(target=killer, daemon=True)
        t.start()
        res = executor.run_queue(items, partial(executor.demo_compute, str(out), delay=1.0),
                                 key=lambda it: it["id"], done=partial(executor.demo_done, str(out)),
                                 client=client, progress=False, log=None, desc="demo")
        t.join(5)
    finally:
        client.close()
        cluster.close()
    assert killed, "no worker was killed (the queue ended too early)"
    assert not res.failed, res.failed
    # every item reported once: computed, or (a record written just before the kill) found done on retry
    assert sorted(list(res) + list(res.cached)) == sorted(it["id"] for it in items)
    got, ref = _records(out), _records(serial)
    assert got.keys() == ref.keys()
    for k in ref:
        assert got[k]["energy"] == ref[k]["energy"] and got[k]["forces"] == ref[k]["forces"]
    # the task the killed process was computing had no record then; it was computed again by a live one
    lost = [k for k in killed["keys"] if k not in killed["before"] and k in got]
    assert all(got[k]["pid"] != killed["pid"] or got[k]["started"] < killed["at"] for k in lost)
    assert not list(out.glob("*.tmp")) or all(p.name.startswith(".") for p in out.glob("*.tmp"))


def test_slurm_recipe_config():
    pytest.importorskip("dask_jobqueue")
    cluster = executor.slurm_cluster(jobs=3, cores=8, memory="30GB", walltime="02:00:00", queue="compute",
                                     account="proj1", setup=["export SOFTENING_DATA_DIR=/shared/data"])
    try:
        script = cluster.job_script()
        assert "#SBATCH --cpus-per-task=8" in script or "#SBATCH -n 1" in script
        assert "--nworkers 8" in script and "--nthreads 1" in script
        assert "export OMP_NUM_THREADS=1" in script and "export SOFTENING_DATA_DIR=/shared/data" in script
        assert "#SBATCH -p compute" in script and "#SBATCH -A proj1" in script and "#SBATCH -t 02:00:00" in script
        assert cluster._softening_jobs == 3 and not cluster.workers  # nothing submitted
    finally:
        cluster.close()


def test_gpaw_env_only_for_a_local_cluster_of_several_workers():
    from softening_lib import executor

    assert executor.gpaw_env(2) == executor.GPAW_ENV  # several GPAW runs at once: the lock is off
    assert executor.gpaw_env(1) is None  # one worker keeps the machine-wide lock
    assert executor.gpaw_env(4, "tcp://127.0.0.1:8786") is None  # an existing cluster: its own env
