"""Readers for the official release layouts (Hume-Vidmimic2 for EMI, Aff-Wild2 for VA).

The synthetic generator writes these same layouts, so one set of readers serves both the
demo data and a user's real release. Every malformed input raises DataError with the file
and the problem. Accepted variants (the real layouts are only partly documented):
ids zero-padded or not, `.mp3` or `.wav` audio, organizer pickles holding numpy arrays,
lists, or a dict with one array (and optionally `fps`, the rate of its rows: read_feature_pickle).
Organizer folders: the organizers' vit/ and wav2vec2/ (EMI), and the synthetic generator's
clean latent streams latent_face/ and latent_voice/ (EMI and VA; ORGANIZER_FOLDERS,
LATENT_FOLDERS). Transcripts are plain text (`<id>.txt`) or, with word
times, ASR JSON (`<id>.json`, see `read_transcript`).

Test listings: VA reads this project's `test_set.csv` (video,frames) or the organizers'
`*_test_set_release.txt` (a video a line) with their sample submission `*_test_set_sample.txt`
(a row per frame: the frame counts), beside the annotations or at the root; EMI reads
`test_split.csv` (or the other EMI_TEST_NAMES) at the root. $TEST_LISTING, or `--test-listing`
on a stage (solution.listing), names another. metadata.csv is optional and read for what it
has: without `subject`, subjects are unknown (a logged note, never an error).

VA annotations that do not fit their video: a training or validation annotation file whose
line count differs from its video's frame count by more than annotation_tolerance (the larger
of 5 frames and 2 %) is an error naming the file and both counts, unless $VA_ANNOTATION_FIT
accepts it: `fit` truncates the annotation, or pads it with unannotated -5 lines, to the
video's frames; `drop` leaves the video out of training (each a logged warning). A video whose
every line is -5,-5 has nothing to learn from and is left out of training (a logged warning);
`left_out()` lists both. `python -m solution.inspect DATA` shows all of it before any stage.
"""
from __future__ import annotations

import json
import logging
import math
import os
import pickle
import re
from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from solution.errors import DataError
from solution.listing import TEST_LISTING_ENV, listing_override
from solution.tracks import EMI, EMI_TARGETS, VA, VA_UNANNOTATED, Track

log = logging.getLogger("layouts")


# ---------------------------------------------------------------- shared helpers

def _read_csv(path: Path, what: str) -> pd.DataFrame:
    if not path.is_file():
        raise DataError(f"{path}: {what} file not found")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot parse {what} as CSV ({exc})") from exc
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame


def _rows(indices, limit: int = 5) -> str:
    # CSV line numbers as a user sees them in an editor (header is line 1).
    shown = ", ".join(str(i + 2) for i in list(indices)[:limit])
    more = len(indices) - limit
    return shown + (f" (+{more} more)" if more > 0 else "")


_ID_PATTERN = re.compile(r"^\s*0*(\d+)(\.\w+)?\s*$")


def parse_video_id(raw: str) -> int | None:
    """'00042', '42', '42.mp4' -> 42; anything else -> None."""
    match = _ID_PATTERN.match(str(raw))
    return int(match.group(1)) if match else None


def _parse_ids(frame: pd.DataFrame, column: str, path: Path) -> np.ndarray:
    ids = frame[column].map(parse_video_id)
    bad = np.flatnonzero(ids.isna().to_numpy())
    if bad.size:
        raise DataError(f"{path}: column {column!r} has values that are not video ids "
                        f"on line(s) {_rows(bad)}: {frame[column].iloc[bad[0]]!r}")
    ids = ids.astype(np.int64).to_numpy()
    uniq, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        dup = uniq[counts > 1]
        raise DataError(f"{path}: duplicate video id(s) {dup[:10].tolist()}"
                        f"{' ...' if dup.size > 10 else ''} in column {column!r}")
    return ids


def _numeric_block(frame: pd.DataFrame, columns, path: Path) -> np.ndarray:
    block = frame[list(columns)].apply(lambda c: pd.to_numeric(c.str.strip(), errors="coerce"))
    values = block.to_numpy(np.float64)
    bad = np.flatnonzero(~np.isfinite(values).all(1))
    if bad.size:
        col = columns[int(np.flatnonzero(~np.isfinite(values[bad[0]]))[0])]
        raise DataError(f"{path}: missing, NaN or non-numeric value(s) on line(s) {_rows(bad)} "
                        f"(first in column {col!r}: {frame[col].iloc[bad[0]]!r})")
    return values


_NOTED: set = set()


def _note_once(key, level: int, message: str, *args) -> None:
    """Log a note about a file once per process (readers are opened by many stages)."""
    if key not in _NOTED:
        _NOTED.add(key)
        log.log(level, message, *args)


def _optional_metadata(path: Path, key: str) -> pd.DataFrame | None:
    """An optional metadata.csv: None when absent or without its `key` column (logged, never
    an error); without `subject` it is read for what it has (logged). Extra columns are kept."""
    if not path.is_file():
        return None
    frame = _read_csv(path, "metadata")
    if key not in frame.columns:
        _note_once((str(path), key), logging.WARNING, "%s: no %r column (found %s); the file is ignored",
                   path, key, list(frame.columns)[:10])
        return None
    if "subject" not in frame.columns:
        _note_once((str(path), "subject"), logging.INFO,
                   "%s: no 'subject' column; read for its other columns, and subjects are taken as unknown", path)
    return frame


def _require_columns(frame: pd.DataFrame, required, path: Path, what: str) -> None:
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise DataError(f"{path}: {what} is missing column(s) {missing}; found {list(frame.columns)}; "
                        f"expected header {','.join(required)}")


# ---------------------------------------------------------------- EMI (Hume-Vidmimic2)

