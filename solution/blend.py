"""A fitted weighted average of several runs' predictions, and its saved form.

The saved blend (`predictions/blend.json`: runs, mode, weights per target, rescale, scores,
method, `smooth_seconds`) is what solution.predict applies to a later release without
refitting; `apply_blend` is the one place it is applied, so both give the same numbers.

Fitting works on a `Stack` of the runs' out-of-fold predictions on the rows the leaderboard
scores. Both metrics of a weighted average depend on the runs only through means and
covariances, so the SLSQP objective costs runs² numbers per target whatever the release size.
For CCC the rescale matches the labels' mean and spread (then CCC equals the blend's Pearson r;
the least-squares map would shrink the spread by r), so weights a rescale will follow are fit
on Pearson r. `cross_fit` is a way's honest estimate (each part blended with weights fit on
the others); `nest` is the whole procedure's (each part blended by the way chosen, and fit,
without it), and `nested_smoothing` chooses each part's smoothing width (frame-level tracks)
without it too.
docs/training.md describes the choices a user sees.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
from scipy.optimize import minimize

from solution import fileio
from solution.decisions import apply_decision, fit_decision
from solution.errors import DataError
from solution.metrics import score
from solution.tracks import Track

MODES = ("shared", "per_target")


def apply_blend(blend: dict, preds_by_run: dict[str, dict], low: float | None = None,
                high: float | None = None, fps_of: dict | None = None) -> dict:
    """{run: {key: prediction}} -> {key: blended prediction}; predictions are (targets,) or
    (frames, targets) arrays. Every run must cover the same keys. A blend with smoothing
    needs `fps_of` ({key: frames per second})."""
    sigma = float(blend.get("smooth_seconds") or 0.0)
    if sigma and fps_of is None:
        raise ValueError("this blend smooths over time: pass the videos' frame rates (fps_of)")
    runs = blend["runs"]
    missing = [r for r in runs if r not in preds_by_run]
    if missing:
        raise DataError(f"the blend needs predictions of run(s) {missing}")
    keys = list(preds_by_run[runs[0]])
    for run in runs[1:]:
        if set(preds_by_run[run]) != set(keys):
            raise DataError(f"runs {runs[0]} and {run} predict different videos")
    rescale, decision = blend.get("rescale"), blend.get("decision")
    out = {}
    for key in keys:
        shapes = {run: np.shape(preds_by_run[run][key]) for run in runs}
        if len(set(shapes.values())) > 1:
            raise DataError(f"video {key!r}: the runs' predictions differ in shape: {shapes}")
        value = sum(np.asarray(blend["weights"][run], dtype=np.float64) * np.asarray(preds_by_run[run][key], np.float64)
                    for run in runs)
        if rescale:
            value = value * np.asarray(rescale["scale"]) + np.asarray(rescale["shift"])
        if sigma:
            value = smooth_over_time(value, sigma * fps_of[key])
        if decision:
            value = apply_decision(value, decision)
        if low is not None or high is not None:
            value = np.clip(value, low, high)
        out[key] = value
    return out


def smooth_over_time(values: np.ndarray, sigma_frames: float) -> np.ndarray:
    """(frames, targets) smoothed along frames by a Gaussian of `sigma_frames` (edges: nearest)."""
    from scipy.ndimage import gaussian_filter1d

    if sigma_frames <= 0 or len(values) < 2:
        return values
    return gaussian_filter1d(np.asarray(values, np.float64), sigma_frames, axis=0, mode="nearest")


SMOOTHING_WIDTHS = (0.0, 0.1, 0.2, 0.4, 0.8, 1.6)  # Gaussian sigma, seconds


def smoothing_scores(track: Track, preds: dict, targets: dict, fps_of: dict,
                     candidates=SMOOTHING_WIDTHS) -> dict:
    """{width: the score of `preds` ({key: (frames, targets)}) smoothed by that width, pooled
    over the annotated frames of the videos in `targets`}."""
    keys = sorted(targets)
    out = {}
    for sigma in candidates:
        rows, truth = [], []
        for key in keys:
            label = np.asarray(targets[key], np.float64)
            keep = track.annotated(label)
            rows.append(smooth_over_time(preds[key], sigma * fps_of[key])[: len(label)][keep])
            truth.append(label[keep])
        out[sigma] = score_rows(track, np.concatenate(rows), np.concatenate(truth))["mean"]
    return out


def best_width(by_width: dict) -> float:
    """The width with the best score; on a tie (to 6 decimals) the smaller one."""
    return max(by_width, key=lambda c: (round(by_width[c], 6), -c))


def nested_smoothing(track: Track, outer: dict, inner: dict, targets: dict, part_of: dict, fps_of: dict,
                     candidates=SMOOTHING_WIDTHS) -> tuple[dict, dict]:
    """Each part's videos of `outer` ({key: prediction made without the key's part})
    smoothed by the width that scores best on `inner[part]` ({key: prediction of a video of
    another part, made without that part either}): ({key: smoothed}, {part: width}). Nothing
    the width of a part is chosen on has seen that part's labels."""
    out, widths = {}, {}
    for held in sorted({part_of[k] for k in targets}):
        others = {k: targets[k] for k in inner[held]}
        widths[held] = best_width(smoothing_scores(track, inner[held], others, fps_of, candidates))
        out.update({k: smooth_over_time(outer[k], widths[held] * fps_of[k]) for k in targets if part_of[k] == held})
    return out, widths


