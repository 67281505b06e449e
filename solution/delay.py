"""python -m solution.delay: how late the annotators are, chosen out of fold (frame-level tracks).

    python -m solution.delay --data DIR --work WORK [--candidates 0:3:0.25] [--config FILE]

Annotators move their joystick after they see the face, so the label of frame k describes
the media a little before it. For each candidate delay d (seconds), the media are read at
(k / fps - d) and a ridge regression from the cached features of one grid step to its
valence and arousal is fitted on all folds but one and scored on that one (CCC pooled over
the annotated steps, as the leaderboard pools frames). The delay with the best out-of-fold
score is written to WORK/<track>-<fingerprint>/delay.json; `run_all.sh` trains every model
with it (`--set label_delay=...`). A linear probe is what a delay can be read from cheaply;
the temporal models see context on both sides and can absorb a residual lag themselves.

Only sums (X'X, X'y per fold) are kept, so memory grows with the feature width, never
with the release; every video is read once per candidate to fit and once to score.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from solution import fileio
from solution.config import TrainConfig, load_toml
from solution.data import VideoStore
from solution.errors import DataError
from solution.runs import read_folds
from solution.layouts import annotated_mask, detect_track, open_release, release_videos
from solution.listing import add_test_listing_option
from solution.metrics import ccc_per_dim
from solution.progress import progress
from solution.runs import release_work
from solution.tracks import get_track


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
    keep = annotated_mask(video.target)
    return x[keep], video.target[keep].astype(np.float64)


def probe_delay(data, work, candidates: list[float], cfg: TrainConfig, ridge: float = 0.1) -> dict:
    track = get_track(detect_track(data))
    if track.level != "frame":
        raise DataError(f"{data}: a {track.name.upper()} release has one label per video; label delay is for "
                        "frame-level tracks")
    rw = release_work(work, data, track)
    folds, _ = read_folds(rw, data)  # fold -1 (the official scheme's train split): always fitted on, never scored
    release = open_release(track, data)
    sources = {s.vid: s for s in release_videos(track.name, data)}
    keys = folds.id.tolist()
    fold_of = dict(zip(folds.id, folds.fold))
    k = int(folds.fold.max()) + 1
    if k < 2 and (folds.fold < 0).sum() == 0:
        raise DataError(f"{rw.folds_csv}: one fold and nothing outside it; the delay is chosen out of fold")
    scores = {}
    for delay in progress(candidates, desc="label delays", unit="delay"):
        store = VideoStore.from_cache(work, release, {key: sources[key] for key in keys}, replace(cfg, label_delay=delay))
        sums = {}
        for key in keys:  # pass 1: per-fold sums of the ridge's normal equations
            x, y = step_rows(store, key)
            x1 = np.hstack([x, np.ones((len(x), 1))])
            s = sums.setdefault(fold_of[key], [0.0, 0.0])
            s[0] = s[0] + x1.T @ x1
            s[1] = s[1] + x1.T @ y
        total = [sum(s[i] for s in sums.values()) for i in (0, 1)]
        weights = {}
        for f, (xx, xy) in sums.items():
            if f < 0:
                continue
            a, b = total[0] - xx, total[1] - xy
            n = a[-1, -1]
            mean = a[:-1, -1] / n
            var = np.maximum(np.diag(a)[:-1] / n - mean**2, 1e-8)
            scale = 1 / np.sqrt(var)
            cov = (a[:-1, :-1] / n - np.outer(mean, mean)) * np.outer(scale, scale)
            ymean = b[-1] / n
            xy_c = (b[:-1] / n - np.outer(mean, ymean)) * scale[:, None]
            w = np.linalg.solve(cov + ridge * np.eye(len(cov)), xy_c)
            weights[f] = (w * scale[:, None], ymean - (mean * scale) @ w)
        preds, truth = [], []
        for key in keys:  # pass 2: each fold's videos through the probe fitted without them
            if fold_of[key] < 0:
                continue
            x, y = step_rows(store, key)
            w, bias = weights[fold_of[key]]
            preds.append(x @ w + bias)
            truth.append(y)
        scores[delay] = float(np.mean(ccc_per_dim(np.concatenate(preds), np.concatenate(truth))))
    best = max(scores, key=lambda d: (round(scores[d], 4), -d))  # ties: the smaller delay
    return {"label_delay": best, "scores": {f"{d:g}": round(s, 4) for d, s in scores.items()},
            "folds": k, "videos": len(keys), "scored_videos": int((folds.fold >= 0).sum()), "ridge": ridge}


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
    parser.add_argument("--print", action="store_true", help="print only the chosen delay (for scripts)")
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
    print(f"[delay] out-of-fold CCC of a linear probe per label delay: {table}")
    print(f"[delay] chosen: {result['label_delay']:g} s -> {rw.root / 'delay.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
