"""What every release reader shares: CSV and id parsing, optional metadata, notes logged once,
file facts remembered per process, organizer feature pickles, and VideoSources (where each
input of one video lives).

A leaf module (errors and numpy/pandas only): every track's reader (solution/tracks/) builds
on it, and solution.layouts re-exports it. Every malformed input raises DataError with the
file and the problem. Organizer pickles may hold numpy arrays, lists, or a dict with one
array (and optionally `fps`, the rate of its rows: read_feature_pickle).
"""
from __future__ import annotations

import logging
import math
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from solution.errors import DataError

# The notes of every release reader go to this logger (its name is older than this module).
log = logging.getLogger("layouts")


def read_csv(path: Path, what: str) -> pd.DataFrame:
    if not path.is_file():
        raise DataError(f"{path}: {what} file not found")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot parse {what} as CSV ({exc})") from exc
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame


def csv_lines(indices, limit: int = 5) -> str:
    # CSV line numbers as a user sees them in an editor (header is line 1).
    shown = ", ".join(str(i + 2) for i in list(indices)[:limit])
    more = len(indices) - limit
    return shown + (f" (+{more} more)" if more > 0 else "")


_ID_PATTERN = re.compile(r"^\s*0*(\d+)(\.\w+)?\s*$")


def parse_video_id(raw: str) -> int | None:
    """'00042', '42', '42.mp4' -> 42; anything else -> None."""
    match = _ID_PATTERN.match(str(raw))
    return int(match.group(1)) if match else None


def parse_ids(frame: pd.DataFrame, column: str, path: Path) -> np.ndarray:
    ids = frame[column].map(parse_video_id)
    bad = np.flatnonzero(ids.isna().to_numpy())
    if bad.size:
        raise DataError(f"{path}: column {column!r} has values that are not video ids "
                        f"on line(s) {csv_lines(bad)}: {frame[column].iloc[bad[0]]!r}")
    ids = ids.astype(np.int64).to_numpy()
    uniq, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        dup = uniq[counts > 1]
        raise DataError(f"{path}: duplicate video id(s) {dup[:10].tolist()}"
                        f"{' ...' if dup.size > 10 else ''} in column {column!r}")
    return ids


def numeric_block(frame: pd.DataFrame, columns, path: Path) -> np.ndarray:
    block = frame[list(columns)].apply(lambda c: pd.to_numeric(c.str.strip(), errors="coerce"))
    values = block.to_numpy(np.float64)
    bad = np.flatnonzero(~np.isfinite(values).all(1))
    if bad.size:
        col = columns[int(np.flatnonzero(~np.isfinite(values[bad[0]]))[0])]
        raise DataError(f"{path}: missing, NaN or non-numeric value(s) on line(s) {csv_lines(bad)} "
                        f"(first in column {col!r}: {frame[col].iloc[bad[0]]!r})")
    return values


_NOTED: set = set()


def note_once(key, level: int, message: str, *args) -> None:
    """Log a note about a file once per process (readers are opened by many stages)."""
    if key not in _NOTED:
        _NOTED.add(key)
        log.log(level, message, *args)


def optional_metadata(path: Path, key: str) -> pd.DataFrame | None:
    """An optional metadata.csv: None when absent or without its `key` column (logged, never
    an error); without `subject` it is read for what it has (logged). Extra columns are kept."""
    if not path.is_file():
        return None
    frame = read_csv(path, "metadata")
    if key not in frame.columns:
        note_once((str(path), key), logging.WARNING, "%s: no %r column (found %s); the file is ignored",
                   path, key, list(frame.columns)[:10])
        return None
    if "subject" not in frame.columns:
        note_once((str(path), "subject"), logging.INFO,
                   "%s: no 'subject' column; read for its other columns, and subjects are taken as unknown", path)
    return frame