def read_emi_labels(path, what: str = "EMI label", check_range: bool = True) -> pd.DataFrame:
    """A split CSV (`Filename` + the six targets) -> float frame indexed by int video id.
    Predictions use the same reader with check_range=False (they are clipped later)."""
    path = Path(path)
    frame = _read_csv(path, what)
    _require_columns(frame, ("Filename", *EMI_TARGETS), path, f"{what} file")
    ids = _parse_ids(frame, "Filename", path)
    values = _numeric_block(frame, EMI_TARGETS, path)
    out = np.flatnonzero(((values < 0) | (values > 1)).any(1))
    if check_range and out.size:
        raise DataError(f"{path}: label(s) outside [0, 1] on line(s) {_rows(out)}")
    return pd.DataFrame(values, index=pd.Index(ids, name="Filename"), columns=list(EMI_TARGETS))


def read_id_list(path) -> list[int]:
    """A test listing: a CSV with a `Filename` column (other columns ignored), or one id per
    line, with no header or a one-word header (`id`, `video`, ...); blank lines are skipped."""
    path = Path(path)
    frame = _read_csv(path, "id list")
    if "Filename" not in frame.columns:
        if len(frame.columns) == 1 and parse_video_id(frame.columns[0]) is not None:
            frame = pd.read_csv(path, dtype=str, header=None, names=["Filename"], skipinitialspace=True)
        elif len(frame.columns) == 1:
            frame = frame.rename(columns={frame.columns[0]: "Filename"})
        else:
            raise DataError(f"{path}: id list needs a 'Filename' column; found {list(frame.columns)}")
    return sorted(_parse_ids(frame, "Filename", path).tolist())


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


# Folder and accepted extensions of each per-video file kind in the EMI release.
EMI_KINDS = {
    "video": ("raw", (".mp4", ".avi", ".webm", ".mov")),
    "audio": ("audio", (".mp3", ".wav", ".flac", ".m4a")),
    "transcript": ("transcripts", (".txt",)),
    "timed_transcript": ("transcripts", (".json",)),   # ASR output with word times (read_transcript)
    "vit": ("vit", (".pkl",)),
    "wav2vec2": ("wav2vec2", (".pkl",)),
    "latent_face": ("latent_face", (".pkl",)),
    "latent_voice": ("latent_voice", (".pkl",)),
}
# Organizer-style feature folders (`<folder>/<video>.pkl`, read by the extractor organizer:<folder>).
# The organizers' own: cached by default when present (python -m solution.features --organizer auto).
ORGANIZER_FOLDERS = ("vit", "wav2vec2")
# The synthetic generator's clean latent streams (solution.synth, latents=true), in EMI and VA
# releases: read only when named (--organizer latent_face,latent_voice), never by default.
LATENT_FOLDERS = ("latent_face", "latent_voice")


# Names of the EMI test listing looked for at the release root, in this order (the organizers'
# name is not public; test_split.csv is what team code reads).
EMI_TEST_NAMES = ("test_split.csv", "test_split.txt", "test_set.csv", "test_set.txt")


@dataclass
class EmiRelease:
    """A Hume-Vidmimic2 release folder. File names for splits can be overridden; the test
    listing is `test_listing` when given, else $TEST_LISTING, else the first of EMI_TEST_NAMES
    at the root (`test_csv` names the one used, relative to the root or absolute)."""

    root: Path
    train_csv: str = "train_split.csv"
    valid_csv: str = "valid_split.csv"
    test_csv: str = "test_split.csv"
    kinds: dict = field(default_factory=lambda: dict(EMI_KINDS))
    test_listing: Path | None = None

    def __post_init__(self):
        self.root = Path(self.root)
        if not self.root.is_dir():
            raise DataError(f"{self.root}: data folder not found")
        explicit = self.test_listing is not None
        self.test_listing = listing_override(self.test_listing)
        self.listing_source = ("test_listing" if explicit else f"${TEST_LISTING_ENV}") if self.test_listing else None
        if self.test_listing is not None:
            self.test_csv = str(self.test_listing)
        elif self.test_csv == EMI_TEST_NAMES[0]:  # the default name: look for the others too
            self.test_csv = next((n for n in EMI_TEST_NAMES if (self.root / n).is_file()), self.test_csv)

    def labels(self, split: str) -> pd.DataFrame:
        name = {"train": self.train_csv, "valid": self.valid_csv}.get(split)
        if name is None:
            raise ValueError(f"split must be 'train' or 'valid', got {split!r}")
        return read_emi_labels(self.root / name)

    def labelled(self) -> pd.DataFrame:
        """train and valid merged, with a `split` column; an id in both is an error."""
        train, valid = self.labels("train"), self.labels("valid")
        both = train.index.intersection(valid.index)
        if len(both):
            raise DataError(f"{self.root}: video id(s) {both[:10].tolist()} are in both "
                            f"{self.train_csv} and {self.valid_csv}")
        return pd.concat([train.assign(split="train"), valid.assign(split="valid")]).sort_index()

    @cached_property
    def files(self) -> dict[str, dict[int, Path]]:
        """kind -> {video id -> path}, found by listing each folder once."""
        found = {}
        for kind, (folder, exts) in self.kinds.items():
            table: dict[int, Path] = {}
            directory = self.root / folder
            if directory.is_dir():
                for path in sorted(directory.iterdir()):
                    vid = parse_video_id(path.stem) if path.suffix.lower() in exts else None
                    if vid is None:
                        continue
                    if vid in table:
                        raise DataError(f"{directory}: two files for video id {vid}: "
                                        f"{table[vid].name} and {path.name}")
                    table[vid] = path
            found[kind] = table
        return found

    def path(self, kind: str, vid: int) -> Path | None:
        """The file of `kind` for video `vid`, or None when the release has none."""
        return self.files[kind].get(int(vid))

    def test_ids(self) -> list[int]:
        """The test listing when present, else ids with media or features but no label. A
        listing named by test_listing or $TEST_LISTING must exist."""
        listing = self.root / self.test_csv
        if listing.is_file():
            return read_id_list(listing)
        if self.test_listing is not None:
            raise DataError(f"{listing}: EMI test listing not found (named by {self.listing_source})")
        labelled = set(self.labelled().index)
        seen = set().union(*(set(t) for t in self.files.values()))
        _note_once((str(self.root), "emi test listing"), logging.INFO,
                   "%s: no test listing (looked there for %s; $%s or --test-listing names another); the test "
                   "videos are those with media or features but no label", self.root, ", ".join(EMI_TEST_NAMES),
                   TEST_LISTING_ENV)
        return sorted(seen - labelled)

    def organizer_paths(self, vid: int) -> dict[str, Path]:
        """{folder: pickle} of the video's organizer-style features (ORGANIZER_FOLDERS and
        LATENT_FOLDERS) that the release has."""
        return {k: p for k in ORGANIZER_FOLDERS + LATENT_FOLDERS if (p := self.path(k, vid)) is not None}

    def load_feature(self, kind: str, vid: int) -> np.ndarray:
        path = self.path(kind, vid)
        if path is None:
            folder = self.kinds[kind][0]
            raise DataError(f"{self.root / folder}: no {kind} file for video id {vid}")
        return load_feature_pickle(path)

    def transcript_path(self, vid: int) -> Path | None:
        """The video's transcript file: the timed `<id>.json` when there is one (it says more
        than a plain `<id>.txt` beside it), else the `.txt`, else None."""
        return self.path("timed_transcript", vid) or self.path("transcript", vid)

    def transcript(self, vid: int) -> str | None:
        path = self.transcript_path(vid)
        return None if path is None else read_transcript(path).text

    # ---- the interface every track's release offers (folds, training, report use only this)
    track = EMI

    def labelled_keys(self) -> dict[str, str]:
        """{video key: split} of every labelled video (train and valid)."""
        return {emi_key(v): s for v, s in self.labelled()["split"].items()}

    def left_out(self) -> dict[str, str]:
        """{video key: why} of labelled videos training leaves out: none (every EMI label is one)."""
        return {}

    def fitted(self) -> dict[str, str]:
        """{video key: what was done} of labels fitted to their video: none (one label a video)."""
        return {}

    @cached_property
    def _target_table(self) -> dict[str, np.ndarray]:
        table = self.labelled()
        return {emi_key(v): row for v, row in zip(table.index, table[list(EMI_TARGETS)].to_numpy(np.float32))}

    def video_targets(self, key: str) -> np.ndarray:
        """The video's label: (targets,) for this video-level track."""
        return self._target_table[key]

    def test_keys(self) -> list[str]:
        return [emi_key(v) for v in self.test_ids()]

    def subjects(self) -> dict[str, str] | None:
        """{video key: subject} when the release says who the subjects are, else None."""
        meta = self.metadata()
        if meta is None or "subject" not in meta.columns:
            return None
        return {emi_key(v): str(s) for v, s in meta["subject"].items()}

    def metadata(self) -> pd.DataFrame | None:
        """metadata.csv (the synthetic release's: subject ids, corruption flags), if present,
        indexed by video id; optional, and read for what it has: without `subject` the
        subjects are unknown, without `Filename` it is ignored (each with a logged note)."""
        frame = _optional_metadata(self.root / "metadata.csv", "Filename")
        if frame is None:
            return None
        return frame.set_index(pd.Index(_parse_ids(frame, "Filename", self.root / "metadata.csv"), name="Filename"))


