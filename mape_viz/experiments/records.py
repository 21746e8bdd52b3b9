"""Tidy experiment records (one ``dict`` per run / per point) → markdown, CSV and JSON.

Records are what every experiment of :mod:`mape_viz.experiments` returns and what the figure
functions of :mod:`mape_viz.viz` take. This module has no plotting: it only writes text.

- :func:`columns` — the union of the records' keys, in order of first appearance;
- :func:`markdown_table` — any records as a GitHub markdown table;
- :func:`comparison_markdown` — the rows of :func:`mape_viz.viz.comparison_rows` (paper
  Table 2: name, mean values, best columns) as a markdown table with the best values in bold;
- :func:`write_csv` / :func:`read_csv`, :func:`write_json` / :func:`read_json` — files that
  refuse to overwrite an existing path unless ``overwrite=True``;
- :func:`score_aliases` / :func:`table_columns` — the task-kind-independent column names
  (``forget``, ``retain``, ``test``) and the efficacy / fidelity columns of a kind.

Missing values are ``None`` in records; NaN / inf floats are written as ``null`` in JSON and
as an empty cell in CSV.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

__all__ = ["columns", "markdown_table", "comparison_markdown", "write_csv", "read_csv",
           "write_json", "read_json", "score_aliases", "table_columns", "SCORE_KEYS",
           "TABLE_COLUMNS", "jsonable"]

Record = Mapping[str, Any]

#: Generic score column -> the metric it copies, first match wins (classification accuracy,
#: extractive-QA F1, TOFU ROUGE-L recall). ``test`` has no causal-LM counterpart.
SCORE_KEYS: dict[str, tuple[str, ...]] = {
    "forget": ("forget_acc", "forget_f1", "forget_rouge"),
    "retain": ("retain_acc", "retain_f1", "retain_rouge"),
    "test": ("test_acc", "test_f1"),
}

#: Per task kind: (efficacy columns, fidelity columns, directions that differ from the
#: default "efficacy: lower is better, fidelity: higher is better").
TABLE_COLUMNS: dict[str, tuple[tuple[str, ...], tuple[str, ...], dict[str, str]]] = {
    "classification": (("forget", "mia"), ("retain", "test"), {}),
    "extractive_qa": (("forget",), ("retain", "test"), {}),
    "causal_lm": (("forget_rouge", "forget_prob", "forget_quality"),
                  ("retain_rouge", "model_utility"), {"forget_quality": "max"}),
    "multiple_choice": (("forget",), ("test",), {}),
}


def score_aliases(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """``{"forget", "retain", "test"}`` copied from the kind-specific metric names present in
    ``metrics`` (``forget_acc`` / ``forget_f1`` / ``forget_rouge`` ...); absent ones are left
    out. These are the default columns of :func:`mape_viz.viz.comparison_table`."""
    out: dict[str, Any] = {}
    for alias, keys in SCORE_KEYS.items():
        for k in keys:
            if k in metrics:
                out[alias] = metrics[k]
                break
    return out


def table_columns(kind: str) -> tuple[tuple[str, ...], tuple[str, ...], dict[str, str]]:
    """(efficacy, fidelity, directions) of the Table-2-shaped table for a task kind."""
    if kind not in TABLE_COLUMNS:
        raise ValueError(f"unknown task kind {kind!r}; known: {', '.join(TABLE_COLUMNS)}")
    eff, fid, dirs = TABLE_COLUMNS[kind]
    return eff, fid, dict(dirs)


# ---------------------------------------------------------------------------------------------
# helpers


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def columns(records: Iterable[Record]) -> list[str]:
    """Union of the records' keys, in order of first appearance."""
    seen: dict[str, None] = {}
    for r in records:
        for k in r:
            seen.setdefault(str(k), None)
    return list(seen)


def jsonable(x: Any) -> Any:
    """``x`` with tensors / numpy scalars as Python numbers, tuples/sets as lists and NaN /
    inf as ``None`` (strict JSON has neither)."""
    if isinstance(x, Mapping):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in (sorted(x, key=str) if isinstance(x, (set, frozenset)) else x)]
    if isinstance(x, bool) or x is None or isinstance(x, str):
        return x
    if isinstance(x, int):
        return x
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if hasattr(x, "tolist"):  # numpy / torch
        return jsonable(x.tolist())
    if hasattr(x, "item"):
        return jsonable(x.item())
    return str(x)


def _refuse(path: Path, overwrite: bool) -> None:
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists; pass overwrite=True (--overwrite) to "
                              "replace it")


def _atomic_write(path: Path, text: str, overwrite: bool) -> Path:
    """Write ``text`` to ``path`` via a temporary sibling and a rename (no half files)."""
    path = Path(path)
    _refuse(path, overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def _format(v: Any, spec: str | None) -> str:
    if _missing(v):
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, (int, float)) and spec:
        try:
            return format(v, spec)
        except (TypeError, ValueError):
            return str(v)
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _escape(s: str) -> str:
    return s.replace("|", "\\|").replace("\n", " ")


# ---------------------------------------------------------------------------------------------
# markdown


