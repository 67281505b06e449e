"""python -m solution.ensemble: one set of predictions from trained runs.

    python -m solution.ensemble --work WORK --runs dual_stage [--out WORK/predictions]

Per run: its out-of-fold predictions (every fold's held-out videos, so each labelled video
once) and its test predictions averaged over the folds. Several runs are combined with
equal weights for now; weights fit on the out-of-fold predictions come with the blending
step. Writes <out>/oof.csv and <out>/test.csv in the EMI leaderboard format.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

from solution.layouts import DataError
from solution.predictions import read_emi_predictions, write_emi_predictions


def run_predictions(work, run: str) -> tuple[pd.DataFrame, pd.DataFrame, list[dict]]:
    """A run's out-of-fold predictions, its fold-averaged test predictions, its fold metrics."""
    run_dir = Path(work) / "runs" / run
    folds_info = json.loads((Path(work) / "folds.json").read_text())
    expected = range(folds_info["k"])
    missing = [k for k in expected if not (run_dir / f"fold{k}" / "metrics.json").is_file()]
    if missing:
        raise DataError(f"{run_dir}: fold(s) {missing} not finished; run python -m solution.train_fold for them")
    metrics = [json.loads((run_dir / f"fold{k}" / "metrics.json").read_text()) for k in expected]
    oof = pd.concat([read_emi_predictions(run_dir / f"fold{k}" / "oof.csv") for k in expected]).sort_index()
    if oof.index.duplicated().any():
        raise DataError(f"{run_dir}: a video is held out in more than one fold; were the folds remade mid-run?")
    tests = [read_emi_predictions(run_dir / f"fold{k}" / "test.csv") for k in expected]
    test = sum(tests) / len(tests)
    return oof, test, metrics


def combine(work, runs: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    parts = [run_predictions(work, run)[:2] for run in runs]
    oof = sum(p[0] for p in parts) / len(parts)
    test = sum(p[1] for p in parts) / len(parts)
    return oof, test


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m solution.ensemble", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--runs", required=True, help="comma list of run names (models)")
    parser.add_argument("--out", type=Path, help="default: WORK/predictions")
    args = parser.parse_args(argv)
    out = args.out or args.work / "predictions"
    try:
        oof, test = combine(args.work, [r for r in args.runs.split(",") if r])
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    write_emi_predictions(out / "oof.csv", oof)
    write_emi_predictions(out / "test.csv", test)
    print(f"[ensemble] {args.runs}: wrote {out / 'oof.csv'} ({len(oof)} videos) and {out / 'test.csv'} ({len(test)} videos)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
