"""The features cache: one entry per (extractor, video, inputs), and a manifest per extractor.

    WORK/features/<extractor key>/<video>.<source key>.npz          features (T, D), times (T,),
                                                                    frame_quality (T,), quality cues
                                                                    (scalars) and extraction info;
                                                                    timed text adds ends (T,)
    WORK/features/<extractor key>/<video>.<source key>.failed.json  the modality is missing for this
                                                                    video, and why
    WORK/features/<extractor key>/manifest.json   extractor name, settings, their hash, and every entry
    WORK/features/failures.csv                    every failure of every extractor: id, extractor, reason

The extractor key ends in a hash of the settings, so changing any setting writes a new
folder instead of mixing old and new features. The source key (`source_key`) is a hash of
what the input files an entry was computed from are (name, size, and their first and last
64 KiB; see `_identity`), not where they are: a release copied to another disk or mounted
at another path finds its entries (and its trained folds, whose settings hold these keys),
while a second release extracted into the same WORK, or a video replaced in place, gets
its own entries instead of another release's features for the same id. Entries are written atomically; an
entry that exists is done, which is what makes runs resumable and shards independent.

Spans. An entry whose rows are spans rather than instants (a word-timed transcript: one row
per word, `times` its start) also holds `ends` (T,), and its metadata and manifest entry say
`"timed": true`. The array is optional, so the version stays 2: every entry written before
it existed has none and reads as before (`ends` None, untimed), and no cache is invalidated.

Damage. Writes are atomic (solution/fileio.py), so a killed or out-of-space run leaves no
half-written entry; a file truncated afterwards (a killed copy, a crash that lost data) is
found by the features stage (`damaged`), which extracts it again, and any reader of an
unreadable entry, failure record or manifest raises a DataError naming the file.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import zipfile
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from solution import fileio

log = logging.getLogger(__name__)

CACHE_VERSION = 2   # the optional `ends` of timed rows extends version 2: an entry without it is untimed
KEY_LENGTH = 12
# What each stream reads, by its spec.json modality (organizer streams add their pickle).
SOURCE_INPUTS = {"visual": ("video", "crops"), "audio": ("audio", "video"), "text": ("transcript",),
                 "organizer": ("video",)}
# `<vid>.<source key>`: entries of the version 1 layout (`<vid>.npz`) do not match and are ignored.
_STEM = re.compile(rf"^(?P<vid>.+)\.(?P<key>[0-9a-f]{{{KEY_LENGTH}}})$")
ENTRY_ARRAYS = ("features", "times", "frame_quality", "meta")  # every entry has these (`ends` is optional)
# What reading a truncated or damaged .npz raises: a missing zip directory, a bad CRC or
# deflate stream, a cut .npy header, unreadable metadata.
_DAMAGED = (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile, zlib.error)
_REDO = "delete it and run python -m solution.features again"


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
    source: str = ""                   # the input file it was computed from, for messages
    ends: np.ndarray | None = None     # (T,) seconds: rows are spans [times, ends) (timed text); None: instants

    @property
    def timed(self) -> bool:
        return self.ends is not None

    @property
    def has_rows(self) -> bool:
        """Whether the entry holds features to align (not missing, not empty)."""
        return not self.missing and len(self.features) > 0


# ------------------------------------------------------------------ what an entry was computed from

SAMPLED_BYTES = 64 * 1024  # hashed at each end of an input file (see _identity)
_IDENTITIES: dict = {}    # stat key (see _identity) -> identity: this process's, and the work folder's
_LOADED: set = set()


def identities_path(work) -> Path:
    return features_root(work) / "identities.json"


def _recorded_identities(path: Path) -> dict:
    """The identities recorded at `path`; {} when absent or unreadable (a cache of a cache:
    reading the files again gives the same keys)."""
    try:
        known = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        return {}
    return known if isinstance(known, dict) else {}


def load_identities(work) -> None:
    """Take up the identities the features stage recorded in this work folder, so the stages
    after it key every video by a stat instead of reading its files again. An entry whose file
    has since moved or changed (another path, inode, size, mtime or ctime) is simply not
    found, and the file is read again."""
    path = identities_path(work)
    if str(path) not in _LOADED:
        _LOADED.add(str(path))
        _IDENTITIES.update(_recorded_identities(path))


def save_identities(work) -> None:
    """Record this process's identities in the work folder (merged with what is there: shards
    of the features stage may write it at once; an entry lost to a race is read again later)."""
    path = identities_path(work)
    known = _recorded_identities(path)
    if not set(_IDENTITIES) <= set(known):
        try:
            fileio.write_json(path, {**known, **_IDENTITIES})
        except OSError as exc:  # only a cache: the next stage reads the files again
            log.warning("could not record file identities in %s (%s); later stages will read the files again", path, exc)


def _sampled_digest(path: Path, size: int) -> str:
    """sha256 of the file's first and last SAMPLED_BYTES (the whole file when smaller)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read(SAMPLED_BYTES))
        if size > SAMPLED_BYTES:
            f.seek(max(SAMPLED_BYTES, size - SAMPLED_BYTES))
            h.update(f.read(SAMPLED_BYTES))
    return h.hexdigest()[:16]


