"""Decision rules of the class tracks, chosen on out-of-fold probabilities to raise the metric.

A class track's leaderboard labels come from its default decision (the most probable class;
each unit above 0.5), which is not what maximises a macro F1 when classes are rare or
probabilities are not calibrated. Both rules here are monotone maps of the probabilities
after which the default decision makes the chosen one, so blend.json holds them like a
rescale and every stage applies them the same way (apply_decision):

* multi-class (EXPR): a bias per class added to the log-probabilities (the probabilities
  multiplied by exp(bias) and renormalised): the class prior's log times one strength s
  (p / prior^s), s chosen on a grid for the macro F1;
* multi-label (AU): a threshold per unit (each unit's probability moved so that the threshold
  lands on 0.5), chosen on the grid for that unit's F1.

fit_decision works on at most MAX_ROWS rows (evenly spaced), so its cost does not grow with the
release. Regression tracks have none (None).
"""
from __future__ import annotations

import numpy as np

MAX_ROWS = 200_000
PRIOR_GRID = np.round(np.arange(0.0, 1.51, 0.1), 2)
THRESHOLD_GRID = np.round(np.arange(0.05, 0.951, 0.05), 2)


def _thin(*arrays, limit: int = MAX_ROWS):
    n = len(arrays[0])
    if n <= limit:
        return arrays
    keep = np.linspace(0, n - 1, limit).round().astype(int)
    return tuple(a[keep] for a in arrays)


def macro_f1_of_labels(truth: np.ndarray, guess: np.ndarray, classes: int) -> float:
    """Macro F1 of integer labels (as scikit-learn's with zero_division=0), from counts."""
    confusion = np.bincount(truth * classes + guess, minlength=classes * classes).reshape(classes, classes)
    tp = np.diag(confusion).astype(float)
    denom = confusion.sum(0) + confusion.sum(1)
    return float(np.mean(np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0)))


def fit_decision(kind: str, probabilities: np.ndarray, truth: np.ndarray) -> dict | None:
    """The rule that maximises the track's metric on these rows ((rows, K) probabilities and
    (rows, K) one-hot or 0/1 labels, annotated rows only); None for a regression track."""
    if kind == "multiclass":
        probabilities, truth = _thin(probabilities, truth)
        logp = np.log(np.clip(probabilities, 1e-7, 1.0))
        labels, classes = truth.argmax(1), truth.shape[1]
        # One strength for every class: the probabilities divided by the class prior raised to
        # it. A free bias per class fits the few episodes of a rare class (on the demo the
        # nested score fell); one parameter carries from videos to videos.
        against_prior = -np.log(np.clip(truth.mean(0), 1e-4, None))
        against_prior -= against_prior.mean()
        scores = [macro_f1_of_labels(labels, (logp + s * against_prior).argmax(1), classes) for s in PRIOR_GRID]
        # On a tie the weakest: the default's, moved only for a gain.
        strength = PRIOR_GRID[max(range(len(PRIOR_GRID)), key=lambda i: (round(scores[i], 9), -PRIOR_GRID[i]))]
        return {"kind": "biases", "values": [round(float(strength * b), 6) for b in against_prior],
                "prior_strength": float(strength)}
    if kind == "multilabel":
        probabilities, truth = _thin(probabilities, truth)
        thresholds = []
        for unit in range(truth.shape[1]):
            positive = truth[:, unit] > 0.5
            scores = []
            for t in THRESHOLD_GRID:
                on = probabilities[:, unit] > t
                tp = float((on & positive).sum())
                denom = float(on.sum() + positive.sum())
                scores.append(2 * tp / denom if denom else 0.0)
            # On a tie the threshold nearest 0.5: the default's, moved only for a gain.
            best = max(range(len(THRESHOLD_GRID)), key=lambda i: (round(scores[i], 9), -abs(THRESHOLD_GRID[i] - 0.5)))
            thresholds.append(float(THRESHOLD_GRID[best]))
        return {"kind": "thresholds", "values": thresholds}
    return None


def apply_decision(values: np.ndarray, decision: dict | None) -> np.ndarray:
    """(rows, K) probabilities mapped so that the default decision makes the rule's choice."""
    if not decision:
        return values
    values = np.asarray(values, np.float64)
    if decision["kind"] == "biases":
        scaled = np.clip(values, 1e-12, None) * np.exp(np.asarray(decision["values"]))
        return scaled / scaled.sum(-1, keepdims=True)
    if decision["kind"] == "thresholds":
        t = np.asarray(decision["values"])
        p = np.clip(values, 1e-7, 1 - 1e-7)
        return 1 / (1 + np.exp(-(np.log(p / (1 - p)) - np.log(t / (1 - t)))))
    raise ValueError(f"unknown decision rule {decision['kind']!r}")


def describe_decision(decision: dict | None, targets) -> str:
    """One line saying what a rule does to each target (console and report)."""
    if not decision:
        return "none (the most probable class; each unit above 0.5)"
    if decision["kind"] == "biases":
        return "log-probability biases: " + ", ".join(f"{t} {b:+.2f}" for t, b in zip(targets, decision["values"]))
    return "thresholds: " + ", ".join(f"{t} {v:.2f}" for t, v in zip(targets, decision["values"]))
