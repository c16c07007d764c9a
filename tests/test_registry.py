"""The model registry as data (softening_lib/models.yml): schema, tags, cache keys, weight
hashes, user models, and the two rules of CONTRIBUTING.md it enforces (no model list outside
the registry; core modules never import softening_lib.tasks)."""

from __future__ import annotations

import ast
import copy
import importlib
import re
import shutil
import sys
from pathlib import Path

import pytest
import yaml

from softening_lib import models

ROOT = Path(__file__).resolve().parent.parent

# Results under data/results are keyed by these: they must never change by accident.
PINNED_MODEL_IDS = {
    "chgnet-0.3.0": "chgnet-0.3.0",
    "m3gnet-mp-2021.2.8": "m3gnet-mp-2021.2.8@a9aa723705bd+mfix1",
    "mace-mp-0-medium": "mace-mp-0-medium",
    "m3gnet-matpes-pbe": "m3gnet-matpes-pbe@9f710eac88ec+mfix1",
    "tensornet-matpes-pbe": "tensornet-matpes-pbe@d2dfa51a65d2+mfix1",
    "sevennet-0": "sevennet-0@7052cb42b7b3",
    "emt": "emt",
}


def registry_data() -> dict:
    return yaml.safe_load(models.REGISTRY_FILE.read_text())


# --------------------------------------------------------------------------------------
# content
# --------------------------------------------------------------------------------------

def test_model_ids_are_pinned():
    assert {name: models.model_id(name) for name in models.REGISTRY} == PINNED_MODEL_IDS


def test_tags():
    assert models.tagged("paper") == ["chgnet-0.3.0", "m3gnet-mp-2021.2.8", "mace-mp-0-medium"]
    assert models.tagged("default") == ["chgnet-0.3.0", "m3gnet-mp-2021.2.8", "mace-mp-0-medium",
                                        "m3gnet-matpes-pbe", "tensornet-matpes-pbe"]
    assert models.tagged("zoo") == models.tagged("default") + ["sevennet-0"]
    assert models.tagged("primary") == ["chgnet-0.3.0"]
    assert models.tagged("crosscheck") == ["chgnet-0.3.0", "m3gnet-matpes-pbe", "tensornet-matpes-pbe"]
    assert models.tagged("test") == ["emt"]
    assert models.tagged("@paper") == models.tagged("paper")
    assert models.PAPER_MODELS == models.tagged("paper")
    assert models.DEFAULT_MODELS == models.tagged("default")
    assert models.PRIMARY_MODEL == "chgnet-0.3.0"


def test_expand_keeps_order_and_drops_duplicates():
    got = models.expand(["emt", "@paper", "chgnet-0.3.0", "pkg.mod:make@v2", "@crosscheck"])
    assert got == ["emt", "chgnet-0.3.0", "m3gnet-mp-2021.2.8", "mace-mp-0-medium", "pkg.mod:make@v2",
                   "m3gnet-matpes-pbe", "tensornet-matpes-pbe"]
    assert models.expand("@test") == ["emt"]
    with pytest.raises(models.UnknownTagError) as err:
        models.expand(["@nosuchtag"])
    for tag in ("paper", "default", "zoo", "primary", "crosscheck", "test"):
        assert tag in str(err.value)


def test_misspelt_name_suggests_close_matches():
    with pytest.raises(models.UnknownModelError) as err:
        models.resolve("chgnett")
    msg = str(err.value)
    assert "did you mean chgnet-0.3.0?" in msg.lower() and "package.module:function" in msg
    with pytest.raises(models.UnknownModelError, match="tensornet-matpes-pbe"):
        models.get_spec("tensornet-matpes")
    with pytest.raises(models.UnknownModelError, match="expand"):
        models.get_spec("@default")


def test_every_entry_is_complete():
    colours = set()
    for name, spec in models.REGISTRY.items():
        assert isinstance(spec.n_parameters, int) and not isinstance(spec.n_parameters, bool), name
        assert spec.display_name and spec.version and spec.citation and spec.training_set, name
        assert re.fullmatch(r"#[0-9A-Fa-f]{6}", spec.colour), name
        assert spec.colour not in colours, f"{name} shares its colour"
        colours.add(spec.colour)
        assert spec.elements, name
        assert models.colour(name) == spec.colour
    # the weights of every matgl model: all three files, each pinned
    for name in models.REGISTRY:
        spec = models.get_spec(name)
        if spec.family == "matgl":
            assert sorted(w.name for w in spec.weights) == ["model.json", "model.pt", "state.pt"]
            assert all(w.sha256 for w in spec.weights)
    assert models.get_spec("mace-mp-0-medium").weights[0].sha256 is None  # not recorded anywhere (note)
    assert models.get_spec("mace-mp-0-medium").weights[0].note


