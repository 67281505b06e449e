"""The features cache: one entry per (extractor, video), and a manifest per extractor.

    WORK/features/<extractor key>/<video>.npz          features (T, D), times (T,), frame_quality (T,),
                                                       quality cues (scalars) and extraction info
    WORK/features/<extractor key>/<video>.failed.json  the modality is missing for this video, and why
    WORK/features/<extractor key>/manifest.json        extractor name, settings, their hash, and every entry
    WORK/features/failures.csv                         every failure of every extractor: id, extractor, reason

The extractor key ends in a hash of the settings, so changing any setting writes a new
folder instead of mixing old and new features. Entries are written atomically; an entry
that exists is done, which is what makes runs resumable and shards independent.
"""
from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from solution import fileio

CACHE_VERSION = 1


def features_root(work) -> Path:
    return Path(work) / "features"


@dataclass
class Entry:
    features: np.ndarray               # (T, D) float32; (0, D) when missing
    times: np.ndarray                  # (T,) seconds
    frame_quality: np.ndarray          # (T,) in [0, 1]: face confidence, voice activity, ...
    quality: dict = field(default_factory=dict)  # per-video cues (floats)
    fps: float | None = None
    missing: bool = False
    reason: str = ""


def entry_path(folder: Path, vid: str) -> Path:
    return folder / f"{vid}.npz"


def failure_path(folder: Path, vid: str) -> Path:
    return folder / f"{vid}.failed.json"


def status(folder: Path, vid: str) -> str | None:
    if entry_path(folder, vid).is_file():
        return "ok"
    if failure_path(folder, vid).is_file():
        return "failed"
    return None


def write_entry(folder: Path, vid: str, entry: Entry) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, features=entry.features.astype(np.float32), times=entry.times.astype(np.float32),
             frame_quality=entry.frame_quality.astype(np.float32),
             meta=np.array(json.dumps({"quality": entry.quality, "fps": entry.fps, "version": CACHE_VERSION})))
    fileio.write_bytes(entry_path(folder, vid), buffer.getvalue())
    failure_path(folder, vid).unlink(missing_ok=True)


def write_failure(folder: Path, vid: str, reason: str, quality: dict | None = None) -> None:
    fileio.write_json(failure_path(folder, vid), {"id": vid, "reason": reason, "quality": quality or {}})


def read_entry(folder: Path, vid: str, dim: int | None = None) -> Entry:
    """The cached entry; a recorded failure reads as a missing modality with no frames."""
    path = entry_path(folder, vid)
    if path.is_file():
        with np.load(path) as data:
            meta = json.loads(str(data["meta"]))
            return Entry(data["features"], data["times"], data["frame_quality"], meta["quality"], meta["fps"])
    failed = failure_path(folder, vid)
    if failed.is_file():
        info = json.loads(failed.read_text())
        width = dim if dim is not None else read_manifest(folder).get("dim") or 0
        return Entry(np.zeros((0, width), np.float32), np.zeros(0, np.float32), np.zeros(0, np.float32),
                     info.get("quality", {}), None, True, info["reason"])
    raise FileNotFoundError(f"{folder}: no cache entry for video {vid!r}; run python -m solution.features first")


def write_manifest(folder: Path, spec: dict) -> dict:
    """Rebuild the manifest from the entries on disk (so shards that ran apart agree)."""
    entries = {}
    dim = None
    for path in sorted(folder.glob("*.npz")):
        with np.load(path) as data:
            shape = list(data["features"].shape)
            meta = json.loads(str(data["meta"]))
        dim = shape[1] if dim is None else dim
        entries[path.stem] = {"status": "ok", "shape": shape, "fps": meta["fps"]}
    for path in sorted(folder.glob("*.failed.json")):
        vid = path.name[: -len(".failed.json")]
        entries.setdefault(vid, {"status": "missing", "reason": json.loads(path.read_text())["reason"]})
    manifest = {**spec, "dim": dim, "version": CACHE_VERSION, "entries": entries}
    fileio.write_json(folder / "manifest.json", manifest)
    return manifest


def read_manifest(folder: Path) -> dict:
    path = Path(folder) / "manifest.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def write_failures_table(work) -> pd.DataFrame:
    rows = []
    for path in sorted(features_root(work).glob("*/*.failed.json")):
        info = json.loads(path.read_text())
        rows.append({"id": info["id"], "extractor": path.parent.name, "reason": info["reason"]})
    table = pd.DataFrame(rows, columns=["id", "extractor", "reason"])
    fileio.write_csv(features_root(work) / "failures.csv", table)
    return table