# ---------------------------------------------------------------- transcripts

@dataclass
class Transcript:
    """A video's transcript. `starts`/`ends` (seconds, one per word or ASR chunk, sorted by
    start) are None for a transcript without times (a .txt, or ASR JSON with text alone)."""

    text: str
    words: list = field(default_factory=list)
    starts: np.ndarray | None = None
    ends: np.ndarray | None = None

    @property
    def timed(self) -> bool:
        return self.starts is not None

    def to_json(self, form: str = "chunks") -> dict:
        """The transcript as ASR JSON: `chunks` (the transformers pipeline's output with word
        timestamps) or `words` (whisperX / faster-whisper style); text alone without times."""
        if not self.timed:
            return {"text": self.text}
        spans = [(w, round(float(s), 3), round(float(e), 3)) for w, s, e in zip(self.words, self.starts, self.ends)]
        if form == "chunks":
            return {"text": self.text, "chunks": [{"text": w, "timestamp": [s, e]} for w, s, e in spans]}
        if form == "words":
            return {"text": self.text, "words": [{"word": w, "start": s, "end": e} for w, s, e in spans]}
        raise ValueError(f"form must be 'chunks' or 'words', got {form!r}")


TIMED_FORMS = ('{"text": ..., "chunks": [{"text": WORD, "timestamp": [START, END]}, ...]} (transformers pipeline), '
               '{"words": [{"word": WORD, "start": START, "end": END}, ...]}, '
               '{"segments": [{"words": [...]} or {"text": ..., "start": ..., "end": ...}, ...]} (whisperX, '
               'faster-whisper), a list of such words, or {"text": ...} alone (no times)')