def annotated_rows(track: Track, preds: dict, targets: dict) -> tuple[np.ndarray, np.ndarray]:
    """(predictions, labels) of every annotated frame (or video) of `targets`' keys, pooled."""
    rows, truth = [], []
    for key in sorted(targets):
        label = np.asarray(targets[key], np.float64)
        if track.level == "video":
            rows.append(np.asarray(preds[key], np.float64)[None])
            truth.append(label[None])
            continue
        keep = track.annotated(label)
        rows.append(np.asarray(preds[key], np.float64)[: len(label)][keep])
        truth.append(label[keep])
    return np.concatenate(rows), np.concatenate(truth)


def checked_decision(track: Track, preds: dict, targets: dict, part_of: dict) -> dict | None:
    """The decision rule fit on every video of `preds`, kept only when it raises the metric on
    videos it was not fit on (each part's mapped by the rule fit on the other parts, against the
    same rows undecided); else None, the default decision. A rule fit on a few videos learns
    their quirks as readily as the classes' (on the EXPR demo it cost 0.01 macro F1 nested)."""
    scored = {k: targets[k] for k in preds}
    rule = fit_decision(track.kind, *annotated_rows(track, preds, scored))
    parts = sorted({part_of[k] for k in preds})
    if rule is None or len(parts) < 2:
        return rule
    mapped = {}
    for held in parts:
        inner_rule = fit_decision(track.kind, *annotated_rows(track, preds, {k: v for k, v in scored.items()
                                                                             if part_of[k] != held}))
        mapped.update({k: apply_decision(preds[k], inner_rule) for k in preds if part_of[k] == held})
    with_rule = score(track, *annotated_rows(track, mapped, scored))["mean"]
    without = score(track, *annotated_rows(track, preds, scored))["mean"]
    return rule if with_rule > without else None


def nested_decisions(track: Track, outer: dict, inner: dict, targets: dict, part_of: dict) -> tuple[dict, dict]:
    """A class track's decision rule (solution/decisions.py) per part, as nested_smoothing
    chooses widths: each part's videos of `outer` mapped by the rule checked_decision keeps on
    `inner[part]` (the other parts' predictions, made without that part): ({key: mapped},
    {part: rule or None})."""
    out, rules = {}, {}
    for held in sorted({part_of[k] for k in targets}):
        rules[held] = checked_decision(track, inner[held], targets, part_of)
        out.update({k: apply_decision(outer[k], rules[held]) for k in targets if part_of[k] == held})
    return out, rules


def write_blend(path, blend: dict) -> None:
    fileio.write_json(path, blend)


