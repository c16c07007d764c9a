"""The book's own Sphinx extension (listed in ``_config.yml`` under ``sphinx.extra_extensions``).

* serves ``softening_lib/static`` (``softening.js``, ``softening.css``): click-to-enlarge for every
  figure, the interactive/static pairing of :meth:`softening_lib.book.ChapterContext.figure`
  (the interactive figure on screen, the PNG one click away and in print);
* ``softening_student = True`` (the student build, ``python -m softening_lib book --student``):
  every admonition titled "Solution..." is removed from the pages and the search index, and no
  page source is copied into the HTML;
* launch buttons (Binder, JupyterHub) open the chapter's MyST source ``chapters/NN_name.md``
  that the repository holds (the book renders the executed ``.ipynb``, which is never committed);
* ``{{ repository_url }}`` in a Markdown page (also inside code blocks) is replaced by
  ``repository.url`` of ``_config.yml``: the one place a teacher edits it.
"""

from __future__ import annotations

from pathlib import Path

STATIC = Path(__file__).resolve().parent / "static"
SOLUTION_TITLES = ("solution", "solutions")
UNSET_URL = "$BOOK_REPOSITORY"  # shown while _config.yml's repository.url is empty


def is_solution_title(title: str) -> bool:
    """An admonition (or exercise) title that marks a solution block."""
    words = title.strip().lower().split()
    return bool(words) and words[0].rstrip(":.") in SOLUTION_TITLES


def _add_static(app) -> None:
    if app.builder.format != "html":
        return
    path = str(STATIC)
    if path not in app.config.html_static_path:
        app.config.html_static_path.append(path)
    app.add_css_file("softening.css")
    app.add_js_file("softening.js")


def _drop_solutions(app, doctree) -> None:
    if not app.config.softening_student:
        return
    from docutils import nodes

    for node in list(doctree.findall(nodes.admonition)):
        titles = [t.astext() for t in node.findall(nodes.title)]
        if titles and is_solution_title(titles[0]):
            node.parent.remove(node)


def _student_config(app, config) -> None:
    if config.softening_student:
        config.html_copy_source = False
        config.html_show_sourcelink = False


def _substitute(app, docname, source) -> None:
    url = (app.config.html_theme_options or {}).get("repository_url", "")
    if "{{ repository_url }}" in source[0]:
        source[0] = source[0].replace("{{ repository_url }}", url.rstrip("/") if url else UNSET_URL)


def _launch_md(app, pagename, templatename, context, doctree) -> None:
    """Point Binder / JupyterHub at ``pagename.md`` where the repository holds that source."""
    from .config import REPO_ROOT

    if not (REPO_ROOT / f"{pagename}.md").is_file() or Path(app.env.doc2path(pagename)).suffix != ".ipynb":
        return

    def visit(buttons):
        for button in buttons or []:
            if isinstance(button, dict):
                if isinstance(button.get("url"), str) and button.get("text") in ("Binder", "JupyterHub"):
                    button["url"] = button["url"].replace(f"{pagename}.ipynb", f"{pagename}.md")
                visit(button.get("buttons") or button.get("items"))

    visit(context.get("header_buttons"))


def setup(app):
    app.add_config_value("softening_student", False, "env")
    app.connect("config-inited", _student_config)
    app.connect("builder-inited", _add_static)
    app.connect("doctree-read", _drop_solutions)
    app.connect("source-read", _substitute)
    app.connect("html-page-context", _launch_md, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True, "version": "1"}
