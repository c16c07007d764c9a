"""scripts/gpaw_solid_solution_migration.py on the Dask executor: a 2-worker LocalCluster runs the
chapter-5 static queue with a Lennard-Jones stand-in for GPAW (the mirror records are the script's
own); existing records stay byte-for-byte, skipped/failed ones count as finished, --only and --max
are respected, and the records equal a serial run's."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

pytest.importorskip("distributed")
cloudpickle = pytest.importorskip("cloudpickle")

ROOT = Path(__file__).resolve().parent.parent
PATH_ID = "MgO-vac-s1"  # 7 images: 4 computed, 3 mirrored


@pytest.fixture()
def q(monkeypatch):
    import importlib.util

    spec = importlib.util.spec_from_file_location("gpaw_ssm_as__main__", ROOT / "scripts" / "gpaw_solid_solution_migration.py")
    mod = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, mod)
    spec.loader.exec_module(mod)
    # the workers cannot import a script by name: distributed pickles by value (cloudpickle) what
    # refers to "__main__", as the script run from the command line is
    cloudpickle.register_pickle_by_value(mod)
    real, atoms_record = mod.run_item, mod._atoms_record

    def fake_run_item(item):
        """LJ stand-in for GPAW on computed images; mirror images go through the script's own path."""
        import numpy as np
        from ase.calculators.lj import LennardJones

        if item.get("mirror_of") is not None:
            return real(item)
        a = item["atoms"].copy()
        a.calc = LennardJones(sigma=2.0, epsilon=0.01, rc=5.0)
        f = a.get_forces()
        return {"id": item["id"], "kind": item["kind"], "status": "ok", "mode": "static",
                "path_id": item["path"].id, "index": item["index"], "energy": float(a.get_potential_energy()),
                "converged": True, "fmax": float(np.linalg.norm(f, axis=1).max()), "forces": f.tolist(),
                "structure": atoms_record(a), "dft": {"code": "LJ stand-in"}, "wall_time_s": 0.0,
                "cpu_time_s": 0.0, "worker_pid": os.getpid()}

    monkeypatch.setattr(mod, "run_item", fake_run_item)
    yield mod
    cloudpickle.unregister_pickle_by_value(mod)


def _records(root: Path) -> dict[str, dict]:
    out = {}
    for p in sorted((root / "migration_gpaw").rglob("image_*.json")):
        r = json.loads(p.read_text())
        r.pop("worker_pid", None)
        r.pop("host", None)
        out[str(p.relative_to(root))] = r
    return out


def _main(q, root, *extra):
    q.main(["--stage", "mig-static", "--only", f"{PATH_ID}/*", "--reference-dir", str(root), "--workers", "2",
            *extra])


def test_queue_on_two_workers_equals_serial_keeps_records_and_writes_mirrors(q, tmp_path):
    serial, dask = tmp_path / "serial", tmp_path / "dask"
    items = [it for it in q.mig_items("static", serial) if it["path"].id == PATH_ID]
    for g in q.group_items(items):
        q.run_group(False, g)
    ref = _records(serial)
    assert len(ref) == 7 and sum("mirror_of" in r for r in ref.values()) == 3

    # a finished record (computed elsewhere), a skipped one and a failed one are not redone
    d_items = {it["index"]: it for it in q.mig_items("static", dask) if it["path"].id == PATH_ID}
    q._write(d_items[1]["out"], {**q.run_item(d_items[1]), "host": "elsewhere"})
    q._write(d_items[3]["out"], {"id": d_items[3]["id"], "status": "skipped", "reason": "test"})
    kept = {i: d_items[i]["out"].read_bytes() for i in (1, 3)}
    _main(q, dask)
    assert {i: d_items[i]["out"].read_bytes() for i in (1, 3)} == kept
    got = _records(dask)
    assert len(got) == 7
    for k, r in ref.items():
        if f"image_03" in k:
            continue  # the skipped record stays skipped
        assert got[k]["energy"] == r["energy"] and got[k]["forces"] == r["forces"], k
    # the mirror of the skipped image 3 is none (3 is the middle of 7); mirrors of 0/1/2 are written
    assert {got[k].get("mirror_of") for k in got} >= {0, 1, 2}
    # a second run finds everything done: nothing changes
    before = {p: p.read_bytes() for p in dask.rglob("image_*.json")}
    _main(q, dask)
    assert {p: p.read_bytes() for p in dask.rglob("image_*.json")} == before


def test_only_and_max_are_respected(q, tmp_path):
    _main(q, tmp_path, "--max", "1")
    got = _records(tmp_path)
    # one task: the cheapest group (a computed image and its mirror when it has one), nothing else
    assert 1 <= len(got) <= 2 and all(r["path_id"] == PATH_ID for r in got.values())
    assert sum("mirror_of" not in r for r in got.values()) == 1
    q.main(["--stage", "mig-static", "--only", f"{PATH_ID}/static/00", "--reference-dir", str(tmp_path / "one"),
            "--workers", "2"])
    one = _records(tmp_path / "one")
    assert list(one) == [f"migration_gpaw/{PATH_ID}/static/image_00.json"]


def test_failed_records_wait_for_retry_failed(q, tmp_path):
    it = next(i for i in q.mig_items("static", tmp_path) if i["id"] == f"{PATH_ID}/static/00")
    q._write(it["out"], {"id": it["id"], "status": "failed", "error": "SCF"})
    assert q.item_done(it) and not q.item_done(it, retry_failed=True)
    q.main(["--stage", "mig-static", "--only", it["id"], "--reference-dir", str(tmp_path), "--workers", "2"])
    assert json.loads(it["out"].read_text())["status"] == "failed"
    q.main(["--stage", "mig-static", "--only", it["id"], "--reference-dir", str(tmp_path), "--workers", "2",
            "--retry-failed"])
    assert json.loads(it["out"].read_text())["status"] == "ok"
