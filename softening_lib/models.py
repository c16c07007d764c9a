"""Model registry: one entry per universal MLIP, each turning a name into an ASE calculator.

>>> from softening_lib.models import get_calculator, available_models
>>> calc = get_calculator("chgnet-0.3.0")          # a registry name
>>> calc = get_calculator("mypkg.calcs:make_calc")  # any ``package.module:factory``
>>> available_models()                              # what can run here, and why not

Every entry records what the paper's Table 1 records (version, parameter count, training
set), where its weights come from and, where known, their hash. Weights are looked up
first in the offline mirror (``$SOFTENING_DATA_DIR/models/<folder>``), then, only when
``SOFTENING_ONLINE=1``, through the library's own downloader (matgl / mace).

:class:`ScaledCalculator` multiplies energy, forces and stress of any calculator by a
constant ``c`` -- the paper's Eq. 4 linear correction, and the backbone of exact tests.
"""

from __future__ import annotations

import hashlib
import importlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
from ase.calculators.calculator import Calculator, all_changes

from . import config


class ModelError(RuntimeError):
    """Base class for registry errors."""


class UnknownModelError(ModelError, KeyError):
    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


class ModelUnavailableError(ModelError):
    """The model is known but cannot run here (missing weights or package)."""


class UnsupportedElementError(ModelError, ValueError):
    """A structure holds an element the model was not trained on."""


@dataclass
class ModelSpec:
    name: str
    display_name: str
    family: str  # chgnet | matgl | mace | ase | import
    version: str
    n_parameters: int | None  # as reported (paper Table 1 or the model card)
    training_set: str
    citation: str
    weights_source: str  # human-readable: wheel / matgl name / URL
    weights_url: str | None = None
    sha256: str | None = None  # of the weights file, where known
    mirror_folder: str | None = None  # under $SOFTENING_DATA_DIR/models/
    matgl_name: str | None = None
    paper_model: bool = False
    notes: str = ""
    factory: Callable[..., Calculator] | None = field(default=None, repr=False)
    availability: Callable[[], tuple[bool, str, str]] | None = field(default=None, repr=False)

    def model_id(self) -> str:
        """A stable id for caching: name + version (+ weights hash where known)."""
        suffix = f"@{self.sha256[:12]}" if self.sha256 else ""
        if self.family == "matgl":
            # results made before softening_lib.matgl_fix are wrong for compounds: new cache keys
            suffix += "+mfix1"
        return f"{self.name}{suffix}"


# --------------------------------------------------------------------------------------
# loaders
# --------------------------------------------------------------------------------------

def _mirror_model_dir(spec: ModelSpec) -> Path | None:
    root = config.data_dir()
    if root is None or spec.mirror_folder is None:
        return None
    path = root / "models" / spec.mirror_folder
    return path if path.is_dir() else None


def _chgnet_available() -> tuple[bool, str, str]:
    try:
        import chgnet  # noqa: F401
        from chgnet.model import CHGNet  # noqa: F401
    except Exception as exc:  # pragma: no cover - environment dependent
        return False, f"chgnet is not importable ({exc})", "pip install chgnet (see requirements.txt)"
    path = Path(chgnet.__file__).parent / "pretrained" / "0.3.0"
    if not path.is_dir():
        return False, f"chgnet wheel has no pretrained/0.3.0 weights at {path}", "reinstall chgnet"
    return True, "weights ship inside the chgnet wheel", ""


def _chgnet_factory(device: str = "cpu", **kw: Any) -> Calculator:
    from chgnet.model import CHGNet, CHGNetCalculator

    model = CHGNet.load(model_name="0.3.0", use_device=device, verbose=False)
    # CHGNetCalculator's default stress_weight converts GPa to eV/A^3 (ASE convention).
    return CHGNetCalculator(model=model, use_device=device, **kw)


