"""Measure the house: file sizes, import cycles, local imports and where each choice list is written.

    python benchmarks/house.py [--out benchmarks/results/house.json]

Reads the source only (nothing is imported or run). What it counts:

- **lines per file** of ``mape_viz/`` and ``app.py`` (total, largest, files over 400 lines);
- **import cycles** between ``mape_viz`` modules: strongly connected components of the
  module graph, once with module-level imports only and once with every import (a
  function-local import that closes a cycle still couples the two files);
- **function-local imports** (``import`` statements inside a function or method);
- **choice lists**: every literal tuple / list / set / dict whose string items form one of
  the user-facing choice lists below (granularities, refinement modes, objectives, selectors,
  methods) — in the library, ``app.py`` and the notebooks' code cells. One place per list is
  the goal; the registries and ``UnlearnConfig`` metadata should be read everywhere else;
- **citations of a design file outside the repository** (``DESIGN §``) in docstrings and docs.
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: name -> predicate over the set of string items of one literal collection
CHOICE_LISTS = {
    "granularity": lambda s: {"both", "heads", "filters"} <= s,
    "refine": lambda s: {"greedy", "converge"} <= s,
    "objective": lambda s: s == {"mlr", "mlf"} or s == {"mlr", "mlf", "mlf-argmax"},
    "selector": lambda s: "mape" in s and len(s & {"sure", "random", "magnitude", "full"}) >= 2,
    "method": lambda s: len(s & {"so", "ga", "gd", "npo", "dpo", "sa", "rt"}) >= 3,
}


def source_files() -> list[Path]:
    files = sorted((ROOT / "mape_viz").rglob("*.py"))
    app = ROOT / "app.py"
    return files + ([app] if app.exists() else [])


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def resolve(mod: str, is_pkg: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = mod.split(".")
    base = base if is_pkg else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(path: Path, known: set[str]) -> tuple[set[str], set[str], int]:
    """(module-level targets, all targets, number of function-local import statements)."""
    tree = ast.parse(path.read_text())
    mod = module_name(path)
    is_pkg = path.name == "__init__.py"
    top: set[str] = set()
    every: set[str] = set()
    local = 0

    def targets(node: ast.AST) -> set[str]:
        out = set()
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            base = resolve(mod, is_pkg, node)
            names = [f"{base}.{a.name}" for a in node.names] + [base]
        for n in names:
            while n and n not in known:
                n = n.rpartition(".")[0]
            if n and n != mod:
                out.add(n)
        return out

    def visit(node: ast.AST, in_function: bool) -> None:
        nonlocal local
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                t = targets(child)
                every.update(t)
                if in_function:
                    local += 1
                else:
                    top.update(t)
            visit(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)))

    visit(tree, False)
    return top, every, local


def sccs(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components with more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]
    sys.setrecursionlimit(10000)

    def strong(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return out


def code_units(paths: list[Path]) -> list[tuple[str, ast.AST]]:
    """(label, parsed tree) of each Python file and of each notebook code cell."""
    units = [(str(p.relative_to(ROOT)), ast.parse(p.read_text())) for p in paths]
    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        cells = json.loads(nb.read_text())["cells"]
        for i, cell in enumerate(cells):
            if cell["cell_type"] != "code":
                continue
            src = "".join(cell["source"])
            try:
                units.append((f"{nb.relative_to(ROOT)}[cell {i}]", ast.parse(src)))
            except SyntaxError:  # a cell with shell or magic lines
                continue
    return units


def choice_list_sites(paths: list[Path]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = defaultdict(list)
    for label, tree in code_units(paths):
        for node in ast.walk(tree):
            if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
                items = node.elts
            elif isinstance(node, ast.Dict):
                items = [k for k in node.keys if k is not None]
            else:
                continue
            strings = {e.value for e in items if isinstance(e, ast.Constant) and isinstance(e.value, str)}
            if len(strings) < 2 or len(strings) < len(items) - 1:
                continue  # not a literal list of names
            for name, pred in CHOICE_LISTS.items():
                if pred(strings):
                    found[name].append(f"{label}:{node.lineno}")
    return {k: sorted(set(v)) for k, v in sorted(found.items())}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "house.json"))
    args = ap.parse_args(argv)

    files = source_files()
    known = {module_name(p) for p in files if p.name != "app.py"}
    lines = {str(p.relative_to(ROOT)): len(p.read_text().splitlines()) for p in files}
    top_graph: dict[str, set[str]] = {}
    all_graph: dict[str, set[str]] = {}
    local_imports = {}
    for p in files:
        top, every, local = imports_of(p, known)
        m = module_name(p)
        top_graph[m], all_graph[m] = top, every
        if local:
            local_imports[str(p.relative_to(ROOT))] = local
    choices = choice_list_sites(files)
    design_refs = []
    for p in files + sorted((ROOT / "docs").glob("*.md")):
        for i, line in enumerate(p.read_text().splitlines(), 1):
            if re.search(r"DESIGN(\.md)? ?§", line):
                design_refs.append(f"{p.relative_to(ROOT)}:{i}")

    report = {
        "files": len(files),
        "lines_total": sum(lines.values()),
        "lines_per_file": dict(sorted(lines.items(), key=lambda kv: -kv[1])),
        "files_over_400_lines": sorted(k for k, v in lines.items() if v > 400),
        "import_cycles_module_level": sccs(top_graph),
        "import_cycles_any_import": sccs(all_graph),
        "function_local_imports": sum(local_imports.values()),
        "function_local_imports_per_file": local_imports,
        "choice_list_sites": choices,
        "external_design_citations": design_refs,
    }
    print(f"{'measure':<44} value")
    print(f"{'source files (mape_viz/ + app.py)':<44} {report['files']}")
    print(f"{'lines in all':<44} {report['lines_total']}")
    big = ", ".join(f"{k} ({lines[k]})" for k in report["files_over_400_lines"])
    print(f"{'files over 400 lines':<44} {len(report['files_over_400_lines'])}: {big}")
    for label, key in (("import cycles (module-level imports)", "import_cycles_module_level"),
                       ("import cycles (any import)", "import_cycles_any_import")):
        cyc = report[key]
        print(f"{label:<44} {len(cyc)}" + (": " + "; ".join(" <-> ".join(c) for c in cyc) if cyc else ""))
    print(f"{'function-local imports':<44} {report['function_local_imports']}")
    for name in CHOICE_LISTS:
        sites = choices.get(name, [])
        print(f"{'places writing the ' + name + ' list':<44} {len(sites)}" + (": " + ", ".join(sites) if sites else ""))
    print(f"{'citations of an outside DESIGN file':<44} {len(design_refs)}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