def test_colour_of_other_names_is_stable():
    c = models.colour("mypkg.calcs:make_calc")
    assert c == models.colour("mypkg.calcs:make_calc") and c in models.EXTRA_COLOURS
    assert models.colour("chgnet-0.3.0*0.9") == models.colour("chgnet-0.3.0")
    from softening_lib import plots

    assert plots.color("sevennet-0") == models.colour("sevennet-0")
    assert plots.color("dft") == "#000000"


def test_element_rules_expand(mirror_available):
    assert models.expand_elements("Z<=3") == {"H", "He", "Li"}
    assert models.expand_elements("Z<=4 except He Li") == {"H", "Be"}
    assert len(models.supported_elements("chgnet-0.3.0")) == 94
    # the rule written for the matgl models is exactly their model.json element_types
    import json

    for name in models.tagged("default"):
        spec = models.get_spec(name)
        if spec.family == "matgl":
            meta = json.loads((mirror_available / "models" / spec.mirror_folder / "model.json").read_text())
            types = _find(meta, "element_types")
            assert set(types) == models.supported_elements(name), name


def _find(obj, key):
    if isinstance(obj, dict):
        if key in obj:
            return obj[key]
        obj = list(obj.values())
    if isinstance(obj, list):
        for value in obj:
            found = _find(value, key)
            if found is not None:
                return found
    return None


# --------------------------------------------------------------------------------------
# schema
# --------------------------------------------------------------------------------------

def _broken(mutate) -> str:
    data = copy.deepcopy(registry_data())
    mutate(data)
    with pytest.raises(models.RegistryError) as err:
        models.validate(data)
    return str(err.value)


def _entry(data, name):
    return next(e for e in data["models"] if e["name"] == name)


def test_schema_errors_name_entry_and_field():
    models.validate(registry_data())
    msg = _broken(lambda d: _entry(d, "chgnet-0.3.0").pop("citation"))
    assert "'chgnet-0.3.0'" in msg and "'citation'" in msg and "missing" in msg
    msg = _broken(lambda d: _entry(d, "emt").__setitem__("n_parameters", 1.5))
    assert "'emt'" in msg and "'n_parameters'" in msg
    msg = _broken(lambda d: _entry(d, "emt").__setitem__("n_parameters", True))
    assert "'n_parameters'" in msg
    msg = _broken(lambda d: _entry(d, "emt").__setitem__("family", "torchani"))
    assert "'family'" in msg and "matgl" in msg
    msg = _broken(lambda d: _entry(d, "emt").__setitem__("tags", ["test", "nosuch"]))
    assert "'tags'" in msg and "nosuch" in msg
    msg = _broken(lambda d: _entry(d, "sevennet-0")["weights"][0].__setitem__("sha256", "abc"))
    assert "'sevennet-0'" in msg and "weights[0].sha256" in msg
    msg = _broken(lambda d: _entry(d, "mace-mp-0-medium")["weights"][0].pop("note"))
    assert "note" in msg
    msg = _broken(lambda d: _entry(d, "m3gnet-mp-2021.2.8")["weights"].pop(0))
    assert "model.json" in msg
    msg = _broken(lambda d: _entry(d, "emt").__setitem__("elements", "Z<=200"))
    assert "'elements'" in msg
    msg = _broken(lambda d: _entry(d, "emt").__setitem__("colour", "blue"))
    assert "'colour'" in msg
    msg = _broken(lambda d: _entry(d, "emt").__setitem__("wheights", []))
    assert "'wheights'" in msg and "unknown key" in msg
    # a weight file whose hash changes needs a new model_id
    msg = _broken(lambda d: _entry(d, "m3gnet-mp-2021.2.8")["weights"][2].__setitem__("sha256", "0" * 64))
    assert "'model_id'" in msg
    msg = _broken(lambda d: d["models"].append(copy.deepcopy(_entry(d, "emt"))))
    assert "duplicate" in msg