def _identity(path) -> str:
    """What an input is, wherever the release sits, so a copied or re-mounted release keeps its
    entries. A file: its name, size, and a hash of its first and last 64 KiB; a container's
    header, index and tail change with any re-encode, so a changed video is found, while a
    whole-file hash would read every byte of the release (terabytes of video) on each rerun. A
    folder (face crops, maybe tens of thousands of jpgs): its name, its sorted file names, and
    the identity of its first and last file; statting every crop would cost more than the
    lookup it guards. A file's identity is remembered by its stat (path, name, inode, size,
    mtime, ctime), within a process and in the work folder (load_identities), so reruns in
    place cost a stat."""
    if path is None:
        return "none"
    path = Path(path)
    try:
        info = path.stat()
    except OSError:
        return f"{path.name}|absent"
    if path.is_dir():  # not remembered: a folder's mtime misses a crop rewritten in place
        try:
            names = sorted(entry.name for entry in os.scandir(path))
        except OSError:
            return f"{path.name}|dir|unreadable"
        ends = [_identity(path / n) for n in dict.fromkeys(names[:1] + names[-1:])]
        listing = hashlib.sha256("\n".join(names).encode()).hexdigest()[:16]
        return f"{path.name}|dir|{len(names)}|{listing}|{'|'.join(ends)}"
    # The name (a symlink's, not its target's), inode and ctime too: a file rewritten in place
    # with its mtime put back (cp -p, rsync -t, tar x) still gets a new ctime.
    memo = f"{path.resolve()}|{path.name}|{info.st_ino}|{info.st_size}|{info.st_mtime_ns}|{info.st_ctime_ns}"
    if memo not in _IDENTITIES:
        try:
            _IDENTITIES[memo] = f"{path.name}|{info.st_size}|{_sampled_digest(path, info.st_size)}"
        except OSError:
            return f"{path.name}|unreadable"
    return _IDENTITIES[memo]


def source_key(src, modality: str, kind: str = "") -> str:
    """12 hex digits identifying the input files a stream of `modality` reads for the video
    `src` (a readers.VideoSources): visual reads the video and crops, audio the audio file and
    the video, text the transcript, organizer the `kind` pickle and the video (its duration)."""
    if modality not in SOURCE_INPUTS:
        raise ValueError(f"unknown stream modality {modality!r}; expected one of {sorted(SOURCE_INPUTS)}")
    if modality == "organizer" and not kind:
        raise ValueError("an organizer stream's source key needs its kind, e.g. 'vit'")
    inputs = [getattr(src, name) for name in SOURCE_INPUTS[modality]]
    if modality == "organizer":
        inputs.insert(0, src.organizer.get(kind))
    blob = json.dumps([src.vid, modality, kind, *(_identity(path) for path in inputs)])
    return hashlib.sha256(blob.encode()).hexdigest()[:KEY_LENGTH]


def stream_source_key(stream: dict, src) -> str:
    """`source_key` for a stream described by its spec.json (or manifest): `modality`, and
    `extractor`, whose argument is the organizer kind ("organizer:vit" -> "vit")."""
    modality = stream["modality"]
    kind = stream["extractor"].partition(":")[2].partition("?")[0] if modality == "organizer" else ""
    return source_key(src, modality, kind)


# ------------------------------------------------------------------ entries

