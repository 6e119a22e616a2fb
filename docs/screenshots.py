"""Look at the built site in a real browser: `python docs/screenshots.py [HTML_DIR [OUT_DIR]]`.

Serves the built HTML (default docs/_build/html) over http on a free loopback port, opens the
front page, one API page and the configuration page in headless Chromium (Debian's, through
Playwright: Playwright's own browser download is not used), saves a screenshot of each and of
its first Python block (default docs/_build/screenshots), and exits non-zero unless every page
fits a 1,280 px window without side-scrolling and has furo's sidebar navigation with links,
and the first two at least one code block highlighted by Pygments.
"""

from __future__ import annotations

import functools
import shutil
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from playwright.sync_api import Page, sync_playwright

DOCS = Path(__file__).resolve().parent

#: The pages to look at: (screenshot name, path in the site, whether it must show highlighted
#: code). Each must fit a 1,280 px window: no side-scrolling (the configuration page's keys).
PAGES = [
    ("index", "index.html", True),
    ("api-quart_spotify_auth", "api/quart_spotify_auth.html", True),
    ("configuration", "configuration.html", False),
]

#: Token classes Pygments gives highlighted code: keywords, names, strings, operators...
PYGMENTS_CLASSES = ("k", "kn", "kc", "n", "nn", "nf", "nc", "s", "s1", "s2", "o", "p", "c1")


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def serve(root: Path) -> Iterator[str]:
    """Serve ``root`` on 127.0.0.1 (port 0: the system picks a free one) in a thread."""
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    raise SystemExit("No chromium on PATH: install it (apt-get install chromium).")


def problems(page: Page, code: bool = True) -> list[str]:
    """What is missing from the page as the browser shows it."""
    found = []
    if page.evaluate(
        "document.documentElement.scrollWidth > window.innerWidth || Array.from("
        "document.querySelectorAll('.table-wrapper')).some(e => e.scrollWidth > e.clientWidth + 1)"
    ):
        found.append("wider than the window: it (or one of its tables) scrolls sideways")
    links = page.locator(".sidebar-tree a.reference")
    if links.count() == 0 or not page.locator(".sidebar-tree").first.is_visible():
        found.append("no sidebar navigation (.sidebar-tree with links)")
    selector = ", ".join(f"div.highlight span.{name}" for name in PYGMENTS_CLASSES)
    if not code:
        return found
    if page.locator(selector).count() == 0:
        found.append("no highlighted code (div.highlight span with Pygments classes)")
    if page.locator("div.highlight").count() > 0 and page.locator(selector).count() < 5:
        found.append("code blocks with almost no highlighted tokens")
    return found


def main(argv: list[str]) -> int:
    html = Path(argv[0]) if argv else DOCS / "_build" / "html"
    out = Path(argv[1]) if len(argv) > 1 else DOCS / "_build" / "screenshots"
    if not (html / "index.html").is_file():
        print(f"No built site in {html}: run sphinx-build first (nox -s docs).", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    failed = False
    with serve(html) as base, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium(), headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            for name, path, has_code in PAGES:
                response = page.goto(f"{base}/{path}", wait_until="load")
                if response is None or response.status != 200:
                    status = None if response is None else response.status
                    print(f"{path}: HTTP {status}", file=sys.stderr)
                    failed = True
                    continue
                shot = out / f"{name}.png"
                page.screenshot(path=str(shot))
                missing = problems(page, has_code)
                code = page.locator("div.highlight-python div.highlight").first
                if code.count():  # the first Python block too, which may be below the fold
                    code.scroll_into_view_if_needed()
                    code.screenshot(path=str(out / f"{name}-code.png"))
                for problem in missing:
                    print(f"{path}: {problem}", file=sys.stderr)
                failed = failed or bool(missing)
                print(f"{path}: {'FAILED' if missing else 'ok'}, screenshot {shot}")
        finally:
            browser.close()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