def read_blend(path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no saved blend; run python -m solution.ensemble first")
    blend = fileio.read_json(path, "saved blend", "run python -m solution.ensemble again")
    for field_name in ("track", "runs", "weights"):
        if field_name not in blend:
            raise DataError(f"{path}: not a blend file (no {field_name!r})")
    return blend


# ---------------------------------------------------------------- the scored rows, stacked once

@dataclass(frozen=True)
class Stack:
    runs: tuple[str, ...]
    preds: np.ndarray  # (runs, rows, targets)
    truth: np.ndarray  # (rows, targets)
    part: np.ndarray   # (rows,): the held-out part (fold) of each row's video


def stack_predictions(track: Track, preds_by_run: dict[str, dict], targets: dict, part_of: dict) -> Stack:
    """{run: {key: prediction}}, {key: label}, {key: part} -> Stack over the keys of `targets`,
    rows as `metrics.score_predictions` pools them."""
    runs = tuple(preds_by_run)
    if not runs:
        raise DataError("no runs to blend")
    keys = sorted(targets)
    missing_part = [k for k in keys if k not in part_of]
    if missing_part:
        raise DataError(f"no fold for {len(missing_part)} video(s), e.g. {missing_part[:5]}")
    truth, part, preds = [], [], {run: [] for run in runs}
    for key in keys:
        label = np.asarray(targets[key], np.float64)
        keep = None if track.level == "video" else track.annotated(label)
        truth.append(label[None] if keep is None else label[keep])
        part.append(np.full(len(truth[-1]), part_of[key]))
        for run in runs:
            if key not in preds_by_run[run]:
                raise DataError(f"run {run}: no out-of-fold prediction for video {key!r}")
            value = np.asarray(preds_by_run[run][key], np.float64)
            if keep is None:
                value = value[None]
            elif len(value) < len(label):
                raise DataError(f"run {run}: video {key!r} has {len(value)} predicted frames, "
                                f"its annotation {len(label)}")
            else:
                value = value[: len(label)][keep]
            if value.shape != truth[-1].shape:
                raise DataError(f"run {run}: video {key!r}: prediction shape {value.shape[1:]}, "
                                f"label shape {truth[-1].shape[1:]}")
            if not np.isfinite(value).all():
                raise DataError(f"run {run}: NaN or inf in the prediction of video {key!r}")
            preds[run].append(value)
    return Stack(runs, np.stack([np.concatenate(preds[run]) for run in runs]), np.concatenate(truth),
                 np.concatenate(part))


def holdout_parts(fold_of: dict, group_of: dict, parts: int = 5) -> dict:
    """{key: part} for the honest estimate: the folds, or, when there is only one (the
    official split), the held-out videos' groups dealt into `parts` parts, so a subject's
    videos are never on both sides."""
    if len(set(fold_of.values())) >= 2:
        return dict(fold_of)
    groups = sorted({group_of[k] for k in fold_of})
    if len(groups) < 2:
        raise DataError("one fold holding one group: nothing to hold out for an honest estimate of the blend")
    part_of_group = {g: i % min(parts, len(groups)) for i, g in enumerate(groups)}
    return {k: part_of_group[group_of[k]] for k in fold_of}


# ---------------------------------------------------------------- the metric of a weighted average

class Moments(NamedTuple):
    """Population moments (as metrics.py uses) of some rows: all a weighted average's metric needs."""
    n: int
    mean: np.ndarray        # (runs, targets)
    cov: np.ndarray         # (runs, runs, targets)
    cov_truth: np.ndarray   # (runs, targets)
    truth_mean: np.ndarray  # (targets,)
    truth_var: np.ndarray   # (targets,)

    def target(self, t: int) -> "Moments":
        return Moments(self.n, self.mean[:, t:t + 1], self.cov[:, :, t:t + 1], self.cov_truth[:, t:t + 1],
                       self.truth_mean[t:t + 1], self.truth_var[t:t + 1])


def moments(preds: np.ndarray, truth: np.ndarray) -> Moments:
    """The moments of (runs, rows, targets) predictions and their (rows, targets) labels."""
    n = truth.shape[0]
    mean, truth_mean = preds.mean(1), truth.mean(0)
    centred = (preds - mean[:, None]).transpose(2, 0, 1)       # (targets, runs, rows): one matmul per target
    truth_centred = (truth - truth_mean).T[:, :, None]          # (targets, rows, 1)
    return Moments(n, mean, (centred @ centred.transpose(0, 2, 1)).transpose(1, 2, 0) / n,
                   (centred @ truth_centred)[:, :, 0].T / n, truth_mean, (truth_centred[:, :, 0] ** 2).mean(1))


def pool(parts: list) -> Moments | Rows:
    """The moments of the union of disjoint row sets, from theirs (Chan's pairwise formulas),
    so leaving out one fold costs no pass over the rows; of Rows, their union."""
    if isinstance(parts[0], Rows):
        return Rows(parts[0].stack, np.logical_or.reduce([p.mask for p in parts]))
    n = sum(p.n for p in parts)
    mean = sum(p.n * p.mean for p in parts) / n
    truth_mean = sum(p.n * p.truth_mean for p in parts) / n
    cov = sum(p.n * (p.cov + (p.mean - mean)[:, None] * (p.mean - mean)[None, :]) for p in parts) / n
    cov_truth = sum(p.n * (p.cov_truth + (p.mean - mean) * (p.truth_mean - truth_mean)) for p in parts) / n
    truth_var = sum(p.n * (p.truth_var + (p.truth_mean - truth_mean) ** 2) for p in parts) / n
    return Moments(n, mean, cov, cov_truth, truth_mean, truth_var)


@dataclass(frozen=True)
class Rows:
    """Some rows of a Stack (a mask): what a class track's blend learns its weights from (its
    log loss needs the rows themselves; a regression track's metric needs only Moments)."""
    stack: Stack
    mask: np.ndarray


def part_learnables(stack: Stack, track: Track) -> dict:
    """{part: what a fit may learn from its rows}: Moments (regression) or Rows (class tracks),
    pooled over parts by `pool`."""
    if track.kind == "regression":
        return part_moments(stack)
    return {part.item(): Rows(stack, stack.part == part) for part in np.unique(stack.part)}


def part_moments(stack: Stack) -> dict:
    """{part: moments of its rows}: one pass over the rows for every fit of a comparison."""
    return {part.item(): moments(stack.preds[:, stack.part == part], stack.truth[stack.part == part])
            for part in np.unique(stack.part)}


def blend_metric(metric: str, weights: np.ndarray, mom: Moments) -> np.ndarray:
    """The metric per target of the blend with `weights` (runs, targets) or (runs, 1), from
    the moments alone (no clipping: a convex combination of in-range predictions stays in
    range). A blend or label without variance scores 0, as metrics.py scores it."""
    blend_mean = (weights * mom.mean).sum(0)
    blend_var = (weights[:, None] * mom.cov * weights[None, :]).sum((0, 1))
    cov = (weights * mom.cov_truth).sum(0)
    if metric == "pearson":
        denom = np.sqrt(np.maximum(blend_var * mom.truth_var, 0.0))
    else:
        denom = (blend_var + mom.truth_var + (blend_mean - mom.truth_mean) ** 2) / 2
    ok = denom > 1e-15
    return np.where(ok, cov / np.where(ok, denom, 1.0), 0.0)


def _maximise(objective, runs: int) -> np.ndarray:
    """The simplex point maximising `objective`; SLSQP from equal weights and from each
    single run, since a correlation of a weighted average need not be concave in the weights."""
    best_value, best = -np.inf, None
    for start in [np.full(runs, 1.0 / runs), *np.eye(runs)]:
        result = minimize(lambda w: -objective(w), start, method="SLSQP", bounds=[(0.0, 1.0)] * runs,
                          constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1.0, "jac": lambda w: np.ones_like(w)}],
                          options={"ftol": 1e-12, "maxiter": 300})
        weights = np.clip(result.x, 0.0, None)
        weights = weights / weights.sum() if weights.sum() > 0 else np.full(runs, 1.0 / runs)
        value = objective(weights)
        if value > best_value + 1e-12:
            best_value, best = value, weights
    return best


