"""What a reader's page may show, and checks of the built HTML.

* :func:`scrub` / :func:`scrub_notebook`: paths of the build machine (the data mirror, the
  download cache, the repository, the home folder) written relative to ``$SOFTENING_DATA_DIR``,
  ``$SOFTENING_CACHE_DIR``, the repository or ``~``; the terminal keeps the absolute paths.
* :func:`html_problems`: a built HTML page that names a local path, or says ``nan`` in its prose.
* :func:`solution_texts`: the solution blocks of a chapter source (the student build drops them).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from . import config


def local_prefixes() -> list[tuple[str, str]]:
    """(absolute prefix, what the page shows instead), longest first."""
    pairs: list[tuple[Path | None, str]] = [
        (config.data_dir(), "$SOFTENING_DATA_DIR"),
        (Path(os.environ["SOFTENING_DATA_DIR"]) if os.environ.get("SOFTENING_DATA_DIR") else None,
         "$SOFTENING_DATA_DIR"),
        (Path(os.environ.get("SOFTENING_CACHE_DIR", Path.home() / ".cache" / "softening_lib")),
         "$SOFTENING_CACHE_DIR"),
        (Path(os.environ["SOFTENING_RESULTS_DIR"]) if os.environ.get("SOFTENING_RESULTS_DIR") else None,
         "$SOFTENING_RESULTS_DIR"),
        (config.REPO_ROOT, "."),
        (Path.home(), "~"),
    ]
    out: dict[str, str] = {}
    for path, name in pairs:
        if path is None:
            continue
        for variant in {str(path), str(Path(path).expanduser().resolve())}:
            if len(variant) > 1:
                out.setdefault(variant.rstrip("/"), name)
    return sorted(out.items(), key=lambda kv: -len(kv[0]))


def scrub(text: str) -> str:
    """``text`` with every local prefix replaced (``/work/shared/data/wbm/x.json`` ->
    ``$SOFTENING_DATA_DIR/wbm/x.json``; ``<repo>/data/results`` -> ``data/results``)."""
    if not isinstance(text, str) or "/" not in text:
        return text
    for prefix, name in local_prefixes():
        if prefix not in text:
            continue
        pattern = re.escape(prefix) + r"(?=/|\b|$)"
        if name == ".":
            text = re.sub(pattern + r"/?", "", text)  # repository paths as relative paths
        else:
            text = re.sub(pattern, lambda _m, _name=name: _name, text)
    return text


def scrub_notebook(nb) -> int:
    """Scrub the outputs of an executed notebook in place; returns how many strings changed."""
    changed = 0

    def fix(value):
        nonlocal changed
        if isinstance(value, list):
            return [fix(v) for v in value]
        if isinstance(value, str):
            new = scrub(value)
            changed += new != value
            return new
        return value

    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for out in cell.get("outputs", []):
            if "text" in out:
                out["text"] = fix(out["text"])
            for mime in ("text/plain", "text/html", "text/markdown", "text/latex"):
                if mime in (out.get("data") or {}):
                    out["data"][mime] = fix(out["data"][mime])
    return changed


# ------------------------------------------------------------------------------------------
# checks of the built HTML
# ------------------------------------------------------------------------------------------

LOCAL_PATH = re.compile(r"(?<![\w.:/$~-])(/(?:work|root|home|tmp|Users|mnt|scratch|private)/[\w.+@-]+(?:/[\w.+@-]+)*)")
NAN_WORD = re.compile(r"(?<![\w.'\"-])(?:nan|NaN|inf)(?![\w'\"(])")
_DROP = re.compile(r"<(script|style|pre|code|table|textarea)\b.*?</\1>", re.S | re.I)
_TAG = re.compile(r"<[^>]+>")


def prose(html: str) -> str:
    """The text a reader reads: without scripts, code, tables and tags."""
    import html as _html

    body = html.split('<main', 1)[-1]
    return _html.unescape(_TAG.sub(" ", _DROP.sub(" ", body)))


def html_problems(html_dir: str | Path, pages: list[str] | None = None) -> dict[str, list[str]]:
    """{page: problems} of the built book: a local path anywhere in the HTML (text, tables,
    alt texts, captions), ``nan``/``inf`` in the prose (outside code and tables)."""
    html_dir = Path(html_dir)
    files = [html_dir / p for p in pages] if pages else sorted(html_dir.rglob("*.html"))
    out: dict[str, list[str]] = {}
    local = [p for p, _ in local_prefixes() if p not in ("/", str(Path.home()))]
    for path in files:
        if "_static" in path.parts or "_sources" in path.parts:
            continue
        text = path.read_text(errors="replace")
        found = []
        for prefix in local:
            if prefix in text:
                i = text.index(prefix)
                found.append(f"local path {prefix!r}: ...{_TAG.sub('', text[max(0, i - 60):i + 80])}...")
        for m in LOCAL_PATH.finditer(_DROP.sub(" ", text.split("<main", 1)[-1])):
            found.append(f"absolute path {m.group(1)!r}")
        words = prose(text)
        for m in NAN_WORD.finditer(words):
            found.append(f"'{m.group(0)}' in prose: ...{' '.join(words[max(0, m.start() - 80):m.end() + 40].split())}...")
        if found:
            out[str(path.relative_to(html_dir))] = sorted(set(found))
    return out


def solution_texts(source: str | Path) -> list[str]:
    """The text of each solution block of a chapter source (```{admonition} Solution...``` or
    ```{solution}```), for tests that a student build leaves them out."""
    from .sphinx_ext import is_solution_title

    text = Path(source).read_text() if isinstance(source, Path) or "\n" not in str(source) else source
    blocks = []
    for m in re.finditer(r"^(`{3,}|:{3,})\{(admonition|solution)\}([^\n]*)\n(.*?)^\1\s*$", text, re.S | re.M):
        kind, title, body = m.group(2), m.group(3), m.group(4)
        if kind == "solution" or is_solution_title(title):
            lines = [ln for ln in body.splitlines() if ln.strip() and not ln.startswith(":")]
            blocks.append("\n".join(lines))
    return blocks
