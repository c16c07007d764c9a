import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT

from softening_lib import models


def rattled_cu(seed=0):
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((2, 2, 2))
    atoms.rattle(0.1, seed=seed)
    return atoms


def test_scaled_calculator_is_exactly_c_times_base():
    atoms = rattled_cu()
    atoms.calc = EMT()
    e, f, s = atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()
    scaled = atoms.copy()
    scaled.calc = models.ScaledCalculator(EMT(), 0.8)
    assert scaled.get_potential_energy() == pytest.approx(0.8 * e, rel=1e-12)
    np.testing.assert_allclose(scaled.get_forces(), 0.8 * f, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(scaled.get_stress(), 0.8 * s, rtol=1e-12, atol=1e-14)
    assert np.abs(f).max() > 0.1  # the check is not trivially satisfied by zero forces


def test_scaled_calculator_tracks_geometry_changes():
    atoms = rattled_cu()
    atoms.calc = models.ScaledCalculator(EMT(), 1.25)
    f1 = atoms.get_forces().copy()
    atoms.positions[0] += 0.05
    ref = atoms.copy()
    ref.calc = EMT()
    np.testing.assert_allclose(atoms.get_forces(), 1.25 * ref.get_forces(), rtol=1e-12)
    assert not np.allclose(f1, atoms.get_forces())


def test_scaled_calculator_rejects_nonfinite():
    with pytest.raises(ValueError):
        models.ScaledCalculator(EMT(), float("nan"))


def test_unknown_model_lists_known_names():
    with pytest.raises(models.UnknownModelError) as err:
        models.get_calculator("chgnet-9.9")
    msg = str(err.value)
    assert "chgnet-0.3.0" in msg and "package.module:function" in msg


def test_import_path_factory_and_bad_paths():
    calc = models.get_calculator("ase.calculators.emt:EMT")
    assert isinstance(calc, EMT)
    with pytest.raises(models.ModelUnavailableError, match="cannot import"):
        models.get_calculator("no_such_pkg_xyz.mod:make")
    with pytest.raises(models.ModelUnavailableError, match="no attribute"):
        models.get_calculator("ase.calculators.emt:NoSuchThing")
    with pytest.raises(models.ModelError, match="not an ASE calculator"):
        models.get_calculator("math:pi")


def test_registry_entries_carry_metadata():
    for name in models.REGISTRY:
        spec = models.get_spec(name)
        assert spec.display_name and spec.version and spec.citation and spec.weights_source
        assert spec.training_set
    assert set(models.PAPER_MODELS) == {"chgnet-0.3.0", "m3gnet-mp-2021.2.8", "mace-mp-0-medium"}


def test_mace_unavailable_offline_with_reason_and_fix(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.cache/mace weights
    monkeypatch.setenv("SOFTENING_ONLINE", "0")
    table = models.available_models().set_index("model")
    row = table.loc["mace-mp-0-medium"]
    assert not row["available"]
    assert "not on this machine" in row["reason"]
    assert models.MACE_MEDIUM_URL in row["fix"]
    with pytest.raises(models.ModelUnavailableError, match="Fix"):
        models.get_calculator("mace-mp-0-medium")


def test_matgl_weights_missing_offline_says_where(monkeypatch, tmp_path):
    monkeypatch.setenv("SOFTENING_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("SOFTENING_ONLINE", "0")
    with pytest.raises(models.ModelUnavailableError) as err:
        models.get_calculator("m3gnet-mp-2021.2.8")
    assert "M3GNet-MP-2021.2.8-PES" in str(err.value) and "SOFTENING_DATA_DIR" in str(err.value)


def test_mirror_weights_hash_checked(mirror_available):
    spec = models.get_spec("m3gnet-mp-2021.2.8")
    ok, reason, _ = spec.availability()
    assert ok, reason


def test_unsupported_element_is_a_clear_error():
    with pytest.raises(models.UnsupportedElementError, match="Si"):
        models.check_elements("emt", ["Cu", "Si"])
    models.check_elements("chgnet-0.3.0", ["Cu", "Si", "O"])


@pytest.mark.slow
def test_pretrained_models_run_and_report_ase_units(mirror_available):
    """CHGNet and M3GNet give eV/A^3 stress: compare with a finite-difference derivative."""
    atoms = bulk("Si", "diamond", a=5.43)
    for name in [n for n in models.tagged("paper") if models.get_spec(n).family != "mace"]:
        calc = models.get_calculator(name)
        atoms.calc = calc
        stress = atoms.get_stress(voigt=False)
        eps = 1e-3
        energies = []
        for sign in (+1, -1):
            a = atoms.copy()
            a.set_cell(atoms.cell * (1 + sign * eps), scale_atoms=True)
            a.calc = calc
            energies.append(a.get_potential_energy())
        # dE/d(strain) of an isotropic strain = V * trace(sigma)
        numeric = (energies[0] - energies[1]) / (2 * eps) / atoms.get_volume()
        assert np.trace(stress) == pytest.approx(numeric, rel=0.05, abs=2e-3), name


def test_mirror_weights_failing_hash_are_refused(mirror_available, tmp_path, monkeypatch):
    import shutil

    src = mirror_available / "models" / "M3GNet-MP-2021.2.8-PES"
    dst = tmp_path / "models" / "M3GNet-MP-2021.2.8-PES"
    shutil.copytree(src, dst)
    with open(dst / "state.pt", "ab") as fh:
        fh.write(b"corrupted")
    monkeypatch.setenv("SOFTENING_DATA_DIR", str(tmp_path))
    ok, reason, fix = models.get_spec("m3gnet-mp-2021.2.8").availability()
    assert not ok and "sha256" in reason and "refusing" in reason


@pytest.mark.parametrize("name", ["a.b:x<img src=x onerror=alert(1)>", "../x:y", "mod:make@v<2>", "mod:", ":make",
                                  "x<img src=x onerror=alert(1)>"])
def test_names_that_are_neither_registry_names_nor_import_paths_are_refused(name):
    """A model name ends up in page titles, file names and the what-ran page: refused before."""
    with pytest.raises(models.UnknownModelError):
        models.resolve(name)


def test_matgl_calculator_goes_to_the_chosen_device(mirror_available):
    """device= reaches matgl (as it does CHGNet): the potential's weights sit there and the
    calculator says where it runs; device="cpu" gives the same energy as the default."""
    atoms = bulk("Si", "diamond", a=5.43)
    calc = models.get_calculator("m3gnet-mp-2021.2.8", device="cpu")
    assert calc.softening_device == "cpu"
    assert {p.device.type for p in calc.potential.parameters()} == {"cpu"}
    atoms.calc = calc
    e = atoms.get_potential_energy()
    b = atoms.copy()
    b.calc = models.get_calculator("m3gnet-mp-2021.2.8")
    assert b.get_potential_energy() == pytest.approx(e, abs=1e-8)


def test_matgl_graphs_follow_the_device():
    """_graphs_to wraps the graph builder so every tensor it returns is moved with .to(device)."""
    from types import SimpleNamespace

    moved = []

    class T:
        def to(self, device):
            moved.append(device)
            return self

    calc = SimpleNamespace(_atoms2graph=SimpleNamespace(get_graph=lambda atoms: (T(), T(), T())))
    models._graphs_to(calc, "cuda:1")
    assert len(calc._atoms2graph.get_graph(None)) == 3 and moved == ["cuda:1"] * 3
