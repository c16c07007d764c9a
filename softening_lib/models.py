"""Model registry: one entry per universal MLIP, each turning a name into an ASE calculator.

>>> from softening_lib.models import get_calculator, available_models, tagged, expand
>>> calc = get_calculator("chgnet-0.3.0")          # a registry name
>>> calc = get_calculator("mypkg.calcs:make_calc")  # any ``package.module:factory`` (``@v2``: a version)
>>> tagged("paper")                                 # the paper's three models, registry order
>>> expand(["@default", "mypkg.calcs:make_calc"])   # tags replaced by their models
>>> available_models()                              # what can run here, and why not

The entries are data, in ``softening_lib/models.yml`` (validated against :data:`SCHEMA` on
import): version, parameter count, training set, citation, colour, element coverage, tags and
every weight file with its sha256. The family loaders (chgnet, matgl, mace, sevenn, ase) are
Python code here. A model is available only when every weight file with a pinned sha256
matches it: no code-bearing file (torch pickles, matgl's model.json naming the classes to
import) is loaded unchecked. Weights are looked up first in the offline mirror
(``$SOFTENING_DATA_DIR/models/<folder>``) or inside their wheel, then, only when
``SOFTENING_ONLINE=1``, through the library's own downloader (matgl / mace), and checked again.

A user's model is any importable ``package.module:factory``; its cache key
(:func:`model_id`) holds a hash of the module's source file, so editing the factory
recomputes, unless a version is given after ``@`` (``package.module:factory@v2``).

:class:`ScaledCalculator` multiplies energy, forces and stress of any calculator by a
constant ``c`` -- the paper's Eq. 4 linear correction, and the backbone of exact tests.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import importlib.util
import os
import re
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
from ase.calculators.calculator import Calculator, all_changes

from . import config

REGISTRY_FILE = Path(__file__).with_name("models.yml")


class ModelError(RuntimeError):
    """Base class for registry errors."""


class UnknownModelError(ModelError, KeyError):
    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


class UnknownTagError(UnknownModelError):
    """An ``@tag`` that no registry entry carries."""


class RegistryError(ModelError, ValueError):
    """``models.yml`` does not follow the schema (the message names the entry and the field)."""


class ModelUnavailableError(ModelError):
    """The model is known but cannot run here (missing weights or package, failing hash)."""


class UnsupportedElementError(ModelError, ValueError):
    """A structure holds an element the model was not trained on."""


@dataclass
class WeightFile:
    where: str  # wheel (path from site-packages) | mirror (path under $SOFTENING_DATA_DIR/models)
    path: str
    sha256: str | None
    url: str | None = None
    note: str = ""

    @property
    def name(self) -> str:
        return Path(self.path).name

    def local_path(self) -> Path | None:
        """Where the file is on this machine (it may not exist), or None when unknowable."""
        if self.where == "mirror":
            root = config.data_dir()
            return None if root is None else root / "models" / self.path
        package = self.path.split("/", 1)[0]
        try:
            found = importlib.util.find_spec(package)
        except (ImportError, ValueError):
            return None
        if found is None or not found.submodule_search_locations:
            return None
        return Path(list(found.submodule_search_locations)[0]).parent / self.path


@dataclass
class ModelSpec:
    name: str
    display_name: str
    family: str  # chgnet | matgl | mace | sevenn | ase | import
    version: str
    n_parameters: int | None  # as reported (paper Table 1 or the model card), else counted
    training_set: str
    citation: str
    weights_source: str  # human-readable: wheel / mirror folder / URL
    weights_url: str | None = None
    sha256: str | None = None  # of the main weights file, where pinned
    mirror_folder: str | None = None  # under $SOFTENING_DATA_DIR/models/
    matgl_name: str | None = None
    paper_model: bool = False
    notes: str = ""
    factory: Callable[..., Calculator] | None = field(default=None, repr=False)
    availability: Callable[[], tuple[bool, str, str]] | None = field(default=None, repr=False)
    weights: list[WeightFile] = field(default_factory=list)
    colour: str | None = None
    elements: frozenset[str] | None = None
    tags: tuple[str, ...] = ()
    cache_id: str | None = None  # models.yml's model_id; None: the name (or, for import paths, computed)

    def model_id(self) -> str:
        """A stable id for caching results (``models.yml``'s ``model_id``, default the name).

        For an import path ``pkg.mod:factory`` it is ``pkg.mod:factory@<sha256[:12] of the
        module's source file>``; for ``pkg.mod:factory@v2`` it is the name itself."""
        if self.cache_id is not None:
            return self.cache_id
        if self.family == "import":
            path, version = split_version(self.name)
            if version is not None:
                return self.name
            digest = _source_hash(path.partition(":")[0])
            return f"{path}@{digest}" if digest else path
        return self.name


# --------------------------------------------------------------------------------------
# models.yml: schema and loading
# --------------------------------------------------------------------------------------

FAMILIES = ("chgnet", "matgl", "mace", "sevenn", "ase")
_SHA = re.compile(r"^[0-9a-f]{64}$")
_COLOUR = re.compile(r"^#[0-9A-Fa-f]{6}$")
_ELEMENT_RULE = re.compile(r"^Z<=(\d+)(?:\s+except\s+([A-Za-z ]+))?$")

# key: (types, required); types checked with isinstance (bool is refused where int is wanted)
SCHEMA: dict[str, tuple[tuple[type, ...], bool]] = {
    "name": ((str,), True),
    "display_name": ((str,), True),
    "family": ((str,), True),
    "version": ((str,), True),
    "weights": ((list,), True),
    "n_parameters": ((int,), True),
    "training_set": ((str,), True),
    "citation": ((str,), True),
    "colour": ((str,), True),
    "elements": ((str, list), True),
    "tags": ((list,), True),
    "model_id": ((str,), False),
    "matgl_name": ((str,), False),
    "notes": ((str,), False),
}
WEIGHT_SCHEMA: dict[str, tuple[tuple[type, ...], bool]] = {
    "where": ((str,), True),
    "path": ((str,), True),
    "sha256": ((str, type(None)), True),
    "url": ((str,), False),
    "note": ((str,), False),
}
WHERE = ("wheel", "mirror")


def _fail(entry: str, fieldname: str, message: str) -> RegistryError:
    return RegistryError(f"{REGISTRY_FILE.name}: model {entry!r}, field {fieldname!r}: {message}")


def _check_keys(obj: dict, schema: dict, entry: str, prefix: str = "") -> None:
    for key, (types, required) in schema.items():
        if key not in obj:
            if required:
                raise _fail(entry, prefix + key, "required, missing")
            continue
        value = obj[key]
        if isinstance(value, bool) or not isinstance(value, types):
            want = " or ".join("null" if t is type(None) else t.__name__ for t in types)
            raise _fail(entry, prefix + key, f"must be {want}, got {type(value).__name__} {value!r}")
    unknown = sorted(set(obj) - set(schema))
    if unknown:
        raise _fail(entry, prefix + unknown[0], f"unknown key (known: {', '.join(schema)})")


def expand_elements(rule: str | list, entry: str = "?") -> frozenset[str]:
    """A coverage rule (``"Z<=94"``, ``"Z<=94 except Po At"``) or a list -> chemical symbols."""
    from ase.data import chemical_symbols

    if isinstance(rule, list):
        bad = [s for s in rule if s not in chemical_symbols[1:]]
        if bad:
            raise _fail(entry, "elements", f"not chemical symbols: {bad}")
        return frozenset(rule)
    m = _ELEMENT_RULE.match(rule.strip())
    if not m:
        raise _fail(entry, "elements", f"{rule!r} is neither a list nor a rule like 'Z<=94 except Po At'")
    zmax = int(m.group(1))
    if not 1 <= zmax < len(chemical_symbols):
        raise _fail(entry, "elements", f"Z<={zmax} is outside the periodic table")
    out = set(chemical_symbols[1:zmax + 1])
    excluded = (m.group(2) or "").split()
    bad = [s for s in excluded if s not in out]
    if bad:
        raise _fail(entry, "elements", f"'except' names {bad}, not among Z<={zmax}")
    return frozenset(out - set(excluded))


def validate(data: Any) -> None:
    """Check ``models.yml``'s content against the schema; raise :class:`RegistryError` naming
    the entry and the field at the first problem."""
    if not isinstance(data, dict) or not isinstance(data.get("models"), list):
        raise RegistryError(f"{REGISTRY_FILE.name}: a mapping with a 'models' list is expected")
    tags = data.get("tags")
    if not isinstance(tags, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in tags.items()):
        raise RegistryError(f"{REGISTRY_FILE.name}: 'tags' must map each tag to a description")
    extra = data.get("extra_colours", [])
    if not isinstance(extra, list) or not extra or not all(isinstance(c, str) and _COLOUR.match(c) for c in extra):
        raise RegistryError(f"{REGISTRY_FILE.name}: 'extra_colours' must be a non-empty list of '#rrggbb'")
    seen: set[str] = set()
    for i, ent in enumerate(data["models"]):
        label = ent.get("name", f"#{i}") if isinstance(ent, dict) else f"#{i}"
        if not isinstance(ent, dict):
            raise RegistryError(f"{REGISTRY_FILE.name}: entry {label} is not a mapping")
        _check_keys(ent, SCHEMA, label)
        name = ent["name"]
        if name in seen:
            raise _fail(name, "name", "duplicate name")
        if ":" in name or name.startswith("@") or not name.strip():
            raise _fail(name, "name", "must not be empty, hold ':' or start with '@'")
        seen.add(name)
        if ent["family"] not in FAMILIES:
            raise _fail(name, "family", f"unknown family {ent['family']!r} (known: {', '.join(FAMILIES)})")
        if ent["n_parameters"] < 0:
            raise _fail(name, "n_parameters", "must be >= 0")
        if not _COLOUR.match(ent["colour"]):
            raise _fail(name, "colour", f"{ent['colour']!r} is not '#rrggbb'")
        for tag in ent["tags"]:
            if tag not in tags:
                raise _fail(name, "tags", f"unknown tag {tag!r} (known: {', '.join(tags)})")
        expand_elements(ent["elements"], name)
        hashes = []
        for j, w in enumerate(ent["weights"]):
            if not isinstance(w, dict):
                raise _fail(name, f"weights[{j}]", "must be a mapping")
            _check_keys(w, WEIGHT_SCHEMA, name, prefix=f"weights[{j}].")
            if w["where"] not in WHERE:
                raise _fail(name, f"weights[{j}].where", f"{w['where']!r} is not one of {', '.join(WHERE)}")
            if w["sha256"] is None:
                if not w.get("note"):
                    raise _fail(name, f"weights[{j}].sha256", "null without a 'note' saying why")
            elif not _SHA.match(w["sha256"]):
                raise _fail(name, f"weights[{j}].sha256", f"{w['sha256']!r} is not 64 lower-case hex digits")
            else:
                hashes.append(w["sha256"])
        if ent["family"] == "matgl":
            names = sorted(Path(w["path"]).name for w in ent["weights"])
            if names != ["model.json", "model.pt", "state.pt"] or "matgl_name" not in ent:
                raise _fail(name, "weights", "a matgl entry lists model.json, model.pt and state.pt "
                                             "(one folder) and has a matgl_name")
            if len({str(Path(w["path"]).parent) for w in ent["weights"]}) != 1:
                raise _fail(name, "weights", "the three matgl files must share one folder")
        mid = ent.get("model_id")
        if mid is not None:
            if not mid.startswith(name):
                raise _fail(name, "model_id", f"{mid!r} must start with the name")
            m = re.search(r"@([0-9a-f]+)", mid)
            if m and not any(h.startswith(m.group(1)) for h in hashes):
                raise _fail(name, "model_id", f"'@{m.group(1)}' is the prefix of none of the weight "
                                              "hashes: a changed weight file needs a new model_id")


def _load_registry(path: Path = REGISTRY_FILE) -> tuple[dict, list[str]]:
    import yaml

    with open(path) as fh:
        data = yaml.safe_load(fh)
    validate(data)
    return data, list(data["extra_colours"])


# --------------------------------------------------------------------------------------
# weights: where they are, and their hashes
# --------------------------------------------------------------------------------------

def unpinned_allowed() -> bool:
    """``SOFTENING_ALLOW_UNPINNED=1``: load weight files whose sha256 the registry does not pin."""
    return os.environ.get("SOFTENING_ALLOW_UNPINNED", "0").lower() in ("1", "true", "yes")


def check_files(spec: ModelSpec, files: dict[str, Path]) -> tuple[bool, str, str]:
    """(ok, reason, fix): every file of ``files`` ({file name: path}) against its pinned sha256.

    A file that fails is refused, naming it; a file the registry pins no hash for is refused
    unless ``SOFTENING_ALLOW_UNPINNED=1``."""
    pinned = {w.name: w for w in spec.weights}
    for fname, path in files.items():
        w = pinned.get(fname)
        if w is None or w.sha256 is None:
            if unpinned_allowed():
                continue
            got = _cached_sha256(path) if path.is_file() else "?"
            return (False, f"{path} has no pinned sha256 in {REGISTRY_FILE.name}; refusing to load "
                           f"unchecked weights (its sha256 is {got})",
                    f"check the file's origin, then pin 'sha256: {got}' for {spec.name} in "
                    f"softening_lib/{REGISTRY_FILE.name} (or set SOFTENING_ALLOW_UNPINNED=1)")
        got = _cached_sha256(path)
        if got != w.sha256:
            return (False, f"{fname} ({path}) fails its sha256 check (expected {w.sha256[:12]}..., "
                           f"got {got[:12]}...); refusing to load it",
                    f"replace {path} with the original file ({w.url or spec.weights_source})")
    return True, "", ""


def _weights_source(ent: dict) -> str:
    ws = ent["weights"]
    if not ws:
        return "none"
    w = ws[0]
    if w.get("url"):
        return w["url"]
    if w["where"] == "wheel":
        package = w["path"].split("/", 1)[0]
        return f"inside the {package} wheel ({str(Path(w['path']).parent)})"
    if ent["family"] == "matgl":
        return f"matgl pretrained_models/{Path(w['path']).parent}"
    return f"offline mirror models/{w['path']}"


# --------------------------------------------------------------------------------------
# family loaders: (availability, factory) per family
# --------------------------------------------------------------------------------------

def _mirror_model_dir(spec: ModelSpec) -> Path | None:
    root = config.data_dir()
    if root is None or spec.mirror_folder is None:
        return None
    path = root / "models" / spec.mirror_folder
    return path if path.is_dir() else None


def _wheel_files(spec: ModelSpec, package: str, fix: str) -> tuple[bool, str, str, dict[str, Path]]:
    """The weight files of a model whose weights ship inside a wheel, checked."""
    try:
        importlib.import_module(package)
    except Exception as exc:  # pragma: no cover - environment dependent
        return False, f"{package} is not importable ({exc})", fix, {}
    files = {}
    for w in spec.weights:
        path = w.local_path()
        if path is None or not path.is_file():
            return False, f"the {package} wheel holds no {w.path} (at {path})", fix, {}
        files[w.name] = path
    ok, reason, fix_ = check_files(spec, files)
    return ok, reason, fix_, files


def _chgnet_availability(spec: ModelSpec) -> Callable[[], tuple[bool, str, str]]:
    def check() -> tuple[bool, str, str]:
        ok, reason, fix, _ = _wheel_files(spec, "chgnet", "pip install chgnet (see requirements.txt)")
        return (True, "weights ship inside the chgnet wheel (sha256 checked)", "") if ok else (ok, reason, fix)

    return check


def _chgnet_factory(spec: ModelSpec) -> Callable[..., Calculator]:
    def factory(device: str = "cpu", **kw: Any) -> Calculator:
        ok, reason, fix = spec.availability()
        if not ok:
            raise ModelUnavailableError(f"{spec.name}: {reason}. Fix: {fix}")
        from chgnet.model import CHGNet, CHGNetCalculator

        from .chatter import quiet

        with quiet():  # CHGNet prints "initialized with ... parameters" whatever verbose says
            model = CHGNet.load(model_name=spec.version, use_device=device, verbose=False)
        # CHGNetCalculator's default stress_weight converts GPa to eV/A^3 (ASE convention).
        with quiet():  # "CHGNet will run on cpu"
            return CHGNetCalculator(model=model, use_device=device, **kw)

    return factory


def _matgl_files(spec: ModelSpec, path: Path) -> dict[str, Path]:
    return {name: path / name for name in ("model.json", "model.pt", "state.pt")}


def _matgl_availability(spec: ModelSpec) -> Callable[[], tuple[bool, str, str]]:
    def check() -> tuple[bool, str, str]:
        try:
            import matgl  # noqa: F401
        except Exception as exc:  # pragma: no cover
            return False, f"matgl is not importable ({exc})", "pip install matgl (see requirements.txt)"
        path = _mirror_model_dir(spec)
        if path is not None and (path / "model.json").is_file():
            files = _matgl_files(spec, path)
            missing = [n for n, p in files.items() if not p.is_file()]
            if missing:
                return (False, f"{path} lacks {', '.join(missing)}",
                        "copy matgl's model.json, model.pt and state.pt into the mirror folder")
            ok, reason, fix = check_files(spec, files)
            if not ok:
                return ok, reason, fix
            return True, f"weights from the offline mirror {path} (sha256 checked)", ""
        if config.online():
            return True, f"matgl downloads '{spec.matgl_name}' on first use (sha256 checked then)", ""
        where = (config.data_dir() or Path("$SOFTENING_DATA_DIR")) / "models" / str(spec.mirror_folder)
        return (
            False,
            f"offline and no weights at {where}",
            f"set SOFTENING_DATA_DIR to a mirror holding models/{spec.mirror_folder}/ "
            f"(model.json, model.pt, state.pt from matgl's pretrained_models), "
            f"or set SOFTENING_ONLINE=1 so matgl downloads '{spec.matgl_name}'",
        )

    return check


def matgl_weights_dir(name: str) -> Path:
    """The folder holding a matgl model's model.json, model.pt and state.pt, every file
    checked against its pinned sha256: the offline mirror, or (``SOFTENING_ONLINE=1``) matgl's
    download. Raises :class:`ModelUnavailableError` (naming the file and the fix) otherwise."""
    spec = get_spec(name)
    if spec.family != "matgl":
        raise ModelError(f"{name} is not a matgl model")
    ok, reason, fix = spec.availability()
    if not ok:
        raise ModelUnavailableError(f"{spec.name}: {reason}. Fix: {fix}")
    path = _mirror_model_dir(spec)
    if path is not None:
        return path
    from matgl.utils.io import _get_file_paths  # online: download first, check, then load

    got = _get_file_paths(Path(str(spec.matgl_name)), str_path=spec.matgl_name)
    files = {fname: Path(p) for fname, p in got.items()}
    ok, reason, fix = check_files(spec, files)
    if not ok:
        raise ModelUnavailableError(f"{spec.name}: {reason}. Fix: {fix}")
    return files["model.json"].parent


def _graphs_to(calc: Any, device: str) -> None:
    """Make ``calc`` (a matgl ``PESCalculator``) hand its potential graph, lattice and state
    tensors on ``device`` (matgl's ``Atoms2Graph`` builds them on the CPU)."""
    converter = calc._atoms2graph
    get_graph = converter.get_graph

    def on_device(atoms):
        return tuple(x.to(device) if hasattr(x, "to") else x for x in get_graph(atoms))

    converter.get_graph = on_device


def _matgl_factory(spec: ModelSpec) -> Callable[..., Calculator]:
    def factory(device: str = "cpu", **kw: Any) -> Calculator:
        ok, reason, fix = spec.availability()
        if not ok:
            raise ModelUnavailableError(f"{spec.name}: {reason}. Fix: {fix}")
        import matgl
        from matgl.ext.ase import PESCalculator

        from . import matgl_fix

        matgl_fix.apply()  # matgl 4.x message-direction bug (see matgl_fix)
        from .devices import resolve

        device = resolve(device)
        # eval mode: matgl.load_model returns the Potential in training mode, in which every
        # force call builds a double-backward graph (create_graph=True) that inference never uses
        potential = matgl.load_model(matgl_weights_dir(spec.name)).to(device).eval()
        kw.setdefault("stress_unit", "eV/A3")  # matgl's default is GPa; ASE wants eV/A^3
        calc = PESCalculator(potential, **kw)
        if device != "cpu":  # matgl builds each graph on the CPU: move it where the model is
            _graphs_to(calc, device)
        calc.softening_device = device
        return calc

    return factory


MACE_MEDIUM_FILE = "2023-12-03-mace-128-L1_epoch-199.model"
MACE_MEDIUM_URL = (
    "https://github.com/ACEsuit/mace-mp/releases/download/mace_mp_0/" + MACE_MEDIUM_FILE
)


def _mace_weight_candidates() -> list[Path]:
    paths = []
    root = config.data_dir()
    if root is not None:
        paths.append(root / "models" / "mace-mp-0-medium" / MACE_MEDIUM_FILE)
    paths.append(Path.home() / ".cache" / "mace" / "20231203mace128L1_epoch199model")
    paths.append(Path.home() / ".cache" / "mace" / MACE_MEDIUM_FILE)
    return paths


def _mace_check(spec: ModelSpec, path: Path) -> tuple[bool, str, str]:
    return check_files(spec, {MACE_MEDIUM_FILE: path})


def _mace_availability(spec: ModelSpec) -> Callable[[], tuple[bool, str, str]]:
    def check() -> tuple[bool, str, str]:
        try:
            import mace  # noqa: F401  (import mace before e3nn: torch>=2.6 load rules)
        except Exception as exc:  # pragma: no cover
            return False, f"mace-torch is not importable ({exc})", "pip install mace-torch"
        for path in _mace_weight_candidates():
            if path.is_file():
                ok, reason, fix = _mace_check(spec, path)
                return (True, f"weights at {path}", "") if ok else (ok, reason, fix)
        if config.online():
            return True, f"mace downloads {MACE_MEDIUM_URL} on first use (sha256 checked then)", ""
        mirror = (config.data_dir() or Path("$SOFTENING_DATA_DIR")) / "models" / "mace-mp-0-medium"
        return (
            False,
            "offline and the MACE-MP-0 medium weights are not on this machine "
            "(they are a GitHub release asset of ACEsuit/mace-mp, not mirrored here)",
            f"download {MACE_MEDIUM_URL} and put it at {mirror / MACE_MEDIUM_FILE}, "
            "or set SOFTENING_ONLINE=1 so mace_mp(model='medium') downloads it",
        )

    return check


def _mace_factory(spec: ModelSpec) -> Callable[..., Calculator]:
    def factory(device: str = "cpu", default_dtype: str = "float64", **kw: Any) -> Calculator:
        ok, reason, fix = spec.availability()
        if not ok:
            raise ModelUnavailableError(f"{spec.name}: {reason}. Fix: {fix}")
        import mace  # noqa: F401
        from mace.calculators import mace_mp

        path = next((p for p in _mace_weight_candidates() if p.is_file()), None)
        if path is None:  # online: download, then check before loading
            from mace.calculators.foundations_models import download_mace_mp_checkpoint

            path = Path(download_mace_mp_checkpoint(MACE_MEDIUM_URL))
        ok, reason, fix = _mace_check(spec, path)
        if not ok:
            raise ModelUnavailableError(f"{spec.name}: {reason}. Fix: {fix}")
        return mace_mp(model=str(path), device=device, default_dtype=default_dtype, **kw)

    return factory


# SevenNet-0: its wheel ships the weights, but sevenn >= 0.11 pins e3nn >= 0.5 while mace-torch
# 0.3.16 pins e3nn == 0.4.4; sevenn 0.10.4 (no e3nn pin) runs with e3nn 0.4.4 and is installed
# beside mace-torch (pip install --no-deps sevenn==0.10.4 braceexpand scikit-learn threadpoolctl).
SEVENNET_FIX = ("pip install --no-deps 'sevenn==0.10.4' braceexpand scikit-learn threadpoolctl "
                "(sevenn>=0.11 needs e3nn>=0.5, which conflicts with mace-torch's e3nn==0.4.4)")


def sevennet0_available() -> tuple[bool, str, str]:
    """(ok, reason, fix) for SevenNet-0: the sevenn package and the checkpoint inside its wheel
    (its sha256 checked against the registry)."""
    try:
        found = importlib.util.find_spec("sevenn") is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        return False, "the sevenn package is not installed here", SEVENNET_FIX
    try:
        import sevenn._const as const

        path = Path(const.SEVENNET_0_11Jul2024)
    except Exception as exc:  # an incompatible sevenn version
        return False, f"sevenn has no SevenNet-0 (11Jul2024) checkpoint ({exc})", SEVENNET_FIX
    if not path.is_file():
        return False, f"the sevenn wheel holds no checkpoint at {path}", SEVENNET_FIX
    spec = REGISTRY.get("sevennet-0")
    if spec is not None:
        ok, reason, fix = check_files(spec, {path.name: path})
        if not ok:
            return ok, reason, fix
    return True, "weights ship inside the sevenn wheel (sha256 checked)", ""


def sevennet0(device: str = "cpu", **kw: Any) -> Calculator:
    """SevenNet-0 (11Jul2024; weights inside the ``sevenn`` wheel) as an ASE calculator."""
    ok, reason, fix = sevennet0_available()
    if not ok:
        raise ModelUnavailableError(f"SevenNet-0: {reason}. Fix: {fix}")
    import torch

    # sevenn 0.10.4 checkpoints pickle a `slice`; torch >= 2.6 loads with weights_only=True and
    # refuses it unless allow-listed
    torch.serialization.add_safe_globals([slice])
    from sevenn.calculator import SevenNetCalculator

    return SevenNetCalculator("7net-0", device=device, **kw)


def _emt_factory(**kw: Any) -> Calculator:
    from ase.calculators.emt import EMT

    return EMT(**kw)


def _always() -> tuple[bool, str, str]:
    return True, "built into ASE", ""


def _loaders(spec: ModelSpec) -> tuple[Callable[[], tuple[bool, str, str]], Callable[..., Calculator]]:
    """(availability, factory) of a registry entry, by family."""
    if spec.family == "chgnet":
        return _chgnet_availability(spec), _chgnet_factory(spec)
    if spec.family == "matgl":
        return _matgl_availability(spec), _matgl_factory(spec)
    if spec.family == "mace":
        return _mace_availability(spec), _mace_factory(spec)
    if spec.family == "sevenn":
        return sevennet0_available, sevennet0
    if spec.family == "ase" and spec.name == "emt":
        return _always, _emt_factory
    raise _fail(spec.name, "family", f"no loader for family {spec.family!r} and this name")


# --------------------------------------------------------------------------------------
# the registry
# --------------------------------------------------------------------------------------

REGISTRY: dict[str, ModelSpec] = {}
TAGS: dict[str, str] = {}  # tag -> description, from models.yml
EXTRA_COLOURS: list[str] = []


def _spec_of(ent: dict) -> ModelSpec:
    weights = [WeightFile(where=w["where"], path=w["path"], sha256=w["sha256"], url=w.get("url"),
                          note=w.get("note", "")) for w in ent["weights"]]
    # the main weights file: matgl's state.pt, else the first file
    main = next((w for w in weights if w.name == "state.pt"), weights[0] if weights else None)
    mirror = (str(Path(weights[0].path).parent) if weights and weights[0].where == "mirror"
              and ent["family"] == "matgl" else None)
    spec = ModelSpec(
        name=ent["name"], display_name=ent["display_name"], family=ent["family"],
        version=ent["version"], n_parameters=ent["n_parameters"], training_set=ent["training_set"],
        citation=" ".join(ent["citation"].split()), weights_source=_weights_source(ent),
        weights_url=next((w.url for w in weights if w.url), None),
        sha256=main.sha256 if main else None, mirror_folder=mirror, matgl_name=ent.get("matgl_name"),
        paper_model="paper" in ent["tags"], notes=" ".join(ent.get("notes", "").split()),
        weights=weights, colour=ent["colour"], elements=expand_elements(ent["elements"], ent["name"]),
        tags=tuple(ent["tags"]), cache_id=ent.get("model_id"),
    )
    spec.availability, spec.factory = _loaders(spec)
    return spec


def register(spec: ModelSpec) -> ModelSpec:
    """Add a spec at run time (tests, notebooks); the book's models live in ``models.yml``."""
    if spec.family == "matgl":
        spec.factory = spec.factory or _matgl_factory(spec)
        spec.availability = spec.availability or _matgl_availability(spec)
    REGISTRY[spec.name] = spec
    return spec


def _build() -> None:
    data, extra = _load_registry()
    TAGS.update(data["tags"])
    for ent in data["models"]:
        register(_spec_of(ent))
    used = {s.colour for s in REGISTRY.values()}
    EXTRA_COLOURS.extend([c for c in extra if c not in used] or extra)


_build()


def tagged(tag: str) -> list[str]:
    """Registry names carrying ``tag`` (a leading ``@`` is allowed), in registry order."""
    tag = tag[1:] if tag.startswith("@") else tag
    if tag not in TAGS:
        raise UnknownTagError(f"unknown tag {tag!r}; known tags: {', '.join(TAGS)}")
    return [name for name, spec in REGISTRY.items() if tag in spec.tags]


def expand(names: str | Iterable[str]) -> list[str]:
    """``names`` with every ``"@tag"`` replaced by :func:`tagged` models; duplicates dropped,
    first occurrence kept, order kept. Other names pass unchanged (see :func:`resolve`)."""
    if isinstance(names, str):
        names = [names]
    out: list[str] = []
    for name in names:
        for item in (tagged(name) if name.startswith("@") else [name]):
            if item not in out:
                out.append(item)
    return out


PAPER_MODELS = tagged("paper")
DEFAULT_MODELS = tagged("default")
PRIMARY_MODEL = tagged("primary")[0]


# --------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------

def is_import_path(name: str) -> bool:
    return ":" in name and not name.startswith(("http:", "https:"))


def split_version(name: str) -> tuple[str, str | None]:
    """``"pkg.mod:factory@v2"`` -> ``("pkg.mod:factory", "v2")``; no ``@``: version None."""
    module, _, rest = name.partition(":")
    attr, at, version = rest.partition("@")
    return (f"{module}:{attr}", version or None) if at else (name, None)


def _source_hash(module_name: str) -> str | None:
    """sha256[:12] of a module's source file (without importing it), None if it has none."""
    try:
        found = importlib.util.find_spec(module_name)
    except (ImportError, ValueError):
        return None
    origin = getattr(found, "origin", None) if found is not None else None
    if not origin or not Path(origin).is_file():
        return None
    return _cached_sha256(Path(origin))[:12]


_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
IMPORT_PATH = re.compile(rf"{_IDENT}(?:\.{_IDENT})*:{_IDENT}(?:@[A-Za-z0-9._+-]{{1,40}})?")


def resolve(name: str) -> ModelSpec:
    """The spec of a registry name or of an import path ``pkg.mod:factory[@version]``.

    A misspelt name raises :class:`UnknownModelError` with the closest registry names
    ("did you mean chgnet-0.3.0?") and the import-path hint; ``"@tag"`` is refused here
    (expand it with :func:`expand`)."""
    if not isinstance(name, str):
        raise UnknownModelError(f"a model name is a string, got {type(name).__name__} {name!r}")
    if name in REGISTRY:
        return REGISTRY[name]
    if is_import_path(name):
        if not IMPORT_PATH.fullmatch(name):
            raise UnknownModelError(
                f"{name!r} is not an import path: expected 'package.module:function' (Python identifiers "
                "separated by dots, one colon), optionally '@version' with letters, digits and . _ + -")
        path, version = split_version(name)
        return ModelSpec(
            name=name, display_name=name, family="import",
            version=version or "user calculator (source hash)",
            n_parameters=None, training_set="user supplied", citation="user supplied",
            weights_source=f"import path {path}", factory=_import_factory(path),
            availability=lambda: _import_available(path),
        )
    if name.startswith("@"):
        raise UnknownModelError(f"{name!r} is a tag, not a model: expand it with models.expand([{name!r}]) "
                                f"(known tags: {', '.join(TAGS)})")
    close = difflib.get_close_matches(name, list(REGISTRY), n=3, cutoff=0.5)
    if not close:  # a prefix ("chgnet") or a family name
        close = [n for n in REGISTRY if n.startswith(name) or name in n][:3]
    hint = f" Did you mean {' or '.join(close)}?" if close else ""
    raise UnknownModelError(
        f"unknown model {name!r}.{hint} Known names: {', '.join(REGISTRY)}; tags: "
        f"{', '.join('@' + t for t in TAGS)}; or give any ASE calculator factory as "
        "'package.module:function' (optionally '@version')."
    )


def get_spec(name: str) -> ModelSpec:
    """The registry entry for ``name`` (or an ad-hoc spec for ``package.module:factory``)."""
    return resolve(name)


def _import_factory(path: str) -> Callable[..., Calculator]:
    def factory(**kw: Any) -> Calculator:
        module_name, _, attr = path.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ModelUnavailableError(f"cannot import {module_name!r} for model {path!r}: {exc}") from exc
        try:
            obj = getattr(module, attr)
        except AttributeError as exc:
            raise ModelUnavailableError(f"module {module_name!r} has no attribute {attr!r}") from exc
        calc = obj(**kw) if callable(obj) and not isinstance(obj, Calculator) else obj
        if not hasattr(calc, "get_property"):
            raise ModelError(f"{path!r} returned {type(calc).__name__}, not an ASE calculator")
        return calc

    return factory


def _import_available(path: str) -> tuple[bool, str, str]:
    module_name = path.partition(":")[0]
    try:
        found = importlib.util.find_spec(module_name)
    except (ImportError, ValueError):
        found = None
    if found is None:
        return False, f"module {module_name!r} not found", "check PYTHONPATH / install the package"
    return True, "import path", ""


def model_id(name: str) -> str:
    """The cache key of a model's results (see :meth:`ModelSpec.model_id`)."""
    return get_spec(name).model_id()


def colour(name: str) -> str:
    """The registry colour of a model; for any other name (import paths, ``base*c`` scaled
    models) the base model's colour or a stable pick from ``models.yml``'s extra colours."""
    if name in REGISTRY:
        return REGISTRY[name].colour or EXTRA_COLOURS[0]
    base = name.split("*")[0]
    if base in REGISTRY:
        return colour(base)
    return EXTRA_COLOURS[sum(map(ord, name)) % len(EXTRA_COLOURS)]


def get_calculator(name: str, **kw: Any) -> Calculator:
    """An ASE calculator for a registry name or a ``package.module:factory[@version]`` path.

    Extra keyword arguments go to the model's factory (e.g. ``device="cuda"``).
    The returned calculator carries ``calc.softening_model = name``.
    """
    spec = get_spec(name)
    assert spec.factory is not None
    calc = spec.factory(**kw)
    try:
        calc.softening_model = name
    except AttributeError:  # pragma: no cover - exotic calculators with __slots__
        pass
    return calc


def check_available(name: str) -> None:
    """Raise :class:`ModelUnavailableError` (with the fix) when ``name`` cannot run here."""
    spec = get_spec(name)
    ok, reason, fix = spec.availability() if spec.availability else (True, "", "")
    if not ok:
        raise ModelUnavailableError(f"{name}: {reason}. Fix: {fix}")


def available_models(names: list[str] | None = None):
    """A table (pandas DataFrame): one row per model, can it run here, and if not why.
    ``names`` may hold ``@tags``; default: the whole registry."""
    import pandas as pd

    rows = []
    for name in expand(names) if names else list(REGISTRY):
        spec = get_spec(name)
        ok, reason, fix = spec.availability() if spec.availability else (True, "", "")
        rows.append({
            "model": name, "display_name": spec.display_name, "version": spec.version,
            "parameters": spec.n_parameters, "training_set": spec.training_set,
            "paper_model": spec.paper_model, "available": ok, "reason": reason, "fix": fix,
            "weights": spec.weights_source, "sha256": spec.sha256 or "", "tags": ",".join(spec.tags),
        })
    return pd.DataFrame(rows)


def registry_table(width: int = 100, names: list[str] | None = None) -> str:
    """``python -m softening_lib models``: a compact table, every line at most ``width``
    characters: model, available, parameters (an integer), tags; below a row that cannot run
    here, its reason and fix, wrapped."""
    names = expand(names) if names else list(REGISTRY)
    rows = []
    for name in names:
        spec = get_spec(name)
        ok, reason, fix = spec.availability() if spec.availability else (True, "", "")
        params = str(int(spec.n_parameters)) if spec.n_parameters is not None else "-"
        rows.append((name, "yes" if ok else "no", params, ",".join(spec.tags) or "-", ok, reason, fix))
    w_name = max([len("model")] + [len(r[0]) for r in rows])
    w_par = max([len("parameters")] + [len(r[2]) for r in rows])

    def line(a: str, b: str, c: str, d: str) -> str:
        text = f"{a:<{w_name}}  {b:<9}  {c:>{w_par}}  {d}"
        return text if len(text) <= width else text[:width - 3] + "..."

    out = [line("model", "available", "parameters", "tags"), "-" * min(width, w_name + w_par + 30)]
    wrap = textwrap.TextWrapper(width=width, initial_indent="    ", subsequent_indent="      ",
                                break_long_words=True, break_on_hyphens=False)
    for name, avail, params, tags, ok, reason, fix in rows:
        out.append(line(name, avail, params, tags))
        if not ok:
            out += wrap.wrap(f"why: {reason}")
            if fix:
                out += wrap.wrap(f"fix: {fix}")
    return "\n".join(out)


def runnable(names: list[str]) -> tuple[list[str], dict[str, str]]:
    """Split ``names`` (``@tags`` allowed) into those that run here and {name: reason} for the rest."""
    ok_names, skipped = [], {}
    for name in expand(names):
        try:
            check_available(name)
            ok_names.append(name)
        except ModelError as exc:
            skipped[name] = str(exc)
    return ok_names, skipped


# --------------------------------------------------------------------------------------
# elements a model covers
# --------------------------------------------------------------------------------------

def supported_elements(name: str) -> set[str] | None:
    """Chemical symbols the model was trained on (the registry's ``elements``); None when
    unknown (user models)."""
    spec = get_spec(name)
    return set(spec.elements) if spec.elements is not None else None


def check_elements(name: str, symbols) -> None:
    """Raise :class:`UnsupportedElementError` if any symbol is outside the model's set."""
    allowed = supported_elements(name)
    if allowed is None:
        return
    missing = sorted(set(symbols) - allowed)
    if missing:
        raise UnsupportedElementError(
            f"model {name!r} does not cover element(s) {', '.join(missing)}; "
            f"skip this structure or choose a model trained on them"
        )


# --------------------------------------------------------------------------------------
# the linear correction as a calculator
# --------------------------------------------------------------------------------------

class ScaledCalculator(Calculator):
    """Energy, forces and stress of ``base`` multiplied by ``c`` (paper Eq. 4).

    ``E_corr = c * E_base`` implies ``F_corr = c * F_base`` and ``sigma_corr = c * sigma_base``.
    """

    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def __init__(self, base: Calculator, c: float, **kwargs: Any):
        super().__init__(**kwargs)
        if not np.isfinite(c):
            raise ValueError(f"scale factor must be finite, got {c}")
        self.base = base
        self.c = float(c)
        base_name = getattr(base, "softening_model", type(base).__name__)
        self.softening_model = f"{base_name}*{self.c:.6g}"

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        work = self.atoms.copy()
        work.calc = self.base
        for prop in properties:
            if prop == "free_energy":
                try:
                    value = work.get_potential_energy(force_consistent=True)
                except Exception:
                    value = work.get_potential_energy()
            elif prop == "energy":
                value = work.get_potential_energy()
            elif prop == "forces":
                value = work.get_forces()
            elif prop == "stress":
                value = work.get_stress()
            else:
                continue
            self.results[prop] = self.c * np.asarray(value, dtype=float) if np.ndim(value) else self.c * float(value)
        if "energy" in self.results and "free_energy" not in self.results:
            self.results["free_energy"] = self.results["energy"]


_SHA_CACHE: dict[tuple[str, float, int], str] = {}


def _cached_sha256(path: Path) -> str:
    st = path.stat()
    key = (str(path), st.st_mtime, st.st_size)
    if key not in _SHA_CACHE:
        _SHA_CACHE[key] = sha256_file(path)
    return _SHA_CACHE[key]


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()
