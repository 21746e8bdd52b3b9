"""Serving a Gradio app on a free local port and launching Debian's headless Chromium, shared
by the app tests (tests/test_app.py, tests/test_app_byod.py)."""

from __future__ import annotations

import shutil
import socket
from contextlib import contextmanager
from typing import Any, Iterator

#: Debian's chromium, launched without a sandbox or network beyond the local server.
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serve(demo: Any) -> Iterator[str]:
    """Launch ``demo`` (a ``gr.Blocks``) on a free port; yields its URL, closes it after."""
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        demo.close()


@contextmanager
def app_page(url: str, width: int, height: int, ready: str) -> Iterator[Any]:
    """A page of headless Chromium (Debian's, ``chromium`` on PATH) at ``width`` × ``height``
    px, on ``url``, once the selector ``ready`` is there; the browser is closed after."""
    # playwright only here: the browser tests skip without chromium, the others never need it
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.goto(url, wait_until="load", timeout=120_000)
            page.wait_for_selector(ready, timeout=120_000)
            yield page
        finally:
            browser.close()
