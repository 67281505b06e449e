"""python -m solution.delay: each fold's label delay, chosen on its training videos (frame-level tracks).

    python -m solution.delay --data DIR --work WORK [--candidates 0:3:0.25] [--config FILE]

Annotators move their joystick after they see the face, so the label of frame k describes
the media a little before it. For each candidate delay d (seconds), the media are read at
(k / fps - d) and a ridge probe from the cached features of one grid step to its valence and
arousal is scored by cross-validation: fitted on all parts but one, scored on that one, CCC
pooled over the annotated steps of the scored parts (as the leaderboard pools frames). The
best delay wins; ties go to the smaller one. A linear probe is what a delay can be read from
cheaply; the temporal models see context on both sides and can absorb a residual lag themselves.

Nested, so that no fold's held-out score has seen its own labels: fold k's delay is chosen by a
cross-validation over fold k's training videos only (every video not in fold k). Its parts are
the other folds when those videos span at least two; when they are a single fold (2 folds, or
the official scheme, where fold 0 trains on fold -1) that fold's groups are dealt into up to 5
parts, a group never in two. `run_all.sh` trains fold k with its own delay (`solution.jobs run
--label-delays WORK/<track>-<fingerprint>/delay.json`). The delay chosen on all folds pooled
(each fold scored by the probe fitted on the others) is kept for information.

Writes WORK/<track>-<fingerprint>/delay.json: by_fold (fold -> its delay), scores_by_fold (fold
-> delay -> inner CCC), inner_parts (fold -> what its inner parts were), label_delay and scores
(the pooled choice), and fold_assignment (the digest of the fold file they were chosen for). Only sums are kept (X1'X1, X1'Y and the sum of y^2 of each part, X1 being
the features and a ones column), so memory grows with the feature width, never with the
release, and every video is read once per candidate: a probe's pooled CCC over some parts
follows from their sums alone.
"""
from __future__ import annotations

import argparse
import functools
import operator
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from solution import fileio
from solution.config import TrainConfig, load_toml
from solution.data import VideoStore
from solution.errors import DataError
from solution.folds import assign_folds
from solution.listing import add_test_listing_option
from solution.metrics import ccc_from_sums
from solution.progress import progress
from solution.runs import folds_digest, read_folds, release_work
from solution.tracks import detect_track, get_track, open_release

INNER_GROUP_PARTS = 5  # a single training fold is split by group into at most this many parts


def parse_candidates(text: str) -> list[float]:
    """'0:3:0.25' (start:stop:step, stop included) or '0,0.5,1' -> sorted seconds."""
    try:
        if ":" in text:
            start, stop, step = (float(x) for x in text.split(":"))
            if step <= 0 or stop < start:
                raise ValueError
            values = np.round(np.arange(start, stop + step / 2, step), 6).tolist()
        else:
            values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise DataError(f"--candidates {text!r}: use start:stop:step (e.g. 0:3:0.25) or a comma list") from None
    if not values or min(values) < 0:
        raise DataError(f"--candidates {text!r}: need at least one delay, none negative")
    return sorted(set(values))


def step_rows(store: VideoStore, key: str) -> tuple[np.ndarray, np.ndarray]:
    """(features, targets) of one video's annotated grid steps; a missing modality is zeros."""
    video = store.load(key, normalise=False, keep=False)
    timed = [m for m in store.modalities if m != "text" or store.text_timed]
    n = len(video.target)
    parts = []
    for m in timed:
        seq = video.seqs[m]
        parts.append(np.zeros((n, store.dims[m]), np.float32) if seq is None else seq[:n])
    x = np.concatenate(parts, 1).astype(np.float64)
    keep = store.track.annotated(video.target)
    return x[keep], video.target[keep].astype(np.float64)


# ------------------------------------------------------------------ the probe, from sums

@dataclass
class Sums:
    """Some annotated steps as sums: X1'X1, X1'Y and the sum of y^2 per target (X1: the
    features and a ones column, so X1'X1's last row holds the sums of x and the count, X1'Y's
    last row the sums of y). Enough to fit the probe on them, or to score it on them."""
    xx: np.ndarray
    xy: np.ndarray
    yy: np.ndarray

    @classmethod
    def of(cls, x: np.ndarray, y: np.ndarray) -> "Sums":
        x1 = np.hstack([x, np.ones((len(x), 1))])
        return cls(x1.T @ x1, x1.T @ y, (y**2).sum(0))

    def __add__(self, other: "Sums") -> "Sums":
        return Sums(self.xx + other.xx, self.xy + other.xy, self.yy + other.yy)


