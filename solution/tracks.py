"""What each challenge track is: its targets, value range, metric and granularity.

Every other module asks a Track instead of hard-coding column names or ranges, so a new
track is one entry here.
"""
from __future__ import annotations

from dataclasses import dataclass

EMI_TARGETS = ("Admiration", "Amusement", "Determination", "Empathic Pain", "Excitement", "Joy")
VA_TARGETS = ("valence", "arousal")
VA_UNANNOTATED = -5.0


@dataclass(frozen=True)
class Track:
    name: str
    targets: tuple[str, ...]
    low: float
    high: float
    metric: str  # "pearson" or "ccc": the leaderboard's per-dimension score, averaged
    level: str  # "video": one row per video; "frame": one row per video frame

    @property
    def dim(self) -> int:
        return len(self.targets)


EMI = Track("emi", EMI_TARGETS, 0.0, 1.0, "pearson", "video")
VA = Track("va", VA_TARGETS, -1.0, 1.0, "ccc", "frame")
TRACKS = {t.name: t for t in (EMI, VA)}


def get_track(name: str) -> Track:
    try:
        return TRACKS[name.lower()]
    except KeyError:
        raise ValueError(f"unknown track {name!r}; choose one of {sorted(TRACKS)}") from None
