"""Time every code cell of the notebooks at their default sizes (no ``MAPE_VIZ_QUICK``), from a
warm model cache, one torch thread: prints one line per notebook and writes JSON.

    python benchmarks/time_notebooks.py            # all six
    python benchmarks/time_notebooks.py 03 05      # by number

The measured totals are written under each notebook's title (``RUN_TIME`` in
``notebooks/_build.py``).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

os.environ.pop("MAPE_VIZ_QUICK", None)
os.environ.update(HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1")

import nbformat  # noqa: E402
from nbclient import NotebookClient  # noqa: E402

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def time_notebook(path: Path) -> dict:
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=1800, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOKS)}})
    start, cells, error = time.perf_counter(), [], None
    with client.setup_kernel():
        for i, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            t = time.perf_counter()
            try:
                client.execute_cell(cell, i)
            except Exception as e:  # noqa: BLE001 - reported, then the next notebook runs
                error = str(e)[-600:]
            cells.append([i, round(time.perf_counter() - t, 1)])
            if error:
                break
    return {"seconds": round(time.perf_counter() - start, 1), "cells": cells, "error": error,
            "load_average_1min": os.getloadavg()[0]}


def main(keys: list[str]) -> None:
    paths = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    if keys:
        paths = [p for p in paths if p.name[:2] in keys]
    out = {}
    for path in paths:
        out[path.stem] = res = time_notebook(path)
        print(f"{path.stem}: {res['seconds']} s (load {res['load_average_1min']:.1f})"
              f"{' ERROR ' + res['error'] if res['error'] else ''}; cells {res['cells']}", flush=True)
    dest = Path(__file__).parent / "results" / "time_notebooks.json"
    old = json.loads(dest.read_text()) if dest.exists() else {}
    dest.write_text(json.dumps({**old, **out}, indent=1))


if __name__ == "__main__":
    main(sys.argv[1:])
