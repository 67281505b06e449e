"""python -m solution.report: per-fold and out-of-fold scores of trained runs, against the ceiling.

    python -m solution.report --data DIR --work WORK [--runs dual_stage,linear]
        [--blend-dir WORK/<release>/predictions] [--stages FILE] [--out DIR]

Scores use the track's metric (EMI: mean Pearson over videos; VA: mean CCC over every
annotated frame). The out-of-fold score pools every fold's held-out predictions (each
labelled video once), as the leaderboard pools a split; every fold chose its epochs without
its held-out videos, so this is an honest estimate. On synthetic data the ceiling is the
score of the noise-free intensities on the same videos. Where the release records
corruptions (the synthetic metadata.csv: face occluded/missing, audio noisy/silent/missing,
transcript missing), the report shows each run's score per condition (on at least 5 videos
for EMI, 2 for VA, whose frames pool) and the mean fusion weight of each modality per condition. Frame-level tracks (VA) also get the mean of per-video
scores, which papers often report, and the pooled score on annotated frames with and without
a face crop, with their counts. Writes WORK/<track>-<fingerprint>/report.json.

The report folder (--out, default WORK/<track>-<fingerprint>/report/) gets summary.md, a copy
of report.json and PNG plots: predicted against true out of fold (the blend's, else the best
run's), every fold's score, training curves, the blend's weights, scores and fusion weights
by condition, and for VA a few videos over time. The blend is read from --blend-dir
(blend.json, oof and test predictions; default WORK/<track>-<fingerprint>/predictions);
without one the report leaves it out. --stages names the JSON lines run_all.sh writes as
each stage finishes ({"stage", "seconds", "command"}; {"settings": {...}} and {"config":
"..."} for the run's environment and CONFIG file); the summary lists them. When the synthetic
release keeps its test labels aside (private/), the summary also scores the test predictions
of the blend and of each run, labelled as possible only on synthetic data.
"""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from solution import fileio
from solution.blend import read_blend
from solution.decisions import describe_decision
from solution.errors import DataError
from solution.inference import run_predictions
from solution.listing import add_test_listing_option
from solution.metrics import ConstantInputWarning, per_video_score, score, score_predictions
from solution.predictions import prediction_filename, read_predictions
from solution.runs import ReleaseWork, release_work
from solution.tracks import open_release

CONDITIONS = ("face", "audio", "transcript")
SCATTER_ROWS = 20_000  # points per scatter plot: enough to see the shape, small enough for a PNG
TIMESERIES_VIDEOS = 3
PLOT_FILES = ("pred_vs_true.png", "confusion.png", "class_scores.png", "fold_scores.png", "training_curves.png",
              "blend_weights.png", "score_by_condition.png", "fusion_by_condition.png", "va_timeseries.png",
              "label_timeseries.png")


def ceiling(data, release, keys) -> float | None:
    """The score of the noise-free labels a synthetic release keeps aside (the track's clean_labels)."""
    truth = release.track.clean_labels(data)
    if truth is None:
        return None
    return score_predictions(release.track, truth, {k: release.video_targets(k) for k in keys})["mean"]


def generated_ceiling(data, track) -> dict | None:
    """{split: score} of the track's noise-free labels, as the synthetic generator wrote them
    (ceiling.json; the track's entries in a release of several tracks)."""
    path = Path(data) / "ceiling.json"
    try:
        return {split: entry["mean"] for split, entry in track.ceiling_of(json.loads(path.read_text())).items()}
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None


def conditions(release) -> pd.DataFrame | None:
    """key -> corruption flags, where the release records them."""
    meta = release.metadata()
    if meta is None:
        return None
    flags = [c for c in CONDITIONS if c in meta.columns]
    if not flags:
        return None
    meta = meta[flags].copy()
    meta.index = [release.key_of(v) for v in meta.index]
    return meta


def scores_by_condition(track, flags: pd.DataFrame, preds: dict, targets: dict) -> tuple[dict, dict]:
    """({"flag=value": score}, {"flag=value": videos}) over the predicted videos of each condition."""
    # Video rows need a few to correlate; a frame-level condition pools thousands of frames per video.
    least = 5 if track.level == "video" else 2
    scores, videos = {}, {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConstantInputWarning)
        for flag in flags.columns:
            for value, group in flags.loc[flags.index.intersection(list(preds))].groupby(flag):
                videos[f"{flag}={value}"] = len(group)
                if len(group) >= least:
                    scores[f"{flag}={value}"] = round(
                        score_predictions(track, preds, {k: targets[k] for k in group.index})["mean"], 4)
    return scores, videos


