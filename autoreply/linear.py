"""Multinomial logistic regression over entries, shared by the encoder and lexical heads."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np


def fit_linear(
    matrix: Any,
    labels: np.ndarray,
    n_entries: int,
    *,
    c: float,
    weights: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(coef (n_entries, features), intercept (n_entries,)) of a multinomial logistic
    regression of ``labels`` on ``matrix`` (dense or sparse), weighted by ``lift_weights``
    unless ``weights`` are given. An entry without texts gets an intercept of -1e4: it can
    never win."""
    from sklearn.linear_model import LogisticRegression

    present = np.unique(labels)
    coef = np.zeros((n_entries, matrix.shape[1]), dtype=np.float32)
    intercept = np.full(n_entries, -1e4, dtype=np.float32)
    if len(present) == 1:
        intercept[present[0]] = 0.0
        return coef, intercept
    model = LogisticRegression(C=c, max_iter=1000)
    with warnings.catch_warnings():
        # One class per entry: an FAQ whose entries have few variants always has more
        # classes than half its texts, which sklearn mistakes for a regression problem.
        warnings.filterwarnings("ignore", "The number of unique classes", UserWarning)
        model.fit(
            matrix, labels, sample_weight=lift_weights(labels) if weights is None else weights
        )
    if len(present) == 2:  # sklearn keeps one row for two classes
        coef[present[1]] = model.coef_[0]
        intercept[present[1]] = model.intercept_[0]
        intercept[present[0]] = 0.0
    else:
        coef[model.classes_] = model.coef_
        intercept[model.classes_] = model.intercept_
    return coef, intercept


def lift_weights(labels: np.ndarray) -> np.ndarray:
    """Training weight of each text: an entry with fewer texts than the knowledge base's
    median entry weighs as much as a median one.

    How many phrasings an entry has says how long it has been written, not how often it is
    asked. Unweighted, a regularized head gives an entry with 5 texts a far smaller share of
    probability than one with 20, so a new entry (an accepted gap topic) is answered at a
    confidence of 0.02-0.3 even when it is the right one. The weights are then scaled to sum
    to the number of texts, so the regularization keeps its strength relative to the data
    (entries at or above the median weigh a little under 1). A knowledge base whose entries
    all have at least the median number of texts (all the same size, say) is unchanged.
    """
    counts = np.bincount(labels).astype(np.float64)
    typical = float(np.median(counts[counts > 0]))
    weights = np.maximum(1.0, typical / counts[labels])
    return np.asarray(weights * (len(labels) / weights.sum()))