def require_columns(frame: pd.DataFrame, required, path: Path, what: str) -> None:
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise DataError(f"{path}: {what} is missing column(s) {missing}; found {list(frame.columns)}; "
                        f"expected header {','.join(required)}")

def coerce_feature_array(obj, source) -> np.ndarray:
    """An organizer pickle's payload -> float32 (frames, dim), or DataError naming `source`."""
    if isinstance(obj, dict):
        arrays = [v for v in obj.values() if isinstance(v, (np.ndarray, list))]
        if len(arrays) != 1:
            raise DataError(f"{source}: pickle holds a dict with keys {list(obj)[:8]}; "
                            "expected an array (frames x dim)")
        obj = arrays[0]
    try:
        array = np.asarray(obj, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{source}: pickle does not hold a numeric array ({exc})") from exc
    if array.ndim == 3 and array.shape[0] == 1:
        array = array[0]
    if array.ndim == 1 and array.size:
        array = array[None, :]
    if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] == 0:
        raise DataError(f"{source}: expected a (frames x dim) array, got shape {array.shape}")
    if not np.isfinite(array).all():
        rows = np.flatnonzero(~np.isfinite(array).all(1))
        raise DataError(f"{source}: NaN or inf in {rows.size} of {array.shape[0]} frame(s) "
                        f"(first at frame {rows[0]})")
    return array


def stated_fps(obj, source) -> float | None:
    """The frame rate an organizer pickle states for its rows: a dict's `fps` (a positive
    number of rows a second, row k at k / fps seconds), else None (the rate is then taken
    from the video's duration, or the folder's known rate: solution.data.entry_times)."""
    if not isinstance(obj, dict) or "fps" not in obj:
        return None
    fps = obj["fps"]
    if isinstance(fps, bool) or not isinstance(fps, (int, float, np.integer, np.floating)) \
            or not math.isfinite(float(fps)) or float(fps) <= 0:
        raise DataError(f"{source}: 'fps' must be a positive number of rows a second, got {fps!r}")
    return float(fps)


def read_feature_pickle(path) -> tuple[np.ndarray, float | None]:
    """An organizer pickle -> (float32 (frames, dim), the rate it states or None)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: feature file not found")
    try:
        with open(path, "rb") as handle:
            obj = pickle.load(handle)
    except Exception as exc:  # a truncated or foreign pickle can raise almost anything
        raise DataError(f"{path}: unreadable pickle ({type(exc).__name__}: {exc})") from exc
    return coerce_feature_array(obj, path), stated_fps(obj, path)


def load_feature_pickle(path) -> np.ndarray:
    return read_feature_pickle(path)[0]


# Organizer-style feature folders (`<folder>/<video>.pkl`, read by the extractor organizer:<folder>).
# The organizers' own: cached by default when present (python -m solution.features --organizer auto).
ORGANIZER_FOLDERS = ("vit", "wav2vec2")
# The synthetic generator's clean latent streams (solution.synth, latents=true), in EMI and VA
# releases: read only when named (--organizer latent_face,latent_voice), never by default.
LATENT_FOLDERS = ("latent_face", "latent_voice")


_FACTS: dict[tuple, object] = {}


def file_fact(kind: str, path: Path, compute):
    """compute(path), remembered per process while the file's size and time stay the same
    (every stage opens the release more than once)."""
    stat = path.stat()
    key = (kind, str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _FACTS:
        _FACTS[key] = compute(path)
    return _FACTS[key]


@dataclass
class VideoSources:
    """Where each input of one video lives; None where the release has none."""

    vid: str                 # cache key: the track's video key (EMI: 5-digit id; Aff-Wild2: video name)
    split: str               # train | valid | test
    video: Path | None = None
    audio: Path | None = None          # a file with an audio stream (may be the video itself)
    transcript: Path | None = None     # <id>.txt, or the timed <id>.json when the release has one
    crops: Path | None = None          # Aff-Wild2: cropped_aligned/<video>/
    organizer: dict = field(default_factory=dict)  # kind -> pickle path

