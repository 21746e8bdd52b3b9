"""Every list a user picks from, read from the registries and the config's metadata
(docs/design.md §11). The CLI, the widgets, the notebooks and the app call these functions
instead of writing their own lists, so they all offer what the library offers.
"""

from __future__ import annotations

from .scores import OBJECTIVES, SELECTORS
from .selection import GRANULARITIES, REFINE_MODES
from .sitemaps import supported_families
from .tasks import TASKS
from .unlearning import METHODS, methods_for, selector_names


def list_methods(kind: str | None = None) -> list[str]:
    """Unlearning methods (``so``, ``ga``, ...); with ``kind``, those that fit a task kind."""
    return methods_for(kind) if kind is not None else METHODS.names()


def list_selectors(include_full: bool = True) -> list[str]:
    """Module selectors: ``full`` (no mask, unlearning only) then the score selectors."""
    return selector_names() if include_full else SELECTORS.names()


def list_objectives() -> list[str]:
    """MAPE scoring objectives (``mlf``, ``mlr``, ``mlf-argmax``: Eq. 17/18 read as written)."""
    return list(OBJECTIVES)


def list_refine_modes() -> list[str]:
    """Refinement modes of :func:`~mape_viz.selection.select_modules` (``none`` = warm start)."""
    return list(REFINE_MODES)


def list_granularities() -> list[str]:
    """Which module kinds a mask may select: ``heads``, ``filters``, ``both``."""
    return list(GRANULARITIES)


def list_tasks() -> list[str]:
    """Task names :func:`~mape_viz.tasks.load_task` knows."""
    return TASKS.names()


def list_families() -> list[str]:
    """Model families with a site map."""
    return supported_families()


def describe(choice_list: str, name: str) -> str:
    """One line of help for an entry of a list (``describe("method", "npo")``)."""
    helps = {"method": METHODS.help, "selector": lambda n: "no mask: every parameter is updated"
             if n == "full" else SELECTORS.help(n),
             "objective": OBJECTIVES.__getitem__, "refine": REFINE_MODES.__getitem__,
             "task": TASKS.help}
    if choice_list not in helps:
        raise ValueError(f"unknown choice list {choice_list!r}; known: {', '.join(helps)}")
    try:
        return helps[choice_list](name)
    except KeyError:
        raise ValueError(f"unknown {choice_list} {name!r}") from None
