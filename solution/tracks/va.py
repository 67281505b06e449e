"""The VA track (valence and arousal, Aff-Wild2): one unit of code, on the Aff-Wild2 family.

Valence and arousal in [-1, 1] per video frame, scored by the mean CCC of the two over every
annotated frame of every video pooled (as the leaderboard scores). Annotations live in
`*/VA_Estimation_Challenge/{Train_Set,Validation_Set}/<video>.txt`: the header
`valence,arousal`, then a line per frame, `-5,-5` on a frame nobody annotated (VA_UNANNOTATED).
Predictions and submissions: the ABAW6 single file `image_location,valence,arousal`
(`<video>/<frame:05d>.jpg`), or the older folder of `<video>.txt` files with header
`valence,arousal`, values clipped to [-1, 1]. A synthetic release keeps its test annotations
in private/VA_Estimation_Challenge/Test_Set. Everything Aff-Wild2 tracks share (videos,
crops, `_left`/`_right`, listings, the fit policy, the preflight): affwild2.py.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from solution import fileio
from solution.errors import DataError
from solution.tracks.affwild2 import (AffWild2Release, AffWild2Track, read_frame_table, read_single_file,
                                      read_test_listing)
from solution.tracks.base import register
from solution.tracks.validation import check_values, read_member

VA_TARGETS = ("valence", "arousal")
VA_UNANNOTATED = -5.0
VA_SINGLE_HEADER = "image_location,valence,arousal"


class VaTrack(AffWild2Track):
    """Valence and arousal per frame, in `VA_Estimation_Challenge` annotation folders."""

    annotation_folder = "VA_Estimation_Challenge"
    listing_words = frozenset({"va", "valence", "arousal"})

    def read_annotation(self, path, check_range: bool = True) -> np.ndarray:
        return read_va_annotation(path, check_range)

    def open_release(self, data, test_listing=None) -> "VaRelease":
        return VaRelease(data, test_listing=test_listing)

    def read_frame_predictions(self, path) -> dict[str, np.ndarray]:
        return read_va_predictions(path)

    def single_text(self, predictions: dict[str, np.ndarray]) -> str:
        return va_single_text(predictions)

    def file_text(self, values: np.ndarray) -> str:
        return va_file_text(values)

    def check_single_text(self, text: str, counts: dict[str, int], where: str) -> list[str]:
        return check_va_single_text(text, counts, where)

    def check_video_text(self, text: str, n_expected: int, where: str) -> list[str]:
        return check_va_video_text(text, n_expected, where)

    def evaluate(self, pred_path, labels_path) -> dict:
        return evaluate_va(pred_path, labels_path)

    def write_mean_predictions(self, data, out) -> None:
        write_va_single(out, predict_va(data))


VA = register(VaTrack("va", VA_TARGETS, -1.0, 1.0, "ccc", "frame", unannotated=VA_UNANNOTATED))


class VaRelease(AffWild2Release):
    """An Aff-Wild2 release as the VA track reads it (see AffWild2Release): annotations in a
    `*/VA_Estimation_Challenge/{Train_Set,Validation_Set}` folder."""

    track = VA


def read_va_test_listing(path) -> dict[str, int | None]:
    """A VA test listing in any form affwild2.read_test_listing reads -> {video: frames or None}."""
    return read_test_listing(path, "VA")


# ---------------------------------------------------------------- annotations

def read_va_annotation(path, check_range: bool = True) -> np.ndarray:
    """One Aff-Wild2 annotation file -> float32 (frames, 2); unannotated rows stay -5.
    Predictions in the per-video form use check_range=False (they are clipped later)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: annotation file not found")
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    header = lines[0].replace(" ", "").lower() if lines else ""
    if header != "valence,arousal":
        raise DataError(f"{path}: first line must be 'valence,arousal', got {header!r}")
    rows = [line for line in lines[1:] if line.strip()]
    if not rows:
        raise DataError(f"{path}: annotation file has no frames")
    try:  # numpy's C parser first (7x faster); anything it refuses goes the slow way, which names it
        values = np.loadtxt(rows, delimiter=",", comments=None, dtype=np.float64, ndmin=2)
        if len(values) != len(rows):
            raise ValueError("row count")
    except ValueError:
        try:
            values = np.array([[float(x) for x in line.split(",")] for line in rows], np.float64)
        except ValueError as exc:
            raise DataError(f"{path}: non-numeric annotation ({exc})") from exc
    if values.ndim != 2 or values.shape[1] != 2:
        raise DataError(f"{path}: every line must hold two values, valence,arousal")
    if not np.isfinite(values).all():
        raise DataError(f"{path}: NaN or inf on frame(s) {np.flatnonzero(~np.isfinite(values).all(1))[:5] + 1}")
    sentinel = values == VA_UNANNOTATED
    out = np.flatnonzero(((np.abs(values) > 1) & ~sentinel).any(1))
    if check_range and out.size:
        raise DataError(f"{path}: value(s) outside [-1, 1] that are not the -5 marker, "
                        f"on frame(s) {(out[:5] + 1).tolist()}")
    half = np.flatnonzero(sentinel.any(1) & ~sentinel.all(1))
    if half.size:
        raise DataError(f"{path}: frame(s) {(half[:5] + 1).tolist()} mark only one of valence/arousal as -5")
    return values.astype(np.float32)


