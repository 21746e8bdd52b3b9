"""SQuAD F1 / exact match with the official normalisation.

Normalisation (the official SQuAD v1.1 / v2.0 evaluation script): lower-case, remove
punctuation (``string.punctuation``), remove the articles ``a``, ``an``, ``the`` (as whole
words), collapse whitespace. Tokens are the whitespace-split normalised string.

- EM = 1 if the normalised strings are equal.
- F1 = 2·P·R / (P + R) over the token multiset overlap; as in the v2.0 script, when either
  side has no token F1 = EM (so an empty prediction for an unanswerable question scores 1).

Both take the maximum over the gold answers. An empty gold list counts as ``[""]``
(SQuAD v2 unanswerable). Scores are fractions in [0, 1] (multiply by 100 for the paper's
tables).
"""

from __future__ import annotations

import re
import string
from collections import Counter
from typing import Sequence

import numpy as np

_PUNCT = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)


def normalize_answer(s: str) -> str:
    """Official SQuAD normalisation: lower, drop punctuation, drop articles, fix whitespace."""
    s = s.lower()
    s = "".join(ch for ch in s if ch not in _PUNCT)
    s = _ARTICLES.sub(" ", s)
    return " ".join(s.split())


def _golds(gold: str | Sequence[str]) -> list[str]:
    if isinstance(gold, str):
        return [gold]
    gold = list(gold)
    return gold if gold else [""]


def _f1_single(prediction: str, gold: str) -> float:
    p, g = normalize_answer(prediction).split(), normalize_answer(gold).split()
    if not p or not g:
        return float(p == g)
    same = sum((Counter(p) & Counter(g)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(p), same / len(g)
    return 2 * precision * recall / (precision + recall)


def squad_exact_match(prediction: str, gold: str | Sequence[str]) -> float:
    """1.0 if ``normalize_answer(prediction)`` equals that of any gold answer, else 0.0."""
    p = normalize_answer(prediction)
    return float(any(p == normalize_answer(g) for g in _golds(gold)))


def squad_f1(prediction: str, gold: str | Sequence[str]) -> float:
    """Token-overlap F1 of ``prediction``, maximised over the gold answers."""
    return max(_f1_single(prediction, g) for g in _golds(gold))


def squad_scores(predictions: Sequence[str],
                 golds: Sequence[str | Sequence[str]]) -> dict[str, float]:
    """Mean SQuAD F1 and EM over N questions.

    Args:
        predictions: N predicted answer strings.
        golds: N gold answers, each a string or a list of strings.

    Returns:
        ``{"f1": mean F1, "em": mean EM}`` (``nan`` for N = 0).
    """
    if len(predictions) != len(golds):
        raise ValueError(f"{len(predictions)} predictions for {len(golds)} questions")
    if not predictions:
        return {"f1": float("nan"), "em": float("nan")}
    f1 = np.mean([squad_f1(p, g) for p, g in zip(predictions, golds)])
    em = np.mean([squad_exact_match(p, g) for p, g in zip(predictions, golds)])
    return {"f1": float(f1), "em": float(em)}
