"""python -m solution.ensemble: one set of predictions from trained runs.

    python -m solution.ensemble --data DIR --work WORK --runs dual_stage [--out DIR]

Per run: its out-of-fold predictions (every fold's held-out videos, so each labelled video
once) and its test predictions averaged over the folds. Several runs are combined with
equal weights for now (weights fit on the out-of-fold predictions come with the blending
step). Writes oof and test predictions in the track's leaderboard format to
WORK/<track>-<fingerprint>/predictions/ (or --out): oof.csv/test.csv for EMI,
oof.txt/test.txt for VA.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from solution.errors import DataError
from solution.predictions import read_predictions, write_predictions
from solution.runs import ReleaseWork, release_work


def run_predictions(rw: ReleaseWork, run: str) -> tuple[dict, dict, list[dict]]:
    """A run's out-of-fold predictions, its fold-averaged test predictions, its fold metrics."""
    if not rw.folds_json.is_file():
        raise DataError(f"{rw.root}: no fold file; run python -m solution.folds first")
    k = json.loads(rw.folds_json.read_text())["k"]
    missing = [f for f in range(k) if not (rw.fold(run, f) / "metrics.json").is_file()]
    if missing:
        raise DataError(f"{rw.run(run)}: fold(s) {missing} not finished; run python -m solution.train_fold for them")
    metrics = [json.loads((rw.fold(run, f) / "metrics.json").read_text()) for f in range(k)]
    oof: dict = {}
    for f in range(k):
        part = read_predictions(rw.fold(run, f) / "oof.csv", rw.track)
        if set(part) & set(oof):
            raise DataError(f"{rw.run(run)}: a video is held out in more than one fold; were the folds remade mid-run?")
        oof.update(part)
    tests = [read_predictions(rw.fold(run, f) / "test.csv", rw.track) for f in range(k)]
    test = {key: np.mean([t[key] for t in tests], axis=0) for key in tests[0]}
    return oof, test, metrics


def combine(rw: ReleaseWork, runs: list[str]) -> tuple[dict, dict]:
    parts = [run_predictions(rw, run)[:2] for run in runs]
    oof = {k: np.mean([p[0][k] for p in parts], axis=0) for k in parts[0][0]}
    test = {k: np.mean([p[1][k] for p in parts], axis=0) for k in parts[0][1]}
    return oof, test


def prediction_name(rw: ReleaseWork, what: str) -> str:
    return f"{what}.{'csv' if rw.track.level == 'video' else 'txt'}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m solution.ensemble", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--data", type=Path, required=True, help="the release the runs were trained on")
    parser.add_argument("--work", type=Path, required=True, help="the work folder given to train_fold")
    parser.add_argument("--runs", required=True, help="comma list of run names (models)")
    parser.add_argument("--out", type=Path, help="output folder (default: WORK/<track>-<fingerprint>/predictions)")
    args = parser.parse_args(argv)
    try:
        rw = release_work(args.work, args.data)
        oof, test = combine(rw, [r for r in args.runs.split(",") if r])
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = args.out or rw.predictions
    write_predictions(out / prediction_name(rw, "oof"), rw.track, oof)
    write_predictions(out / prediction_name(rw, "test"), rw.track, test)
    print(f"[ensemble] {args.runs}: wrote {out / prediction_name(rw, 'oof')} ({len(oof)} videos) and "
          f"{out / prediction_name(rw, 'test')} ({len(test)} videos)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
