"""Tiny helpers to write output-free chapter notebooks with nbformat (used by scripts/make_*.py)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook


def md(text: str):
    return new_markdown_cell(text.strip("\n"))


def code(text: str, tags: list[str] | None = None):
    cell = new_code_cell(text.strip("\n"))
    if tags:
        cell.metadata["tags"] = tags
    return cell


def params(text: str):
    return code(text, tags=["parameters"])


def write(path: str | Path, cells: list) -> Path:
    for i, cell in enumerate(cells):  # stable ids: regenerating an unchanged notebook changes nothing
        cell["id"] = hashlib.sha1(f"{i}:{cell.cell_type}:{cell.source}".encode()).hexdigest()[:8]
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    path = Path(path)
    if os.environ.get("NBTOOLS_OUT_DIR"):  # tests: write elsewhere and compare with chapters/
        path = Path(os.environ["NBTOOLS_OUT_DIR"]) / path.name
    elif not path.is_absolute():
        path = Path(__file__).resolve().parent.parent / path
    nbformat.write(nb, path)
    return path