def annotated_mask(values: np.ndarray) -> np.ndarray:
    """(frames,) bool of the annotated frames of VA values (frames, 2): VA.annotated."""
    return VA.annotated(values)


# ---------------------------------------------------------------- predictions, scores, the trivial predictor

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

    def values_of(frame):
        values = frame[list(VA_TARGETS)].apply(pd.to_numeric, errors="coerce").to_numpy(np.float32)
        if not np.isfinite(values).all():
            row = int(np.flatnonzero(~np.isfinite(values).all(1))[0])
            raise DataError(f"{path}: line {row + 2}: missing or non-numeric valence/arousal")
        return values

    return read_single_file(path, VA_SINGLE_HEADER, values_of)


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


def evaluate_va(pred_path, labels_dir) -> dict:
    """Mean CCC of valence and arousal over every annotated frame of every video pooled (-5
    frames skipped), as the leaderboard scores; the mean of per-video CCCs beside it."""
    from solution.metrics import per_video_score, score_predictions

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


def predict_va(data) -> dict[str, np.ndarray]:
    """The mean of every annotated frame of every annotation file (left out or not), for
    every frame of every test video."""
    release = VaRelease(data)
    frames = np.concatenate([release.labels(s, v) for s in ("train", "valid") for v in release.videos(s)])
    mean = frames[annotated_mask(frames)].mean(0)
    return {video: np.tile(mean, (n, 1)) for video, n in release.test_frame_counts().items()}


# ---------------------------------------------------------------- the submission's checks

def check_va_single_text(text: str, counts: dict[str, int], where: str) -> list[str]:
    problems: list[str] = []
    header = text.splitlines()[0].strip() if text.strip() else ""
    if header != VA_SINGLE_HEADER:
        problems.append(f"{where}: header must be {VA_SINGLE_HEADER!r}, got {header!r}")
        return problems
    table = read_frame_table(text, counts, where, problems)
    if table is None:
        return problems
    check_values(problems, where, table, VA.targets, VA.low, VA.high, table["image_location"].tolist())
    return problems


def check_va_video_text(text: str, n_expected: int, where: str) -> list[str]:
    problems: list[str] = []
    header = text.splitlines()[0].replace(" ", "") if text.strip() else ""
    if header != "valence,arousal":
        return [f"{where}: header must be 'valence,arousal', got {header!r}"]
    table = read_member(text, where, problems)
    if table is not None:
        if len(table) != n_expected:
            problems.append(f"{where}: {len(table)} frames, the test listing says {n_expected}")
        check_values(problems, where, table, VA.targets, VA.low, VA.high,
                     [f"frame {i}" for i in range(1, len(table) + 1)])
    return problems
