"""Forget / retain splits of a training set, by seed, with the checks that guard them."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from datasets import Dataset


def random_forget_indices(n_train: int, n_forget: int, seed: int) -> list[int]:
    """``n_forget`` distinct row indices of a training set of ``n_train`` rows, sorted.

    The paper's traditional tasks forget 128 random training samples, picked with seed 16
    or 42. Raises ``ValueError`` when ``n_forget`` is not in ``1..n_train``.
    """
    if not 0 < n_forget <= n_train:
        raise ValueError(f"forget set of {n_forget} samples does not fit a training set of "
                         f"{n_train} samples: choose 1 <= n_forget <= {n_train}")
    rng = np.random.default_rng(seed)
    return sorted(int(i) for i in rng.choice(n_train, size=n_forget, replace=False))


def check_forget_retain(forget: Sequence[int], retain: Sequence[int], n_train: int) -> None:
    """Raise ``ValueError`` unless ``forget`` and ``retain`` are disjoint index sets of the
    training set (``0 <= i < n_train``), with a non-empty forget set no larger than it."""
    f, r = set(forget), set(retain)
    if len(f) != len(forget):
        raise ValueError("the forget set lists some training samples twice")
    if not f:
        raise ValueError("the forget set is empty")
    if len(f) > n_train:
        raise ValueError(f"the forget set ({len(f)} samples) is larger than the training "
                         f"set ({n_train} samples)")
    bad = [i for i in f | r if not 0 <= i < n_train]
    if bad:
        raise ValueError(f"sample indices {sorted(bad)[:5]} are outside the training set "
                         f"(0..{n_train - 1})")
    both = f & r
    if both:
        raise ValueError(f"the forget and retain sets overlap in {len(both)} samples "
                         f"(e.g. {sorted(both)[:5]}); a sample is either forgotten or kept")


def split_train(train: Dataset, forget_idx: Sequence[int],
                retain_idx: Sequence[int] | None = None) -> tuple[Dataset, Dataset]:
    """Split ``train`` into (forget, retain) datasets.

    Args:
        train: the training set D.
        forget_idx: row indices of D_f.
        retain_idx: row indices of D_r; default all rows not in ``forget_idx``.
    """
    forget_idx = [int(i) for i in forget_idx]
    if retain_idx is None:
        fset = set(forget_idx)
        retain_idx = [i for i in range(len(train)) if i not in fset]
    retain_idx = [int(i) for i in retain_idx]
    check_forget_retain(forget_idx, retain_idx, len(train))
    return train.select(forget_idx), train.select(retain_idx)


def resolve_forget(train: Dataset, forget: str | int | Sequence[int], seed: int,
                   n_forget: int = 128, named: dict[str, Sequence[int]] | None = None
                   ) -> list[int]:
    """Turn a ``forget`` option into training-row indices (sorted; explicit indices are
    kept as given and checked by ``split_train``).

    Args:
        train: the training set D.
        forget: ``"random"`` (``n_forget`` random rows by ``seed``), an ``int`` (that many
            random rows), a key of ``named`` (e.g. ``"canaries"``), or explicit indices.
        seed: the split seed (the paper uses 16 and 42).
        n_forget: the size of a ``"random"`` forget set.
        named: task-specific named forget sets.
    """
    named = named or {}
    if isinstance(forget, str):
        if forget == "random":
            return random_forget_indices(len(train), n_forget, seed)
        if forget in named:
            return sorted(int(i) for i in named[forget])
        raise ValueError(f"unknown forget set {forget!r}; use 'random', an int, a list of "
                         f"indices or one of {sorted(named)}")
    if isinstance(forget, (int, np.integer)):
        return random_forget_indices(len(train), int(forget), seed)
    idx = [int(i) for i in forget]
    if len(idx) > len(train):
        raise ValueError(f"the forget set ({len(idx)} samples) is larger than the training "
                         f"set ({len(train)} samples)")
    return idx
