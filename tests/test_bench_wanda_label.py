"""The bench table names ``mape+wanda`` rows as the paper's "MAPE-SO(90%)" (Appendix B.2;
mape_viz/cli/bench.py ``comparison_markdown_for``, docs/design.md §4)."""

from __future__ import annotations

from mape_viz.cli.bench import comparison_markdown_for


def _rec(method, selector, forget, test):
    return {"method": method, "selector": selector, "forget": forget, "retain": 1.0,
            "test": test, "seconds": 1.0}


def test_mape_wanda_rows_take_the_papers_name():
    recs = [_rec("original", None, 1.0, 0.99), _rec("so", "full", 0.7, 0.98),
            _rec("so", "mape", 0.6, 0.98), _rec("so", "mape+wanda", 0.5, 0.97)]
    table = comparison_markdown_for(recs, "classification", {"so": 0.9})
    names = [line.split("|")[1].strip() for line in table.splitlines()
             if line.startswith("|") and "---" not in line][1:]
    assert names == ["*Original*", "SO", "MAPE-SO", "MAPE-SO(90%)"]
    # without the wanda sparsity the selector's own name stays
    plain = comparison_markdown_for(recs, "classification")
    assert "MAPE+WANDA-SO" in plain and "MAPE-SO(90%)" not in plain