def entry_path(folder: Path, vid: str, key: str) -> Path:
    return Path(folder) / f"{vid}.{key}.npz"


def failure_path(folder: Path, vid: str, key: str) -> Path:
    return Path(folder) / f"{vid}.{key}.failed.json"


def status(folder: Path, vid: str, key: str) -> str | None:
    """"ok", "failed" (a recorded failure), or None (never extracted from these inputs)."""
    if entry_path(folder, vid, key).is_file():
        return "ok"
    if failure_path(folder, vid, key).is_file():
        return "failed"
    return None


def write_entry(folder: Path, vid: str, key: str, entry: Entry) -> None:
    buffer = io.BytesIO()
    meta = {"quality": entry.quality, "fps": entry.fps, "source": entry.source, "version": CACHE_VERSION}
    arrays = {}
    if entry.ends is not None:
        if len(entry.ends) != len(entry.times):
            raise ValueError(f"video {vid}: {len(entry.ends)} span ends for {len(entry.times)} rows")
        meta["timed"] = True
        arrays["ends"] = np.asarray(entry.ends, np.float32)
    np.savez(buffer, features=entry.features.astype(np.float32), times=entry.times.astype(np.float32),
             frame_quality=entry.frame_quality.astype(np.float32), meta=np.array(json.dumps(meta)), **arrays)
    fileio.write_bytes(entry_path(folder, vid, key), buffer.getvalue())
    failure_path(folder, vid, key).unlink(missing_ok=True)


def write_failure(folder: Path, vid: str, key: str, reason: str, quality: dict | None = None) -> None:
    """Record that the modality is missing; an entry computed earlier from the same inputs is
    removed after the record is written (an entry is either features or a failure)."""
    fileio.write_json(failure_path(folder, vid, key), {"id": vid, "key": key, "reason": reason,
                                                       "quality": quality or {}})
    entry_path(folder, vid, key).unlink(missing_ok=True)


def _read_json(path: Path, what: str, fix: str = _REDO):
    return fileio.read_json(path, what, fix)


def damaged(folder: Path, vid: str, key: str) -> str | None:
    """Why the entry or failure record of (vid, key) cannot be read, or None (it can, or
    there is none). The features stage asks this of every entry it would otherwise skip.

    Cheap at 12,700 videos x several streams: an .npz is a zip whose directory is its last
    bytes, so opening it reads a few hundred bytes and no array, and a truncated file has no
    directory; a failure record is a small JSON. A byte size kept in the manifest would not
    do: the manifest is written at the end of a run, so a killed run's entries have none.
    Damage inside an intact file (a flipped bit) passes here and fails the CRC check when
    the arrays are read (read_entry names the file). Training does not ask: `status` stays
    one stat, and training reads every entry in full before its first epoch anyway."""
    path = entry_path(folder, vid, key)
    if path.is_file():
        try:
            with zipfile.ZipFile(path) as archive:
                absent = set(ENTRY_ARRAYS) - {name.removesuffix(".npy") for name in archive.namelist()}
        except (OSError, zipfile.BadZipFile) as exc:
            return f"{path}: unreadable cache entry ({type(exc).__name__}: {exc})"
        return f"{path}: cache entry without {sorted(absent)}" if absent else None
    failed = failure_path(folder, vid, key)
    if failed.is_file():
        try:
            info = json.loads(failed.read_text())
        except (OSError, ValueError) as exc:
            return f"{failed}: unreadable failure record ({type(exc).__name__}: {exc})"
        if not isinstance(info, dict) or "reason" not in info:
            return f"{failed}: failure record without a reason"
    return None


def read_entry(folder: Path, vid: str, key: str, dim: int | None = None) -> Entry:
    """The cached entry; a recorded failure reads as a missing modality with no frames. An
    unreadable one is a DataError naming the file."""
    path = entry_path(folder, vid, key)
    if path.is_file():
        try:
            with np.load(path) as data:
                meta = json.loads(str(data["meta"]))
                return Entry(data["features"], data["times"], data["frame_quality"], meta["quality"], meta["fps"],
                             source=meta.get("source", ""), ends=data["ends"] if "ends" in data.files else None)
        except _DAMAGED as exc:
            raise fileio.unreadable(path, "cache entry", exc, _REDO) from exc
    failed = failure_path(folder, vid, key)
    if failed.is_file():
        info = _read_json(failed, "failure record")
        width = dim if dim is not None else read_manifest(folder).get("dim") or 0
        return Entry(np.zeros((0, width), np.float32), np.zeros(0, np.float32), np.zeros(0, np.float32),
                     info.get("quality", {}), None, True, info["reason"])
    raise FileNotFoundError(f"{folder}: no cache entry for video {vid!r} with source key {key} "
                            "(never extracted from these input files); run python -m solution.features first")