def hidden_test_score(track, preds: dict, hidden: dict) -> dict:
    """The score of test predictions against the hidden labels, or what they lack."""
    short = [k for k in hidden if k not in preds or len(preds[k]) < len(hidden[k])]
    if short:
        return {"mean": None, "missing": len(short)}
    result = score_predictions(track, preds, hidden)
    return {"mean": round(result["mean"], 4), "per_dim": {k: round(v, 4) for k, v in result["per_dim"].items()}}


def run_settings(metrics: list[dict]) -> dict:
    """What fold 0 was trained with, and which settings other folds changed (besides the fold)."""
    first = metrics[0].get("settings", {})
    differ = sorted({key for m in metrics[1:] for key in set(first) | set(m.get("settings", {}))
                     if key != "fold" and m.get("settings", {}).get(key) != first.get(key)})
    return {**{k: v for k, v in first.items() if k != "fold"}, "differs_between_folds": differ}


def build_report(data, rw: ReleaseWork, runs: list[str], blend_dir=None) -> dict:
    release = open_release(rw.track, data)
    report = {"track": rw.track.name, "metric": rw.track.metric, "runs": {}}
    flags = conditions(release)
    hidden = rw.track.hidden_test_labels(data)
    for run in runs:
        oof, test, metrics = run_predictions(rw, run)
        targets = {k: release.video_targets(k) for k in oof}
        result = score_predictions(rw.track, oof, targets)
        entry = {"folds": [m["held_score"] for m in metrics], "oof": result["mean"],
                 "oof_per_dim": {k: round(v, 4) for k, v in result["per_dim"].items()},
                 "seconds": sum(m["seconds"] for m in metrics),
                 "fold_seconds": [m["seconds"] for m in metrics],
                 "best_epochs": [m.get("best_epoch") for m in metrics],
                 "settings": run_settings(metrics)}
        if rw.track.level == "frame":
            entry.update(frame_level_scores(release, oof, targets))
        if flags is not None:
            entry["score_by_condition"], entry["videos_by_condition"] = scores_by_condition(rw.track, flags, oof, targets)
        if hidden:
            entry["test_synthetic"] = hidden_test_score(rw.track, test, hidden)
        report["runs"][run] = entry
    report["videos"] = len(oof)
    annotations = {"left_out": release.left_out(), "fitted": release.fitted()}
    if any(annotations.values()):  # labels training did not take as they are (the release's left_out, fitted)
        report["annotations"] = annotations
    report["ceiling"] = ceiling(data, release, list(oof))
    report["ceiling_generated"] = generated_ceiling(data, release.track)
    blend = blend_entry(rw, release, Path(blend_dir) if blend_dir else rw.predictions, flags, hidden)
    if blend is not None:
        report["blend"] = blend
    return report