def fit_probe(sums: Sums, ridge: float) -> np.ndarray:
    """Ridge weights W (one row per feature, then the bias; one column per target), so that
    X1 @ W predicts: fitted on standardised features, the penalty added to their correlation
    matrix, so one `ridge` suits any feature scale."""
    a, b = sums.xx, sums.xy
    n = a[-1, -1]
    mean = a[:-1, -1] / n
    var = np.maximum(np.diag(a)[:-1] / n - mean**2, 1e-8)
    scale = 1 / np.sqrt(var)
    cov = (a[:-1, :-1] / n - np.outer(mean, mean)) * np.outer(scale, scale)
    ymean = b[-1] / n
    xy_c = (b[:-1] / n - np.outer(mean, ymean)) * scale[:, None]
    w = np.linalg.solve(cov + ridge * np.eye(len(cov)), xy_c)
    return np.vstack([w * scale[:, None], ymean - (mean * scale) @ w])


def probe_moments(w: np.ndarray, sums: Sums) -> np.ndarray:
    """(count, sum p, sum y, sum p^2, sum y^2, sum p*y) per target of the predictions p = X1 @ W
    on the steps behind `sums`, without their rows: sum p = (X1'1)'W, sum p^2 = diag(W'X1'X1 W),
    sum p*y = diag(W'X1'Y). The arguments of metrics.ccc_from_sums, and they add up over parts."""
    xx, xy = sums.xx, sums.xy
    return np.stack([np.full(w.shape[1], xx[-1, -1]), xx[-1] @ w, xy[-1], np.einsum("it,ij,jt->t", w, xx, w),
                     sums.yy, np.einsum("it,it->t", w, xy)])


def cv_score(sums: dict, pool: list, parts: list[list], ridge: float, fits: dict | None = None) -> float:
    """Mean over targets of the pooled CCC of a cross-validation over cells: each part (a list
    of cells) predicted by the probe fitted on the cells of `pool` outside it. Cells are summed
    in `pool`'s order, so the score is a function of the pool's videos alone, bit for bit.
    `fits` (training cells -> W) shares probes between cross-validations: fold k's inner part j
    and fold j's inner part k are fitted on the same videos."""
    fits = {} if fits is None else fits
    moments = 0.0
    for part in parts:
        train = tuple(c for c in pool if c not in part)
        if train not in fits:
            fits[train] = fit_probe(functools.reduce(operator.add, [sums[c] for c in train]), ridge)
        moments = moments + sum(probe_moments(fits[train], sums[c]) for c in part)
    return float(np.mean(ccc_from_sums(*moments)))


def choose(scores: dict[float, float]) -> float:
    """The best delay; ties (to 4 decimals): the smaller."""
    return max(scores, key=lambda d: (round(scores[d], 4), -d))


# ------------------------------------------------------------------ which videos are scored on which

def inner_cells(folds: pd.DataFrame, folds_csv: Path) -> dict[str, tuple[int, int]]:
    """Video -> its cell (fold, part), the finest split any cross-validation below needs: the
    part is 0, except in a fold that is all of another fold's training videos, whose groups
    are dealt into up to INNER_GROUP_PARTS parts (solution.folds' assignment, balanced on
    videos), so that fold's inner cross-validation has parts to leave out."""
    fold_values = sorted(set(folds.fold))
    cell = {key: (int(f), 0) for key, f in zip(folds.id, folds.fold)}
    for k in (f for f in fold_values if f >= 0):
        rest = [f for f in fold_values if f != k]
        if len(rest) != 1:
            continue
        videos = folds[folds.fold == rest[0]]
        groups = pd.Series(videos.group.to_numpy(), index=videos.id.to_numpy())
        if groups.nunique() < 2:
            raise DataError(f"{folds_csv}: fold {k}'s training videos ({len(videos)}, all of fold {rest[0]}) are one "
                            f"group ({groups.iloc[0]}), so fold {k}'s label delay has no inner cross-validation; use "
                            "more folds (--k, grouped scheme), more groups (solution.folds --groups) or a fixed delay "
                            "(LABEL_DELAY=0.4, or --set label_delay=0.4)")
        parts = assign_folds(groups, pd.Series(0.0, index=groups.index), pd.Series(1, index=groups.index),
                             min(INNER_GROUP_PARTS, groups.nunique()), seed=0)
        cell.update({key: (int(rest[0]), int(p)) for key, p in parts.items()})
    return cell