def _stem(name: str, suffix: str) -> re.Match | None:
    return _STEM.match(name[: -len(suffix)]) if name.endswith(suffix) else None


def write_manifest(folder: Path, spec: dict) -> dict:
    """Rebuild the manifest from the entries on disk (so shards that ran apart agree). Entries
    are keyed `<vid>.<source key>`, so two releases' entries for one id both appear; `dim` is
    the most common width."""
    entries = {}
    widths = Counter()
    for path in sorted(Path(folder).glob("*.npz")):
        match = _stem(path.name, ".npz")
        if match is None:
            continue
        shape, meta = _entry_header(path)
        if len(shape) == 2 and shape[0]:  # no frames (no face found, say): no width to speak of
            widths[shape[1]] += 1
        entries[path.stem] = {"status": "ok", "id": match["vid"], "key": match["key"], "shape": shape,
                              "fps": meta["fps"], "source": meta.get("source", "")}
        if meta.get("timed"):
            entries[path.stem]["timed"] = True
    for path in sorted(Path(folder).glob("*.failed.json")):
        match = _stem(path.name, ".failed.json")
        if match is None:
            continue
        entries.setdefault(match[0], {"status": "missing", "id": match["vid"], "key": match["key"],
                                      "reason": _read_json(path, "failure record")["reason"]})
    dim = widths.most_common(1)[0][0] if widths else None
    manifest = {**spec, "dim": dim, "version": CACHE_VERSION, "entries": dict(sorted(entries.items()))}
    fileio.write_json(Path(folder) / "manifest.json", manifest)
    return manifest


def entry_meta(folder: Path, vid: str, key: str) -> dict:
    """An entry's metadata (quality, fps, source, version, timed) without its arrays."""
    return _entry_header(entry_path(folder, vid, key))[1]


def _entry_header(path: Path) -> tuple[list, dict]:
    """An entry's feature shape and metadata without reading its features (a manifest of
    thousands of entries would otherwise read every array)."""
    try:
        with zipfile.ZipFile(path) as archive, archive.open("features.npy") as handle:
            version = np.lib.format.read_magic(handle)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape, _, _ = read_header(handle)
        with np.load(path) as data:
            meta = json.loads(str(data["meta"]))
    except _DAMAGED as exc:
        raise fileio.unreadable(path, "cache entry", exc, _REDO) from exc
    return list(shape), meta


def read_manifest(folder: Path) -> dict:
    path = Path(folder) / "manifest.json"
    if not path.is_file():
        return {}
    return _read_json(path, "manifest", "run python -m solution.features again, which rebuilds it")


def write_failures_table(work, sources=None) -> pd.DataFrame:
    """failures.csv: every recorded failure in WORK or, given `sources` (VideoSources of a
    release), only those of these videos as their files are now; a failure recorded before a
    file was fixed or replaced (so under another source key) is then left out."""
    current = None if sources is None else {src.vid: src for src in sources}
    root = features_root(work)
    rows = []
    for folder in sorted(p for p in root.glob("*") if p.is_dir()):
        spec_file = folder / "spec.json"
        stream = _read_json(spec_file, "stream spec", "run python -m solution.features again with its extractor, "
                            "which rewrites it") if spec_file.is_file() else None
        for path in sorted(folder.glob("*.failed.json")):
            match = _stem(path.name, ".failed.json")
            if match is None:
                continue
            if current is not None:
                src = current.get(match["vid"])
                if src is None or stream is None or match["key"] != stream_source_key(stream, src):
                    continue
            info = _read_json(path, "failure record")
            rows.append({"id": info["id"], "extractor": folder.name, "reason": info["reason"]})
    table = pd.DataFrame(rows, columns=["id", "extractor", "reason"])
    fileio.write_csv(root / "failures.csv", table)
    return table
