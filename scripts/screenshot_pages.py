"""Screenshots of built book pages at a reader's window width (headless Chromium), for
checking that figures are legible: ``python scripts/screenshot_pages.py [--html DIR] [--width 1400]
[--out _build/reports/screens] [page ...]`` (default: every chapter page). Each page is saved as
one tall PNG; each figure also on its own (``<page>__fig<N>.png``) at the size a reader sees it."""

from __future__ import annotations

import argparse
import shutil
import sys
import threading
import time
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


class Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("pages", nargs="*")
    ap.add_argument("--html", default=str(ROOT / "_build" / "book" / "_build" / "html"))
    ap.add_argument("--width", type=int, default=1400)
    ap.add_argument("--out", default=str(ROOT / "_build" / "reports" / "screens"))
    ap.add_argument("--figures-only", action="store_true")
    args = ap.parse_args(argv)
    html, out = Path(args.html), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    pages = args.pages or sorted(p.relative_to(html).as_posix() for p in (html / "chapters").glob("*.html"))
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Quiet, directory=str(html)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium")
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", f"--window-size={args.width},1000",
                 "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"):
        opts.add_argument(flag)
    browser = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=opts)
    try:
        for page in pages:
            browser.get(f"{base}/{page}")
            time.sleep(2.5)  # MathJax and plotly
            stem = Path(page).stem
            figs = browser.find_elements("css selector",
                                         ".softening-interactive .js-plotly-plot, .cell_output a.softening-enlarge img")
            for i, el in enumerate(figs):
                if not el.is_displayed():
                    continue
                browser.execute_script("arguments[0].scrollIntoView({block: 'center'});", el)
                time.sleep(0.3)
                el.screenshot(str(out / f"{stem}__fig{i:02d}.png"))
                w = browser.execute_script("return arguments[0].getBoundingClientRect().width", el)
                print(f"{stem} fig{i:02d}: shown {w:.0f} px wide")
            if not args.figures_only:
                height = browser.execute_script("return document.body.scrollHeight")
                browser.set_window_size(args.width, min(height, 16000))
                time.sleep(0.5)
                browser.save_screenshot(str(out / f"{stem}.png"))
                browser.set_window_size(args.width, 1000)
    finally:
        browser.quit()
        server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
