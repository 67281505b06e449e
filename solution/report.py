"""python -m solution.report: per-fold and out-of-fold scores of trained runs, against the ceiling.

    python -m solution.report --data DIR --work WORK [--runs dual_stage,linear]

The out-of-fold score pools every fold's held-out predictions (each labelled video once)
and computes mean Pearson over all of them, as the leaderboard would. On synthetic data the
ceiling is the score of the noise-free intensities on the same videos. Writes WORK/report.json.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


import pandas as pd

from solution import fileio
from solution.ensemble import run_predictions
from solution.layouts import DataError, EmiRelease, read_emi_labels
from solution.metrics import pearson_per_dim
from solution.tracks import EMI_TARGETS


def ceiling(data, ids) -> float | None:
    clean = Path(data) / "private" / "clean_intensities.csv"
    if not clean.is_file():
        return None
    truth = read_emi_labels(clean, what="clean intensity").loc[ids]
    labels = EmiRelease(data).labelled().loc[ids, list(EMI_TARGETS)]
    return float(pearson_per_dim(truth.to_numpy(), labels.to_numpy()).mean())


def build_report(data, work, runs: list[str]) -> dict:
    labels = EmiRelease(data).labelled()[list(EMI_TARGETS)]
    report = {"runs": {}}
    for run in runs:
        oof, _, metrics = run_predictions(work, run)
        per_dim = pearson_per_dim(oof.clip(0, 1).to_numpy(), labels.loc[oof.index].to_numpy(), names=EMI_TARGETS)
        report["runs"][run] = {"folds": [m["held_pearson"] for m in metrics], "oof": float(per_dim.mean()),
                               "oof_per_dim": dict(zip(EMI_TARGETS, per_dim.round(4).tolist())),
                               "seconds": sum(m["seconds"] for m in metrics)}
    # Every run's out-of-fold predictions cover the same labelled videos.
    report["videos"] = len(oof)
    report["ceiling"] = ceiling(data, oof.index)
    return report


def fusion_by_condition(data, work, run: str) -> pd.DataFrame | None:
    """Mean fusion weight per modality for each corruption flag of the synthetic metadata
    (face ok/occluded/missing, audio ok/noisy/silent/missing, transcript ok/missing)."""
    files = sorted((Path(work) / "runs" / run).glob("fold*/fusion_weights.csv"))
    meta = EmiRelease(data).metadata()
    flags = [c for c in ("face", "audio", "transcript") if meta is not None and c in meta.columns]
    if not files or not flags:
        return None
    weights = pd.concat([pd.read_csv(f, dtype={"Filename": str}) for f in files])
    weights.index = weights.pop("Filename").astype(int)
    rows = []
    for flag in flags:
        joined = weights.join(meta[flag])
        for value, group in joined.groupby(flag):
            rows.append({"condition": f"{flag}={value}", "videos": len(group),
                         **group.drop(columns=flag).mean().round(3).to_dict()})
    return pd.DataFrame(rows)


def format_report(report: dict) -> str:
    runs = report["runs"]
    k = len(next(iter(runs.values()))["folds"])
    lines = [f"{'run':<22}" + "".join(f"{'fold ' + str(i):>9}" for i in range(k)) + f"{'OOF':>9}{'train s':>9}"]
    for run, r in runs.items():
        lines.append(f"{run:<22}" + "".join(f"{v:>9.4f}" for v in r["folds"]) + f"{r['oof']:>9.4f}{r['seconds']:>9.0f}")
    if report.get("ceiling") is not None:
        lines.append(f"{'ceiling (noise-free)':<22}" + " " * 9 * k + f"{report['ceiling']:>9.4f}")
    lines.append("")
    lines.append(f"{'OOF per dimension':<22}" + "".join(f"{t[:8]:>9}" for t in EMI_TARGETS))
    for run, r in runs.items():
        lines.append(f"{run:<22}" + "".join(f"{v:>9.4f}" for v in r["oof_per_dim"].values()))
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m solution.report", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--runs", help="comma list (default: every run under WORK/runs)")
    args = parser.parse_args(argv)
    runs_dir = args.work / "runs"
    runs = args.runs.split(",") if args.runs else (
        sorted(p.name for p in runs_dir.iterdir() if p.is_dir()) if runs_dir.is_dir() else [])
    if not runs:
        print(f"error: no trained runs in {runs_dir}; train with python -m solution.train_fold first", file=sys.stderr)
        return 2
    try:
        report = build_report(args.data, args.work, runs)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"mean Pearson, {report['videos']} labelled videos, out-of-fold")
    print(format_report(report))
    for run in runs:
        table = fusion_by_condition(args.data, args.work, run)
        if table is not None:
            print(f"\nmean fusion weights of {run} by condition (out-of-fold videos)")
            print(table.to_string(index=False))
            report["runs"][run]["fusion_by_condition"] = table.to_dict(orient="records")
    fileio.write_json(args.work / "report.json", report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
