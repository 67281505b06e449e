"""Time grids, windows and stitching: how sequences of any length meet fixed-size batches.

A video-level track trains on random crops of a fixed duration (a second is the same number
of steps in every video) and predicts on the whole video in overlapping chunks whose
predictions are averaged, weighted by length. A frame-level track trains on windows of label
frames and, at inference, averages the overlapping windows' predictions per frame, so every
frame gets exactly one prediction.
"""
from __future__ import annotations

import numpy as np


def grid_times(duration: float, rate: float) -> np.ndarray:
    """Step times of a grid at `rate` Hz covering [0, duration): at least one step."""
    return np.arange(max(1, int(round(duration * rate)))) / rate


def align(values: np.ndarray, times: np.ndarray, at: np.ndarray) -> np.ndarray:
    """`values` (T, D) sampled at `times` (T,) -> (len(at), D) by linear interpolation in time,
    holding the first and last frame beyond the ends."""
    if len(values) == 1 or len(at) == 0:
        return np.repeat(values[:1], len(at), 0).astype(np.float32)
    right = np.clip(np.searchsorted(times, at, side="right"), 1, len(times) - 1)
    left = right - 1
    span = times[right] - times[left]
    frac = np.clip((at - times[left]) / np.where(span > 0, span, 1), 0, 1)[:, None]
    return (values[left] * (1 - frac) + values[right] * frac).astype(np.float32)


def window_starts(length: int, window: int, hop: int, offset: int = 0) -> list[int]:
    """Starts of windows of `window` steps every `hop`, covering 0..length-1; the last window
    ends at the last step. `offset` (0 <= offset < hop) shifts the grid for training variety."""
    if length <= window:
        return [0]
    hop = max(1, hop)
    starts = list(range(offset % hop, length - window + 1, hop))
    if not starts or starts[0] > 0:
        starts.insert(0, 0)
    if starts[-1] + window < length:
        starts.append(length - window)
    return starts


def stitch(length: int, pieces: list[tuple[int, np.ndarray]]) -> np.ndarray:
    """Average overlapping window predictions [(start, (n, k))] into one (length, k) array."""
    width = pieces[0][1].shape[1]
    total = np.zeros((length, width), np.float64)
    count = np.zeros(length, np.float64)
    for start, values in pieces:
        stop = min(length, start + len(values))
        total[start:stop] += values[: stop - start]
        count[start:stop] += 1
    if (count == 0).any():
        raise ValueError(f"frames {np.flatnonzero(count == 0)[:5].tolist()} are covered by no window")
    return total / count[:, None]


def chunk_spans(duration: float, length: float) -> list[tuple[float, float]]:
    """(start, stop) seconds of overlapping chunks (hop = half a chunk) covering a video."""
    if duration <= length:
        return [(0.0, duration)]
    starts = np.arange(0.0, duration - length, length / 2).tolist() + [duration - length]
    return [(s, s + length) for s in starts]