def _matgl_availability(spec: ModelSpec) -> Callable[[], tuple[bool, str, str]]:
    def check() -> tuple[bool, str, str]:
        try:
            import matgl  # noqa: F401
        except Exception as exc:  # pragma: no cover
            return False, f"matgl is not importable ({exc})", "pip install matgl (see requirements.txt)"
        path = _mirror_model_dir(spec)
        if path is not None and (path / "model.json").is_file():
            state = path / "state.pt"
            if spec.sha256 and state.is_file() and _cached_sha256(state) != spec.sha256:
                return (False, f"{state} fails its sha256 check (expected {spec.sha256[:12]}..., "
                        f"got {_cached_sha256(state)[:12]}...); refusing to load it",
                        "replace the mirror folder with matgl's original files")
            return True, f"weights from the offline mirror {path}", ""
        if config.online():
            return True, f"matgl downloads '{spec.matgl_name}' on first use", ""
        where = (config.data_dir() or Path("$SOFTENING_DATA_DIR")) / "models" / str(spec.mirror_folder)
        return (
            False,
            f"offline and no weights at {where}",
            f"set SOFTENING_DATA_DIR to a mirror holding models/{spec.mirror_folder}/ "
            f"(model.json, model.pt, state.pt from matgl's pretrained_models), "
            f"or set SOFTENING_ONLINE=1 so matgl downloads '{spec.matgl_name}'",
        )

    return check


def _matgl_factory(spec: ModelSpec) -> Callable[..., Calculator]:
    def factory(device: str = "cpu", **kw: Any) -> Calculator:
        ok, reason, fix = _matgl_availability(spec)()
        if not ok:
            raise ModelUnavailableError(f"{spec.name}: {reason}. Fix: {fix}")
        import matgl
        from matgl.ext.ase import PESCalculator

        from . import matgl_fix

        matgl_fix.apply()  # matgl 4.x message-direction bug (see matgl_fix)
        path = _mirror_model_dir(spec)
        potential = matgl.load_model(path if path is not None else spec.matgl_name)
        kw.setdefault("stress_unit", "eV/A3")  # matgl's default is GPa; ASE wants eV/A^3
        return PESCalculator(potential, **kw)

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


def _mace_available() -> tuple[bool, str, str]:
    try:
        import mace  # noqa: F401  (import mace before e3nn: torch>=2.6 load rules)
    except Exception as exc:  # pragma: no cover
        return False, f"mace-torch is not importable ({exc})", "pip install mace-torch"
    for path in _mace_weight_candidates():
        if path.is_file():
            return True, f"weights at {path}", ""
    if config.online():
        return True, f"mace_mp downloads {MACE_MEDIUM_URL} on first use", ""
    mirror = (config.data_dir() or Path("$SOFTENING_DATA_DIR")) / "models" / "mace-mp-0-medium"
    return (
        False,
        "offline and the MACE-MP-0 medium weights are not on this machine "
        "(they are a GitHub release asset of ACEsuit/mace-mp, not mirrored here)",
        f"download {MACE_MEDIUM_URL} and put it at {mirror / MACE_MEDIUM_FILE}, "
        "or set SOFTENING_ONLINE=1 so mace_mp(model='medium') downloads it",
    )


def _mace_factory(device: str = "cpu", default_dtype: str = "float64", **kw: Any) -> Calculator:
    ok, reason, fix = _mace_available()
    if not ok:
        raise ModelUnavailableError(f"mace-mp-0-medium: {reason}. Fix: {fix}")
    import mace  # noqa: F401
    from mace.calculators import mace_mp

    model: str = "medium"
    for path in _mace_weight_candidates():
        if path.is_file():
            model = str(path)
            break
    return mace_mp(model=model, device=device, default_dtype=default_dtype, **kw)


def _emt_factory(**kw: Any) -> Calculator:
    from ase.calculators.emt import EMT

    return EMT(**kw)


def _always() -> tuple[bool, str, str]:
    return True, "built into ASE", ""


# --------------------------------------------------------------------------------------
# the registry
# --------------------------------------------------------------------------------------

CITE_CHGNET = (
    "B. Deng et al., CHGNet as a pretrained universal neural network potential for "
    "charge-informed atomistic modelling, Nat. Mach. Intell. 5, 1031 (2023), "
    "doi:10.1038/s42256-023-00716-3"
)
CITE_M3GNET = (
    "C. Chen, S. P. Ong, A universal graph deep learning interatomic potential for the "
    "periodic table, Nat. Comput. Sci. 2, 718 (2022), doi:10.1038/s43588-022-00349-3"
)
CITE_MACE = (
    "I. Batatia et al., A foundation model for atomistic materials chemistry, "
    "arXiv:2401.00096 (2023)"
)
CITE_MATPES = (
    "A. D. Kaplan et al., A foundational potential energy surface dataset for materials "
    "(MatPES), arXiv:2503.04070 (2025)"
)
CITE_TENSORNET = (
    "G. Simeon, G. De Fabritiis, TensorNet: Cartesian tensor representations for "
    "efficient learning of molecular potentials, NeurIPS 36 (2023); " + CITE_MATPES
)