# --------------------------------------------------------------------------------------
# weights: checked before anything is loaded
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("fname", ["model.json", "model.pt", "state.pt"])
def test_tampered_matgl_file_is_refused_by_name(mirror_available, tmp_path, monkeypatch, fname):
    src = mirror_available / "models" / "M3GNet-MP-2021.2.8-PES"
    dst = tmp_path / "models" / "M3GNet-MP-2021.2.8-PES"
    shutil.copytree(src, dst)
    (dst / fname).chmod(0o644)
    with open(dst / fname, "ab") as fh:
        fh.write(b" ")
    monkeypatch.setenv("SOFTENING_DATA_DIR", str(tmp_path))
    ok, reason, fix = models.get_spec("m3gnet-mp-2021.2.8").availability()
    assert not ok and fname in reason and "sha256" in reason and "refusing" in reason
    assert "replace" in fix
    with pytest.raises(models.ModelUnavailableError, match=fname):
        models.get_calculator("m3gnet-mp-2021.2.8")
    assert "m3gnet-mp-2021.2.8" not in models.runnable(["m3gnet-mp-2021.2.8"])[0]


def test_matgl_models_available_from_the_mirror(mirror_available):
    for name in models.REGISTRY:
        spec = models.get_spec(name)
        if spec.family == "matgl":
            ok, reason, _ = spec.availability()
            assert ok and "sha256 checked" in reason, (name, reason)


def test_unpinned_and_mismatching_files_are_refused(tmp_path, monkeypatch):
    spec = models.get_spec("mace-mp-0-medium")
    f = tmp_path / models.MACE_MEDIUM_FILE
    f.write_bytes(b"not a model")
    monkeypatch.delenv("SOFTENING_ALLOW_UNPINNED", raising=False)
    ok, reason, fix = models.check_files(spec, {f.name: f})
    assert not ok and "no pinned sha256" in reason and models.sha256_file(f) in fix
    monkeypatch.setenv("SOFTENING_ALLOW_UNPINNED", "1")
    assert models.check_files(spec, {f.name: f})[0]
    sev = models.get_spec("sevennet-0")
    g = tmp_path / "checkpoint_sevennet_0.pth"
    g.write_bytes(b"tampered")
    ok, reason, _ = models.check_files(sev, {g.name: g})
    assert not ok and "checkpoint_sevennet_0.pth" in reason and "fails its sha256" in reason


def test_wheel_weights_are_checked():
    ok, reason, _ = models.get_spec("chgnet-0.3.0").availability()
    assert ok and "sha256 checked" in reason, reason


# --------------------------------------------------------------------------------------
# a user's model is first class
# --------------------------------------------------------------------------------------

