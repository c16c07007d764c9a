"""Build hook only (metadata lives in pyproject.toml): the wheel ships a copy of the book's
dataset manifest, ``data/datasets.yml``, as package data ``softening_lib/datasets.yml``, so an
installed package finds it (``softening_lib.config.manifest_path``) without the repository.
The repository keeps one manifest, ``data/datasets.yml``; the copy is made at build time."""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

MANIFEST = Path(__file__).resolve().parent / "data" / "datasets.yml"


class build_py_with_manifest(build_py):
    def run(self):
        super().run()
        if not MANIFEST.is_file():
            raise FileNotFoundError(f"{MANIFEST} (the dataset manifest the wheel ships) is missing")
        target = Path(self.build_lib) / "softening_lib" / MANIFEST.name
        self.mkpath(str(target.parent))
        self.copy_file(str(MANIFEST), str(target))

    def get_outputs(self, include_bytecode=True):
        return [*super().get_outputs(include_bytecode),
                str(Path(self.build_lib) / "softening_lib" / MANIFEST.name)]


setup(cmdclass={"build_py": build_py_with_manifest})