def blend_entry(rw: ReleaseWork, release, blend_dir: Path, flags, hidden) -> dict | None:
    """What solution.ensemble saved in `blend_dir`, and the score of its out-of-fold predictions."""
    if not (blend_dir / "blend.json").is_file():
        return None
    blend = read_blend(blend_dir / "blend.json")
    scores = blend.get("scores", {})
    chosen = scores.get("chosen")
    way = scores.get("blends", {}).get(chosen, {})
    smoothing = scores.get("smoothing") or {}
    entry = {"dir": str(blend_dir), "runs": blend["runs"], "weights": blend["weights"], "mode": blend.get("mode"),
             "method": blend.get("method"), "rescale": blend.get("rescale"), "chosen": chosen,
             "smooth_seconds": blend.get("smooth_seconds"), "in_sample": way.get("in_sample"),
             "honest_way": way.get("honest"),
             # The way, its weights and the smoothing chosen without each fold: the whole procedure's estimate.
             "honest": scores.get("nested", {}).get("score", smoothing.get("honest", way.get("honest"))),
             "way_by_part": scores.get("nested", {}).get("way_by_part"),
             "smooth_by_part": smoothing.get("by_part"),
             "ways": scores.get("blends", {}), "single": scores.get("single", {}),
             "alone_nested": scores.get("alone_nested", {}),
             "decision": blend.get("decision"), "before_decision": (scores.get("decision") or {}).get("before")}
    oof_path = blend_dir / prediction_filename(rw.track, "oof")
    if oof_path.is_file():
        oof = read_predictions(oof_path, rw.track)
        targets = {k: release.video_targets(k) for k in oof}
        result = score_predictions(rw.track, oof, targets)
        entry.update(oof=result["mean"], oof_per_dim={k: round(v, 4) for k, v in result["per_dim"].items()})
        if rw.track.level == "frame":
            entry.update(frame_level_scores(release, oof, targets))
        if flags is not None:
            entry["score_by_condition"], entry["videos_by_condition"] = scores_by_condition(rw.track, flags, oof, targets)
    test_path = blend_dir / prediction_filename(rw.track, "test")
    if hidden and test_path.is_file():
        entry["test_synthetic"] = hidden_test_score(rw.track, read_predictions(test_path, rw.track), hidden)
    return entry


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
        track = release.track
        annotated = track.annotated(target)
        with_face[key] = np.where(face[:, None], target, track.unannotated)
        without_face[key] = np.where(face[:, None], track.unannotated, target)
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
    # The folds of the fold file only: a folder left by an earlier, larger K is not this run's.
    files = [f for f in (rw.fold_files(run, i).fusion_weights for i in range(rw.fold_count())) if f.is_file()]
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


# ---------------------------------------------------------------- the run's stages, from run_all.sh

def read_stages(path) -> dict:
    """The stages file run_all.sh appends to (module docstring). A line that is not a JSON
    object (the last one, cut by an interrupted run) is counted and skipped; unknown keys
    are ignored."""
    out = {"file": str(path), "found": False, "settings": {}, "config": None, "stages": [], "unreadable": 0}
    path = Path(path)
    if not path.is_file():
        return out
    out["found"] = True
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError:
            item = None
        if not isinstance(item, dict):
            out["unreadable"] += 1
            continue
        if isinstance(item.get("settings"), dict):
            out["settings"].update(item["settings"])
        if isinstance(item.get("config"), str):
            out["config"] = item["config"]
        if "stage" in item:
            seconds = item.get("seconds")
            out["stages"].append({"stage": str(item["stage"]), "command": item.get("command"),
                                  "seconds": float(seconds) if isinstance(seconds, (int, float)) else None})
    return out


# ---------------------------------------------------------------- plots

def best_run(report: dict) -> str:
    finite = {run: r["oof"] for run, r in report["runs"].items() if np.isfinite(r["oof"])}
    return max(finite, key=finite.get) if finite else next(iter(report["runs"]))


def plot_source(rw: ReleaseWork, report: dict, blend_dir: Path) -> tuple[str, dict, dict | None, dict]:
    """(name, out-of-fold predictions, test predictions or None, OOF score per target) of the
    blend when there is one, else of the run with the best out-of-fold score."""
    blend = report.get("blend")
    oof_path = blend_dir / prediction_filename(rw.track, "oof")
    if blend is not None and oof_path.is_file():
        test_path = blend_dir / prediction_filename(rw.track, "test")
        test = read_predictions(test_path, rw.track) if test_path.is_file() else None
        return "blend", read_predictions(oof_path, rw.track), test, blend.get("oof_per_dim", {})
    run = best_run(report)
    oof, test, _ = run_predictions(rw, run)
    return run, oof, test, report["runs"][run]["oof_per_dim"]


def scatter_rows(track, preds: dict, targets: dict, rows: int = SCATTER_ROWS, seed: int = 0):
    """(truth, prediction) of at most about `rows` scored rows drawn at random, so a release of
    millions of frames plots as fast as the demo; drawn per video, never all stacked at once."""
    keys = sorted(targets)
    if track.level == "video":
        return np.stack([targets[k] for k in keys]), np.clip(np.stack([preds[k] for k in keys]), track.low, track.high)
    total = sum(int(track.annotated(targets[k]).sum()) for k in keys)
    keep_share = min(1.0, rows / max(total, 1))
    rng = np.random.default_rng(seed)
    truth, pred = [], []
    for key in keys:
        keep = track.annotated(targets[key]) & (rng.random(len(targets[key])) < keep_share)
        truth.append(targets[key][keep])
        pred.append(np.clip(preds[key][: len(keep)][keep], track.low, track.high))
    return np.concatenate(truth), np.concatenate(pred)