def fit_weights(mom: Moments, metric: str, mode: str = "shared") -> np.ndarray:
    """Non-negative weights summing to one that maximise the mean metric of the blend on the
    rows `mom` describes: (runs, targets), every column the same in "shared" mode."""
    runs, dims = mom.mean.shape
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if runs == 1:
        return np.ones((1, dims))
    if mode == "shared":
        shared = _maximise(lambda w: blend_metric(metric, w[:, None], mom).mean(), runs)
        return np.repeat(shared[:, None], dims, axis=1)
    return np.stack([_maximise(lambda w, m=mom.target(t): blend_metric(metric, w[:, None], m)[0], runs)
                     for t in range(dims)], axis=1)


def fit_rescale(weights: np.ndarray, mom: Moments) -> tuple[np.ndarray, np.ndarray]:
    """(scale, shift) per target that give the blend with `weights` the labels' mean and
    standard deviation on the rows `mom` describes (the CCC-optimal affine map; see the
    module docstring). A constant blend keeps scale 1."""
    blend_mean = (weights * mom.mean).sum(0)
    blend_var = (weights[:, None] * mom.cov * weights[None, :]).sum((0, 1))
    ok = blend_var > 1e-15
    scale = np.where(ok, np.sqrt(mom.truth_var / np.where(ok, blend_var, 1.0)), 1.0)
    return scale, mom.truth_mean - scale * blend_mean


