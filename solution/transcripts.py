"""Transcripts: a video's words, with their times when an ASR gave them.

A release's transcript is plain text (`<id>.txt`) or, with word times, ASR JSON
(`<id>.json`, TIMED_FORMS); the features stage's speech recognition writes the same
Transcript. Malformed input raises DataError naming the file.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from solution.errors import DataError


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