def markdown_table(records: Sequence[Record], columns_: Sequence[str] | None = None, *,
                   headers: Mapping[str, str] | None = None,
                   formats: Mapping[str, str] | None = None, default_format: str | None = None,
                   bold: Sequence[Iterable[str]] | None = None,
                   align: Mapping[str, str] | None = None) -> str:
    """Records as a GitHub markdown table.

    Args:
        records: one dict per table row.
        columns_: the columns, in order (default: :func:`columns`).
        headers: column -> header text (default: the column name).
        formats: column -> format spec, e.g. ``{"test_acc": ".2%", "seconds": ".1f"}``; other
            numbers use ``default_format`` or 4 significant digits for floats.
        bold: per record, the columns whose cell is wrapped in ``**``.
        align: column -> ``"left"`` | ``"right"`` | ``"center"`` (default: numbers right,
            text left, judged from the first non-missing value).
    Returns:
        The table, ending with a newline; missing values print as ``–``.
    """
    cols = list(columns_) if columns_ is not None else columns(records)
    if not cols:
        raise ValueError("no columns to write")
    fmts = dict(formats or {})
    head = [_escape((headers or {}).get(c, c)) for c in cols]

    def is_num(c: str) -> bool:
        for r in records:
            v = r.get(c)
            if not _missing(v):
                return isinstance(v, (int, float)) and not isinstance(v, bool)
        return False

    marks = {"left": ":---", "right": "---:", "center": ":---:"}
    sep = [marks[(align or {}).get(c, "right" if is_num(c) else "left")] for c in cols]
    lines = ["| " + " | ".join(head) + " |", "| " + " | ".join(sep) + " |"]
    for i, r in enumerate(records):
        strong = set(bold[i]) if bold is not None and i < len(bold) else set()
        cells = []
        for c in cols:
            s = _escape(_format(r.get(c), fmts.get(c, default_format)))
            cells.append(f"**{s}**" if c in strong and s != "–" else s)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def comparison_markdown(rows: Sequence[Mapping[str, Any]], efficacy: Sequence[str],
                        fidelity: Sequence[str], *, extra: Sequence[str] = (),
                        directions: Mapping[str, str] | None = None,
                        labels: Mapping[str, str] | None = None,
                        formats: Mapping[str, str] | None = None,
                        reference: Iterable[str] = ("rt", "original")) -> str:
    """Paper Table 2 as markdown: ``Method | Efficacy … ↓ | Fidelity … ↑ | extra``.

    Args:
        rows: :func:`mape_viz.viz.comparison_rows` output — dicts with ``name``, ``method``,
            ``n`` (runs averaged), ``values`` {column: mean} and ``best`` (set of columns).
            ``extra`` columns (e.g. ``seconds``) must be in ``values`` too; they are never
            bold.
        efficacy, fidelity: the columns of each group, in order.
        directions: column -> ``"min"`` / ``"max"`` for the arrow (default: efficacy ↓,
            fidelity ↑).
        labels: column -> header text.
        formats: column -> format spec (default ``.4f``; ``seconds`` ``.1f``).
        reference: methods shown in italics (RT, the original model).
    """
    arrow = {"min": "↓", "max": "↑"}
    dirs = {**{c: "min" for c in efficacy}, **{c: "max" for c in fidelity},
            **(directions or {})}
    fmts = {"seconds": ".1f", **(formats or {})}
    ref = {str(r).lower() for r in reference}
    cols = ["Method", *efficacy, *fidelity, *extra]
    headers = {"Method": "Method"}
    for c in (*efficacy, *fidelity):
        group = "Efficacy" if c in efficacy else "Fidelity"
        headers[c] = f"{group}: {(labels or {}).get(c, c)} {arrow[dirs[c]]}"
    for c in extra:
        headers[c] = (labels or {}).get(c, c)
    recs, bold = [], []
    for row in rows:
        name = str(row["name"]) + (f" (n={row['n']})" if int(row.get("n", 1)) > 1 else "")
        if str(row.get("method", "")).lower() in ref:
            name = f"*{name}*"
        recs.append({"Method": name, **{c: row["values"].get(c) for c in cols[1:]}})
        bold.append([c for c in row.get("best", ()) if c not in extra])
    return markdown_table(recs, cols, headers=headers, formats=fmts, default_format=".4f",
                          bold=bold, align={"Method": "left"})


# ---------------------------------------------------------------------------------------------
# CSV / JSON


def write_csv(records: Sequence[Record], path: str | os.PathLike,
              columns_: Sequence[str] | None = None, *, overwrite: bool = False) -> Path:
    """Records as CSV (header = ``columns_`` or :func:`columns`); lists / dicts as JSON text,
    missing / NaN as an empty cell. Refuses an existing file unless ``overwrite``."""
    cols = list(columns_) if columns_ is not None else columns(records)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    for r in records:
        row = []
        for c in cols:
            v = r.get(c)
            if _missing(v) or (isinstance(v, float) and not math.isfinite(v)):
                row.append("")
            elif isinstance(v, (list, tuple, dict, set)):
                row.append(json.dumps(jsonable(v)))
            elif hasattr(v, "item") and not isinstance(v, (str, bytes)):
                row.append(v.item())
            else:
                row.append(v)
        w.writerow(row)
    return _atomic_write(Path(path), buf.getvalue(), overwrite)


def _parse_cell(s: str) -> Any:
    if s == "":
        return None
    if s in ("True", "False"):
        return s == "True"
    try:
        return int(s)
    except ValueError:
        pass
    try:
        return float(s)
    except ValueError:
        return s


def read_csv(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Records from a CSV written by :func:`write_csv` (numbers and booleans parsed, empty
    cells as ``None``)."""
    with open(path, newline="", encoding="utf-8") as f:
        return [{k: _parse_cell(v) for k, v in row.items()} for row in csv.DictReader(f)]


def write_json(obj: Any, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """``obj`` (records, or a dict holding them) as indented strict JSON (NaN → null).
    Refuses an existing file unless ``overwrite``."""
    text = json.dumps(jsonable(obj), indent=2, allow_nan=False) + "\n"
    return _atomic_write(Path(path), text, overwrite)


def read_json(path: str | os.PathLike) -> Any:
    """What :func:`write_json` wrote."""
    return json.loads(Path(path).read_text(encoding="utf-8"))
