"""python -m solution.evaluate: score predictions against labels with the track's metric.

EMI: mean Pearson over the six dimensions, across videos (predictions clipped to [0, 1]
first, as the leaderboard does). The tracks scored per frame pool every annotated frame of
every video (unannotated frames skipped: -5 on VA, -1 on EXPR and AU), as the leaderboard
scores; the mean of per-video scores, which some papers report, is printed next to it.
VA: mean CCC of valence and arousal (population moments). EXPR: macro F1 over the eight
classes, AU: mean F1 over the twelve units, each of the labels the predictions decide (EXPR:
the most probable class; AU: each unit above 0.5), with the F1 of each class or unit beside it.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from solution.errors import DataError
from solution.metrics import format_score_table
from solution.tracks import get_track, track_names
from solution.tracks.emi import evaluate_emi  # noqa: F401 - scripts import it from here
from solution.tracks.va import evaluate_va  # noqa: F401 - likewise


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m solution.evaluate", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--track", choices=track_names(), required=True, help="which challenge the predictions are for")
    parser.add_argument("--pred", required=True, type=Path,
                        help="EMI: prediction CSV; VA, EXPR, AU: ABAW6 single file or folder of <video>.txt "
                             "(EXPR and AU: probabilities or labels)")
    parser.add_argument("--labels", required=True, type=Path,
                        help="EMI: label CSV (e.g. valid_split.csv); VA, EXPR, AU: a folder of <video>.txt "
                             "annotations (e.g. the track's Validation_Set)")
    parser.add_argument("--json", type=Path, help="also write the scores to this JSON file")
    args = parser.parse_args(argv)
    track = get_track(args.track)
    try:
        result = track.evaluate(args.pred, args.labels)
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
