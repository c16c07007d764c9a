"""The whole book, as a reader meets it: every chapter executed in its smoke preset, the book
built with warnings as errors, and a real headless Chromium opening the pages."""

import os
import shutil
import subprocess
import sys
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "_build" / "tests"  # SOFTENING_BUILD_DIR: the developer's own _build/book stays as it is
HTML = BUILD / "book" / "_build" / "html"


def _env() -> dict:
    env = dict(os.environ, SOFTENING_BUILD_DIR=str(BUILD))
    env.pop("SOFTENING_RESULTS_DIR", None)  # chapters read the committed results store
    env.pop("SOFTENING_RUN_DIR", None)
    return env


@pytest.fixture(scope="module")
def built_book():
    proc = subprocess.run([sys.executable, "-m", "softening_lib", "book", "--preset", "smoke"],
                          cwd=ROOT, env=_env(), capture_output=True, text=True)
    print(proc.stdout[-5000:])
    print(proc.stderr[-5000:], file=sys.stderr)
    assert proc.returncode == 0, (
        "book build failed; executed notebooks and the build log are kept in _build/reports/\n"
        + proc.stderr[-3000:])
    return HTML


STUDENT_HTML = BUILD / "student" / "_build" / "html"
INTERACTIVE_CHAPTERS = ("02_surfaces", "03_defects", "06_phonons", "07_high_energy_states",
                        "08_linear_correction", "10_model_zoo")


@pytest.fixture(scope="module")
def chapter_build():
    """One chapter (07, smoke) and the student edition: what a classroom gets, in a minute or two."""
    proc = subprocess.run([sys.executable, "-m", "softening_lib", "book", "--chapter", "07", "--preset", "smoke",
                           "--student"], cwd=ROOT, env=_env(), capture_output=True, text=True)
    print(proc.stdout[-3000:])
    assert proc.returncode == 0, proc.stderr[-3000:]
    return HTML


@pytest.mark.slow
def test_chapter_pages_have_no_local_path_and_no_nan(chapter_build):
    from softening_lib import pages

    found = pages.html_problems(chapter_build, ["chapters/07_high_energy_states.html", "what_ran_here.html",
                                                "intro.html", "laptop.html"])
    assert not found, found


def _text(path):
    import html
    import re

    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", path.read_text())).split())


@pytest.mark.slow
def test_student_edition_has_no_solutions(chapter_build):
    from softening_lib import pages

    source = ROOT / "chapters" / "07_high_energy_states.md"
    import re

    blocks = [re.sub(r"^\s*(\d+\.|[-*])\s+", "", b, flags=re.M) for b in pages.solution_texts(source)]
    sentences = [s.replace("*", "") for block in blocks for s in " ".join(block.split()).split(". ")
                 if len(s) > 40 and "$" not in s and "`" not in s]
    assert sentences
    teacher = _text(chapter_build / "chapters" / "07_high_energy_states.html")
    student = _text(STUDENT_HTML / "chapters" / "07_high_energy_states.html")
    probe = [" ".join(s.split())[:60] for s in sentences]
    assert any(p in teacher for p in probe), "the default build lost its solutions"
    assert not [p for p in probe if p in student], "the student build shows solution text"
    assert "Solutions" not in student and "Exercises" in student
    assert not (STUDENT_HTML / "_sources").exists()  # no page source to download the solutions from