def _seconds(value, where: str, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DataError(f"{where}: {what} is {value!r}, not a number of seconds")
    value = float(value)
    if not math.isfinite(value):
        raise DataError(f"{where}: {what} is {value}")
    if value < 0:
        raise DataError(f"{where}: {what} is negative ({value})")
    return value


def _timed_items(obj, where: str) -> list | None:
    """The word (or chunk) dicts of an ASR JSON document; None when it has text but no times."""
    if isinstance(obj, list):
        return obj
    if not isinstance(obj, dict):
        raise DataError(f"{where}: a transcript JSON must be an object or a list; expected {TIMED_FORMS}")
    for name in ("chunks", "words", "word_segments"):
        if name in obj:
            if not isinstance(obj[name], list):
                raise DataError(f"{where}: '{name}' must be a list, got {type(obj[name]).__name__}")
            return obj[name]
    if "segments" in obj:
        segments = obj["segments"]
        if not isinstance(segments, list):
            raise DataError(f"{where}: 'segments' must be a list, got {type(segments).__name__}")
        items = []
        for segment in segments:
            if isinstance(segment, dict) and isinstance(segment.get("words"), list):
                items += segment["words"]
            else:  # a segment without word times: the segment is the chunk
                items.append(segment)
        return items
    if "text" in obj:
        return None
    raise DataError(f"{where}: no 'chunks', 'words', 'segments' or 'text' (keys: {sorted(obj)[:8]}); "
                    f"expected {TIMED_FORMS}")


def parse_transcript(obj, where) -> Transcript:
    """A decoded ASR JSON document -> Transcript; DataError naming `where` when it is
    malformed: a word without text or times, a time that is not a finite number >= 0, an end
    before its start, text but no timed word. Words are sorted by start; words whose text is
    blank are dropped (after their times are checked)."""
    where = str(where)
    items = _timed_items(obj, where)
    text = obj.get("text") if isinstance(obj, dict) else None
    if text is not None and not isinstance(text, str):
        raise DataError(f"{where}: 'text' must be a string, got {type(text).__name__}")
    if items is None:
        return Transcript(text.strip())
    words, starts, ends = [], [], []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise DataError(f"{where}: word {i} is a {type(item).__name__}, not an object with text and times")
        word = item.get("text", item.get("word"))
        if not isinstance(word, str):
            raise DataError(f"{where}: word {i} has no 'text' or 'word' string")
        at = f"word {i} ({word.strip()!r})"
        if "timestamp" in item:
            stamp = item["timestamp"]
            if not isinstance(stamp, (list, tuple)) or len(stamp) != 2:
                raise DataError(f"{where}: {at}: timestamp must be [start, end], got {stamp!r}")
            start, end = stamp
        elif "start" in item or "end" in item:
            start, end = item.get("start"), item.get("end")
        else:
            raise DataError(f"{where}: {at} has no times ('timestamp', or 'start' and 'end')")
        start, end = _seconds(start, where, f"{at}: start"), _seconds(end, where, f"{at}: end")
        if end < start:
            raise DataError(f"{where}: {at}: end {end} is before start {start}")
        if word.strip():
            words.append(word.strip())
            starts.append(start)
            ends.append(end)
    order = np.argsort(np.asarray(starts, np.float64), kind="stable")
    words = [words[i] for i in order]
    text = (text or "").strip()
    if text and not words:
        raise DataError(f"{where}: has text but no timed word; expected {TIMED_FORMS}")
    return Transcript(text or " ".join(words), words, np.asarray(starts, np.float64)[order],
                      np.asarray(ends, np.float64)[order])


def read_transcript(path) -> Transcript:
    """A transcript file: `.txt` as plain text (no times), `.json` as ASR output (TIMED_FORMS).
    Malformed JSON raises DataError naming the file."""
    path = Path(path)
    if path.suffix.lower() != ".json":
        return Transcript(path.read_text(encoding="utf-8", errors="replace").strip())
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from exc
    return parse_transcript(obj, path)


# ---------------------------------------------------------------- VA (Aff-Wild2)

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
    return ~(values == VA_UNANNOTATED).any(1)


# ---- VA annotations against their videos

VA_FIT_ENV = "VA_ANNOTATION_FIT"
VA_FIT_MODES = {
    "error": "an annotation that does not fit its video is an error naming the file (default)",
    "fit": "truncate the annotation, or pad it with unannotated -5 lines, to the video's frames (logged)",
    "drop": "leave the video out of training and of the folds (logged)",
}


def annotation_tolerance(frames: int) -> int:
    """Frames an annotation file may differ from its video by: decoders and annotation tools
    disagree by a frame or a few at the ends; more than the larger of 5 frames and 2 % means
    another video, another frame rate, or a cut file."""
    return max(5, math.ceil(0.02 * frames))


def annotation_fit_mode(value: str | None = None) -> str:
    """`value`, else $VA_ANNOTATION_FIT, else 'error'; another word is an error listing the modes."""
    raw = value if value is not None else os.environ.get(VA_FIT_ENV, "")
    mode = str(raw).strip().lower() or "error"
    if mode not in VA_FIT_MODES:
        raise DataError(f"{VA_FIT_ENV}={raw!r}: choose one of " + "; ".join(f"{k} ({v})" for k, v in VA_FIT_MODES.items()))
    return mode


_FACTS: dict[tuple, object] = {}


def _file_fact(kind: str, path: Path, compute):
    """compute(path), remembered per process while the file's size and time stay the same
    (every stage opens the release more than once)."""
    stat = path.stat()
    key = (kind, str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _FACTS:
        _FACTS[key] = compute(path)
    return _FACTS[key]


def _has_annotated_frame(path: Path) -> bool:
    """False when every line of an annotation file is -5,-5; True as soon as one is not (read
    line by line: a usual file answers at its first lines). A malformed file answers True, so
    read_va_annotation names its problem where the file is read."""
    with open(path, encoding="utf-8", errors="replace") as handle:
        header = next(handle, "").replace(" ", "").strip().lower()
        if header != "valence,arousal":
            return True
        rows = 0
        for line in handle:
            if not line.strip():
                continue
            rows += 1
            try:
                if any(float(x) != VA_UNANNOTATED for x in line.split(",")):
                    return True
            except ValueError:
                return True
    return rows == 0


def count_annotation_lines(path) -> int:
    """The frames an annotation file holds (non-blank lines after the header), as
    read_va_annotation counts them, without parsing them."""
    lines = Path(path).read_text(encoding="utf-8", errors="replace").splitlines()
    return sum(1 for line in lines[1:] if line.strip())


def mismatch_message(m: dict) -> str:
    """The error of an annotation file that does not fit its video (`m` from VaRelease.annotation_mismatch)."""
    side = "fewer" if m["lines"] < m["frames"] else "more"
    return (f"{m['file']}: {m['lines']} annotation lines, but its video {m['video']} has {m['frames']} frames "
            f"({abs(m['lines'] - m['frames'])} {side} lines, more than the {m['tolerance']} tolerated: the larger of "
            f"5 frames and 2 %); check that the file belongs to that video, or accept it with {VA_FIT_ENV}=fit "
            f"(truncate the annotation, or pad it with unannotated -5 lines, to the video's frames) or "
            f"{VA_FIT_ENV}=drop (leave the video out of training)")


VA_SPLIT_FOLDERS = {"train": "Train_Set", "valid": "Validation_Set"}
VA_VIDEO_EXTS = (".mp4", ".avi")
_SIDE_SUFFIX = re.compile(r"_(left|right)$")


_VIDEO_SUFFIX = re.compile(r"\.(mp4|avi|txt)$", re.IGNORECASE)
# Words of a names list's first line that make it a header, not a video (Aff-Wild2 names are
# like `1-30-1280x720`, `video59_right`, `118-30-640x480_left`).
_HEADER_WORDS = {"video", "videos", "name", "names", "video_name", "videoname", "filename", "file", "id",
                 "test", "set", "challenge", "list", "release", "valence", "arousal", "estimation"}


def _looks_like_header(line: str) -> bool:
    tokens = {t for t in re.split(r"[\s_\-.,:;]+", line.lower()) if t}
    return bool(tokens & _HEADER_WORDS) or " " in line.strip() or line.rstrip().endswith(":")


def _frame_location(raw: str) -> tuple[str, str] | None:
    """'video/00001.jpg' (or with leading folders, or backslashes) -> ('video', '00001'); else None."""
    parts = [p for p in raw.strip().replace("\\", "/").split("/") if p]
    if len(parts) < 2 or "." not in parts[-1]:
        return None
    return parts[-2], parts[-1].rsplit(".", 1)[0]


def _read_va_sample(path: Path, lines: list[tuple[int, str]]) -> dict[str, int]:
    """The organizers' sample submission: `image_location,valence,arousal`, a row per frame
    (`<video>/00001.jpg`, leading folders and backslashes accepted) -> {video: its rows}.
    Plain string methods, one pass each: a million rows take about a second."""
    if lines and lines[0][1].split(",")[0].strip().lower() == "image_location":
        lines = lines[1:]
    locations = [line.partition(",")[0].strip() for _, line in lines]
    if any("\\" in loc for loc in locations):
        locations = [loc.replace("\\", "/") for loc in locations]
    split = [loc.rpartition("/") for loc in locations]
    folders, files = [f for f, _, _ in split], [name for _, _, name in split]
    if any("/" in f for f in folders):
        folders = [f.rpartition("/")[2] for f in folders]
    bad = next((i for i, (f, name) in enumerate(zip(folders, files)) if not f or "." not in name), None)
    if bad is not None:
        raise DataError(f"{path}: line {lines[bad][0]}: expected an image_location like <video>/00001.jpg, got "
                        f"{locations[bad]!r}")
    if len(set(locations)) != len(locations):
        seen: set = set()
        for i, key in enumerate(locations):
            if key in seen:
                raise DataError(f"{path}: line {lines[i][0]}: frame {key} listed twice")
            seen.add(key)
    counts = Counter(folders)
    last = dict(zip(folders, files))  # each video's last row: frame N of N rows when they run 1..N
    gaps = [v for v, name in last.items() if name.split(".")[0].isdigit() and int(name.split(".")[0]) != counts[v]]
    if gaps:
        _note_once((str(path), "gaps"), logging.WARNING, "%s: %d video(s) whose last row is not frame <rows>, e.g. "
                   "%s (%d rows, last %s); the rows are taken as the frame count", path, len(gaps), gaps[0],
                   counts[gaps[0]], last[gaps[0]])
    return dict(counts)


def read_va_test_listing(path) -> dict[str, int | None]:
    """Test listing -> {video: frame count or None}. Accepted (told apart by their content):
    this project's CSV `video,frames` (other columns ignored); the organizers' sample submission
    (`image_location,valence,arousal`, a row per frame: the rows of a video are its frame count);
    the organizers' video list (one name a line, an optional header line, blank lines and
    `#` comments skipped, a `.mp4`/`.avi`/`.txt` suffix dropped: frame counts then come from
    the videos)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: VA test listing not found")
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _LISTINGS:  # a stage opens the release more than once; a sample file has a million rows
        if len(_LISTINGS) >= 8:
            _LISTINGS.pop(next(iter(_LISTINGS)))
        _LISTINGS[key] = _parse_va_listing(path)
    return dict(_LISTINGS[key])


_LISTINGS: dict[tuple, dict[str, int | None]] = {}


def _parse_va_listing(path: Path) -> dict[str, int | None]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: VA test listing is not text ({exc})") from exc
    lines = [(n, line) for n, line in enumerate(map(str.strip, text.splitlines()), start=1)
             if line and line[0] != "#"]
    if not lines:
        raise DataError(f"{path}: VA test listing is empty")
    header = [c.strip().lower() for c in lines[0][1].split(",")]
    listing: dict[str, int | None] = {}
    if header[:2] == ["video", "frames"]:
        for number, line in lines[1:]:
            name, count = (line.split(",") + [""])[:2]
            if not count.strip().isdigit() or int(count) <= 0:
                raise DataError(f"{path}: line {number}: frame count must be a positive integer, got {count!r}")
            listing.setdefault(name.strip(), int(count))
            if listing[name.strip()] != int(count):
                raise DataError(f"{path}: video {name!r} listed twice with different frame counts")
    elif header[0] == "image_location" or _frame_location(header[0]) is not None:
        listing = dict(_read_va_sample(path, lines))
    else:
        if _looks_like_header(lines[0][1]):
            _note_once((str(path), "header"), logging.INFO, "%s: first line %r taken as a header", path, lines[0][1])
            lines = lines[1:]
        for number, line in lines:
            name = _VIDEO_SUFFIX.sub("", line.split(",", 1)[0].strip())
            if name in listing:
                raise DataError(f"{path}: line {number}: video {name!r} listed twice")
            listing[name] = None
    if not listing:
        raise DataError(f"{path}: VA test listing is empty")
    return listing


# The VA test listing under each name it is looked for: (kind, what it holds, file-name test).
VA_LISTING_NAMES = (
    ("csv", "test_set.csv", "video,frames (this project's generator)",
     lambda n: n == "test_set.csv"),
    ("list", "*_test_set_release.txt", "the organizers' video list, a name a line",
     lambda n: re.fullmatch(r"(.*[_\-.])?test_set_release\.(txt|csv)", n) is not None),
    ("sample", "*_test_set_sample.txt", "the organizers' sample submission, image_location,valence,arousal, "
     "a row per frame", lambda n: re.fullmatch(r"(.*[_\-.])?test_set_sample\.(txt|csv)", n) is not None),
)
# File-name words of the other ABAW challenges' listings, which share a release root with VA's.
_OTHER_CHALLENGES = {"expr", "expression", "au", "action", "unit", "units", "ce", "compound", "mtl", "multi",
                     "emi", "mimicry", "ah", "ambivalence", "hesitancy"}
_VA_WORDS = {"va", "valence", "arousal"}


def _va_listing_rank(name: str) -> int | None:
    """0: a VA listing by name; 1: a listing of no named challenge; None: another challenge's."""
    words = set(re.split(r"[^a-z0-9]+", name.lower()))
    if words & _VA_WORDS:
        return 0
    return None if words & _OTHER_CHALLENGES else 1


def find_va_listing(places: list[Path]) -> dict[str, Path]:
    """{kind: path} of the VA test listing files in `places` (searched in order; per kind, the
    first place holding one wins). Several of one kind in a place is an error naming them."""
    found: dict[str, Path] = {}
    for place in places:
        if not place.is_dir():
            continue
        files = sorted(p for p in place.iterdir() if p.is_file())
        for kind, _, _, matches in VA_LISTING_NAMES:
            if kind in found:
                continue
            ranked = [(r, p) for p in files if matches(p.name.lower()) and (r := _va_listing_rank(p.name)) is not None]
            if not ranked:
                continue
            best = min(r for r, _ in ranked)
            top = [p for r, p in ranked if r == best]
            if len(top) > 1:
                raise DataError(f"{place}: several VA test listings ({', '.join(p.name for p in top)}); name the one "
                                f"to read with {TEST_LISTING_ENV}=PATH or --test-listing PATH")
            found[kind] = top[0]
    return found


@dataclass
class VaRelease:
    """An Aff-Wild2 release: videos in batch*/, crops in cropped_aligned/, annotations in a
    `*/VA_Estimation_Challenge/{Train_Set,Validation_Set}` folder.

    The test listing: `test_listing` when given, else $TEST_LISTING (a file in any form
    read_va_test_listing reads, or a folder to look in), else found beside the annotations
    (the VA_Estimation_Challenge folder, then its parent) or at the release root: our
    `test_set.csv`, else the organizers' `*_test_set_release.txt` (the names) and
    `*_test_set_sample.txt` (the names and, from its rows, the frame counts; where there is no
    sample file the frame counts come from the videos). A folder without annotations but with a
    test listing (a test set that came later) opens too; its labelled splits are then empty."""

    root: Path
    annotations: Path | None = None  # the VA_Estimation_Challenge folder; found when None
    test_listing: Path | None = None
    annotation_fit: str | None = None  # error | fit | drop (VA_FIT_MODES); default $VA_ANNOTATION_FIT, else error

    def __post_init__(self):
        self.root = Path(self.root)
        if not self.root.is_dir():
            raise DataError(f"{self.root}: data folder not found")
        self.annotation_fit = annotation_fit_mode(self.annotation_fit)
        explicit = self.test_listing is not None
        self.test_listing = listing_override(self.test_listing)
        self.listing_source = ("test_listing" if explicit else f"${TEST_LISTING_ENV}") if self.test_listing else None
        if self.annotations is None:
            found = sorted(p for p in self.root.glob("**/VA_Estimation_Challenge")
                           if p.is_dir() and "private" not in p.relative_to(self.root).parts)
            if found:
                self.annotations = found[0]
            elif self.test_listing is None and not find_va_listing([self.root]):
                raise DataError(f"{self.root}: no VA_Estimation_Challenge annotation folder found "
                                "(pass its path explicitly)")
        self.annotations = None if self.annotations is None else Path(self.annotations)

    # ---- the test listing
    def listing_places(self) -> list[Path]:
        """Where the test listing is looked for, in order."""
        if self.test_listing is not None:
            return [self.test_listing] if self.test_listing.is_dir() else []
        places = [self.annotations, self.annotations.parent] if self.annotations is not None else []
        return list(dict.fromkeys(places + [self.root]))

    @cached_property
    def test_listing_files(self) -> list[Path]:
        """The files the test listing is read from (one, or the organizers' list and sample)."""
        if self.test_listing is not None and not self.test_listing.is_dir():
            if not self.test_listing.is_file():
                raise DataError(f"{self.test_listing}: VA test listing not found (named by {self.listing_source})")
            return [self.test_listing]
        found = find_va_listing(self.listing_places())
        if "csv" in found:
            return [found["csv"]]
        if found:
            return [found[k] for k in ("list", "sample") if k in found]
        tried = "; ".join(f"{name} ({what})" for _, name, what, _ in VA_LISTING_NAMES)
        named = f" (named by {self.listing_source})" if self.test_listing is not None else ""
        raise DataError(f"no VA test listing found: looked in {', '.join(str(p) for p in self.listing_places())}"
                        f"{named} for {tried}; name it with {TEST_LISTING_ENV}=PATH or --test-listing PATH")

    @cached_property
    def _test_listing(self) -> dict[str, int | None]:
        files = self.test_listing_files
        listing = read_va_test_listing(files[0])
        if len(files) == 2:  # the organizers' list (names) and sample submission (frame counts)
            counts = read_va_test_listing(files[1])
            only_list, only_sample = sorted(set(listing) - set(counts)), sorted(set(counts) - set(listing))
            if only_list or only_sample:
                raise DataError(f"{files[0]} and {files[1]} list other videos: "
                                + "; ".join(f"{len(v)} only in {f.name}, e.g. {v[:3]}"
                                            for v, f in ((only_list, files[0]), (only_sample, files[1])) if v)
                                + f"; name the one to read with {TEST_LISTING_ENV}=PATH or --test-listing PATH")
            listing = {video: counts[video] for video in listing}
        return listing

    def split_dir(self, split: str) -> Path:
        if self.annotations is None:
            raise DataError(f"{self.root}: no VA_Estimation_Challenge annotation folder, so no {split} split")
        return self.annotations / VA_SPLIT_FOLDERS[split]

    def videos(self, split: str) -> list[str]:
        if split == "test":
            return sorted(self._test_listing)
        if self.annotations is None:
            return []
        directory = self.split_dir(split)
        if not directory.is_dir():
            raise DataError(f"{directory}: annotation folder for split {split!r} not found")
        return sorted(p.stem for p in directory.glob("*.txt"))

    def labels(self, split: str, video: str) -> np.ndarray:
        return read_va_annotation(self.annotation_path(split, video))

    def annotation_path(self, split: str, video: str) -> Path:
        return self.split_dir(split) / f"{video}.txt"

    def video_frames(self, video: str) -> int | None:
        """The frame count of the video behind `video` from its header (a probe of milliseconds,
        remembered per process); None when there is no video file. An unreadable one raises
        MediaError."""
        from solution.media import video_info

        path = self.video_path(video)
        if path is None:
            return None
        return _file_fact("frames", path, lambda p: video_info(p, count=False)["frames"])

    def annotation_mismatch(self, video: str, split: str | None = None, lines: int | None = None) -> dict | None:
        """None when the video's annotation file fits its video (within annotation_tolerance),
        or when there is no video (or an unreadable one) to hold it against; else {file, video,
        lines, frames, tolerance}. `lines` (the annotation's frames) is counted when not given."""
        from solution.media import MediaError

        split = split or self._all_labelled().get(video)
        if split is None:
            return None
        try:
            frames = self.video_frames(video)
        except MediaError:
            return None  # the stage that reads the video names it; here there is nothing to hold the file against
        if frames is None:
            return None
        path = self.annotation_path(split, video)
        if lines is None:
            lines = _file_fact("lines", path, count_annotation_lines)
        tolerance = annotation_tolerance(frames)
        if abs(lines - frames) <= tolerance:
            return None
        return {"file": path, "video": self.video_path(video), "lines": int(lines), "frames": int(frames),
                "tolerance": tolerance}

    @cached_property
    def _video_files(self) -> dict[str, Path]:
        table = {}
        for path in sorted(self.root.glob("batch*/*")):
            if path.suffix.lower() in VA_VIDEO_EXTS:
                table.setdefault(path.stem, path)
        return table

    def video_path(self, video: str) -> Path | None:
        """`name_left`/`name_right` annotation files share the video `name`."""
        return self._video_files.get(video) or self._video_files.get(_SIDE_SUFFIX.sub("", video))

    def frames_dir(self, video: str) -> Path:
        return self.root / "cropped_aligned" / video

    @cached_property
    def _organizer_files(self) -> dict[str, dict[str, Path]]:
        """folder -> {video: pickle} of the organizer-style folders an Aff-Wild2 release can hold
        (the generator's LATENT_FOLDERS; Aff-Wild2 itself has none), each listed once."""
        return {kind: {p.stem: p for p in sorted((self.root / kind).glob("*.pkl"))}
                for kind in LATENT_FOLDERS if (self.root / kind).is_dir()}

    def organizer_paths(self, video: str) -> dict[str, Path]:
        """{folder: pickle} of the video's organizer-style features (`<folder>/<video>.pkl`)."""
        return {k: table[video] for k, table in self._organizer_files.items() if video in table}

    def face_frames(self, video: str, frames: int) -> np.ndarray | None:
        """(frames,) bool: which frames have a face crop (`<frame:05d>.jpg`, 1-based); None
        when the release has no crops folder for the video."""
        folder = self.frames_dir(video)
        if not folder.is_dir():
            return None
        have = np.zeros(frames, bool)
        for path in folder.glob("*.jpg"):
            if path.stem.isdigit() and 1 <= int(path.stem) <= frames:
                have[int(path.stem) - 1] = True
        return have

    # ---- the interface every track's release offers (folds, training, report use only this)
    track = VA

    def _all_labelled(self) -> dict[str, str]:
        """{video: split} of every annotation file, left out or not."""
        return {v: split for split in ("train", "valid") for v in self.videos(split)}

    def labelled_keys(self) -> dict[str, str]:
        """{video: split} of the annotated videos training learns from: every annotation file
        but those left_out()."""
        out = self.left_out()
        return {v: split for v, split in self._all_labelled().items() if v not in out}

    def left_out(self) -> dict[str, str]:
        """{video: why} of the annotation files training leaves out (each logged once): those
        with no annotated frame (every line -5,-5) and, with annotation_fit 'drop', those that
        do not fit their video."""
        out = {}
        for video, split in self._all_labelled().items():
            path = self.annotation_path(split, video)
            if not _file_fact("annotated", path, _has_annotated_frame):
                out[video] = f"{path}: no annotated frame (every line is -5,-5)"
                _note_once((str(path), "unannotated"), logging.WARNING,
                           "%s: no annotated frame (every line is -5,-5): video %s is left out of training and of "
                           "the folds", path, video)
            elif self.annotation_fit == "drop" and (m := self.annotation_mismatch(video, split)) is not None:
                out[video] = (f"{path}: {m['lines']} annotation lines for a video of {m['frames']} frames "
                              f"({VA_FIT_ENV}=drop)")
                _note_once((str(path), "drop"), logging.WARNING, "%s: %d annotation lines, but its video %s has %d "
                           "frames: video %s is left out of training and of the folds (%s=drop)", path, m["lines"],
                           m["video"], m["frames"], video, VA_FIT_ENV)
        return out

    def fitted(self) -> dict[str, str]:
        """{video: what was done} of the annotation files that video_targets fits to their video
        (annotation_fit 'fit'); empty otherwise."""
        if self.annotation_fit != "fit":
            return {}
        out = {}
        for video, split in self.labelled_keys().items():
            m = self.annotation_mismatch(video, split)
            if m is not None:
                done = "truncated" if m["lines"] > m["frames"] else "padded with -5 lines"
                out[video] = f"{m['file']}: {m['lines']} annotation lines {done} to the {m['frames']} frames of its video"
        return out

    def video_targets(self, key: str) -> np.ndarray:
        """The video's label: (frames, 2), unannotated frames at -5. An annotation that does not
        fit its video is an error, or fitted to it (annotation_fit 'fit', logged)."""
        split = self._split_of.get(key)
        if split is None:
            why = self.left_out().get(key)
            raise DataError(f"{self.annotations}: no annotation for video {key!r}"
                            + (f" (left out of training: {why})" if why else ""))
        values = self.labels(split, key)
        mismatch = self.annotation_mismatch(key, split, len(values))
        if mismatch is None:
            return values
        if self.annotation_fit != "fit":
            raise DataError(mismatch_message(mismatch))
        frames, lines = mismatch["frames"], mismatch["lines"]
        _note_once((str(mismatch["file"]), "fit"), logging.WARNING,
                   "%s: %d annotation lines, but its video %s has %d frames: %s to the video's frames (%s=fit)",
                   mismatch["file"], lines, mismatch["video"], frames,
                   "truncated" if lines > frames else "padded with unannotated -5 lines", VA_FIT_ENV)
        fitted = np.full((frames, values.shape[1]), VA_UNANNOTATED, np.float32)
        fitted[:min(frames, lines)] = values[:frames]
        return fitted

    @cached_property
    def _split_of(self) -> dict[str, str]:
        return self.labelled_keys()

    def test_keys(self) -> list[str]:
        return self.videos("test")

    def subjects(self) -> dict[str, str] | None:
        """metadata.csv's subjects (synthetic release); else (no metadata.csv, or one without a
        `subject` column) None: each video is then its own subject, its `_left`/`_right`
        annotation files sharing one (the folds group by recording)."""
        meta = self.metadata()
        if meta is None or "subject" not in meta.columns:
            return None
        return dict(zip(meta.index, meta["subject"]))

    def metadata(self) -> pd.DataFrame | None:
        """metadata.csv indexed by `video`, if present; optional, and read for what it has
        (without `video` it is ignored, with a logged note)."""
        frame = _optional_metadata(self.root / "metadata.csv", "video")
        return None if frame is None else frame.set_index("video")

    def video_fps(self, key: str) -> float:
        """The frame rate of the video behind `key`, read from the file (never assumed)."""
        from solution.media import video_info

        path = self.video_path(key)
        if path is None:
            raise DataError(f"{self.root}: no video file for {key!r} under batch*/; its frame rate is unknown")
        fps = video_info(path).get("fps")
        if not fps:
            raise DataError(f"{path}: no frame rate in the file")
        return float(fps)

    def test_frame_counts(self) -> dict[str, int]:
        """{test video: frame count}, from the listing or, where it has none, the video file."""
        from solution.media import video_info

        counts = {}
        for video, count in self._test_listing.items():
            if count is None:
                path = self.video_path(video)
                if path is None:
                    raise DataError(f"{self.test_listing_files[0]}: test video {video!r} has no frame count "
                                    f"and no video file under {self.root}/batch*/")
                count = video_info(path)["frames"]
            counts[video] = count
        return counts


# ---------------------------------------------------------------- every video of a release

@dataclass
class VideoSources:
    """Where each input of one video lives; None where the release has none."""

    vid: str                 # cache key: EMI 5-digit id, VA video name
    split: str               # train | valid | test
    video: Path | None = None
    audio: Path | None = None          # a file with an audio stream (may be the video itself)
    transcript: Path | None = None     # <id>.txt, or the timed <id>.json when the release has one
    crops: Path | None = None          # VA: cropped_aligned/<video>/
    organizer: dict = field(default_factory=dict)  # kind -> pickle path


def detect_track(data) -> str:
    data = Path(data)
    if (data / "train_split.csv").is_file():
        return "emi"
    if any(p.is_dir() for p in data.glob("**/VA_Estimation_Challenge")):
        return "va"
    raise DataError(f"{data}: neither an EMI release (train_split.csv) nor a VA release "
                    "(a VA_Estimation_Challenge annotation folder)")


def emi_key(vid: int) -> str:
    return f"{int(vid):05d}"


def open_release(track: Track | str, data, test_listing=None):
    """The release reader of a track: EmiRelease or VaRelease. `test_listing` (default
    $TEST_LISTING) overrides the test listing found in the release."""
    name = track if isinstance(track, str) else track.name
    return {"emi": EmiRelease, "va": VaRelease}[name](data, test_listing=test_listing)


def release_videos(track: str, data, test_listing=None) -> list[VideoSources]:
    """Every video of every split (train, valid, test), sorted by key (`test_listing`: as in
    open_release)."""
    out = []
    if track == "emi":
        release = EmiRelease(data, test_listing=test_listing)
        labelled = release.labelled()
        splits = {**{int(v): s for v, s in labelled["split"].items()}, **dict.fromkeys(release.test_ids(), "test")}
        for vid, split in sorted(splits.items()):
            out.append(VideoSources(emi_key(vid), split, release.path("video", vid), release.path("audio", vid),
                                    release.transcript_path(vid), None, release.organizer_paths(vid)))
        return out
    release = VaRelease(data, test_listing=test_listing)
    for split in ("train", "valid", "test"):
        for name in release.videos(split):
            video = release.video_path(name)
            crops = release.frames_dir(name)
            out.append(VideoSources(name, split, video, video, None, crops if crops.is_dir() else None,
                                    release.organizer_paths(name)))
    keys = [s.vid for s in out]
    if len(set(keys)) != len(keys):
        dup = sorted({k for k in keys if keys.count(k) > 1})
        raise DataError(f"{release.annotations}: video(s) {dup[:5]} appear in more than one split")
    return sorted(out, key=lambda s: s.vid)
