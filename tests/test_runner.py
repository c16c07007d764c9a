import json
import subprocess
import sys

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from softening_lib import runner


@pytest.fixture
def tiny_notebook(tmp_path, monkeypatch):
    for name, value in {"BUILD": tmp_path / "_build", "STAGE": tmp_path / "_build" / "src",
                        "REPORTS": tmp_path / "_build" / "reports"}.items():
        monkeypatch.setattr(runner, name, value)
    nb = new_notebook(cells=[
        new_code_cell('models = ["emt"]\npreset = "default"\nn = 3', metadata={"tags": ["parameters"]}),
        new_code_cell("assert n > 0, 'n must be positive'\nprint('ran', models, preset, n)"),
    ])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = tmp_path / "42_tiny.ipynb"
    nbformat.write(nb, path)
    return path


def test_parameter_of_wrong_type_is_refused(tiny_notebook):
    with pytest.raises(runner.RunnerError, match="'n' must be int"):
        runner.check_parameter_types(tiny_notebook, {"n": "three"})
    with pytest.raises(runner.RunnerError, match="no parameter 'm'"):
        runner.check_parameter_types(tiny_notebook, {"m": 1})
    runner.check_parameter_types(tiny_notebook, {"n": 5, "models": ["chgnet-0.3.0"]})


@pytest.mark.slow
def test_execute_skips_unchanged_and_reports_failures(tiny_notebook, monkeypatch):
    monkeypatch.setattr(runner, "_tree_digest", lambda *a, **k: "fixed")  # code/data unchanged
    runs = runner.plan([str(tiny_notebook)], preset="smoke")
    (run,) = runner.execute(runs, log=lambda *_: None)
    assert run.status == "executed" and run.output.is_file()
    out = nbformat.read(run.output, as_version=4)
    assert "ran ['emt'] smoke 3" in json.dumps(out.cells[-1].outputs)
    (again,) = runner.execute(runner.plan([str(tiny_notebook)], preset="smoke"), log=lambda *_: None)
    assert again.status == "cached"
    # another model -> its own page, executed, default page untouched
    (other,) = runner.execute(runner.plan([str(tiny_notebook)], models=["ase.calculators.emt:EMT"],
                                          preset="smoke"), log=lambda *_: None)
    assert other.status == "executed" and other.output.name.startswith("42_tiny__")
    # a failing run keeps the executed notebook as a report
    (bad,) = runner.execute(runner.plan([str(tiny_notebook)], preset="smoke", extra={"n": -1}),
                            log=lambda *_: None)
    assert bad.status == "failed" and "n must be positive" in bad.error
    assert (runner.REPORTS / f"{bad.output.stem}.failed.ipynb").is_file()


def test_cli_models_and_data_tables():
    out = subprocess.run([sys.executable, "-m", "softening_lib", "models"], capture_output=True, text=True,
                         check=True).stdout
    assert "chgnet-0.3.0" in out and "mace-mp-0-medium" in out and "False" in out
    out = subprocess.run([sys.executable, "-m", "softening_lib", "data"], capture_output=True, text=True,
                         check=True).stdout
    assert "wbm-he-figshare" in out and "jageo-pbe-68" in out


def test_cli_unknown_chapter_is_a_clear_error():
    proc = subprocess.run([sys.executable, "-m", "softening_lib", "run", "--chapter", "77"],
                          capture_output=True, text=True)
    assert proc.returncode == 1 and "no chapter '77'" in proc.stderr
