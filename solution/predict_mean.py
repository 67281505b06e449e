"""python -m solution.predict_mean: the trivial predictor, every test sample gets the
training mean. A floor to compare against and a way to exercise the submission path before
any model is trained (a constant scores 0.0 correlation by definition)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from solution.layouts import EmiRelease, VaRelease, annotated_mask
from solution.listing import add_test_listing_option
from solution.predictions import write_emi_predictions, write_va_single
from solution.tracks import EMI_TARGETS


def predict_emi(data) -> pd.DataFrame:
    release = EmiRelease(data)
    mean = release.labelled()[list(EMI_TARGETS)].mean()
    ids = release.test_ids()
    return pd.DataFrame(np.tile(mean.to_numpy(), (len(ids), 1)), index=pd.Index(ids, name="Filename"),
                         columns=list(EMI_TARGETS))


def predict_va(data) -> dict[str, np.ndarray]:
    release = VaRelease(data)
    frames = np.concatenate([release.labels(s, v) for s in ("train", "valid") for v in release.videos(s)])
    mean = frames[annotated_mask(frames)].mean(0)
    return {video: np.tile(mean, (n, 1)) for video, n in release.test_frame_counts().items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m solution.predict_mean", description=__doc__)
    parser.add_argument("--track", choices=["emi", "va"], default="emi", help="which challenge (default emi)")
    parser.add_argument("--data", type=Path, required=True, help="the release folder (training labels, test listing)")
    parser.add_argument("--out", type=Path, required=True, help="where to write the test predictions")
    add_test_listing_option(parser)
    args = parser.parse_args(argv)
    if args.track == "emi":
        write_emi_predictions(args.out, predict_emi(args.data))
    else:
        write_va_single(args.out, predict_va(args.data))
    print(f"[predict_mean] wrote training-mean test predictions to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
