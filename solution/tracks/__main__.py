"""python -m solution.tracks TRACK: what run_all.sh asks a track, on one line.

Prints three words: the suffix of the track's prediction files (csv, txt), where a synthetic
release keeps the track's test labels aside (relative to the release), and whether
solution.delay chooses its label delay (1: a frame-level regression track; else 0). A track
that is not registered is an error naming those that are (exit status 2).
"""
import argparse
import sys

from solution.tracks import TRACKS, track_names


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m solution.tracks", description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("track", help=f"the track's name: {', '.join(track_names())}")
    args = parser.parse_args(argv)
    track = TRACKS.get(args.track)
    if track is None:
        print(f"TRACK must be one of {', '.join(track_names())}, got {args.track!r}", file=sys.stderr)
        return 2
    print(track.prediction_suffix, track.hidden_test, int(track.chooses_label_delay))
    return 0


if __name__ == "__main__":
    sys.exit(main())