def training_logs(rw: ReleaseWork, run: str, folds: int) -> list:
    """The log tables of every fold and seed of a run that has a readable log.csv."""
    logs = []
    for fold in range(folds):
        for path in sorted(rw.fold(run, fold).glob("seed*/log.csv")):
            try:
                log = pd.read_csv(path)
            except (pd.errors.EmptyDataError, pd.errors.ParserError, OSError):
                continue  # a log cut by an interrupted run: the other folds still draw
            if {"phase", "epoch", "train_loss", "inner_score"} <= set(log.columns) and len(log):
                logs.append(log)
    return logs


def timeseries_videos(release, preds: dict, targets: dict, count: int = TIMESERIES_VIDEOS) -> tuple[list, str]:
    """`count` videos spread over the ranking by per-video score (best, median and worst for
    three), ready for plots.va_timeseries, and the time axis' label (seconds where every
    picked video's frame rate can be read, else frames)."""
    from solution.media import MediaError

    track = release.track
    ranked = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConstantInputWarning)
        for key in sorted(targets):
            keep = track.annotated(targets[key])
            if key in preds and keep.sum() >= 2 and len(preds[key]) >= len(keep):
                result = score(track, np.clip(preds[key][: len(keep)][keep], track.low, track.high), targets[key][keep])
                ranked.append((result["mean"], key, result["per_dim"]))
    ranked.sort(key=lambda item: (-item[0], item[1]))
    picks = ranked if len(ranked) <= count else [ranked[round(i * (len(ranked) - 1) / (count - 1))] for i in range(count)]
    videos, seconds = [], True
    for _, key, per_dim in picks:
        label = targets[key]
        try:
            time = np.arange(len(label)) / release.video_fps(key)
        except (DataError, MediaError):  # no readable video file to take the rate from: frames will do
            time, seconds = np.arange(len(label)), False
        truth = np.where(track.annotated(label)[:, None], label, np.nan)
        videos.append((key, time, truth, np.clip(preds[key][: len(label)], track.low, track.high), per_dim))
    if not seconds:
        videos = [(k, np.arange(len(t)), tr, p, s) for k, t, tr, p, s in videos]
    return videos, "seconds" if seconds else "frame"