REGISTRY: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
    if spec.family == "matgl":
        spec.factory = spec.factory or _matgl_factory(spec)
        spec.availability = spec.availability or _matgl_availability(spec)
    REGISTRY[spec.name] = spec
    return spec


register(ModelSpec(
    name="chgnet-0.3.0", display_name="CHGNet 0.3.0", family="chgnet", version="0.3.0",
    n_parameters=412_525, training_set="MPtrj (1.58 M structures)", citation=CITE_CHGNET,
    weights_source="inside the chgnet wheel (chgnet/pretrained/0.3.0)", paper_model=True,
    factory=_chgnet_factory, availability=_chgnet_available,
))
register(ModelSpec(
    name="m3gnet-mp-2021.2.8", display_name="M3GNet-MP-2021.2.8", family="matgl",
    version="MP-2021.2.8-PES (matgl)", n_parameters=227_549,
    training_set="MPF.2021.2.8 (188 k structures)", citation=CITE_M3GNET,
    weights_source="matgl pretrained_models/M3GNet-MP-2021.2.8-PES",
    matgl_name="M3GNet-MP-2021.2.8-PES", mirror_folder="M3GNet-MP-2021.2.8-PES", paper_model=True,
    sha256="a9aa723705bd1a242ec8749332f137811c4a94e17995a564f8f94a9aca68061b",  # state.pt
    notes="matgl's PyTorch re-training on the paper's data; the paper used the TensorFlow "
          "m3gnet package's MP-2021.2.8-EFS weights, so numbers can differ slightly.",
))
register(ModelSpec(
    name="mace-mp-0-medium", display_name="MACE-MP-0 medium (2023-12-03)", family="mace",
    version="2023-12-03-mace-128-L1_epoch-199", n_parameters=4_690_000,
    training_set="MPtrj (1.58 M structures)", citation=CITE_MACE,
    weights_source=MACE_MEDIUM_URL, weights_url=MACE_MEDIUM_URL, paper_model=True,
    factory=_mace_factory, availability=_mace_available,
))
register(ModelSpec(
    name="m3gnet-matpes-pbe", display_name="M3GNet-MatPES-PBE-v2025.1", family="matgl",
    version="MatPES-PBE-v2025.1-PES", n_parameters=None, training_set="MatPES-PBE (2025)",
    citation=CITE_M3GNET + "; " + CITE_MATPES,
    weights_source="matgl pretrained_models/M3GNet-MatPES-PBE-v2025.1-PES",
    matgl_name="M3GNet-MatPES-PBE-v2025.1-PES", mirror_folder="M3GNet-MatPES-PBE-v2025.1-PES",
    sha256="9f710eac88ec2c666c8e488883c59768cf11c116f177e9d82896ae56f3fc338d",  # state.pt
))
register(ModelSpec(
    name="tensornet-matpes-pbe", display_name="TensorNet-MatPES-PBE-v2025.1", family="matgl",
    version="MatPES-PBE-v2025.1-PES", n_parameters=None, training_set="MatPES-PBE (2025)",
    citation=CITE_TENSORNET,
    weights_source="matgl pretrained_models/TensorNet-MatPES-PBE-v2025.1-PES",
    matgl_name="TensorNet-MatPES-PBE-v2025.1-PES", mirror_folder="TensorNet-MatPES-PBE-v2025.1-PES",
    sha256="d2dfa51a65d23a47fd935eb0628177d2a1088584562091ef3350ce3a002fce6a",  # state.pt
))
register(ModelSpec(  # factory and availability live in softening_lib.tasks.model_zoo (chapter 10)
    name="sevennet-0", display_name="SevenNet-0 (11Jul2024)", family="sevenn",
    version="sevenn 0.10.4 wheel, SevenNet_0__11Jul2024", n_parameters=842_440,  # Matbench Discovery card
    training_set="MPtrj (1.58 M structures)",
    citation="Y. Park et al., Scalable parallel algorithm for graph neural network interatomic "
             "potentials in molecular dynamics simulations, J. Chem. Theory Comput. 20, 4857 (2024)",
    weights_source="inside the sevenn wheel (sevenn/pretrained_potentials/SevenNet_0__11Jul2024)",
    sha256="7052cb42b7b3be42b40b97fa0d21077a48c54b5548948fc4dcf346629f813c36",  # checkpoint_sevennet_0.pth
    factory=lambda **kw: importlib.import_module("softening_lib.tasks.model_zoo").sevennet0(**kw),
    availability=lambda: importlib.import_module("softening_lib.tasks.model_zoo").sevennet0_available(),
    notes="sevenn==0.10.4: newer sevenn pins e3nn>=0.5, which conflicts with mace-torch's e3nn==0.4.4.",
))
register(ModelSpec(
    name="emt", display_name="EMT (ASE, debug)", family="ase", version="ase",
    n_parameters=0, training_set="none (analytic effective-medium potential)",
    citation="K. W. Jacobsen, P. Stoltze, J. K. Norskov, Surf. Sci. 366, 394 (1996)",
    weights_source="none", factory=_emt_factory, availability=_always,
    notes="Al, Cu, Ag, Au, Ni, Pd, Pt (+ H, C, N, O for molecules). For tests only.",
))

