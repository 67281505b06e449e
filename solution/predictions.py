"""Prediction files in the leaderboard formats: every stage (fold training, blending,
evaluation, submission) exchanges predictions as the track writes them, so any of them can
be scored or submitted directly. The formats are the track's (solution/tracks/): EMI one CSV,
`Filename,<six targets>`; VA the ABAW6 single file `image_location,valence,arousal`, or the
older folder of `<video>.txt` files. Their readers and writers keep their older names here.
"""
from __future__ import annotations

import numpy as np

from solution.tracks import Track
from solution.tracks.affwild2 import parse_image_location
from solution.tracks.emi import read_emi_predictions, write_emi_predictions
from solution.tracks.va import (VA_SINGLE_HEADER, read_va_predictions, va_file_text, va_single_text, write_va_folder,
                                write_va_single)

__all__ = ["prediction_filename", "write_predictions", "read_predictions", "parse_image_location",
           "read_emi_predictions", "write_emi_predictions", "VA_SINGLE_HEADER", "read_va_predictions", "va_file_text",
           "va_single_text", "write_va_folder", "write_va_single"]


def prediction_filename(track: Track, what: str = "test") -> str:
    """`test.csv` (EMI) or `test.txt` (VA, the single-file form): what every stage names its files."""
    return f"{what}.{track.prediction_suffix}"


# ---- one interface for every track: {video key: values}, values (targets,) or (frames, targets)

def write_predictions(path, track: Track, predictions: dict[str, np.ndarray]) -> None:
    """A run's predictions in the track's leaderboard format (so evaluate and submit read them)."""
    track.write_predictions(path, predictions)


def read_predictions(path, track: Track) -> dict[str, np.ndarray]:
    return track.read_predictions(path)