def write_plots(data, rw: ReleaseWork, report: dict, blend_dir: Path, out: Path) -> tuple[list, list]:
    """Draw every plot the data allows: ([(file, caption)] written, [(file, reason)] not drawn)."""
    from solution import plots  # matplotlib only where plots are drawn, not for every reader of build_report

    track, runs = rw.track, report["runs"]
    release = open_release(track, data)
    colours = plots.palette([*runs, *report.get("blend", {}).get("runs", []), "blend"])
    written, skipped = [], []

    def draw(name: str, caption: str, function, *args):
        # A figure that fails must not cost the run its summary: it is listed as not drawn.
        try:
            function(out / name, *args)
            written.append((name, caption))
        except Exception as exc:  # noqa: BLE001
            print(f"[report] warning: {name} not drawn: {type(exc).__name__}: {exc}", file=sys.stderr)
            skipped.append((name, f"{type(exc).__name__}: {exc}"))

    name, oof, test, per_dim = plot_source(rw, report, blend_dir)
    truth, pred = scatter_rows(track, oof, {k: release.video_targets(k) for k in oof})
    what = "the blend's honest" if name == "blend" else f"{name}'s (best run)"
    rows = f"{len(truth)} of the annotated frames" if track.level == "frame" else f"{len(truth)} videos"
    if track.kind == "regression":
        draw("pred_vs_true.png", f"predicted against true, {what} out-of-fold predictions", plots.pred_vs_true, truth,
             pred, track.targets, per_dim, track.metric, track.low, track.high,
             f"{what} out-of-fold predictions ({rows})")
    else:
        if track.kind == "multiclass":
            draw("confusion.png", f"confusion matrix of {what} out-of-fold predictions", plots.confusion,
                 truth.argmax(1), pred.argmax(1), track.targets, f"{what} out-of-fold predictions ({rows})")
        per_class = {run: r["oof_per_dim"] for run, r in with_blend(report, "oof_per_dim").items()}
        draw("class_scores.png", f"out-of-fold F1 per {'class' if track.kind == 'multiclass' else 'unit'} and run",
             plots.class_scores, per_class, track.targets, track.metric, colours)
    del truth, pred

    draw("fold_scores.png", "held-out score of every fold and the pooled out-of-fold score per run", plots.fold_scores,
         {run: r["folds"] for run, r in runs.items()}, {run: r["oof"] for run, r in runs.items()}, track.metric,
         report.get("ceiling"), colours)
    logs = {run: training_logs(rw, run, len(r["folds"])) for run, r in runs.items()}
    logs = {run: entries for run, entries in logs.items() if entries}
    if logs:
        draw("training_curves.png", "train loss per phase and inner score per epoch (thin lines: folds and seeds)",
             plots.training_curves, logs, track.metric, colours)
    else:
        skipped.append(("training_curves.png", "no readable seed*/log.csv"))
    blend = report.get("blend")
    if blend is not None:
        draw("blend_weights.png", f"blend weights ({blend['mode']})", plots.blend_weights, blend["weights"],
             track.targets, blend["mode"], colours)
    else:
        skipped.append(("blend_weights.png", f"no blend.json in {blend_dir}"))
    with_conditions = with_blend(report, "videos_by_condition")
    videos = {c: n for r in with_conditions.values() for c, n in r["videos_by_condition"].items()}
    if any(r["score_by_condition"] for r in with_conditions.values()):
        draw("score_by_condition.png", "out-of-fold score by condition against clean (ok) videos",
             plots.score_by_condition, {run: r["score_by_condition"] for run, r in with_conditions.items()}, videos,
             track.metric, colours)
    else:
        skipped.append(("score_by_condition.png", "no condition has enough videos to score" if with_conditions
                        else "the release records no conditions (metadata.csv)"))
    fusion = {run: r["fusion_by_condition"] for run, r in runs.items() if r.get("fusion_by_condition")}
    if fusion:
        draw("fusion_by_condition.png", "mean fusion weight of each modality by condition", plots.fusion_by_condition,
             fusion)
    if track.level == "frame":
        hidden = track.hidden_test_labels(data)
        if hidden and test is not None and all(k in test for k in hidden):
            source, labels = f"{name}: test videos against the hidden labels (synthetic only)", hidden
            preds = test
        else:
            source, labels = f"{name}: held-out (out-of-fold) videos", {k: release.video_targets(k) for k in oof}
            preds = oof
        videos, time_label = timeseries_videos(release, preds, labels)
        if videos and track.kind == "regression":
            draw("va_timeseries.png", f"{' and '.join(track.targets)} over time, videos from best to worst scored "
                 f"({source})", plots.va_timeseries, videos, track.targets, track.metric, time_label, source)
        elif videos:
            draw("label_timeseries.png", f"labels over time, true against predicted, videos from best to worst scored "
                 f"({source})", plots.class_timeseries, videos, track.targets, track.kind == "multilabel",
                 time_label, source)
    return written, skipped


# ---------------------------------------------------------------- summary.md

