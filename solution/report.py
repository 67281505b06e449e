"""python -m solution.report: per-fold and out-of-fold scores of trained runs, against the ceiling.

    python -m solution.report --data DIR --work WORK [--runs dual_stage,linear]

Scores use the track's metric (EMI: mean Pearson over videos; VA: mean CCC over every
annotated frame). The out-of-fold score pools every fold's held-out predictions (each
labelled video once), as the leaderboard pools a split; every fold chose its epochs without
its held-out videos, so this is an honest estimate. On synthetic data the ceiling is the
score of the noise-free intensities on the same videos. Where the release records
corruptions (the synthetic metadata.csv: face occluded/missing, audio noisy/silent/missing,
transcript missing), the report shows each run's score per condition and the mean fusion
weight of each modality per condition. Frame-level tracks (VA) also get the mean of per-video
scores, which papers often report, and the pooled score on annotated frames with and without
a face crop, with their counts. Writes WORK/<track>-<fingerprint>/report.json.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import warnings

import numpy as np
import pandas as pd

from solution import fileio
from solution.ensemble import run_predictions
from solution.errors import DataError
from solution.evaluate import per_video_score, score_predictions
from solution.layouts import annotated_mask, emi_key, open_release, read_emi_labels
from solution.metrics import ConstantInputWarning
from solution.runs import ReleaseWork, release_work

CONDITIONS = ("face", "audio", "transcript")


def ceiling(data, release, keys) -> float | None:
    clean = Path(data) / "private" / "clean_intensities.csv"
    if not clean.is_file() or release.track.level != "video":
        return None
    truth = read_emi_labels(clean, what="clean intensity")
    truth = {emi_key(v): row for v, row in zip(truth.index, truth.to_numpy())}
    return score_predictions(release.track, truth, {k: release.video_targets(k) for k in keys})["mean"]


def conditions(release) -> pd.DataFrame | None:
    """key -> corruption flags, where the release records them."""
    meta = release.metadata()
    if meta is None:
        return None
    flags = [c for c in CONDITIONS if c in meta.columns]
    if not flags:
        return None
    meta = meta[flags].copy()
    meta.index = [emi_key(v) if release.track.level == "video" else str(v) for v in meta.index]
    return meta


def build_report(data, rw: ReleaseWork, runs: list[str]) -> dict:
    release = open_release(rw.track, data)
    report = {"track": rw.track.name, "metric": rw.track.metric, "runs": {}}
    flags = conditions(release)
    for run in runs:
        oof, _, metrics = run_predictions(rw, run)
        targets = {k: release.video_targets(k) for k in oof}
        result = score_predictions(rw.track, oof, targets)
        entry = {"folds": [m["held_score"] for m in metrics], "oof": result["mean"],
                 "oof_per_dim": {k: round(v, 4) for k, v in result["per_dim"].items()},
                 "seconds": sum(m["seconds"] for m in metrics)}
        if rw.track.level == "frame":
            entry.update(frame_level_scores(release, oof, targets))
        if flags is not None:
            by_condition = {}
            for flag in flags.columns:
                for value, group in flags.loc[flags.index.intersection(list(oof))].groupby(flag):
                    if len(group) >= 5:  # fewer rows give no meaningful correlation
                        by_condition[f"{flag}={value}"] = round(
                            score_predictions(rw.track, oof, {k: targets[k] for k in group.index})["mean"], 4)
            entry["score_by_condition"] = by_condition
        report["runs"][run] = entry
    report["videos"] = len(oof)
    report["ceiling"] = ceiling(data, release, list(oof))
    return report


def frame_level_scores(release, oof: dict, targets: dict) -> dict:
    """Frame-level tracks: the mean of per-video scores next to the pooled one, and the pooled
    score on annotated frames with and without a face crop (every frame is predicted; those
    without a face only from the voice and the neighbouring frames), with their counts."""
    out = {"oof_per_video": round(per_video_score(release.track, oof, targets)["mean"], 4)}
    with_face, without_face, count = {}, {}, {"with": 0, "without": 0}
    for key, target in targets.items():
        face = release.face_frames(key, len(target))
        if face is None:
            return out
        annotated = annotated_mask(target)
        with_face[key] = np.where(face[:, None], target, -5.0)
        without_face[key] = np.where(face[:, None], -5.0, target)
        count["with"] += int((face & annotated).sum())
        count["without"] += int((~face & annotated).sum())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConstantInputWarning)
        for name, subset in (("with", with_face), ("without", without_face)):
            if count[name] >= 2:
                out[f"frames_{name}_face"] = {"frames": count[name], "score": round(
                    score_predictions(release.track, oof, subset)["mean"], 4)}
            else:
                out[f"frames_{name}_face"] = {"frames": count[name], "score": None}
    return out


def fusion_by_condition(data, rw: ReleaseWork, run: str) -> pd.DataFrame | None:
    """Mean fusion weight per modality for each corruption flag (out-of-fold videos)."""
    files = sorted(rw.run(run).glob("fold*/fusion_weights.csv"))
    flags = conditions(open_release(rw.track, data))
    if not files or flags is None:
        return None
    weights = pd.concat([pd.read_csv(f, dtype={"id": str}) for f in files]).set_index("id")
    rows = []
    for flag in flags.columns:
        joined = weights.join(flags[flag])
        for value, group in joined.groupby(flag):
            rows.append({"condition": f"{flag}={value}", "videos": len(group),
                         **group.drop(columns=flag).mean().round(3).to_dict()})
    return pd.DataFrame(rows)


def format_report(report: dict, targets) -> str:
    runs = report["runs"]
    k = len(next(iter(runs.values()))["folds"])
    lines = [f"{'run':<22}" + "".join(f"{'fold ' + str(i):>9}" for i in range(k)) + f"{'OOF':>9}{'train s':>9}"]
    for run, r in runs.items():
        lines.append(f"{run:<22}" + "".join(f"{v:>9.4f}" for v in r["folds"]) + f"{r['oof']:>9.4f}{r['seconds']:>9.0f}")
    if report.get("ceiling") is not None:
        lines.append(f"{'ceiling (noise-free)':<22}" + " " * 9 * k + f"{report['ceiling']:>9.4f}")
    lines.append("")
    lines.append(f"{'OOF per dimension':<22}" + "".join(f"{t[:8]:>9}" for t in targets))
    for run, r in runs.items():
        lines.append(f"{run:<22}" + "".join(f"{v:>9.4f}" for v in r["oof_per_dim"].values()))
    if any("oof_per_video" in r for r in runs.values()):
        first = next(iter(runs.values()))
        faces = [(f"frames_{n}_face", f"{n} face ({first.get(f'frames_{n}_face', {}).get('frames', 0)} fr.)")
                 for n in ("with", "without") if f"frames_{n}_face" in first]
        lines.append("")
        lines.append(f"{'OOF, frame-level':<22}{'pooled':>9}{'per-video':>11}" + "".join(f"{h:>24}" for _, h in faces))
        for run, r in runs.items():
            cells = "".join(f"{(r[k]['score'] if r[k]['score'] is not None else float('nan')):>24.4f}" for k, _ in faces)
            lines.append(f"{run:<22}{r['oof']:>9.4f}{r['oof_per_video']:>11.4f}" + cells)
    conditions_seen = sorted({c for r in runs.values() for c in r.get("score_by_condition", {})})
    if conditions_seen:
        lines.append("")
        lines.append(f"{'OOF by condition':<22}" + "".join(f"{run[:12]:>13}" for run in runs))
        for c in conditions_seen:
            lines.append(f"{c:<22}" + "".join(f"{r.get('score_by_condition', {}).get(c, float('nan')):>13.4f}"
                                              for r in runs.values()))
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m solution.report", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--data", type=Path, required=True, help="the release the runs were trained on")
    parser.add_argument("--work", type=Path, required=True, help="the work folder given to train_fold")
    parser.add_argument("--runs", help="comma list of run names (default: every run of this release)")
    args = parser.parse_args(argv)
    try:
        rw = release_work(args.work, args.data)
        runs = [r for r in args.runs.split(",") if r] if args.runs else rw.run_names()
        if not runs:
            raise DataError(f"no trained runs in {rw.runs}; train with python -m solution.train_fold first")
        report = build_report(args.data, rw, runs)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"mean {rw.track.metric}, {report['videos']} labelled videos, out-of-fold")
    print(format_report(report, rw.track.targets))
    for run in runs:
        table = fusion_by_condition(args.data, rw, run)
        if table is not None:
            print(f"\nmean fusion weights of {run} by condition (out-of-fold videos)")
            print(table.to_string(index=False))
            report["runs"][run]["fusion_by_condition"] = table.to_dict(orient="records")
    fileio.write_json(rw.report_json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
