"""python -m solution.evaluate: score predictions against labels with the track's metric.

EMI: mean Pearson over the six dimensions, across videos (predictions clipped to [0, 1]
first, as the leaderboard does). VA: mean CCC of valence and arousal across all annotated
frames of every video pooled (-5 frames skipped), as the leaderboard scores; the mean of
per-video CCCs, which some papers report, is printed next to it. Population moments
throughout.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from solution import fileio
from solution.layouts import DataError, annotated_mask, read_emi_labels, read_va_annotation
from solution.metrics import format_score_table, score
from solution.predictions import read_emi_predictions, read_va_predictions
from solution.tracks import EMI, VA, get_track


def evaluate_emi(pred_path, labels_path) -> dict:
    labels = read_emi_labels(labels_path)
    pred = read_emi_predictions(pred_path)
    missing = labels.index.difference(pred.index)
    if len(missing):
        raise DataError(f"{pred_path}: no prediction for {len(missing)} labelled video(s), "
                        f"e.g. {missing[:5].tolist()}")
    pred = pred.loc[labels.index].clip(EMI.low, EMI.high)
    result = score(EMI, pred.to_numpy(), labels.to_numpy())
    result["videos"] = int(len(labels))
    return result


def evaluate_va(pred_path, labels_dir) -> dict:
    labels_dir = Path(labels_dir)
    files = fileio.listed(labels_dir, "*.txt") if labels_dir.is_dir() else []
    if not files:
        raise DataError(f"{labels_dir}: no <video>.txt annotation files")
    predictions = read_va_predictions(pred_path)
    targets = {file.stem: read_va_annotation(file) for file in files}
    for file in files:
        if file.stem not in predictions:
            raise DataError(f"{pred_path}: no prediction for video {file.stem!r}")
        if len(predictions[file.stem]) < len(targets[file.stem]):
            raise DataError(f"{pred_path}: video {file.stem!r} has {len(predictions[file.stem])} predicted frames, "
                            f"annotation {file} has {len(targets[file.stem])}")
    result = score_predictions(VA, predictions, targets)
    result["videos"], result["frames"] = len(files), int(sum(annotated_mask(t).sum() for t in targets.values()))
    result["per_video_mean"] = round(per_video_score(VA, predictions, targets)["mean"], 6)
    return result


def per_video_score(track, predictions: dict, targets: dict) -> dict:
    """Frame-level tracks: the metric of each video's annotated frames, then the mean over
    videos (what some papers report; the leaderboard pools frames instead). Videos with
    fewer than two annotated frames are left out; a video whose labels or predictions do not
    vary scores 0 for that target, as metrics.py scores it."""
    import warnings

    from solution.metrics import ConstantInputWarning

    scores = []
    with warnings.catch_warnings():  # a flat stretch of one video is common and not news
        warnings.simplefilter("ignore", ConstantInputWarning)
        for key in sorted(targets):
            keep = annotated_mask(targets[key])
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
            keep = annotated_mask(targets[k])
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
    shown = ", ".join(f"{k} ({int(annotated_mask(targets[k]).sum())} of {len(targets[k])})" for k in keys[:8])
    return (f"{len(keys)} video(s), annotated frames of all frames in brackets: {shown}"
            + (f" and {len(keys) - 8} more" if len(keys) > 8 else "")
            + "; a video without an annotated frame is left out by the folds stage: make the folds again "
              "(python -m solution.folds --overwrite)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m solution.evaluate", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--track", choices=["emi", "va"], required=True, help="which challenge the predictions are for")
    parser.add_argument("--pred", required=True, type=Path,
                        help="EMI: prediction CSV; VA: ABAW6 single file or folder of <video>.txt")
    parser.add_argument("--labels", required=True, type=Path,
                        help="EMI: label CSV (e.g. valid_split.csv); VA: annotation folder")
    parser.add_argument("--json", type=Path, help="also write the scores to this JSON file")
    args = parser.parse_args(argv)
    track = get_track(args.track)
    try:
        result = (evaluate_emi if track is EMI else evaluate_va)(args.pred, args.labels)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_score_table(result, title=f"{track.name.upper()} {args.pred} vs {args.labels}"))
    if "per_video_mean" in result:
        print(f"(every annotated frame of {result['videos']} videos pooled, {result['frames']} frames, as the "
              f"leaderboard scores; the mean of per-video {track.metric}s is {result['per_video_mean']:.4f})")
    if args.json:
        from solution.fileio import write_json
        write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