def test_import_path_model_id_follows_the_source(tmp_path, monkeypatch):
    mod = tmp_path / "my_registry_probe_calcs.py"
    mod.write_text("from ase.calculators.emt import EMT\n\ndef make(**kw):\n    return EMT()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    name = "my_registry_probe_calcs:make"
    first = models.model_id(name)
    assert first.startswith(name + "@") and len(first) == len(name) + 13
    assert models.model_id(name) == first  # stable
    mod.write_text("from ase.calculators.emt import EMT\n\ndef make(**kw):\n    return EMT(asap_cutoff=True)\n")
    second = models.model_id(name)
    assert second != first and second.startswith(name + "@")
    # a version after '@' is the key itself, whatever the source
    assert models.model_id(name + "@v2") == name + "@v2"
    calc = models.get_calculator(name + "@v2")
    assert calc.softening_model == name + "@v2"
    assert models.get_spec(name + "@v2").version == "v2"
    assert models.runnable([name + "@v2"])[0] == [name + "@v2"]
    sys.modules.pop("my_registry_probe_calcs", None)


def test_split_version():
    assert models.split_version("pkg.mod:make@v2") == ("pkg.mod:make", "v2")
    assert models.split_version("pkg.mod:make") == ("pkg.mod:make", None)
    assert models.split_version("chgnet-0.3.0") == ("chgnet-0.3.0", None)


# --------------------------------------------------------------------------------------
# the registry table of `python -m softening_lib models`
# --------------------------------------------------------------------------------------

def test_registry_table_fits_100_columns(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.cache/mace: MACE is unavailable, with a reason
    monkeypatch.setenv("SOFTENING_ONLINE", "0")
    text = models.registry_table()
    lines = text.splitlines()
    assert all(len(line) <= 100 for line in lines), max(lines, key=len)
    assert lines[0].split() == ["model", "available", "parameters", "tags"]
    row = next(line for line in lines if line.startswith("mace-mp-0-medium"))
    assert "4690000" in row and " no " in row and "paper" in row
    i = lines.index(row)
    assert lines[i + 1].strip().startswith("why:") and any("fix:" in x for x in lines[i + 1:i + 8])
    assert all(name in text for name in models.REGISTRY)
    narrow = models.registry_table(width=60)
    assert all(len(line) <= 60 for line in narrow.splitlines())


# --------------------------------------------------------------------------------------
# the rules of CONTRIBUTING.md
# --------------------------------------------------------------------------------------

def _core_modules():
    return sorted((ROOT / "softening_lib").glob("*.py"))


def test_core_modules_never_import_tasks():
    bad = []
    for path in _core_modules():
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            where = f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', '?')}"
            if isinstance(node, ast.Import):
                bad += [where for a in node.names if a.name.startswith("softening_lib.tasks")]
            elif isinstance(node, ast.ImportFrom):
                mod = node.module or ""
                absolute = node.level == 0 and mod.startswith("softening_lib.tasks")
                relative = node.level == 1 and (mod == "tasks" or mod.startswith("tasks.")
                                                or (mod == "" and any(a.name == "tasks" for a in node.names)))
                relative |= node.level == 0 and mod == "softening_lib" and any(a.name == "tasks" for a in node.names)
                if absolute or relative:
                    bad.append(where)
            elif isinstance(node, ast.Call):
                func = node.func
                fname = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                if fname in ("import_module", "__import__", "_lazy_reader", "find_spec"):
                    for arg in node.args:
                        if isinstance(arg, ast.Constant) and isinstance(arg.value, str) \
                                and arg.value.startswith(("softening_lib.tasks", ".tasks")):
                            bad.append(where)
    assert not bad, "core modules import softening_lib.tasks at " + ", ".join(bad)


def test_sevennet_loader_lives_in_the_registry():
    from softening_lib.tasks import model_zoo

    assert model_zoo.sevennet0 is models.sevennet0
    assert model_zoo.sevennet0_available is models.sevennet0_available
    assert model_zoo.ZOO_MODELS == models.tagged("zoo")


def _model_list_literals(path: Path, names: set[str]) -> list[str]:
    found = []
    text = path.read_text()
    if path.suffix == ".md":  # a chapter: its code cells
        import jupytext

        text = "\n".join(c.source if not c.source.lstrip().startswith(("%", "!")) else ""
                         for c in jupytext.read(path).cells if c.cell_type == "code")
    if path.suffix in (".py", ".md"):
        for node in ast.walk(ast.parse(text, filename=str(path))):
            if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
                held = [e.value for e in node.elts if isinstance(e, ast.Constant) and e.value in names]
                if len(held) >= 2:
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {held}")
    else:  # shell: a line (not a comment) naming two or more registry models
        for i, line in enumerate(text.splitlines(), 1):
            code = line.split("#", 1)[0]
            held = [n for n in names if re.search(rf"(?<![\w.-]){re.escape(n)}(?![\w.-])", code)]
            if len(held) >= 2:
                found.append(f"{path.relative_to(ROOT)}:{i}: {held}")
    return found


def test_no_model_list_outside_the_registry():
    names = set(models.REGISTRY)
    files = [p for p in (ROOT / "softening_lib").rglob("*.py")]
    files += sorted((ROOT / "scripts").glob("*.py")) + sorted((ROOT / "scripts").glob("*.sh"))
    files += sorted((ROOT / "benchmarks").glob("*.py")) + sorted((ROOT / "chapters").glob("*.md"))
    found = []
    for path in files:
        found += _model_list_literals(path, names)
    assert not found, "model lists outside softening_lib/models.yml (use models.tagged/expand):\n" + "\n".join(found)


def test_the_list_check_catches_lists(tmp_path):
    py = ROOT / "tests" / "_probe_list.py"
    sh = tmp_path / "x.sh"
    try:
        py.write_text('MODELS = ["chgnet-0.3.0", "emt"]\nONE = "chgnet-0.3.0"\n')
        sh.write_text('# chgnet-0.3.0 emt in a comment\nZM="chgnet-0.3.0 sevennet-0"\n')
        assert len(_model_list_literals(py, set(models.REGISTRY))) == 1
    finally:
        py.unlink()
    sh2 = ROOT / "tests" / "_probe_list.sh"
    try:
        sh2.write_text(sh.read_text())
        hits = _model_list_literals(sh2, set(models.REGISTRY))
        assert len(hits) == 1 and ":2:" in hits[0]
    finally:
        sh2.unlink()
