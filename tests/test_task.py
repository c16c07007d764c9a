"""The task contract (softening_lib.task): every task module speaks the verbs; one bad case is a record."""

from __future__ import annotations

import importlib
import inspect
import math
import sys
import textwrap

import numpy as np
import pytest

from softening_lib import models, task

TASKS = ["softening_primer", "surfaces", "defects", "solid_solution", "migration", "phonons", "high_energy",
         "linear_correction", "fine_tuning", "model_zoo", "your_own_system", "gpaw_validation"]


def test_task_modules_are_found_on_disk():
    assert set(TASKS) <= set(task.task_names())


@pytest.mark.parametrize("name", TASKS)
def test_every_task_module_speaks_the_verbs(name):
    module = importlib.import_module(f"softening_lib.tasks.{name}")
    assert task.check_module(module) == []
    assert module.TASK == name
    sig = inspect.signature(module.compute)
    assert sig.parameters["calc"].default is None and sig.parameters["progress"].default is None
    assert callable(module.reference)


def test_no_module_main_left():
    for name in ("high_energy", "fine_tuning", "model_zoo"):
        assert not hasattr(importlib.import_module(f"softening_lib.tasks.{name}"), "main")


def test_core_does_not_import_tasks_statically():
    source = inspect.getsource(task)
    assert "from .tasks" not in source and "import softening_lib.tasks" not in source


@pytest.mark.parametrize("chapter, name", [("01", "softening_primer"), ("7", "high_energy"), ("05", "migration"),
                                           ("10", "model_zoo"), ("appendix_gpaw_validation", "gpaw_validation"),
                                           ("high_energy", "high_energy"), ("02_surfaces", "surfaces")])
def test_load_task_by_chapter_or_name(chapter, name):
    assert task.load_task(chapter).__name__ == f"softening_lib.tasks.{name}"


def test_load_task_unknown():
    with pytest.raises(KeyError, match="no task module"):
        task.load_task("99")


def _boom(exc):
    raise exc


def test_run_case_element_error_is_skipped():
    r = task.run_case(_boom, "LiF", "m", models.UnsupportedElementError(
        "model 'm' does not cover element(s) F; skip this structure"))
    assert r["status"] == "skipped" and r["reason"].startswith("F:") and r["case"] == "LiF"
    # a calculator's own error naming an element of the case (ASE's EMT on LiF)
    r = task.run_case(_boom, "LiF", "m", NotImplementedError("No EMT-potential for Li"), elements={"Li", "F"})
    assert r["status"] == "skipped" and r["reason"].startswith("Li:")
    r = task.run_case(_boom, "LiF", "m", KeyError("F"), elements={"Li", "F"})
    assert r["status"] == "skipped" and "fluorine" in r["reason"]


def test_run_case_other_errors_and_non_finite_are_failed():
    r = task.run_case(_boom, "c", "m", ValueError("bad geometry"))
    assert r["status"] == "failed" and "ValueError: bad geometry" in r["reason"]
    # an element symbol in an unrelated message is not an element error
    r = task.run_case(_boom, "c", "m", RuntimeError("In the cell, the SCF did not converge"), elements={"In"})
    assert r["status"] == "failed"
    r = task.run_case(lambda: {"gamma": float("nan"), "fmax": 0.1}, "c", "m")
    assert r["status"] == "failed" and "gamma" in r["reason"]
    r = task.run_case(lambda: {"gamma": 1.0, "fmax": float("nan")}, "c", "m", finite=("gamma",))
    assert r["status"] == "ok" and r["gamma"] == 1.0 and math.isnan(r["fmax"])
    r = task.run_case(lambda: np.array([1.0, np.inf]), "c", "m")
    assert r["status"] == "failed"
    with pytest.raises(KeyboardInterrupt):
        task.run_case(_boom, "c", "m", KeyboardInterrupt())


def test_skipped_table_and_summary_line():
    recs = [task.record("a", "m", "ok", cached=True), task.record("b", "m", "ok"),
            task.record("c", "m", "skipped", "F: model has no fluorine"), task.record("d", "m", "failed", "boom")]
    table = task.skipped_table(recs)
    assert list(table.columns) == ["model", "case", "status", "reason"] and list(table["case"]) == ["c", "d"]
    assert task.skipped_table(recs[:2]).empty
    line = task.summary_line("07", "high_energy", "m", "default", recs, "log.json")
    assert line == ("07 high_energy  m  default: 4 cases: 2 ok (1 computed, 1 cached), "
                    "1 skipped (F: model has no fluorine), 1 failed (see log.json)")
    with pytest.raises(ValueError):
        task.record("a", "m", "maybe")