PAPER_MODELS = [name for name, spec in REGISTRY.items() if spec.paper_model]
DEFAULT_MODELS = ["chgnet-0.3.0", "m3gnet-mp-2021.2.8", "m3gnet-matpes-pbe", "tensornet-matpes-pbe"]


# --------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------

def is_import_path(name: str) -> bool:
    return ":" in name and not name.startswith(("http:", "https:"))


def get_spec(name: str) -> ModelSpec:
    """The registry entry for ``name`` (or an ad-hoc spec for ``package.module:factory``)."""
    if name in REGISTRY:
        return REGISTRY[name]
    if is_import_path(name):
        return ModelSpec(
            name=name, display_name=name, family="import", version="user calculator",
            n_parameters=None, training_set="user supplied", citation="user supplied",
            weights_source=f"import path {name}", factory=_import_factory(name),
            availability=lambda: _import_available(name),
        )
    raise UnknownModelError(
        f"unknown model {name!r}. Known names: {', '.join(sorted(REGISTRY))}; "
        "or give any ASE calculator factory as 'package.module:function'."
    )


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
        importlib.util.find_spec(module_name)
    except (ImportError, ValueError):
        return False, f"module {module_name!r} not found", "check PYTHONPATH / install the package"
    if importlib.util.find_spec(module_name) is None:
        return False, f"module {module_name!r} not found", "check PYTHONPATH / install the package"
    return True, "import path", ""


def model_id(name: str) -> str:
    return get_spec(name).model_id()


def get_calculator(name: str, **kw: Any) -> Calculator:
    """An ASE calculator for a registry name or a ``package.module:factory`` path.

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
    """A table (pandas DataFrame): one row per model, can it run here, and if not why."""
    import pandas as pd

    rows = []
    for name in names or list(REGISTRY):
        spec = get_spec(name)
        ok, reason, fix = spec.availability() if spec.availability else (True, "", "")
        rows.append({
            "model": name, "display_name": spec.display_name, "version": spec.version,
            "parameters": spec.n_parameters, "training_set": spec.training_set,
            "paper_model": spec.paper_model, "available": ok, "reason": reason, "fix": fix,
            "weights": spec.weights_source, "sha256": spec.sha256 or "",
        })
    return pd.DataFrame(rows)


def runnable(names: list[str]) -> tuple[list[str], dict[str, str]]:
    """Split ``names`` into those that run here and {name: reason} for the rest."""
    ok_names, skipped = [], {}
    for name in names:
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
    """Chemical symbols the model was trained on; None when unknown (user models, EMT)."""
    from ase.data import chemical_symbols

    spec = get_spec(name)
    if spec.family == "chgnet":
        return set(chemical_symbols[1:95])
    if spec.family == "matgl":
        path = _mirror_model_dir(spec)
        if path is not None and (path / "model.json").is_file():
            meta = json.loads((path / "model.json").read_text())
            types = _find_key(meta, "element_types")
            if types:
                return set(types)
        return None
    if spec.family == "mace":
        return set(chemical_symbols[1:90])
    if spec.family == "ase" and name == "emt":
        return {"H", "C", "N", "O", "Al", "Ni", "Cu", "Pd", "Ag", "Pt", "Au"}
    return None


def _find_key(obj: Any, key: str) -> Any:
    if isinstance(obj, dict):
        if key in obj:
            return obj[key]
        for value in obj.values():
            found = _find_key(value, key)
            if found is not None:
                return found
    elif isinstance(obj, list):
        for value in obj:
            found = _find_key(value, key)
            if found is not None:
                return found
    return None


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
