"""Numbers typed into a chapter's prose: the book's rule is that every number a reader sees in
the text is computed (ours, glued from the run) or quoted from the paper (glued from
:mod:`softening_lib.paper`), never typed. :func:`typed_numbers` finds the digits in the prose
of a chapter (markdown cells and plain pages, math included; code cells, fenced code and
inline code are not prose) that are neither inside a glue role nor on the allow-list below.

What is allowed without glue (the allow-list), and why:

* **years** 1900-2099 standing alone (a citation's year, "the 2023 release");
* **cross-references**: numbers after ``Fig.``/``Figs.``/``Figure``/``Table``/``Eq.``/
  ``chapter``/``section``/``exercise``/``step``/``SI``/``Supplementary ...``, with ranges and
  lists ("Figs. 2–5", "chapters 1, 7 and 10", "Fig. 5a"), section numbers in headings
  ("# 6. Phonons") and the numbers of numbered list items;
* **citations** typed as "npj Comput. Mater. **11**, 9 (2025)" (volume, page, year) and
  **Miller indices** ``(111)``, ``[110]``;
* **identifiers**: digits inside a word that holds a letter: materials ids (``mp-1784``,
  ``wbm-1-2345``), model names and versions (``M3GNet-MP-2021.2.8``, ``CHGNet v0.3.0``,
  ``SevenNet-0``), chemical formulas with element subscripts (``Li6Zn2In2(IO3)16``), DOIs,
  ``float32``, ``3D``; and dotted version triples (``0.3.0``), numbers after ``version``/``v``,
  ``arXiv``;
* **0 and 1 standing alone**: the identity and the threshold of the book's ratios ("s < 1",
  "a ratio of 1");
* **in math** (``$...$``, ``$$...$$``): sub- and superscripts (``x^2``, ``F_i``, ``10^{-3}``)
  the base of ``10^{-3}``, and the small integers 0-4 of a formula's structure (``\\frac{1}{2}``, ``2A``, ``\\sqrt{s}``
  is no number at all).

Everything else is typed, **including numbers with units** ("1000 K", "0.01 Å", "16×16×16
mesh"): a setting of the method is glued from the constant the code uses (e.g. the phonon
displacement amplitude from ``phonons.DEFAULT``), a number of the paper from ``paper.py``,
so that a page never says something the code does not do. A number in words ("ten
structures") is not checked; write counts that come from the data as glued digits. An
exercise's made-up data ("a ratio of 0.9") are marked by a line ``<!-- prose: made-up numbers -->``
before their paragraph, which is then not checked (use it for nothing else).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

_GLUE = re.compile(r"\{glue(?::[a-z]+)?\}`[^`]*`")
_ROLE = re.compile(r"\{[a-z:\-]+\}`[^`]*`")  # {doc}, {cite}, {ref}, {numref} ... : targets, not prose
_INLINE_CODE = re.compile(r"(`+)(?!\s)(.+?)\1")
_LINK_TARGET = re.compile(r"\]\([^)]*\)")
_URL = re.compile(r"<?https?://\S+>?")
_COMMENT = re.compile(r"<!--.*?-->", re.S)
_FENCE = re.compile(r"^\s*(`{3,}|~{3,}|:{3,})\s*(\{[^}]*\})?\s*([\w+-]*)")
_MATH_DISPLAY = re.compile(r"\$\$(.+?)\$\$", re.S)
_MATH_INLINE = re.compile(r"(?<![\\$])\$(?!\$)((?:[^$\n]|\n(?!\s*\n))+?)(?<![\\$])\$")  # may span lines, not paragraphs
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_XREF = re.compile(
    r"(?:\b(?:Figs?\.|Figures?|Tables?|Eqs?\.|Equations?|[Cc]hapters?|[Ss]ections?|[Ee]xercises?|[Ss]teps?|"
    r"SI|Supplementary(?:\s+(?:Figs?\.|Figures?|Tables?))?|[Pp]arts?|[Pp]anels?|[Ii]tems?|[Pp]itfalls?|"
    r"arXiv:?|version|v)\s*)"
    r"((?:\d+[a-z]?(?:\s*(?:[–\-,/&]|and|or|to)\s*)?)+)")
_HEADING_NUMBER = re.compile(r"^(#+\s+)(\d+(?:\.\d+)*)\.?\s")
_LIST_NUMBER = re.compile(r"^(\s*)(\d+)([.)])\s")
_TOKEN = re.compile(r"[^\s=<>~≈≤≥±×*|,;:!?\"'“”‘’]+")
_YEAR = re.compile(r"(?:19|20)\d\d")
_CITATION = re.compile(r"(?:\*\*)?\d+(?:\*\*)?,\s*\d+(?:[–-]\d+)?\s*\((?:19|20)\d\d\)")  # "**11**, 9 (2025)"
_MILLER = re.compile(r"(?<![\d.])[\(\[\{<]-?\d{3,4}[\)\]\}>]")  # (111), [110], {100}: Miller indices
_VERSION = re.compile(r"\d+\.\d+\.\d+")


#: a line holding this marks the next paragraph (to the next blank line) as made-up numbers,
#: e.g. an exercise's "a ratio of 0.9 and a softening scale of 1.0": not checked
HYPOTHETICAL = "<!-- prose: made-up numbers -->"


@dataclass(frozen=True)
class TypedNumber:
    line: int  # 1-based line in the file
    number: str
    context: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.number!r} in {self.context!r}"


def prose_lines(markdown: str) -> list[tuple[int, str]]:
    """``(line number, text)`` of the prose of a page: front matter, ``{code-cell}`` blocks and
    fenced code (```` ```python ````, ```` ```bash ````, ```` ``` ````) left out; directive
    bodies (admonitions, notes, ``{math}``) kept, their option lines (``:class: ...``) not."""
    lines = markdown.splitlines()
    out: list[tuple[int, str]] = []
    i = 0
    if lines and lines[0].strip() == "---":  # front matter
        for j in range(1, len(lines)):
            if lines[j].strip() == "---":
                i = j + 1
                break
    fences: list[tuple[str, bool]] = []  # (fence, is prose)
    hypothetical = False
    while i < len(lines):
        line = lines[i]
        if HYPOTHETICAL in line:  # the next paragraph's numbers are made up (an exercise's data)
            hypothetical = True
            i += 1
            continue
        if hypothetical:
            if not line.strip() or _FENCE.match(line):
                hypothetical = False
            else:
                i += 1
                continue
        m = _FENCE.match(line)
        if m:
            fence, directive, lang = m.group(1), m.group(2), m.group(3)
            closing = fences and line.strip() == fences[-1][0] and not directive and not lang
            if closing:
                fences.pop()
                i += 1
                continue
            if directive or lang or not fences or not fences[-1][1]:
                name = (directive or "").strip("{}").split()[0] if directive else ""
                prose = bool(directive) and name not in ("code-cell", "code", "code-block", "literalinclude",
                                                          "bibliography", "glue", "glue:figure", "raw")
                if lang and not directive:
                    prose = False
                if fences and not fences[-1][1]:
                    prose = False
                fences.append((fence, prose))
                i += 1
                continue
        if not fences or fences[-1][1]:
            if not (fences and re.match(r"^\s*:[\w-]+:", line)):  # directive options
                out.append((i + 1, line))
        i += 1
    return out


def _blank(text: str, pattern: re.Pattern, keep_group: int | None = None) -> str:
    """``text`` with the matches of ``pattern`` replaced by spaces (offsets kept)."""
    return pattern.sub(lambda m: " " * len(m.group(0)), text)


def _math_spans(text: str) -> list[tuple[int, int]]:
    spans = [m.span(1) for m in _MATH_DISPLAY.finditer(text)]
    rest = _blank(text, _MATH_DISPLAY)
    spans += [m.span(1) for m in _MATH_INLINE.finditer(rest)]
    return spans


def _allowed_in_math(math: str, start: int, end: int) -> bool:
    before = math[:start].rstrip()
    if before.endswith(("^", "_", "^{", "_{", "^{-", "_{-")):
        return True
    number = math[start:end]
    if number == "10" and math[end:].lstrip().startswith("^"):  # the base of 10^{-3}
        return True
    if number.isdigit() and int(number) <= 4:
        return True
    return bool(re.search(r"\\[a-zA-Z]+\{?$", math[:start]))  # \mathrm{2}, \times10 ...


def typed_numbers(markdown: str) -> list[TypedNumber]:
    """Digits in the prose of ``markdown`` (a chapter's MyST notebook or a plain page) that are
    neither glued nor allowed (see the module docstring), in reading order."""
    found: list[TypedNumber] = []
    lines = prose_lines(markdown)
    # join the prose so that math and roles spanning lines are seen whole; keep line offsets
    text = "\n".join(t for _, t in lines)
    starts, pos = [], 0
    for _, t in lines:
        starts.append(pos)
        pos += len(t) + 1
    clean = text
    for pattern in (_COMMENT, _GLUE, _ROLE, _LINK_TARGET, _URL):
        clean = _blank(clean, pattern)
    math = _math_spans(clean)
    clean = _INLINE_CODE.sub(lambda m: m.group(0) if m.group(0).startswith("$") else " " * len(m.group(0)), clean)
    allowed: set[int] = set()
    for m in _XREF.finditer(clean):
        for n in _NUMBER.finditer(m.group(1)):
            allowed.add(m.start(1) + n.start())
    for m in re.finditer(r"arXiv:?\s*(\d{4}\.\d{4,5})", clean):
        allowed.add(m.start(1))
    for pattern in (_CITATION, _MILLER):
        for m in pattern.finditer(clean):
            for n in _NUMBER.finditer(m.group(0)):
                allowed.add(m.start() + n.start())
    for k, (_, t) in enumerate(lines):
        for pattern in (_HEADING_NUMBER, _LIST_NUMBER):
            h = pattern.match(clean[starts[k]:starts[k] + len(t)])
            if h:
                allowed.add(starts[k] + h.start(2))
    for tok in _TOKEN.finditer(clean):
        word = tok.group(0)
        core = word.strip(".()[]{}")
        if re.search(r"[A-Za-z]", core) and not re.fullmatch(r"[\d.,]+\s*%?", core) and not re.fullmatch(
                r"[\d.,]+[-–][A-Za-z]+.*", core):  # "10-fold" is a number, "mp-10" an id
            for n in _NUMBER.finditer(word):
                allowed.add(tok.start() + n.start())
        if _VERSION.fullmatch(core):
            allowed.add(tok.start() + word.index(core))
    for n in _NUMBER.finditer(clean):
        start, number = n.start(), n.group(0)
        if start in allowed:
            continue
        prev = clean[start - 1] if start else " "
        if prev.isalnum() or prev == "_":  # inside an identifier already judged above
            continue
        in_math = next(((a, b) for a, b in math if a <= start < b), None)
        if in_math is not None:
            if _allowed_in_math(clean[in_math[0]:in_math[1]], start - in_math[0], n.end() - in_math[0]):
                continue
        elif _YEAR.fullmatch(number) or number in ("0", "1"):
            continue
        k = max(i for i, s in enumerate(starts) if s <= start)
        line_text = lines[k][1]
        col = start - starts[k]
        context = line_text[max(0, col - 30):col + len(number) + 30].strip()
        found.append(TypedNumber(lines[k][0], number, context))
    return found


def typed_numbers_in_file(path: str | Path) -> list[TypedNumber]:
    return typed_numbers(Path(path).read_text(encoding="utf-8"))


def report(paths) -> dict[str, list[TypedNumber]]:
    """``{path: typed numbers}`` for every page in ``paths`` that has any."""
    out = {}
    for p in paths:
        got = typed_numbers_in_file(p)
        if got:
            out[str(p)] = got
    return out


def main(argv=None) -> int:  # python -m softening_lib.prose chapters/*.md pitfalls.md
    import sys

    paths = list(argv if argv is not None else sys.argv[1:])
    total = 0
    for path, got in report(paths).items():
        for t in got:
            print(f"{path}:{t}")
        total += len(got)
    print(f"{total} typed number(s) in {len(paths)} page(s)")
    return 1 if total else 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
