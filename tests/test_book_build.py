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
HTML = ROOT / "_build" / "book" / "_build" / "html"


@pytest.fixture(scope="module")
def built_book():
    env = dict(os.environ)
    env.pop("SOFTENING_RESULTS_DIR", None)  # chapters read the committed results store
    proc = subprocess.run([sys.executable, "-m", "softening_lib", "book", "--preset", "smoke"],
                          cwd=ROOT, env=env, capture_output=True, text=True)
    print(proc.stdout[-5000:])
    print(proc.stderr[-5000:], file=sys.stderr)
    assert proc.returncode == 0, (
        "book build failed; executed notebooks and the build log are kept in _build/reports/\n"
        + proc.stderr[-3000:])
    return HTML


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
        browser.save_screenshot(str(ROOT / "_build" / "reports" / "chapter01.png"))
    finally:
        browser.quit()
        server.shutdown()