def blend_rows(preds: np.ndarray, weights: np.ndarray, rescale=None) -> np.ndarray:
    """(runs, rows, targets) with (runs, targets) weights -> (rows, targets), rescaled if given."""
    out = np.einsum("rnt,rt->nt", preds, weights)
    if rescale is not None:
        out = out * rescale[0] + rescale[1]
    return out


def score_rows(track: Track, rows: np.ndarray, truth: np.ndarray) -> dict:
    """The leaderboard score of blended rows: clipped to the track's range, then metrics.score."""
    return score(track, np.clip(rows, track.low, track.high), truth)


# ---------------------------------------------------------------- one way of blending, fit and estimated

@dataclass
class Fit:
    """One way of blending: its weights and rescale fit on every row, its in-sample and
    honest scores, and what each held-out part was blended with."""
    name: str
    mode: str
    method: str                   # fitted | equal | single
    weights: np.ndarray           # (runs, targets), fit on every row
    rescale: tuple | None         # (scale, shift), fit on every row
    in_sample: dict
    honest: dict
    by_part: dict = field(default_factory=dict)  # part -> (weights, rescale) fit without that part


def fitter(track: Track, mode: str = "shared", method: str = "fitted", rescale: bool = False):
    """fit(moments) -> (weights, rescale or None): one way of blending, as a function of the
    rows it may learn from. `method` "equal" (or "single", one run) fits no weights."""
    if method not in ("fitted", "equal", "single"):
        raise ValueError(f"method must be fitted, equal or single, got {method!r}")
    # After the rescale a blend's CCC is its Pearson r, so that is what its weights should maximise.
    metric = "pearson" if rescale else track.metric

    def fit(learn):
        if isinstance(learn, Rows):  # a class track: weights for the log loss of the blended probabilities
            runs, dims = learn.stack.preds.shape[0], learn.stack.preds.shape[2]
            weights = fit_class_weights(track, learn, mode) if method == "fitted" else np.full((runs, dims), 1.0 / runs)
            return weights, None
        runs, dims = learn.mean.shape
        weights = fit_weights(learn, metric, mode) if method == "fitted" else np.full((runs, dims), 1.0 / runs)
        return weights, (fit_rescale(weights, learn) if rescale else None)

    return fit


CLASS_FIT_ROWS = 100_000  # rows a class blend's weights are fit on, evenly spaced: cost bounded, not the release's


def fit_class_weights(track: Track, rows: Rows, mode: str) -> np.ndarray:
    """(runs, K) weights that minimise the log loss (a proper scoring rule) of the blended
    probabilities on `rows`: of the true class (multi-class, one weight vector), or of each
    unit's label (multi-label; one vector, or one per unit with mode per_target)."""
    index = np.flatnonzero(rows.mask)
    if len(index) > CLASS_FIT_ROWS:
        index = index[np.linspace(0, len(index) - 1, CLASS_FIT_ROWS).round().astype(int)]
    preds, truth = rows.stack.preds[:, index], rows.stack.truth[index]
    runs, dims = preds.shape[0], preds.shape[2]
    if runs == 1:
        return np.ones((1, dims))
    if track.kind == "multiclass":
        true_p = np.take_along_axis(preds, truth.argmax(1)[None, :, None].repeat(runs, 0), 2)[:, :, 0]
        shared = _maximise(lambda w: float(np.mean(np.log(np.clip(w @ true_p, 1e-9, None)))), runs)
        return np.repeat(shared[:, None], dims, axis=1)

    def loglik(w, unit=slice(None)):
        q = np.clip(np.einsum("r,rnk->nk", w, preds[:, :, unit]), 1e-9, 1 - 1e-9)
        y = truth[:, unit]
        return float(np.mean(y * np.log(q) + (1 - y) * np.log(1 - q)))

    if mode == "shared":
        return np.repeat(_maximise(loglik, runs)[:, None], dims, axis=1)
    return np.stack([_maximise(lambda w, u=u: loglik(w, slice(u, u + 1)), runs) for u in range(dims)], axis=1)


