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
                        help="EMI: prediction CSV; VA: ABAW6 single file or folder of <video>.txt")
    parser.add_argument("--labels", required=True, type=Path,
                        help="EMI: label CSV (e.g. valid_split.csv); VA: annotation folder")
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
