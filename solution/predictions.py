"""Prediction files in the leaderboard formats, read and written in one place.

EMI: one CSV, `Filename,<six targets>`, one row per video.
VA:  the ABAW6 single file `image_location,valence,arousal` (`<video>/<frame:05d>.jpg`),
     or the older folder of `<video>.txt` files with header `valence,arousal`.
Every stage (fold training, blending, evaluation, submission) exchanges predictions in
these formats, so any of them can be scored or submitted directly.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from solution import fileio
from solution.layouts import DataError, read_emi_labels, read_va_annotation
from solution.tracks import EMI, EMI_TARGETS, VA_TARGETS, Track

VA_SINGLE_HEADER = "image_location,valence,arousal"
_LOCATION = re.compile(r"^(?P<video>.+)/(?P<frame>\d+)\.jpg$")


def prediction_filename(track: Track, what: str = "test") -> str:
    """`test.csv` (EMI) or `test.txt` (VA, the single-file form): what every stage names its files."""
    return f"{what}.{'csv' if track.level == 'video' else 'txt'}"


def read_emi_predictions(path) -> pd.DataFrame:
    return read_emi_labels(path, what="EMI prediction", check_range=False)


def write_emi_predictions(path, frame: pd.DataFrame, clip: bool = True) -> None:
    """`frame` indexed by int video id with the six target columns; sorted, ids 5-digit."""
    values = frame.loc[:, list(EMI_TARGETS)].sort_index()
    if clip:
        values = values.clip(EMI.low, EMI.high)
    out = values.reset_index(drop=True)
    out.insert(0, "Filename", [f"{int(i):05d}" for i in values.index])
    fileio.write_csv(path, out)


def parse_image_location(location: str) -> tuple[str, int] | None:
    match = _LOCATION.match(location.strip())
    return (match["video"], int(match["frame"])) if match else None


def read_va_predictions(path) -> dict[str, np.ndarray]:
    """{video: (frames, 2)} from an ABAW6 single file or a folder of per-video files.
    Frames are 1-based in the single file; a gap in the numbering is an error."""
    path = Path(path)
    if path.is_dir():
        files = fileio.listed(path, "*.txt")
        if not files:
            raise DataError(f"{path}: no <video>.txt prediction files")
        return {f.stem: read_va_annotation(f, check_range=False) for f in files}
    if not path.is_file():
        raise DataError(f"{path}: VA prediction file not found")
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    frame.columns = [c.strip() for c in frame.columns]
    if ",".join(frame.columns) != VA_SINGLE_HEADER:
        raise DataError(f"{path}: header must be {VA_SINGLE_HEADER!r}, got {','.join(frame.columns)!r}")
    located = frame["image_location"].map(parse_image_location)
    bad = np.flatnonzero(located.isna().to_numpy())
    if bad.size:
        raise DataError(f"{path}: line {bad[0] + 2}: image_location must look like "
                        f"<video>/00001.jpg, got {frame['image_location'].iloc[bad[0]]!r}")
    values = frame[list(VA_TARGETS)].apply(pd.to_numeric, errors="coerce").to_numpy(np.float32)
    if not np.isfinite(values).all():
        row = int(np.flatnonzero(~np.isfinite(values).all(1))[0])
        raise DataError(f"{path}: line {row + 2}: missing or non-numeric valence/arousal")
    out: dict[str, np.ndarray] = {}
    videos = np.array([v for v, _ in located])
    frames = np.array([f for _, f in located])
    for video in dict.fromkeys(videos):
        rows = np.flatnonzero(videos == video)
        order = rows[np.argsort(frames[rows], kind="stable")]
        numbers = frames[order]
        if not np.array_equal(numbers, np.arange(1, len(numbers) + 1)):
            raise DataError(f"{path}: frames of {video!r} are not numbered 1..{len(numbers)} "
                            "without gaps or duplicates")
        out[str(video)] = values[order]
    return out


def va_single_text(predictions: dict[str, np.ndarray]) -> str:
    lines = [VA_SINGLE_HEADER] + [f"{video}/{i:05d}.jpg,{v:.6f},{a:.6f}" for video in sorted(predictions)
                                  for i, (v, a) in enumerate(predictions[video], start=1)]
    return "\n".join(lines) + "\n"


def write_va_single(path, predictions: dict[str, np.ndarray]) -> None:
    fileio.write_text(path, va_single_text(predictions))


def va_file_text(values: np.ndarray) -> str:
    return "valence,arousal\n" + "".join(f"{v:.6f},{a:.6f}\n" for v, a in values)


def write_va_folder(folder, predictions: dict[str, np.ndarray]) -> None:
    for video, values in predictions.items():
        fileio.write_text(Path(folder) / f"{video}.txt", va_file_text(values))


# ---- one interface for every track: {video key: values}, values (targets,) or (frames, targets)

def write_predictions(path, track: Track, predictions: dict[str, np.ndarray]) -> None:
    """A run's predictions in the track's leaderboard format (so evaluate and submit read them)."""
    if track.level == "video":
        keys = sorted(predictions)
        frame = pd.DataFrame(np.stack([np.asarray(predictions[k], np.float64) for k in keys]) if keys else
                             np.zeros((0, track.dim)), index=pd.Index([int(k) for k in keys]), columns=list(track.targets))
        write_emi_predictions(path, frame)
    else:
        write_va_single(path, {k: np.clip(v, track.low, track.high) for k, v in predictions.items()})


def read_predictions(path, track: Track) -> dict[str, np.ndarray]:
    if track.level == "video":
        frame = read_emi_predictions(path)
        return {f"{int(v):05d}": row for v, row in zip(frame.index, frame.to_numpy(np.float64))}
    return {k: v.astype(np.float64) for k, v in read_va_predictions(path).items()}