def _serve(folder):
    handler = partial(SimpleHTTPRequestHandler, directory=str(folder))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def _chromium(width=1400, height=1000):
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        pytest.fail("Debian chromium + chromium-driver are needed: apt-get install -y chromium chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--window-size={width},{height}", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"):
        opts.add_argument(flag)
    return webdriver.Chrome(service=Service(driver), options=opts)


def hover_tooltips(browser, url, limit=2):
    """Open ``url``, move the mouse onto a data point of each of the first ``limit`` interactive
    figures and return the tooltip texts plotly shows (as a reader would see them)."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(url)
    if not browser.execute_script("return document.querySelectorAll('.softening-interactive').length"):
        return []
    WebDriverWait(browser, 60).until(lambda b: b.execute_script(
        "return document.querySelectorAll('.softening-interactive .js-plotly-plot .main-svg').length > 0"))
    texts = []
    for box in browser.find_elements("css selector", ".softening-interactive .js-plotly-plot")[:limit]:
        points = box.find_elements("css selector", ".scatterlayer .trace .points path")
        lines = box.find_elements("css selector", ".scatterlayer .trace .js-line")
        target = points[len(points) // 2] if points else lines[0]
        browser.execute_script("arguments[0].scrollIntoView({block: 'center'});", box)
        ActionChains(browser).move_to_element(target).perform()
        try:
            WebDriverWait(browser, 5).until(lambda b: box.find_elements("css selector", ".hoverlayer .hovertext"))
        except Exception:
            pass
        texts.append(" | ".join(el.text for el in box.find_elements("css selector", ".hoverlayer .hovertext")))
    return texts


@pytest.mark.slow
@pytest.mark.browser
def test_hover_reads_material_in_chapter_07(chapter_build):
    server, base = _serve(chapter_build)
    browser = _chromium()
    try:
        texts = hover_tooltips(browser, f"{base}/chapters/07_high_energy_states.html")
    finally:
        browser.quit()
        server.shutdown()
    assert any(texts), texts
    assert any(("frame" in t or "material" in t) for t in texts), texts


@pytest.mark.slow
def test_every_chapter_in_toc_was_built(built_book):
    import yaml

    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [c["file"] for part in toc["parts"] for c in part["chapters"]]
    missing = [f for f in files if not (built_book / f"{f}.html").is_file()]
    assert not missing, f"pages missing from the build: {missing}"
    what_ran = (built_book / "what_ran_here.html").read_text()
    assert "chgnet-0.3.0" in what_ran and "mace-mp-0-medium" in what_ran


@pytest.mark.slow
@pytest.mark.browser
def test_pages_render_with_figures_in_chromium(built_book):
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        pytest.fail("Debian chromium + chromium-driver are needed: apt-get install -y chromium chromium-driver "
                    "(make test installs them as root)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    handler = partial(SimpleHTTPRequestHandler, directory=str(built_book))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1280,2000",
                 # no network but the local server: the book must not need a CDN (MathJax, plotly)
                 "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"):
        opts.add_argument(flag)
    browser = webdriver.Chrome(service=Service(driver), options=opts)
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        browser.get(f"{base}/intro.html")
        assert "softening" in browser.title.lower()
        assert "softening scale" in browser.find_element("tag name", "body").text
        # math is typeset by the MathJax served from _static (no CDN reachable here)
        from selenium.webdriver.support.ui import WebDriverWait

        scripts = browser.execute_script("return Array.from(document.scripts).map(s => s.src).filter(Boolean);")
        assert any(src.startswith(f"{base}/_static/mathjax/") for src in scripts), scripts
        assert not [src for src in scripts if not src.startswith(base)], scripts
        WebDriverWait(browser, 60).until(
            lambda b: b.execute_script("return document.querySelectorAll('mjx-container[display=\"true\"]').length > 0"))
        math = browser.execute_script(
            "return Array.from(document.querySelectorAll('mjx-container')).map(e => e.getBoundingClientRect().width);")
        assert len(math) >= 3 and all(w > 0 for w in math), math
        body = browser.find_element("tag name", "body").text
        assert "\\frac" not in body and "F^{\\mathrm{DFT}}" not in body, "raw LaTeX left on the page"
        loaded = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name);")
        assert all(url.startswith(base) for url in loaded), [u for u in loaded if not u.startswith(base)]
        assert any(url.startswith(f"{base}/_static/mathjax/output/chtml/fonts/") for url in loaded), loaded
        browser.get(f"{base}/chapters/01_softening_primer.html")
        body = browser.find_element("tag name", "body").text
        assert "Traceback" not in body
        images = browser.execute_script(
            "return Array.from(document.images).filter(i => i.src.includes('_images'))"
            ".map(i => [i.src, i.complete, i.naturalWidth]);")
        assert images, "no figure on chapter 1"
        assert all(done and width > 300 for _, done, width in images), images
        browser.save_screenshot(str(BUILD / "reports" / "chapter01.png"))
    finally:
        browser.quit()
        server.shutdown()


@pytest.mark.slow
def test_built_book_has_no_local_path_and_no_nan(built_book):
    from softening_lib import pages

    found = pages.html_problems(built_book)
    assert not found, found


@pytest.mark.slow
@pytest.mark.browser
def test_hover_tooltips_in_three_chapters_at_1400px(built_book):
    """A reader hovers a point of an interactive figure: the tooltip names the material (or
    the branch of a dispersion) and both values. Screenshots of every chapter go to
    _build/reports/screens/ (what the issue's reviewer looks at)."""
    server, base = _serve(built_book)
    browser = _chromium(1400, 1000)
    hovered = {}
    try:
        for stem in INTERACTIVE_CHAPTERS:
            texts = hover_tooltips(browser, f"{base}/chapters/{stem}.html")
            hovered[stem] = [t for t in texts if t]
    finally:
        browser.quit()
        server.shutdown()
    good = {k: v for k, v in hovered.items()
            if any(any(w in t for w in ("material", "branch", "frame", "case:")) for t in v)}
    assert len(good) >= 3, hovered
