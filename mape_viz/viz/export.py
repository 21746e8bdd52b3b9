"""Write figures as standalone, offline HTML (plotly.js embedded: no CDN, no internet)."""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Literal, Mapping

import plotly.graph_objects as go

__all__ = ["to_html", "write_figures"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")

#: Options for the figure's toolbar in the saved page.
HTML_CONFIG = {"displaylogo": False, "responsive": True,
               "toImageButtonOptions": {"format": "png", "scale": 2}}


def _refuse(paths: list[Path]) -> None:
    existing = [str(p) for p in paths if p.exists()]
    if existing:
        raise FileExistsError(f"refusing to overwrite {len(existing)} existing file(s): "
                              f"{', '.join(existing[:5])}{' …' if len(existing) > 5 else ''}; "
                              "pass overwrite=True to replace them")


def to_html(fig: go.Figure, path: str | Path, *, overwrite: bool = False,
            plotlyjs: Literal["embed", "directory"] = "embed") -> Path:
    """Write ``fig`` as one standalone HTML page that works offline.

    Args:
        fig: the figure.
        path: the ``.html`` file to write (parent folders are created).
        overwrite: replace an existing file; by default an existing file raises
            ``FileExistsError``.
        plotlyjs: ``"embed"`` puts plotly.js (≈4.5 MB) inside the page; ``"directory"``
            writes it once as ``plotly.min.js`` next to the page and references it
            relatively (still offline; lighter when many pages share a folder).
    Returns:
        The path written.
    """
    if not isinstance(fig, go.Figure):
        raise TypeError(f"expected a plotly.graph_objects.Figure, got {type(fig).__name__}")
    if plotlyjs not in ("embed", "directory"):
        raise ValueError(f"plotlyjs must be 'embed' or 'directory', got {plotlyjs!r}")
    path = Path(path)
    if not overwrite:
        _refuse([path])
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.write_html(path, include_plotlyjs=True if plotlyjs == "embed" else "directory",
                   full_html=True, include_mathjax=False, config=HTML_CONFIG)
    return path


def write_figures(figs: Mapping[str, go.Figure], folder: str | Path, *, overwrite: bool = False,
                  plotlyjs: Literal["embed", "directory"] = "embed",
                  index: bool = False) -> dict[str, Path]:
    """Write each figure as ``folder/<name>.html`` (standalone, offline).

    All target paths are checked before anything is written, so a refusal leaves the folder
    untouched.

    Args:
        figs: name -> figure; names are file stems of letters, digits, ``.``, ``_``, ``-``
            (a trailing ``.html`` is allowed).
        folder: created if missing.
        overwrite: replace existing files; by default any existing target raises
            ``FileExistsError`` and nothing is written.
        plotlyjs: see :func:`to_html`.
        index: also write ``index.html`` linking every figure.
    Returns:
        name -> path written (plus ``"index"`` when ``index=True``).
    """
    folder = Path(folder)
    targets: dict[str, Path] = {}
    for name, fig in figs.items():
        stem = name[:-5] if name.endswith(".html") else name
        if not _NAME.match(stem) or (index and stem == "index"):
            raise ValueError(f"figure name {name!r} is not a safe file name (letters, digits, "
                             "'.', '_', '-'; 'index' is reserved with index=True)")
        if not isinstance(fig, go.Figure):
            raise TypeError(f"figure {name!r} is a {type(fig).__name__}, not a go.Figure")
        targets[name] = folder / f"{stem}.html"
    if len(set(targets.values())) != len(targets):
        raise ValueError("two figure names map to the same file")
    all_paths = list(targets.values()) + ([folder / "index.html"] if index else [])
    if not overwrite:
        _refuse(all_paths)
    written = {name: to_html(figs[name], p, overwrite=True, plotlyjs=plotlyjs)
               for name, p in targets.items()}
    if index:
        items = "\n".join(f'<li><a href="{html.escape(p.name)}">{html.escape(n)}</a></li>'
                          for n, p in written.items())
        page = (f"<!doctype html><html><head><meta charset='utf-8'><title>Figures</title>"
                f"</head><body><h1>Figures</h1><ul>\n{items}\n</ul></body></html>\n")
        (folder / "index.html").write_text(page, encoding="utf-8")
        written["index"] = folder / "index.html"
    return written