def fit_blend(track: Track, stack: Stack, mode: str = "shared", method: str = "fitted",
              rescale: bool = False, parts: dict | None = None) -> Fit:
    """One way of blending fit on every row (what is applied to the test set), and its
    honest estimate from `cross_fit`; `parts` is `part_learnables(stack, track)` when already known."""
    parts = parts or part_learnables(stack, track)
    fit = fitter(track, mode, method, rescale)
    weights, affine = fit(pool(list(parts.values())))
    honest_rows, by_part = cross_fit(stack, fit, parts)
    name = {"fitted": mode, "equal": "equal", "single": "single"}[method] + ("+rescale" if rescale else "")
    return Fit(name, mode, method, weights, affine,
               score_rows(track, blend_rows(stack.preds, weights, affine), stack.truth),
               score_rows(track, honest_rows, stack.truth), by_part)


def cross_fit(stack: Stack, fit, parts: dict | None = None) -> tuple[np.ndarray, dict]:
    """Each part's rows blended by `fit(moments) -> (weights, rescale)` of the other parts'
    rows only: (rows, targets), and {part: (weights, rescale)}."""
    parts = parts or part_moments(stack)
    out = np.empty(stack.truth.shape)
    by_part = {}
    for part in parts:
        held = stack.part == part
        weights, affine = fit(pool([m for p, m in parts.items() if p != part]))
        out[held] = blend_rows(stack.preds[:, held], weights, affine)
        by_part[part] = (weights, affine)
    return out, by_part


def single_scores(track: Track, stack: Stack) -> dict:
    """Each run alone, scored as the leaderboard would (nothing fit, so also honest)."""
    return {run: score_rows(track, stack.preds[i], stack.truth) for i, run in enumerate(stack.runs)}


def compare_blends(track: Track, stack: Stack, rescale: bool = True, parts: dict | None = None) -> list[Fit]:
    """Equal weights and both fitted modes, each also with the rescale on CCC tracks (a
    multi-class track's probabilities share one weight vector: per-class weights would not
    sum to a distribution)."""
    methods = [("equal" if len(stack.runs) > 1 else "single", "shared")]
    if len(stack.runs) > 1:
        methods += [("fitted", mode) for mode in (("shared",) if track.kind == "multiclass" else MODES)]
    options = (False, True) if rescale and track.rescalable else (False,)
    parts = parts or part_learnables(stack, track)
    return [fit_blend(track, stack, mode, method, r, parts) for method, mode in methods for r in options]


WAYS = ("fitted", "equal", "all")  # which ways of blending may be chosen (solution.ensemble --ways)


def choose(fits: list[Fit], ways: str = "fitted", score=lambda fit: fit.honest["mean"]) -> Fit:
    """The way with the best honest estimate among `ways`: "fitted" (default: shared or per
    target, with or without the rescale), "equal" (the equal-weight ways) or "all"; with one
    run, that run. On a tie the simpler one (listed first) wins. Equal weights are scored for
    the table but not chosen by default: on the tune releases of the time their honest
    estimate ran ahead of the fitted ways' while on held-back test they trailed (bench/README,
    "How the blend is chosen"), plausibly because a run's out-of-fold predictions come from
    one fold's model, whose noise an average of runs cancels, while its test predictions are
    already averaged over the folds. The winner's honest score carries this choice among a
    handful of ways, so it is a little optimistic; `nest` estimates the whole procedure, this
    choice included. `score` ranks the ways (default: their honest estimate)."""
    if ways not in WAYS:
        raise ValueError(f"ways must be one of {WAYS}, got {ways!r}")
    wanted = fits if ways == "all" else [f for f in fits if (f.method == "fitted") == (ways == "fitted")]
    return max(wanted or fits, key=score)


