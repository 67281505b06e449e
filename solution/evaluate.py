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

from solution import fileio
from solution.layouts import DataError, annotated_mask, read_emi_labels, read_va_annotation
from solution.metrics import format_score_table, per_video_score, score, score_predictions
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
