"""Pearson and CCC (and the class tracks' F1, from scikit-learn), the only place the project
computes them, and a track's score of {video: prediction} against {video: target}
(score_predictions) that every stage uses.

Numpy versions score predictions; torch versions are differentiable losses. Both use
population moments (divide by n), as numpy does by default. A prediction or label column
with zero variance has no defined correlation: it scores 0.0 and a warning names it.
NaN or inf anywhere is an error, never a silently ignored value.
"""
from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import numpy as np

from solution.errors import DataError

if TYPE_CHECKING:
    from solution.tracks import Track


class ConstantInputWarning(UserWarning):
    """A column had zero variance, so its correlation was reported as 0.0."""


def _as_2d(name: str, values) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2:
        raise ValueError(f"{name} must be 1-D or 2-D (samples x dims), got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        bad = np.argwhere(~np.isfinite(array))[0]
        raise ValueError(f"{name} contains NaN or inf (first at row {bad[0]}, column {bad[1]})")
    return array


def _check_pair(pred, target) -> tuple[np.ndarray, np.ndarray]:
    pred, target = _as_2d("prediction", pred), _as_2d("target", target)
    if pred.shape != target.shape:
        raise ValueError(f"prediction shape {pred.shape} != target shape {target.shape}")
    if pred.shape[0] < 2:
        raise ValueError(f"need at least 2 samples to correlate, got {pred.shape[0]}")
    return pred, target


def _constant_columns(pred: np.ndarray, target: np.ndarray, names) -> np.ndarray:
    """Columns where either side is exactly constant (tested by range, since rounding can
    leave a tiny non-zero variance); each gets a warning naming it."""
    flat_p, flat_t = np.ptp(pred, 0) == 0, np.ptp(target, 0) == 0
    for j in np.flatnonzero(flat_p | flat_t):
        which = "prediction" if flat_p[j] else "target"
        label = names[j] if names is not None else f"dim {j}"
        warnings.warn(f"{which} is constant for {label}: its correlation is reported as 0.0",
                      ConstantInputWarning, stacklevel=3)
    return flat_p | flat_t


def pearson_per_dim(pred, target, names=None) -> np.ndarray:
    """Pearson's r for each column; 0.0 (with a warning) where a column is constant."""
    pred, target = _check_pair(pred, target)
    constant = _constant_columns(pred, target, names)
    dp, dt = pred - pred.mean(0), target - target.mean(0)
    denom = np.sqrt((dp**2).mean(0) * (dt**2).mean(0))
    safe = ~constant & (denom > 0)
    return np.where(safe, (dp * dt).mean(0) / np.where(safe, denom, 1.0), 0.0)


def ccc_per_dim(pred, target, names=None) -> np.ndarray:
    """Lin's concordance correlation for each column, population moments."""
    pred, target = _check_pair(pred, target)
    constant = _constant_columns(pred, target, names)
    mp, mt = pred.mean(0), target.mean(0)
    cov = ((pred - mp) * (target - mt)).mean(0)
    denom = pred.var(0) + target.var(0) + (mp - mt) ** 2
    safe = ~constant & (denom > 0)
    return np.where(safe, 2 * cov / np.where(safe, denom, 1.0), 0.0)


def ccc_from_sums(n, sum_p, sum_t, sum_pp, sum_tt, sum_pt) -> np.ndarray:
    """ccc_per_dim from running sums (count, sum of p, of t, of p^2, of t^2, of p*t; arrays
    per column), for pools too large to keep; 0.0 where the denominator vanishes."""
    mp, mt = np.asarray(sum_p) / n, np.asarray(sum_t) / n
    var_p, var_t = np.asarray(sum_pp) / n - mp**2, np.asarray(sum_tt) / n - mt**2
    cov = np.asarray(sum_pt) / n - mp * mt
    denom = var_p + var_t + (mp - mt) ** 2
    safe = denom > 0
    return np.where(safe, 2 * cov / np.where(safe, denom, 1.0), 0.0)


def f1_per_class(pred, target, names=None) -> np.ndarray:
    """A multi-class track's F1 of each class (EXPR): `pred` (rows, K) scores, `target` (rows, K)
    one-hot; the decision is the highest score. The macro F1 is their mean. A class never
    predicted nor present scores 0.0 (scikit-learn's zero_division=0)."""
    from sklearn.metrics import f1_score  # lazily: the preflight and a cached feature stage never import it

    pred, target = _as_2d("prediction", pred), _as_2d("target", target)
    return f1_score(target.argmax(1), pred.argmax(1), labels=list(range(target.shape[1])), average=None,
                    zero_division=0)


def f1_per_unit(pred, target, names=None) -> np.ndarray:
    """A multi-label track's binary F1 of each unit (AU): `pred` (rows, K) probabilities, a unit
    on where above 0.5; `target` (rows, K) 0/1. A unit never on on either side scores 0.0."""
    from sklearn.metrics import f1_score

    pred, target = _as_2d("prediction", pred), _as_2d("target", target)
    return f1_score(target.astype(int), (pred > 0.5).astype(int), average=None, zero_division=0)


METRICS = {"pearson": pearson_per_dim, "ccc": ccc_per_dim, "macro_f1": f1_per_class, "mean_f1": f1_per_unit}


def score(track: Track, pred, target) -> dict:
    """The track's leaderboard score: per-dimension values and their mean."""
    per_dim = METRICS[track.metric](pred, target, names=track.targets)
    return {"metric": track.metric, "per_dim": dict(zip(track.targets, per_dim.tolist())),
            "mean": float(per_dim.mean())}


def format_score_table(result: dict, title: str = "") -> str:
    width = max(len(k) for k in result["per_dim"]) + 2
    lines = [title] if title else []
    lines.append(f"{'dimension':<{width}}{result['metric']:>9}")
    lines += [f"{k:<{width}}{v:>9.4f}" for k, v in result["per_dim"].items()]
    lines.append(f"{'mean':<{width}}{result['mean']:>9.4f}")
    return "\n".join(lines)


# ---- differentiable losses (torch is imported lazily so scoring needs only numpy) ----

def _torch_moments(pred, target, eps: float):
    mp, mt = pred.mean(0), target.mean(0)
    dp, dt = pred - mp, target - mt
    return mp, mt, (dp * dp).mean(0), (dt * dt).mean(0), (dp * dt).mean(0)


def pearson_loss(pred, target, eps: float = 1e-8):
    """1 - mean Pearson over dims, over the batch axis (dim 0)."""
    _, _, var_p, var_t, cov = _torch_moments(pred, target, eps)
    r = cov / (var_p * var_t + eps).sqrt()
    return 1 - r.mean()


def ccc_loss(pred, target, eps: float = 1e-8):
    """1 - mean CCC over dims, over the batch axis (dim 0)."""
    mp, mt, var_p, var_t, cov = _torch_moments(pred, target, eps)
    ccc = 2 * cov / (var_p + var_t + (mp - mt) ** 2 + eps)
    return 1 - ccc.mean()


def mse_loss(pred, target):
    return ((pred - target) ** 2).mean()


LOSSES = {"pearson": pearson_loss, "ccc": ccc_loss, "mse": mse_loss}


def parse_loss_spec(spec: str) -> list[tuple[float, str]]:
    """'0.7*ccc+0.3*mse' -> [(0.7, 'ccc'), (0.3, 'mse')]."""
    terms = []
    for part in spec.replace(" ", "").split("+"):
        weight, _, name = part.rpartition("*")
        if name not in LOSSES:
            raise ValueError(f"unknown loss {name!r} in {spec!r}; known: {sorted(LOSSES)}")
        terms.append((float(weight) if weight else 1.0, name))
    return terms


def make_loss(spec: str):
    """A loss function from a spec such as 'pearson', 'ccc+0.1*mse' or '0.7*ccc+0.3*mse'.

    loss(pred, target, mask=None): pred and target (B, k) for video-level tracks, or
    (B, T, k) with `mask` (B, T) True on annotated frames for frame-level ones; the
    correlation is then taken over every annotated frame of the batch pooled, as the
    leaderboard pools the split. Fewer than two annotated rows give a zero loss that still
    has a gradient path (so backward() works), never NaN."""
    from solution.distributed import gather_rows  # torch only where a loss is made: scoring needs numpy alone

    terms = parse_loss_spec(spec)

    def loss(pred, target, mask=None):
        if mask is not None:
            pred, target = pred[mask], target[mask]
        elif pred.dim() == 3:
            pred, target = pred.reshape(-1, pred.shape[-1]), target.reshape(-1, target.shape[-1])
        # A batch split over processes: the correlation of the global batch (solution/distributed.py).
        pred, target = gather_rows(pred), gather_rows(target)
        if pred.shape[0] < 2:
            return pred.sum() * 0.0
        return sum(w * LOSSES[name](pred, target) for w, name in terms)

    loss.spec = spec
    return loss


# ---- the class tracks' losses: on logits, weighted against the imbalance of the training labels

CLASS_LOSSES = {"multiclass": ("ce", "focal", "smooth"), "multilabel": ("bce", "focal")}
LABEL_SMOOTHING = 0.1  # the "smooth" loss: the truth's one-hot mixed with this much of the uniform
REGRESSION_DEFAULT_LOSS = "ccc"  # TrainConfig.loss's default: a class track left at it trains with its own


def task_loss_spec(track, spec: str) -> str:
    """The loss a fold of `track` trains with: `spec` as given for a regression track; for a class
    track `spec` when it is one of its kind's losses (CLASS_LOSSES), the kind's first
    (class-weighted cross-entropy, or per-unit weighted binary cross-entropy) for the regression
    default "ccc"; any other name is an error listing the kind's losses."""
    if track.kind == "regression":
        return spec
    own = CLASS_LOSSES[track.kind]
    if spec == REGRESSION_DEFAULT_LOSS:
        return own[0]
    if spec not in own:
        # Falling back to the default would train, and report, a loss nobody asked for.
        raise DataError(f"loss={spec!r} (the train setting loss, from --set or a config's [train]): track "
                        f"{track.name} ({track.kind}) trains with one of {', '.join(own)}; "
                        f"the default {REGRESSION_DEFAULT_LOSS!r} means {own[0]!r}")
    return spec


def class_weights(track, targets: dict) -> np.ndarray:
    """Per class (multi-class: N / (K n_c)) or per unit (multi-label: the negatives per
    positive, n_neg / n_pos) over the annotated frames of `targets` ({video: (frames, K)}),
    square-rooted: a rare class then counts more, but a handful of frames does not dominate
    the loss (1 for a class or unit without frames)."""
    rows = np.concatenate([np.asarray(t)[track.annotated(t)] for t in targets.values()])
    positive = rows.sum(0)
    if track.kind == "multiclass":
        weights = len(rows) / (rows.shape[1] * np.maximum(positive, 1))
    else:
        weights = (len(rows) - positive) / np.maximum(positive, 1)
    return np.where(positive > 0, np.sqrt(weights), 1.0).astype(np.float32)


def make_class_loss(kind: str, spec: str, weights: np.ndarray, gamma: float = 2.0):
    """loss(logits, target, mask=None), as make_loss's: `target` one-hot (multi-class) or 0/1 per
    unit, the annotated rows only. "ce"/"bce": class-weighted cross-entropy, or binary
    cross-entropy with each unit's positives weighted; "focal": the same with each row's term
    scaled by (1 - p)^gamma, p its probability of the truth (Lin et al. 2017); "smooth"
    (multi-class): cross-entropy against labels smoothed by LABEL_SMOOTHING (annotators who
    disagree at boundaries make a one-hot truth overconfident). No annotated row gives a zero
    loss that still has a gradient path."""
    import torch
    import torch.nn.functional as F

    if spec not in CLASS_LOSSES[kind]:
        raise ValueError(f"unknown loss {spec!r} for a {kind} track; known: {CLASS_LOSSES[kind]}")

    def loss(pred, target, mask=None):
        if mask is not None:
            pred, target = pred[mask], target[mask]
        else:
            pred, target = pred.reshape(-1, pred.shape[-1]), target.reshape(-1, target.shape[-1])
        if pred.shape[0] < 1:
            return pred.sum() * 0.0
        w = torch.as_tensor(weights, device=pred.device, dtype=pred.dtype)
        if kind == "multiclass":
            truth = target.argmax(-1)
            terms = F.cross_entropy(pred, truth, weight=w, reduction="none",
                                    label_smoothing=LABEL_SMOOTHING if spec == "smooth" else 0.0)
            if spec == "focal":
                terms = terms * (1 - torch.softmax(pred, -1).gather(1, truth[:, None])[:, 0]) ** gamma
            return terms.sum() / w[truth].sum()
        terms = F.binary_cross_entropy_with_logits(pred, target, pos_weight=w, reduction="none")
        if spec == "focal":
            p = torch.sigmoid(pred)
            terms = terms * (1 - torch.where(target > 0.5, p, 1 - p)) ** gamma
        return terms.mean()

    loss.spec = spec
    return loss


def make_task_loss(track, spec: str, targets: dict):
    """The loss of a fold of `track` (task_loss_spec), its class weights from the fold's
    training `targets` ({video: labels})."""
    spec = task_loss_spec(track, spec)
    if track.kind == "regression":
        return make_loss(spec)
    return make_class_loss(track.kind, spec, class_weights(track, targets))


# ---- a track's score of {video: prediction} against {video: target}

def per_video_score(track, predictions: dict, targets: dict) -> dict:
    """Frame-level tracks: the metric of each video's annotated frames, then the mean over
    videos (what some papers report; the leaderboard pools frames instead). Videos with
    fewer than two annotated frames are left out; a video whose labels or predictions do not
    vary scores 0 for that target, as metrics.py scores it."""
    scores = []
    with warnings.catch_warnings():  # a flat stretch of one video is common and not news
        warnings.simplefilter("ignore", ConstantInputWarning)
        for key in sorted(targets):
            keep = track.annotated(targets[key])
            if keep.sum() >= 2:
                pred = np.clip(predictions[key][: len(keep)][keep], track.low, track.high)
                scores.append(list(score(track, pred, targets[key][keep])["per_dim"].values()))
    per_dim = np.mean(scores, axis=0) if scores else np.zeros(track.dim)
    return {"mean": float(per_dim.mean()), "per_dim": dict(zip(track.targets, per_dim.tolist())), "videos": len(scores)}


def score_predictions(track, predictions: dict, targets: dict, context: str = "") -> dict:
    """The track's score of {key: prediction} against {key: target} over the keys of `targets`,
    pooled as the leaderboard pools a split: video rows (EMI), or every annotated frame (VA;
    -5 frames skipped). Predictions are clipped to the track's range first. Fewer than 2 rows
    to correlate is a DataError naming the videos (and `context`, e.g. the fold, when given)."""
    where = f"{context}: " if context else ""
    missing = [k for k in targets if k not in predictions]
    if missing:
        raise DataError(f"{where}no prediction for {len(missing)} video(s), e.g. {missing[:5]}")
    keys = sorted(targets)
    if not keys:
        raise DataError(f"{where}need at least 2 samples to correlate, got 0: no video")
    if track.level == "video":
        pred = np.stack([predictions[k] for k in keys])
        truth = np.stack([targets[k] for k in keys])
    else:
        pred, truth = [], []
        for k in keys:
            keep = track.annotated(targets[k])
            pred.append(predictions[k][: len(keep)][keep])
            truth.append(targets[k][keep])
        pred, truth = np.concatenate(pred), np.concatenate(truth)
    if len(truth) < 2:
        raise DataError(f"{where}need at least 2 samples to correlate, got {len(truth)}: {too_few(track, targets)}")
    return score(track, np.clip(pred, track.low, track.high), truth)


def too_few(track, targets: dict) -> str:
    """The videos behind a score with too few rows: each with its annotated frames (VA)."""
    keys = sorted(targets)
    if track.level == "video":
        return f"{len(keys)} video(s): {', '.join(keys[:8])}"
    shown = ", ".join(f"{k} ({int(track.annotated(targets[k]).sum())} of {len(targets[k])})" for k in keys[:8])
    return (f"{len(keys)} video(s), annotated frames of all frames in brackets: {shown}"
            + (f" and {len(keys) - 8} more" if len(keys) > 8 else "")
            + "; a video without an annotated frame is left out by the folds stage: make the folds again "
              "(python -m solution.folds --overwrite)")
