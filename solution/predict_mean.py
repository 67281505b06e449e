"""python -m solution.predict_mean: the trivial predictor, every test sample gets the
training mean. A floor to compare against and a way to exercise the submission path before
any model is trained (a constant scores 0.0 correlation by definition)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from solution.listing import add_test_listing_option
from solution.tracks import get_track, track_names
from solution.tracks.emi import predict_emi  # noqa: F401 - scripts import it from here
from solution.tracks.va import predict_va  # noqa: F401 - likewise


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m solution.predict_mean", description=__doc__)
    parser.add_argument("--track", choices=track_names(), default=track_names()[0],
                        help=f"which challenge (default {track_names()[0]})")
    parser.add_argument("--data", type=Path, required=True, help="the release folder (training labels, test listing)")
    parser.add_argument("--out", type=Path, required=True, help="where to write the test predictions")
    add_test_listing_option(parser)
    args = parser.parse_args(argv)
    get_track(args.track).write_mean_predictions(args.data, args.out)
    print(f"[predict_mean] wrote training-mean test predictions to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