@pytest.fixture
def emt_module(tmp_path, monkeypatch):
    """A user model behind an import path: ASE's EMT (no Mg, Ca, O, F, Li ...)."""
    (tmp_path / "mymod_emt.py").write_text(textwrap.dedent("""
        from ase.calculators.emt import EMT

        def make():
            return EMT()
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "mymod_emt:make"
    sys.modules.pop("mymod_emt", None)


def test_compute_chapter_import_path_model_skips_and_resumes(emt_module, results_dir, capsys):
    """Chapter 4 smoke with EMT behind an import path: EMT has no Mg/Ca/O, every case is a
    skipped row with the reason, nothing raises; a second call computes nothing."""
    first = task.compute_chapter("04", emt_module, "smoke", progress=False)
    assert first["n_cases"] > 0 and first["skipped"] == first["n_cases"] and first["failed"] == 0
    assert all(r["reason"].split(":")[0] in {"Mg", "Ca", "O", "Ca, O", "Mg, O", "Mg, Ca"} or "EMT" in r["reason"]
               for r in first["records"])
    assert "04 solid_solution" in capsys.readouterr().out
    assert task.skipped_table(first["records"]).shape[0] == first["n_cases"]
    second = task.compute_chapter("04", emt_module, "smoke", progress=False)
    assert second["computed"] == 0


def test_compute_chapter_emt_surfaces_smoke_resumes(results_dir):
    """Chapter 2 smoke with the registry's EMT (Cu, Al): computed once, then read from the cache."""
    first = task.compute_chapter("02", "emt", "smoke", progress=False)
    assert first["ok"] == first["n_cases"] > 0 and first["computed"] == first["n_cases"]
    second = task.compute_chapter("02", "emt", "smoke", progress=False)
    assert second["computed"] == 0 and second["cached"] == second["n_cases"]
    assert "0 computed" in second["line"]


def test_compute_chapter_mixed_chemistry_emt(emt_module, results_dir):
    """Surfaces of Cu and MgO with EMT behind an import path: Cu computes, MgO is skipped, no exception."""
    from softening_lib.tasks import surfaces

    cases = surfaces.cases("smoke", systems=["Cu", "MgO"])
    recs = surfaces.compute(emt_module, cases)
    status = {r["case"].split("-")[0]: r["status"] for r in recs}
    assert status == {"Cu": "ok", "MgO": "skipped"}
    again = surfaces.compute(emt_module, cases)
    assert [r["cached"] for r in again if r["status"] == "ok"] == [True] * sum(r["status"] == "ok" for r in again)


def test_high_energy_case_records_on_toy_frames(results_dir, labelled_frames, emt_module):
    """Chapter 7's records through the contract: computed, then cached; a model that cannot
    describe the elements (EMT via import path on a LiF cell) gives a skipped row, no exception."""
    from ase.build import bulk

    from softening_lib.tasks import high_energy as he

    frames = labelled_frames("soft", 0.8, n=4)
    cases = [{"id": "toy/soft", "dataset": "toy", "material_id": "soft", "parity": True}]
    first = he.case_records("emt", cases, frames=frames)
    assert first[0]["status"] == "ok" and not first[0]["cached"]
    assert first[0]["softening_scale"] == pytest.approx(0.8, rel=1e-6)
    again = he.case_records("emt", cases, frames=frames)
    assert again[0]["status"] == "ok" and again[0]["cached"]
    lif = bulk("LiF", "rocksalt", a=4.03)
    lif.rattle(0.05, seed=1)
    lif.info.update(material_id="lif", frame_id=0)
    from ase.calculators.singlepoint import SinglePointCalculator

    lif.calc = SinglePointCalculator(lif, energy=0.0, forces=np.ones((len(lif), 3)))
    recs = he.case_records(emt_module, cases + [{"id": "toy/lif", "dataset": "toy", "material_id": "lif"}],
                           frames=frames + [lif])
    assert [r["status"] for r in recs] == ["ok", "skipped"]


@pytest.mark.slow
def test_chapter_page_for_a_user_model_lists_skipped_cases_and_has_no_nan(tmp_path, monkeypatch):
    """Bring your own model: chapter 1 (the cheapest) executed by the runner for a calculator
    behind an import path (ASE's EMT, which has no Si). The page is written, lists the scan as
    skipped with the reason, and neither its prose nor its outputs say 'nan'; the sentences about
    the models are left out (nothing to quote), the model-independent ones are kept."""
    import re

    import nbformat

    from softening_lib import runner

    for name, value in {"BUILD": tmp_path / "_build", "STAGE": tmp_path / "_build" / "src",
                        "REPORTS": tmp_path / "_build" / "reports"}.items():
        monkeypatch.setattr(runner, name, value)
    mods = tmp_path / "mods"
    mods.mkdir()
    (mods / "byo_emt_calc.py").write_text("def make():\n    from ase.calculators.emt import EMT\n    return EMT()\n")
    monkeypatch.syspath_prepend(str(mods))
    import os

    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(mods), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("SOFTENING_RESULTS_DIR", str(tmp_path / "results"))
    (run,) = runner.execute(runner.plan(["01"], models=["byo_emt_calc:make"], preset="smoke"), log=lambda *_: None)
    assert run.status == "executed", run.error
    assert run.output.is_file() and "__byo-emt-calc-make-" in run.output.stem
    nb = nbformat.read(run.output, as_version=4)
    outputs = []
    for cell in nb.cells:
        for o in cell.get("outputs", []) if cell.cell_type == "code" else []:
            outputs.append(o.get("text", "") + "".join(str(v) for k, v in (o.get("data") or {}).items()
                                                       if k in ("text/plain", "text/html", "text/markdown")))
    out_text = "\n".join(outputs)
    assert "case(s) without numbers" in out_text and "No EMT-potential for Si" in out_text
    prose = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert not re.search(r"\bnan\b", prose + out_text, re.I)
    assert "softest_model" not in prose and "CHGNet" not in prose  # the model sentences are left out
    assert "max_amp" in prose  # the model-independent sentence stays
    assert "byo_emt_calc:make" in prose.splitlines()[0]  # the title names the model that ran


def test_many_skipped_cases_are_shown_grouped_by_model_and_reason():
    from softening_lib import task

    recs = [task.record(f"jageo/mp-{i}", "m1", "skipped", "not in the cache") for i in range(30)]
    recs += [task.record("wbm-1", "m2", "failed", "boom"), task.record("wbm-2", "m2", "ok")]
    summary = task.skipped_summary(recs)
    assert list(summary["n_cases"]) == [30, 1]
    assert summary.iloc[0]["cases"].endswith("(+27)") and summary.iloc[1]["reason"] == "boom"
    assert len(task.skipped_summary([task.record("a", "m", "ok")])) == 0
