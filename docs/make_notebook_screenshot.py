"""Screenshot of notebook 01 as JupyterLab renders it: ``docs/screenshot_notebook01.png``.

Steps: execute ``notebooks/01_which_heads_matter.ipynb`` with the CI sizes
(``MAPE_VIZ_QUICK=1``) into a temporary folder; start JupyterLab there, headless, on
127.0.0.1 with a random free port and a random token (isolated settings and workspaces, no
news or update checks); open the executed notebook in headless Chromium through Playwright;
wait until plotly has drawn the figures; screenshot the part of the notebook with the head
heatmap; shrink the PNG below 500 KB. JupyterLab is always shut down, also on errors.

Usage::

    HF_HUB_OFFLINE=1 python docs/make_notebook_screenshot.py [--out docs/screenshot_notebook01.png]

The notebooks are the teaching front end (docs/design.md §9). Needs ``jupyterlab``,
``nbclient``, ``playwright`` (python package), ``Pillow`` and Chromium at
``/usr/bin/chromium`` (``--chromium`` to change; no ``playwright install``). The tiny model
is taken from ``$MAPE_VIZ_CACHE`` (trained there on first use).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from PIL import Image
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "01_which_heads_matter.ipynb"
OUT = ROOT / "docs" / "screenshot_notebook01.png"
MAX_BYTES = 500_000
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking"]
#: The markdown heading the screenshot starts at: prose, code and the head heatmap below it.
ANCHOR = "Heads: the layer × head heatmap"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def execute_notebook(src: Path, dst: Path, timeout: int) -> None:
    """Run ``src`` top to bottom with the CI sizes and write the executed copy to ``dst``."""
    env = {"MAPE_VIZ_QUICK": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the kernel inherits this environment
    try:
        nb = nbformat.read(src, as_version=4)
        NotebookClient(nb, timeout=timeout, kernel_name="python3",
                       resources={"metadata": {"path": str(src.parent)}}).execute()
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    nbformat.write(nb, dst)


def lab_settings(folder: Path) -> None:
    """User settings for a quiet, predictable JupyterLab: no news / update notifications."""
    d = folder / "@jupyterlab" / "apputils-extension"
    d.mkdir(parents=True, exist_ok=True)
    (d / "notification.jupyterlab-settings").write_text(
        json.dumps({"checkForUpdates": False, "fetchNews": "false"}))


class JupyterLab:
    """``with JupyterLab(root) as lab:`` a headless server; ``lab.url(path)`` opens a file."""

    def __init__(self, root: Path, startup_timeout: float = 120.0) -> None:
        self.root, self.startup_timeout = root, startup_timeout
        self.port, self.token = free_port(), secrets.token_hex(16)
        self.proc: subprocess.Popen | None = None
        self.log = root / ".jupyterlab.log"

    def __enter__(self) -> "JupyterLab":
        conf = self.root / ".lab"
        lab_settings(conf / "settings")
        cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1",
               f"--port={self.port}", "--port-retries=0",
               f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={self.root}",
               f"--LabApp.user_settings_dir={conf / 'settings'}",
               f"--LabApp.workspaces_dir={conf / 'workspaces'}",
               "--LabApp.expose_app_in_browser=True", "--LabApp.extension_manager=readonly",
               "--ServerApp.terminals_enabled=False", "--ServerApp.open_browser=False"]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            cmd.append("--allow-root")  # CI containers run as root
        env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(conf / "runtime")}
        self.proc = subprocess.Popen(cmd, cwd=self.root, env=env, stdout=open(self.log, "wb"),
                                     stderr=subprocess.STDOUT)
        try:
            self._wait_ready()
        except BaseException:
            self.close()
            raise
        return self

    def _api(self, path: str, method: str = "GET") -> int:
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", method=method,
                                     headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"JupyterLab exited early:\n{self.log.read_text()[-2000:]}")
            try:
                if self._api("/api/status") == 200:
                    return
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            time.sleep(0.5)
        raise TimeoutError(f"JupyterLab did not start in {self.startup_timeout:.0f} s")

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/lab/tree/{path}?token={self.token}&reset"

    def close(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:  # a clean shutdown also stops the notebook's kernel
                self._api("/api/shutdown", method="POST")
                self.proc.wait(timeout=20)
            except Exception:  # noqa: BLE001 — fall back to signals below
                pass
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def __exit__(self, *exc: object) -> None:
        self.close()


def screenshot(url: str, chromium: str, width: int, height: int, timeout_s: float) -> bytes:
    ms = int(timeout_s * 1000)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.goto(url, timeout=ms)
            page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=ms)
            page.evaluate("() => document.querySelectorAll('.jp-Dialog button.jp-mod-reject')"
                          ".forEach(b => b.click())")  # e.g. a kernel-choice dialog
            # Collapse the file browser so the notebook gets the width.
            page.evaluate("() => window.jupyterapp && window.jupyterapp.commands && "
                          "window.jupyterapp.commands.execute('application:toggle-left-area')"
                          " .catch(() => {})")
            heading = page.locator(".jp-MarkdownOutput h2", has_text=ANCHOR).first
            heading.wait_for(timeout=ms)
            heading.scroll_into_view_if_needed(timeout=ms)
            page.evaluate("(text) => { const h = [...document.querySelectorAll('.jp-MarkdownOutput h2')]"
                          ".find(e => e.textContent.includes(text)); if (h) h.scrollIntoView({block: 'start'}); }",
                          ANCHOR)
            # plotly draws into .js-plotly-plot > .plot-container .main-svg once rendered
            page.wait_for_function(
                "() => [...document.querySelectorAll('.js-plotly-plot .main-svg')]"
                ".some(s => { const r = s.getBoundingClientRect(); "
                "return r.height > 100 && r.top < window.innerHeight && r.bottom > 0; })",
                timeout=ms)
            page.wait_for_timeout(1500)  # let the heatmap image and fonts settle
            n_figs = page.evaluate("() => document.querySelectorAll('.js-plotly-plot').length")
            if not n_figs:
                raise RuntimeError("no plotly figure was rendered")
            main = page.locator(".jp-main-dock-panel, #jp-main-dock-panel").first
            png = main.screenshot(timeout=ms) if main.count() else page.screenshot(timeout=ms)
            print(f"rendered plotly figures on the page: {n_figs}")
            return png
        finally:
            browser.close()


def shrink(png: bytes, max_bytes: int = MAX_BYTES) -> bytes:
    """Palette-quantise (and if needed downscale) the PNG until it is below ``max_bytes``."""
    img = Image.open(io.BytesIO(png)).convert("RGB")
    while True:
        buf = io.BytesIO()
        img.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(buf, "PNG", optimize=True)
        if buf.tell() <= max_bytes or img.width < 400:
            return buf.getvalue()
        img = img.resize((int(img.width * 0.85), int(img.height * 0.85)), Image.Resampling.LANCZOS)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=1000)
    ap.add_argument("--cell-timeout", type=int, default=1800, help="seconds per notebook cell")
    ap.add_argument("--browser-timeout", type=float, default=120.0)
    args = ap.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="mape-viz-shot-"))
    try:
        executed = tmp / NOTEBOOK.name
        t0 = time.perf_counter()
        execute_notebook(NOTEBOOK, executed, args.cell_timeout)
        print(f"executed {NOTEBOOK.name} in {time.perf_counter() - t0:.0f} s")
        with JupyterLab(tmp) as lab:
            png = screenshot(lab.url(NOTEBOOK.name), args.chromium, args.width, args.height,
                             args.browser_timeout)
        small = shrink(png)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_bytes(small)
        print(f"wrote {args.out} ({len(small) / 1000:.0f} KB)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
