"""python -m solution.evaluate: score predictions against labels with the track's metric.

EMI: mean Pearson over the six dimensions, across videos (predictions clipped to [0, 1]
first, as the leaderboard does). VA: mean CCC of valence and arousal across all annotated
frames (-5 frames skipped). Population moments throughout.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

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
    files = sorted(labels_dir.glob("*.txt")) if labels_dir.is_dir() else []
    if not files:
        raise DataError(f"{labels_dir}: no <video>.txt annotation files")
    predictions = read_va_predictions(pred_path)
    preds, targets = [], []
    for file in files:
        truth = read_va_annotation(file)
        if file.stem not in predictions:
            raise DataError(f"{pred_path}: no prediction for video {file.stem!r}")
        guess = predictions[file.stem]
        if len(guess) < len(truth):
            raise DataError(f"{pred_path}: video {file.stem!r} has {len(guess)} predicted frames, "
                            f"annotation {file} has {len(truth)}")
        keep = annotated_mask(truth)
        preds.append(np.clip(guess[: len(truth)][keep], VA.low, VA.high))
        targets.append(truth[keep])
    result = score(VA, np.concatenate(preds), np.concatenate(targets))
    result["videos"], result["frames"] = len(files), int(sum(len(t) for t in targets))
    return result


def score_predictions(track, predictions: dict, targets: dict) -> dict:
    """The track's score of {key: prediction} against {key: target} over the keys of `targets`,
    pooled as the leaderboard pools a split: video rows (EMI), or every annotated frame (VA;
    -5 frames skipped). Predictions are clipped to the track's range first."""
    missing = [k for k in targets if k not in predictions]
    if missing:
        raise DataError(f"no prediction for {len(missing)} video(s), e.g. {missing[:5]}")
    keys = sorted(targets)
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
    return score(track, np.clip(pred, track.low, track.high), truth)


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
    if args.json:
        from solution.fileio import write_json
        write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