def to_blend(track: Track, runs, chosen: Fit, fits: list[Fit], singles: dict, parts: int) -> dict:
    """The saved form (module docstring) of the chosen way, with every way's scores."""
    def weights_of(weights):
        return {run: [float(w) for w in weights[i]] for i, run in enumerate(runs)}

    def rescale_of(affine):
        return None if affine is None else {"scale": [float(a) for a in affine[0]], "shift": [float(b) for b in affine[1]]}

    scores = {"metric": track.metric, "chosen": chosen.name, "parts": parts,
              "single": {run: round(s["mean"], 6) for run, s in singles.items()},
              "single_per_target": {run: [round(v, 6) for v in s["per_dim"].values()] for run, s in singles.items()},
              "blends": {f.name: {"in_sample": round(f.in_sample["mean"], 6), "honest": round(f.honest["mean"], 6),
                                  "honest_per_target": {k: round(v, 6) for k, v in f.honest["per_dim"].items()}}
                         for f in fits},
              "weights_without_part": {str(p): weights_of(w) for p, (w, _) in chosen.by_part.items()}}
    return {"track": track.name, "runs": list(runs), "targets": list(track.targets), "mode": chosen.mode,
            "method": chosen.method, "weights": weights_of(chosen.weights), "rescale": rescale_of(chosen.rescale),
            "scores": scores}


def blend_with(blend: dict, weights: np.ndarray, affine) -> dict:
    """The saved form `blend` with other weights and rescale, unsmoothed and without a decision rule."""
    return {**blend, "weights": {run: weights[i].tolist() for i, run in enumerate(blend["runs"])},
            "rescale": None if affine is None else {"scale": affine[0].tolist(), "shift": affine[1].tolist()},
            "smooth_seconds": 0.0, "decision": None}


def part_blend(blend: dict, fit: Fit, part) -> dict:
    """The saved form of what part `part`'s rows were blended with in the honest estimate."""
    return blend_with(blend, *fit.by_part[part])


# ---------------------------------------------------------------- the whole procedure, nested

@dataclass
class Nested:
    """The blend's whole procedure estimated honestly. For each held-out part, the way is
    chosen by a cross-fit over the other parts only (each inner part blended with weights
    fit on neither it nor the held-out part; with only two parts, on the inner part itself),
    then fit on all other parts and applied to the held-out one. Scoring every part so gives
    the estimate of the procedure as a user runs it, the choice among the ways included."""
    way_of: dict        # part -> the Fit chosen without that part; its by_part[part] blends the part
    inner: dict         # part -> {inner part -> (weights, rescale)}: the chosen way fit without both
    inner_scores: dict  # part -> {way name -> the inner cross-fit's score}


def nest(track: Track, stack: Stack, fits: list[Fit], ways: str = "fitted", parts: dict | None = None) -> Nested:
    """The way each part would get from the procedure run without it (see Nested). With only
    two parts an inner part has nothing left to be fit on, so its ways are fit on itself (in
    sample) to be ranked."""
    parts = parts or part_learnables(stack, track)
    way_of, inner, inner_scores = {}, {}, {}
    for held in parts:
        others = stack.part != held
        scores, weights_of = {}, {}
        for fit in fits:
            fit_on = fitter(track, fit.mode, fit.method, fit.rescale is not None)
            rows, weights_of[fit.name] = np.empty(stack.truth.shape), {}
            for part in parts:
                if part == held:
                    continue
                rest = [m for p, m in parts.items() if p not in (held, part)]
                weights_of[fit.name][part] = fit_on(pool(rest) if rest else parts[part])
                rows[stack.part == part] = blend_rows(stack.preds[:, stack.part == part], *weights_of[fit.name][part])
            scores[fit.name] = score_rows(track, rows[others], stack.truth[others])["mean"]
        way_of[held] = choose(fits, ways, score=lambda f: scores[f.name])
        inner[held], inner_scores[held] = weights_of[way_of[held].name], scores
    return Nested(way_of, inner, inner_scores)


def nested_predictions(blend: dict, nested: Nested, preds_by_run: dict, part_of: dict, track: Track) -> tuple[dict, dict]:
    """Per video, unsmoothed: ({key: its part's nested blend}, {part: {key of another part:
    that part's inner blend}}): what `nested_smoothing` chooses each part's width from."""
    def apply(saved, keys):
        return apply_blend(saved, {r: {k: preds_by_run[r][k] for k in keys} for r in blend["runs"]}, track.low, track.high)

    keys_of = {}
    for key, part in part_of.items():
        keys_of.setdefault(part, []).append(key)
    outer, inner = {}, {}
    for held, fit in nested.way_of.items():
        outer.update(apply(part_blend(blend, fit, held), keys_of[held]))
        inner[held] = {}
        for part, weights in nested.inner[held].items():
            inner[held].update(apply(blend_with(blend, *weights), keys_of[part]))
    return outer, inner
