"""python -m solution.submit: format predictions for the leaderboard, validate, and zip.

  python -m solution.submit --track emi --pred test_pred.csv --data DATA_DIR
  python -m solution.submit --track va|expr|au --pred PRED (file or folder) --data DATA_DIR [--format per-video]
  python -m solution.submit --check submissions/NAME.zip --data DATA_DIR
  python -m solution.submit --ledger [--out-dir submissions] [--track emi]   # every zip written, what it was

EMI: one CSV, header Filename + the six targets, one row per test id, sorted, 5-digit ids,
values clipped to [0, 1]. VA, EXPR and AU (scored per frame): the ABAW6 single file
`image_location,<targets>` (default) or one `<video>.txt` per video with the track's header
(older rounds); VA values clipped to [-1, 1], EXPR and AU labels decided from the predicted
probabilities (EXPR: the most probable class 0-7; AU: 1 for each unit above 0.5). On these
tracks a video whose predicted frames differ from the test listing's count by at most
--frame-tolerance (default 10) is padded with its last value or cut, and listed; a larger
difference stops with the video named (the predictions follow another frame rate or video).
--check lists every problem in a zip and exits 1 if there is any.

Every zip written (here, and by solution.ensemble --zip and solution.predict, which write
through make_submission) adds a row to the ledger, ledger.csv in the zip's folder: what the
zip was made of (see LEDGER_COLUMNS). `--ledger [--out-dir DIR] [--track T]` prints it as a
table, with each zip's state on disk (missing, replaced by a later zip of the same name, or
the same bytes as an earlier zip).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from solution.errors import DataError
from solution.listing import add_test_listing_option
from solution.submission import (DEFAULT_FRAME_TOLERANCE, DEFAULT_OUT_DIR, LEDGER_NAME, check_zip, format_ledger,
                                 ledger_path, make_submission, read_ledger)
from solution.tracks import track_names


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m solution.submit", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--track", choices=track_names(), help="required to build; guessed for --check")
    parser.add_argument("--pred", type=Path, help="test predictions (EMI: CSV; VA, EXPR, AU: single file or folder of "
                        "<video>.txt, EXPR and AU as probabilities or labels)")
    parser.add_argument("--data", type=Path, help="the release folder (for the test listing); required but with --ledger")
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT_DIR,
                        help="where the zip and the ledger go (default: submissions/ in the repository)")
    parser.add_argument("--name", help="zip file name without .zip (default: <track>-<timestamp>)")
    parser.add_argument("--format", "--va-format", dest="va_format", choices=["single", "per-video"], default="single",
                        help="tracks scored per frame (VA, EXPR, AU): the ABAW6 single file, or one <video>.txt per "
                             "video (older rounds)")
    parser.add_argument("--frame-tolerance", type=int, default=DEFAULT_FRAME_TOLERANCE, metavar="N",
                        help="VA, EXPR, AU: pad or cut a video whose predicted frames differ from the listing by "
                             f"at most N (listed); more is an error (default {DEFAULT_FRAME_TOLERANCE})")
    parser.add_argument("--check", type=Path, metavar="FILE.zip", help="validate this zip instead of building one")
    parser.add_argument("--ledger", action="store_true",
                        help=f"print the ledger of --out-dir ({LEDGER_NAME}: every zip written there; --track: "
                             "only that track's) instead of building a zip")
    add_test_listing_option(parser)
    args = parser.parse_args(argv)
    if args.ledger and (args.check or args.pred):
        parser.error("--ledger only prints the ledger: without --check or --pred")
    if not args.ledger and args.data is None:
        parser.error("the following arguments are required: --data")
    try:
        if args.ledger:
            path = ledger_path(args.out_dir)
            rows = [r for r in read_ledger(path) if args.track in (None, r["track"])]
            if not path.exists():
                print(f"{path}: no ledger yet (no zip has been written to {args.out_dir})")
            else:
                print(f"{path}: {len(rows)} zip(s){' of ' + args.track if args.track else ''}")
                if rows:
                    print(format_ledger(rows, path.parent))
            return 0
        if args.check:
            problems = check_zip(args.check, args.data, args.track)
            for line in problems:
                print(f"problem: {line}")
            print(f"{args.check}: {'INVALID, ' + str(len(problems)) + ' problem(s)' if problems else 'valid'}")
            return 1 if problems else 0
        if not (args.track and args.pred):
            parser.error("building a submission needs --track and --pred (or use --check FILE.zip)")
        if args.frame_tolerance < 0:
            parser.error("--frame-tolerance must be 0 or more")
        path = make_submission(args.track, args.pred, args.data, args.out_dir, args.name, args.va_format,
                               args.frame_tolerance)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"[submit] wrote {path} (validated against the test listing of {args.data})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
