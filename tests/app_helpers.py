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


def chromium(playwright: Any) -> Any:
    """A headless Chromium browser (Debian's, at ``chromium`` on PATH)."""
    return playwright.chromium.launch(executable_path=shutil.which("chromium"), args=CHROMIUM_ARGS)
