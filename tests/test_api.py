"""The top-level API (`import mape_viz as mv`) and the README's "library in five lines"."""

import re
from pathlib import Path

import pytest

import mape_viz as mv
from mape_viz import choices
from mape_viz.unlearning import METHODS

ROOT = Path(__file__).resolve().parents[1]


def test_every_public_name_resolves():
    missing = [name for name in mv.__all__ if not hasattr(mv, name)]
    assert missing == []
    assert sorted(mv.__all__) == sorted(set(mv.__all__))


def test_function_unlearn_does_not_hide_the_subpackage():
    import importlib
    sub = importlib.import_module("mape_viz.unlearning")
    assert mv.unlearn is sub.unlearn
    assert callable(mv.unlearn) and sub.__name__ == "mape_viz.unlearning"


def test_listing_functions_are_the_registries():
    assert mv.list_methods() == list(METHODS.names()) == choices.list_methods()
    assert "mape" in mv.list_selectors() and "full" in mv.list_selectors()
    assert "full" not in mv.list_selectors(include_full=False)


def _readme_snippet() -> str:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"## The library in five lines\s+```python\n(.+?)```", text, re.S)
    assert block, "README lost its 'library in five lines' block"
    return block.group(1)


def test_readme_snippet_uses_the_top_level_api_only():
    code = _readme_snippet()
    assert "import mape_viz as mv" in code
    assert "from mape_viz." not in code


@pytest.mark.slow
def test_readme_snippet_runs(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    scope: dict = {}
    exec(compile(_readme_snippet(), "README.md", "exec"), scope)
    scores, mask, result = scope["scores"], scope["mask"], scope["result"]
    assert scores.heads.shape == mask.heads.shape
    assert mask.heads.dtype == mask.heads.new_zeros(()).bool().dtype
    assert result.model is not scope["task"].model
