"""Accuracy metrics on plain arrays: classification and multiple choice.

Every function takes tensors, numpy arrays or lists, so the outputs of other tools can be
scored. Results are plain Python floats in [0, 1].
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

ArrayLike = Any  # torch.Tensor | np.ndarray | Sequence[...]


def to_numpy(x: ArrayLike, dtype: Any = None) -> np.ndarray:
    """``x`` as a numpy array (a tensor is detached and moved to CPU; half -> float32)."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        if x.is_floating_point() and x.dtype not in (torch.float32, torch.float64):
            x = x.float()
        x = x.numpy()
    arr = np.asarray(x)
    return arr.astype(dtype) if dtype is not None else arr


def accuracy(predictions: ArrayLike, labels: ArrayLike) -> float:
    """Fraction of correct predictions.

    Args:
        predictions: (N,) predicted class ids, or (N, C) logits / probabilities (argmax over
            the last axis is taken; ties go to the lowest class id).
        labels: (N,) true class ids.

    Returns:
        ``mean(pred_i == y_i)``; ``nan`` for N = 0.
    """
    pred = to_numpy(predictions)
    y = to_numpy(labels).reshape(-1)
    if pred.ndim == 2:
        pred = pred.argmax(-1)
    pred = pred.reshape(-1)
    if pred.shape != y.shape:
        raise ValueError(f"{pred.shape[0]} predictions for {y.shape[0]} labels")
    if y.size == 0:
        return float("nan")
    return float((pred == y).mean())


def multiple_choice_accuracy(choice_loglik: ArrayLike, answers: ArrayLike) -> float:
    """Zero-shot multiple-choice accuracy from per-choice log-likelihoods.

    Args:
        choice_loglik: (N, C) log-likelihood (or any score, higher = preferred) of each
            choice; e.g. the log-probability of each answer letter, or the summed
            (or length-normalised) log-probability of each choice's text.
        answers: (N,) index of the correct choice.

    Returns:
        ``mean(argmax_c loglik[i, c] == answer_i)`` (ties go to the lowest index).
    """
    ll = to_numpy(choice_loglik)
    if ll.ndim != 2:
        raise ValueError(f"choice_loglik must be (N, C), got shape {ll.shape}")
    return accuracy(ll, answers)