def cross_validations(cells: list[tuple[int, int]]) -> dict:
    """name -> (pool, parts, what the parts are): "pooled", every fold >= 0 scored by the probe
    fitted on all other videos; and per fold k, the inner cross-validation over the cells of
    k's training videos, by fold when they span two or more, else by group part."""
    outer = sorted({f for f, _ in cells if f >= 0})
    plans = {"pooled": (cells, [[c for c in cells if c[0] == k] for k in outer], "folds")}
    for k in outer:
        pool = [c for c in cells if c[0] != k]
        by = 0 if len({f for f, _ in pool}) > 1 else 1
        values = sorted({c[by] for c in pool})
        what = (f"folds {', '.join(map(str, values))}" if by == 0 else
                f"fold {pool[0][0]} in {len(values)} parts by group")
        plans[k] = (pool, [[c for c in pool if c[by] == v] for v in values], what)
    return plans


def probe_delay(data, work, candidates: list[float], cfg: TrainConfig, ridge: float = 0.1) -> dict:
    track = get_track(detect_track(data))
    if track.level != "frame":
        raise DataError(f"{data}: a {track.name.upper()} release has one label per video; label delay is for "
                        "frame-level tracks")
    rw = release_work(work, data, track)
    folds, _ = read_folds(rw, data)  # fold -1 (the official scheme's train split): always fitted on, never scored
    release = open_release(track, data)
    sources = {s.vid: s for s in track.release_videos(data)}
    keys = folds.id.tolist()
    k = int(folds.fold.max()) + 1
    if k < 2 and (folds.fold < 0).sum() == 0:
        raise DataError(f"{rw.folds_csv}: one fold and nothing outside it; the delay is chosen out of fold")
    cell_of = inner_cells(folds, rw.folds_csv)
    plans = cross_validations(sorted(set(cell_of.values())))
    scores = {name: {} for name in plans}
    for delay in progress(candidates, desc="label delays", unit="delay"):
        store = VideoStore.from_cache(work, release, {key: sources[key] for key in keys}, replace(cfg, label_delay=delay))
        sums = {}
        for key in keys:  # the one pass: each video's sums into its cell
            part = Sums.of(*step_rows(store, key))
            cell = cell_of[key]
            sums[cell] = sums[cell] + part if cell in sums else part
        fits = {}
        for name, (pool, parts, _) in plans.items():
            scores[name][delay] = cv_score(sums, pool, parts, ridge, fits)
    pooled = scores.pop("pooled")

    def rounded(table: dict) -> dict:
        return {f"{d:g}": round(s, 4) for d, s in table.items()}

    return {"label_delay": choose(pooled), "scores": rounded(pooled),
            "by_fold": {str(f): choose(table) for f, table in scores.items()},
            "scores_by_fold": {str(f): rounded(table) for f, table in scores.items()},
            "inner_parts": {str(f): plans[f][2] for f in scores},
            "folds": k, "videos": len(keys), "scored_videos": int((folds.fold >= 0).sum()), "ridge": ridge,
            # the fold file the delays were chosen for: solution.jobs refuses them for any other
            "fold_assignment": folds_digest(folds)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m solution.delay", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--data", type=Path, required=True, help="the release folder (a frame-level track)")
    parser.add_argument("--work", type=Path, required=True, help="work folder with the features and the folds")
    parser.add_argument("--candidates", default="0:3:0.25", help="delays to try, seconds: start:stop:step or a list "
                                                                "(default 0:3:0.25)")
    parser.add_argument("--ridge", type=float, default=0.1,
                        help="ridge penalty of the probe, added to the standardised features' correlation matrix "
                             "(default 0.1)")
    parser.add_argument("--config", type=Path, help="TOML file; its [train] table gives the grid and streams")
    parser.add_argument("--print", action="store_true",
                        help="print only the delay chosen on all folds pooled (for scripts)")
    add_test_listing_option(parser)
    args = parser.parse_args(argv)
    try:
        train = load_toml(args.config).get("train", {}) if args.config else {}
        cfg = TrainConfig(**{k: v for k, v in train.items() if k in TrainConfig.__dataclass_fields__})
        result = probe_delay(args.data, args.work, parse_candidates(args.candidates), cfg, args.ridge)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    rw = release_work(args.work, args.data)
    fileio.write_json(rw.root / "delay.json", result)
    if args.print:
        print(result["label_delay"])
        return 0
    table = ", ".join(f"{d}s {s:.3f}" for d, s in result["scores"].items())
    print(f"[delay] out-of-fold CCC of a linear probe per label delay, all folds pooled: {table}")
    for fold, chosen in result["by_fold"].items():
        print(f"[delay] fold {fold}: {chosen:g} s, chosen on its training videos only (inner parts: "
              f"{result['inner_parts'][fold]}; inner CCC {result['scores_by_fold'][fold][f'{chosen:g}']:.3f})")
    print(f"[delay] chosen: each fold its own (above; all folds pooled would give {result['label_delay']:g} s) "
          f"-> {rw.root / 'delay.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