def cell(value, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return "nan" if not np.isfinite(value) else f"{value:.{digits}f}"
    return str(value)


def table(header: list, rows: list) -> list[str]:
    def line(cells):
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    return [line(header), line(["---"] * len(header)), *(line(r) for r in rows), ""]


def format_summary(report: dict, rw: ReleaseWork, data, blend_dir: Path, stages: dict | None, written: list,
                   skipped: list) -> str:
    """summary.md: every section the report has data for, in the order a competitor reads them."""
    targets = rw.track.targets
    k = max(len(r["folds"]) for r in report["runs"].values())
    pooled = "over videos" if rw.track.level == "video" else "over every annotated frame, pooled"
    lines = [f"# Report: {report['track'].upper()} release {rw.root.name}", "",
             f"Data `{data}`, work `{rw.root}`. Metric: mean {report['metric']} ({pooled}); {report['videos']} "
             f"labelled videos, {k} fold(s). Out-of-fold (OOF) scores pool every fold's held-out predictions; every "
             "fold chose its epochs without its held-out videos, so they are honest estimates.", ""]
    lines += summary_annotations(report.get("annotations"))
    lines += summary_scores(report, targets, k)
    lines += summary_blend(report.get("blend"), targets, blend_dir)
    lines += summary_test(report, targets)
    lines += summary_conditions(report)
    lines += summary_frame_level(report)
    lines += ["## Plots", ""]
    for name, caption in written:
        lines += [f"**{caption}** ([{name}]({name}))", "", f"![{caption}]({name})", ""]
    lines += [f"- not drawn: {name} ({reason})" for name, reason in skipped] + [""]
    if stages is not None:
        lines += summary_stages(stages)
    lines += summary_settings(report)
    return "\n".join(lines)


def summary_annotations(annotations: dict | None) -> list[str]:
    """The labels training did not take as they are: videos left out, annotations fitted."""
    if not annotations:
        return []
    lines = ["## Labels not taken as they are", ""]
    for key, title in (("left_out", "Left out of training and of the folds"),
                       ("fitted", "Fitted to their video's frames (VA_ANNOTATION_FIT=fit)")):
        if annotations.get(key):
            lines += [f"{title}: {len(annotations[key])} video(s).", ""]
            lines += [f"- {video}: {why}" for video, why in sorted(annotations[key].items())] + [""]
    return lines


def with_blend(report: dict, key: str) -> dict:
    """{name: entry} of the runs, and of the blend, that have `key`."""
    entries = {run: r for run, r in report["runs"].items() if key in r}
    if key in report.get("blend", {}):
        entries["blend"] = report["blend"]
    return entries


def summary_scores(report: dict, targets, k: int) -> list[str]:
    rows = []
    for run, r in report["runs"].items():
        epochs = ", ".join("/".join(map(str, e)) if isinstance(e, list) else cell(e) for e in r.get("best_epochs", []))
        rows.append([run, *(cell(v) for v in r["folds"]), *[""] * (k - len(r["folds"])), cell(r["oof"]),
                     cell(r["seconds"], 0), epochs])
    if "oof" in report.get("blend", {}):
        rows.append(["**blend** (honest)", *[""] * k, cell(report["blend"]["oof"]), "", ""])
    if report.get("ceiling") is not None:
        rows.append(["ceiling (noise-free, synthetic)", *[""] * k, cell(report["ceiling"]), "", ""])
    lines = ["## Scores per model and fold", ""]
    lines += table(["run", *(f"fold {i}" for i in range(k)), "OOF pooled", "train s", "best epoch per fold (seeds /)"],
                   rows)
    if report.get("ceiling_generated"):
        lines += ["Ceiling on synthetic data, as generated (noise-free labels against the noisy ones, ceiling.json): "
                  + ", ".join(f"{split} {cell(v)}" for split, v in report["ceiling_generated"].items()), ""]
    lines += ["### OOF per target", ""]
    return lines + table(["run", *targets], [[name, *(cell(r["oof_per_dim"].get(t)) for t in targets)]
                                             for name, r in with_blend(report, "oof_per_dim").items()])


def summary_blend(blend: dict | None, targets, blend_dir: Path) -> list[str]:
    lines = ["## Blend", ""]
    if blend is None:
        return lines + [f"No blend.json in `{blend_dir}`: run `python -m solution.ensemble` first.", ""]
    smoothed = bool(blend.get("smooth_seconds"))
    lines += [f"From `{blend['dir']}/blend.json`. Chosen by the honest estimate: **{blend['chosen']}** (mode "
              f"{blend['mode']}, method {blend['method']}, rescale {'yes' if blend.get('rescale') else 'no'}"
              + (f"; smoothed over time, Gaussian sigma {blend['smooth_seconds']:g} s" if smoothed else "")
              + ").", ""]
    honest = (f"- honest (out-of-fold) estimate of the whole procedure: **{cell(blend.get('honest'))}** (each fold "
              "blended by the way chosen, and fit, without it")
    if blend.get("way_by_part"):
        honest += ": " + ", ".join(f"fold {p} {w}" for p, w in blend["way_by_part"].items())
    if blend.get("smooth_by_part"):
        honest += "; then smoothed with a width chosen without it: " + ", ".join(
            f"fold {p} {w:g} s" for p, w in blend["smooth_by_part"].items())
    lines += [honest + ")", f"- the chosen way's own honest estimate: {cell(blend.get('honest_way'))} (its weights fit "
              f"without each fold, but the way chosen on every fold{', before smoothing' if smoothed else ''})",
              f"- in-sample: {cell(blend.get('in_sample'))} (weights fit on the very rows they are "
              f"scored on{', before smoothing' if smoothed else ''})"]
    if "oof" in blend:
        lines.append(f"- the saved out-of-fold predictions of the blend score {cell(blend['oof'])}")
    if blend.get("before_decision") is not None:
        lines.append(f"- decision rule, chosen out of fold (each fold's without it): "
                     f"{describe_decision(blend['decision'], targets)}; the whole procedure without it "
                     f"{cell(blend.get('before_decision'))}")
    lines += ["", "Weights:", ""]
    lines += table(["run", *targets], [[run, *(cell(w, 3) for w in ws)] for run, ws in blend["weights"].items()])
    if blend.get("rescale"):
        lines += table(["rescale", *targets], [["scale", *(cell(v, 3) for v in blend["rescale"]["scale"])],
                                                ["shift", *(cell(v, 3) for v in blend["rescale"]["shift"])]])
    ways = [[f"{run} alone", cell(v), cell(v)] for run, v in blend["single"].items()]
    ways += [[f"{run} alone, as submitted alone (chosen out of fold as the blend's)", "", cell(v)]
             for run, v in blend.get("alone_nested", {}).items()]
    ways += [[name + (" (chosen)" if name == blend["chosen"] else ""), cell(w.get("in_sample")), cell(w.get("honest"))]
             for name, w in blend["ways"].items()]
    return lines + ["Every way of blending tried:", ""] + table(["way", "in-sample", "honest"], ways)


def summary_test(report: dict, targets) -> list[str]:
    tested = with_blend(report, "test_synthetic")
    if not tested:
        return []
    tested = {name: tested[name] for name in sorted(tested, key=lambda n: n != "blend")}
    lines = ["## Test score (synthetic data only)", "",
             "The synthetic release keeps its test labels aside (`private/`); a real release has none, so this score "
             "exists only for the demo. Runs: their fold-averaged test predictions.", ""]
    rows = []
    for name, r in tested.items():
        t = r["test_synthetic"]
        mean = cell(t["mean"]) if t.get("mean") is not None else f"missing {t.get('missing')} video(s)"
        rows.append([name, mean, *(cell(t.get("per_dim", {}).get(x)) for x in targets)])
    return lines + table(["predictions", f"test {report['metric']}", *targets], rows)


def summary_conditions(report: dict) -> list[str]:
    lines = []
    entries = with_blend(report, "videos_by_condition")
    if entries:
        seen = sorted({c for r in entries.values() for c in r["videos_by_condition"]},
                      key=lambda c: (c.split("=")[0], c.split("=")[1] != "ok", c))
        counts = {c: max(r["videos_by_condition"].get(c, 0) for r in entries.values()) for c in seen}
        lines += ["## Scores by condition", "",
                  "OOF score on the videos of each condition (`ok`: clean); – where too few videos to score.", ""]
        lines += table(["condition", "videos", *entries],
                       [[c, counts[c], *(cell(r["score_by_condition"].get(c)) for r in entries.values())] for c in seen])
    for run, r in report["runs"].items():
        if r.get("fusion_by_condition"):
            columns = list(r["fusion_by_condition"][0])
            lines += [f"### Fusion weights of {run} by condition", ""]
            lines += table(columns, [[cell(row.get(c), 3) for c in columns] for row in r["fusion_by_condition"]])
    return lines


def summary_frame_level(report: dict) -> list[str]:
    entries = with_blend(report, "oof_per_video")
    if not entries:
        return []

    def face(r, name):
        entry = r.get(f"frames_{name}_face")
        return "–" if entry is None else f"{cell(entry['score'])} ({entry['frames']} frames)"

    lines = ["## Frame level", "", "Pooled over frames (the leaderboard's way), the mean of per-video scores (what "
             "papers often report), and the pooled score on annotated frames with and without a face crop.", ""]
    return lines + table(["run", "pooled", "per-video mean", "with face", "without face"],
                         [[run, cell(r.get("oof")), cell(r["oof_per_video"]), face(r, "with"), face(r, "without")]
                          for run, r in entries.items()])


def summary_stages(stages: dict) -> list[str]:
    lines = ["## The run", ""]
    if not stages["found"]:
        lines += [f"No stages file at `{stages['file']}`.", ""]
    if stages["stages"]:
        total = sum(s["seconds"] or 0.0 for s in stages["stages"])
        lines += table(["stage", "seconds"], [[s["stage"], cell(s["seconds"], 0)] for s in stages["stages"]]
                       + [["total", cell(total, 0)]])
        lines += ["Commands, exactly as run:", "", "```"]
        for s in stages["stages"]:
            lines += [f"# {s['stage']}", str(s["command"] or "")]
        lines += ["```", ""]
    if stages["unreadable"]:
        lines += [f"({stages['unreadable']} unreadable line(s) in the stages file skipped.)", ""]
    if stages["settings"]:
        lines += ["Settings:", ""] + table(["setting", "value"], [[k, f"`{v}`"] for k, v in stages["settings"].items()])
    if stages["config"]:
        lines += ["CONFIG:", "", "```toml", stages["config"].rstrip("\n"), "```", ""]
    return lines


def summary_settings(report: dict) -> list[str]:
    lines = ["## Training settings per run", "",
             "As recorded in each run's fold0/metrics.json (`settings`); keys other folds changed are named.", ""]
    for run, r in report["runs"].items():
        settings = dict(r.get("settings", {}))
        differ = settings.pop("differs_between_folds", [])
        lines += [f"### {run}", ""]
        if differ:
            lines += [f"Differs between folds: {', '.join(differ)}", ""]
        lines += ["```json", json.dumps(settings, indent=1, sort_keys=True), "```", ""]
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m solution.report", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--data", type=Path, required=True, help="the release the runs were trained on")
    parser.add_argument("--work", type=Path, required=True, help="the work folder given to train_fold")
    parser.add_argument("--runs", help="comma list of run names (default: every run of this release)")
    parser.add_argument("--blend-dir", type=Path,
                        help="where solution.ensemble wrote blend.json (default: WORK/<track>-<fingerprint>/predictions)")
    parser.add_argument("--stages", type=Path, help="the JSON lines run_all.sh writes per finished stage")
    parser.add_argument("--out", type=Path, help="the report folder (default: WORK/<track>-<fingerprint>/report)")
    add_test_listing_option(parser)
    args = parser.parse_args(argv)
    try:
        rw = release_work(args.work, args.data)
        runs = [r for r in args.runs.split(",") if r] if args.runs else rw.run_names()
        if not runs:
            raise DataError(f"no trained runs in {rw.runs}; train with python -m solution.train_fold first")
        blend_dir = args.blend_dir or rw.predictions
        report = build_report(args.data, rw, runs, blend_dir)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"mean {rw.track.metric}, {report['videos']} labelled videos, out-of-fold")
    print(format_report(report, rw.track.targets))
    for run in runs:
        weights = fusion_by_condition(args.data, rw, run)
        if weights is not None:
            print(f"\nmean fusion weights of {run} by condition (out-of-fold videos)")
            print(weights.to_string(index=False))
            report["runs"][run]["fusion_by_condition"] = weights.to_dict(orient="records")
    stages = read_stages(args.stages) if args.stages else None
    if stages is not None:
        report["stages"] = stages
    out = args.out or rw.root / "report"
    fileio.write_json(rw.report_json, report)
    fileio.write_json(out / "report.json", report)
    try:
        written, skipped = write_plots(args.data, rw, report, blend_dir, out)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for name in set(PLOT_FILES) - {n for n, _ in written}:
        (out / name).unlink(missing_ok=True)  # a plot of an earlier report would pass for this run's
    fileio.write_text(out / "summary.md", format_summary(report, rw, args.data, blend_dir, stages, written, skipped))
    print(f"\n[report] wrote {out / 'summary.md'} and {len(written)} plot(s); {rw.report_json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
