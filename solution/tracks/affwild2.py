"""The Aff-Wild2 family: what its tracks (VA here; EXPR and AU share it) have in common.

A release holds the videos in batch*/ (`.mp4`, `.avi`), the organizers' face crops in
cropped_aligned/<video>/ (`<frame:05d>.jpg`, 1-based), and per track an annotation folder
`*/<annotation_folder>/{Train_Set,Validation_Set}/<video>.txt` with a header line and a line
per video frame. `name_left`/`name_right` annotation files (two people in one video) share
the video `name`, and the folds keep them together (grouping "recording").

Test listings (read_test_listing, find_listing): this project's `test_set.csv`
(video,frames) or the organizers' `*_test_set_release.txt` (a video a line) with their
sample submission `*_test_set_sample.txt` (a row per frame: the frame counts), beside the
annotations or at the root; the track's words in a file name (`_VA_` ...) pick its listing
among several challenges'. $TEST_LISTING, or `--test-listing` on a stage, names another.

The fit policy (one, used by the reader and by the preflight, solution.inspect): a training or
validation annotation file whose line count differs from its video's frame count by more than
annotation_tolerance (the larger of 5 frames and 2 %) is an error naming the file and both
counts, unless $VA_ANNOTATION_FIT accepts it: `fit` truncates the annotation, or pads it with
unannotated lines, to the video's frames; `drop` leaves the video out of training (each a
logged warning). A video whose every line is unannotated has nothing to learn from and is left
out of training (a logged warning); the reader's `left_out()` lists both, `fitted()` the
annotations fitted.

Predictions and submissions, per frame: the ABAW6 single file `image_location,<targets>`
(`<video>/<frame:05d>.jpg`) or one `<video>.txt` per video (older rounds), each video padded
(its last value repeated) or cut to the listing's frame count within a tolerance.
"""
from __future__ import annotations

import logging
import math
import os
import re
from collections import Counter
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from solution import fileio
from solution.errors import DataError
from solution.listing import TEST_LISTING_ENV, listing_override
from solution.preflight import rel
from solution.readers import LATENT_FOLDERS, VideoSources, file_fact, note_once, optional_metadata
from solution.tracks.base import Track
from solution.tracks.validation import MAX_LISTED, listed, read_member

SPLIT_FOLDERS = {"train": "Train_Set", "valid": "Validation_Set"}
VIDEO_EXTS = (".mp4", ".avi")
SIDE_SUFFIX = re.compile(r"_(left|right)$")
SINGLE_NAME = "predictions.txt"  # the single-file form's member in a zip
_LOCATION = re.compile(r"^(?P<video>.+)/(?P<frame>\d+)\.jpg$")


class AffWild2Track(Track):
    """A track of the Aff-Wild2 release: a label per video frame, in its own annotation folder.
    A unit sets annotation_folder and listing_words, and implements read_annotation,
    open_release, the per-frame prediction texts (single_text, file_text, read_frame_predictions)
    and their checks (check_single_text, check_video_text)."""

    family = "affwild2"
    layout = "Aff-Wild2"
    prediction_suffix = "txt"
    submission_formats = ("single", "per-video")
    organizer_note = " (not in this layout)"
    annotation_folder = ""           # e.g. VA_Estimation_Challenge: the name this project writes
    other_folders: tuple = ()        # the names other editions gave the folder, also read
    listing_words: frozenset = frozenset()  # file-name words that name this track's test listing

    @property
    def annotation_folders(self) -> tuple:
        """Every name the track's annotation folder is looked for under, in order."""
        return (self.annotation_folder,) + tuple(self.other_folders)

    @property
    def hidden_test(self) -> str:
        return f"private/{self.annotation_folder}/Test_Set"

    @property
    def detect_hint(self) -> str:
        return f"a {self.name.upper()} release (a {self.annotation_folder} annotation folder)"

    @property
    def unannotated_line(self) -> str:
        """An annotation line that marks a frame unannotated, e.g. -5,-5."""
        return ",".join([f"{self.unannotated:g}"] * self.dim)

    def read_annotation(self, path, check_range: bool = True) -> np.ndarray:
        raise NotImplementedError

    def looks_like(self, data: Path) -> bool:
        return any(p.is_dir() for folder in self.annotation_folders for p in Path(data).glob(f"**/{folder}"))

    def release_videos(self, data, test_listing=None) -> list[VideoSources]:
        release = self.open_release(data, test_listing=test_listing)
        out = [release.source(name, split) for split in ("train", "valid", "test") for name in release.videos(split)]
        keys = [s.vid for s in out]
        if len(set(keys)) != len(keys):
            dup = sorted({k for k in keys if keys.count(k) > 1})
            raise DataError(f"{release.annotations}: video(s) {dup[:5]} appear in more than one split")
        return sorted(out, key=lambda s: s.vid)

    def write_predictions(self, path, predictions: dict) -> None:
        fileio.write_text(path, self.single_text({k: np.clip(v, self.low, self.high) for k, v in predictions.items()}))

    def read_predictions(self, path) -> dict:
        return {k: v.astype(np.float64) for k, v in self.read_frame_predictions(path).items()}

    def hidden_test_labels(self, data) -> dict | None:
        path = Path(data) / self.hidden_test
        files = fileio.listed(path, "*.txt") if path.is_dir() else []
        return {f.stem: self.read_annotation(f) for f in files} or None

    def submission_members(self, pred, data, form: str, frame_tolerance: int) -> dict[str, str]:
        fitted = fit_lengths(self, self.read_frame_predictions(pred), self.open_release(data).test_frame_counts(),
                             source=pred, tolerance=frame_tolerance)
        return ({SINGLE_NAME: self.single_text(fitted)} if form == "single"
                else {f"{video}.txt": self.file_text(values) for video, values in sorted(fitted.items())})

    def check_members(self, members: dict[str, str], zip_path: Path, data) -> list[str]:
        counts = self.open_release(data).test_frame_counts()
        texts = [n for n in members if n.lower().endswith(".txt")]
        if len(texts) == 1 and Path(texts[0]).stem not in counts:
            return self.check_single_text(members[texts[0]], counts, f"{zip_path.name}:{texts[0]}")
        problems: list[str] = []
        by_video = {Path(n).stem: n for n in texts}
        listed(problems, f"{zip_path.name}: missing <video>.txt for test video", sorted(set(counts) - set(by_video)))
        listed(problems, f"{zip_path.name}: file for a video not in the test listing",
               sorted(set(by_video) - set(counts)))
        for video in sorted(set(counts) & set(by_video)):
            problems += self.check_video_text(members[by_video[video]], counts[video],
                                              f"{zip_path.name}:{by_video[video]}")
        return problems

    def claims(self, members: dict[str, str]) -> bool:
        # Every Aff-Wild2 track submits .txt files: the header of the first names the targets.
        texts = sorted(n for n in members if n.endswith(".txt"))
        if not texts:
            return False
        header = [c.strip().lower() for c in members[texts[0]].split("\n", 1)[0].split(",")]
        return header[-len(self.targets):] == [t.lower() for t in self.targets]

    def inspect(self, found, data: Path, folds: int | None) -> None:
        from solution.tracks.affwild2_preflight import inspect_affwild2

        inspect_affwild2(self, found, data, folds)

    def summary_split(self, split: str, fact: dict) -> str:
        if split == "test":
            return f", {fact['frames']} frames to predict"
        return (f", {fact['annotated']} annotated frames of {fact['lines']} lines ({fact['folder']}/)"
                + (f", {fact['left_out']} left out" if fact["left_out"] else ""))

    def summary_listing(self, listing: dict, data: Path) -> str:
        files = ", ".join(rel(f, data) for f in listing["files"]) or "none found"
        return files + (f" ({listing['source']}; frame counts {listing['frame_counts']})" if listing["files"] else "")


# ---------------------------------------------------------------- the fit policy

FIT_ENV = "VA_ANNOTATION_FIT"  # named before the family had other tracks; it sets the policy of all of them
FIT_MODES = {
    "error": "an annotation that does not fit its video is an error naming the file (default)",
    "fit": "truncate the annotation, or pad it with lines of the track's own unannotated mark, to the video's "
           "frames (logged)",
    "drop": "leave the video out of training and of the folds (logged)",
}


def annotation_tolerance(frames: int) -> int:
    """Frames an annotation file may differ from its video by: decoders and annotation tools
    disagree by a frame or a few at the ends; more than the larger of 5 frames and 2 % means
    another video, another frame rate, or a cut file."""
    return max(5, math.ceil(0.02 * frames))


def annotation_fit_mode(value: str | None = None) -> str:
    """`value`, else $VA_ANNOTATION_FIT, else 'error'; another word is an error listing the modes."""
    raw = value if value is not None else os.environ.get(FIT_ENV, "")
    mode = str(raw).strip().lower() or "error"
    if mode not in FIT_MODES:
        raise DataError(f"{FIT_ENV}={raw!r}: choose one of " + "; ".join(f"{k} ({v})" for k, v in FIT_MODES.items()))
    return mode


def misfit(file: Path, video_file: Path | None, lines: int, frames: int) -> dict | None:
    """None when an annotation's `lines` fit its video's `frames` (within annotation_tolerance);
    else {file, video, lines, frames, tolerance}."""
    tolerance = annotation_tolerance(frames)
    if abs(lines - frames) <= tolerance:
        return None
    return {"file": file, "video": video_file, "lines": int(lines), "frames": int(frames), "tolerance": tolerance}


def fit_verdict(mode: str, annotated: bool, mismatch: dict | None) -> str:
    """The policy: 'unannotated' (no annotated frame: left out of training), 'fits' (or there
    is no video to hold it against), else the mode that takes a misfit: 'error', 'fit'
    (truncated or padded to the video's frames) or 'drop' (left out of training)."""
    if not annotated:
        return "unannotated"
    return "fits" if mismatch is None else mode


def no_annotated_frame(track: AffWild2Track) -> str:
    return f"no annotated frame (every line is {track.unannotated_line})"


def left_out_words(track: AffWild2Track, video: str) -> str:
    """The warning of a video with no annotated frame (the reader logs it, the preflight lists it)."""
    return f"{no_annotated_frame(track)}: video {video} is left out of training and of the folds"


def fit_done(track: AffWild2Track, m: dict, pad_words: str = "") -> str:
    """What fitting does to the annotation `m` (from misfit): truncated, or padded."""
    return "truncated" if m["lines"] > m["frames"] else f"padded with {pad_words}{track.unannotated:g} lines"


def misfit_words(m: dict) -> str:
    return f"{m['lines']} annotation lines, but its video {m['video']} has {m['frames']} frames"


def mismatch_message(m: dict, track: AffWild2Track) -> str:
    """The error of an annotation file that does not fit its video (`m` from misfit)."""
    side = "fewer" if m["lines"] < m["frames"] else "more"
    mark = f"{track.unannotated:g}"
    return (f"{m['file']}: {m['lines']} annotation lines, but its video {m['video']} has {m['frames']} frames "
            f"({abs(m['lines'] - m['frames'])} {side} lines, more than the {m['tolerance']} tolerated: the larger of "
            f"5 frames and 2 %); check that the file belongs to that video, or accept it with {FIT_ENV}=fit "
            f"(truncate the annotation, or pad it with unannotated {mark} lines, to the video's frames) or "
            f"{FIT_ENV}=drop (leave the video out of training)")


def count_annotation_lines(path) -> int:
    """The frames an annotation file holds (non-blank lines after the header), as the
    track's reader counts them, without parsing them."""
    lines = Path(path).read_text(encoding="utf-8", errors="replace").splitlines()
    return sum(1 for line in lines[1:] if line.strip())


def has_annotated_frame(track: AffWild2Track, path: Path) -> bool:
    """False when every line of an annotation file is unannotated; True as soon as one is not
    (read line by line: a usual file answers at its first lines). A malformed file answers True,
    so the track's reader names its problem where the file is read."""
    header_expected = ",".join(track.targets).lower()
    with open(path, encoding="utf-8", errors="replace") as handle:
        header = next(handle, "").replace(" ", "").strip().lower()
        if header != header_expected:
            return True
        rows = 0
        for line in handle:
            if not line.strip():
                continue
            rows += 1
            try:
                if any(float(x) != track.unannotated for x in line.split(",")):
                    return True
            except ValueError:
                return True
    return rows == 0


# ---------------------------------------------------------------- test listings

_VIDEO_SUFFIX = re.compile(r"\.(mp4|avi|txt)$", re.IGNORECASE)
# Words of a names list's first line that make it a header, not a video (Aff-Wild2 names are
# like `1-30-1280x720`, `video59_right`, `118-30-640x480_left`).
_HEADER_WORDS = {"video", "videos", "name", "names", "video_name", "videoname", "filename", "file", "id",
                 "test", "set", "challenge", "list", "release", "valence", "arousal", "estimation", "expression",
                 "recognition", "classification", "action", "unit", "units", "detection"}


def _looks_like_header(line: str) -> bool:
    tokens = {t for t in re.split(r"[\s_\-.,:;]+", line.lower()) if t}
    return bool(tokens & _HEADER_WORDS) or " " in line.strip() or line.rstrip().endswith(":")


def _frame_location(raw: str) -> tuple[str, str] | None:
    """'video/00001.jpg' (or with leading folders, or backslashes) -> ('video', '00001'); else None."""
    parts = [p for p in raw.strip().replace("\\", "/").split("/") if p]
    if len(parts) < 2 or "." not in parts[-1]:
        return None
    return parts[-2], parts[-1].rsplit(".", 1)[0]


def _read_sample(path: Path, lines: list[tuple[int, str]]) -> dict[str, int]:
    """The organizers' sample submission: `image_location,<targets>`, a row per frame
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
        note_once((str(path), "gaps"), logging.WARNING, "%s: %d video(s) whose last row is not frame <rows>, e.g. "
                  "%s (%d rows, last %s); the rows are taken as the frame count", path, len(gaps), gaps[0],
                  counts[gaps[0]], last[gaps[0]])
    return dict(counts)


def read_test_listing(path, label: str) -> dict[str, int | None]:
    """Test listing -> {video: frame count or None}. Accepted (told apart by their content):
    this project's CSV `video,frames` (other columns ignored); the organizers' sample submission
    (`image_location,<targets>`, a row per frame: the rows of a video are its frame count);
    the organizers' video list (one name a line, an optional header line, blank lines and
    `#` comments skipped, a `.mp4`/`.avi`/`.txt` suffix dropped: frame counts then come from
    the videos). `label` names the track in errors (e.g. VA)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: {label} test listing not found")
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _LISTINGS:  # a stage opens the release more than once; a sample file has a million rows
        if len(_LISTINGS) >= 8:
            _LISTINGS.pop(next(iter(_LISTINGS)))
        _LISTINGS[key] = _parse_listing(path, label)
    return dict(_LISTINGS[key])


_LISTINGS: dict[tuple, dict[str, int | None]] = {}


def _parse_listing(path: Path, label: str) -> dict[str, int | None]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: {label} test listing is not text ({exc})") from exc
    lines = [(n, line) for n, line in enumerate(map(str.strip, text.splitlines()), start=1)
             if line and line[0] != "#"]
    if not lines:
        raise DataError(f"{path}: {label} test listing is empty")
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
        listing = dict(_read_sample(path, lines))
    else:
        if _looks_like_header(lines[0][1]):
            note_once((str(path), "header"), logging.INFO, "%s: first line %r taken as a header", path, lines[0][1])
            lines = lines[1:]
        for number, line in lines:
            name = _VIDEO_SUFFIX.sub("", line.split(",", 1)[0].strip())
            if name in listing:
                raise DataError(f"{path}: line {number}: video {name!r} listed twice")
            listing[name] = None
    if not listing:
        raise DataError(f"{path}: {label} test listing is empty")
    return listing


def listing_names(track: AffWild2Track) -> tuple:
    """The test listing under each name it is looked for: (kind, name, what it holds, file-name test)."""
    return (
        ("csv", "test_set.csv", "video,frames (this project's generator)",
         lambda n: n == "test_set.csv"),
        ("list", "*_test_set_release.txt", "the organizers' video list, a name a line",
         lambda n: re.fullmatch(r"(.*[_\-.])?test_set_release\.(txt|csv)", n) is not None),
        ("sample", "*_test_set_sample.txt", f"the organizers' sample submission (or *_test_set_example.txt), "
         f"image_location,{','.join(track.targets)}, a row per frame",
         lambda n: re.fullmatch(r"(.*[_\-.])?test_set_(sample|example)\.(txt|csv)", n) is not None),
    )


# File-name words of the ABAW challenges' listings, which share a release root; a unit's
# listing_words are its own, the others' mark another challenge's listing.
_CHALLENGE_WORDS = {"expr", "expression", "au", "action", "unit", "units", "ce", "compound", "mtl", "multi",
                    "emi", "mimicry", "ah", "ambivalence", "hesitancy", "va", "valence", "arousal"}


def _listing_rank(name: str, words: frozenset) -> int | None:
    """0: this track's listing by name; 1: a listing of no named challenge; None: another challenge's."""
    found = set(re.split(r"[^a-z0-9]+", name.lower()))
    if found & words:
        return 0
    return None if found & (_CHALLENGE_WORDS - words) else 1


def find_listing(places: list[Path], track: AffWild2Track) -> dict[str, Path]:
    """{kind: path} of the track's test listing files in `places` (searched in order; per kind,
    the first place holding one wins). Several of one kind in a place is an error naming them."""
    found: dict[str, Path] = {}
    for place in places:
        if not place.is_dir():
            continue
        files = sorted(p for p in place.iterdir() if p.is_file())
        for kind, _, _, matches in listing_names(track):
            if kind in found:
                continue
            ranked = [(r, p) for p in files if matches(p.name.lower())
                      and (r := _listing_rank(p.name, track.listing_words)) is not None]
            if not ranked:
                continue
            best = min(r for r, _ in ranked)
            top = [p for r, p in ranked if r == best]
            if len(top) > 1:
                raise DataError(f"{place}: several {track.name.upper()} test listings ({', '.join(p.name for p in top)}); "
                                f"name the one to read with {TEST_LISTING_ENV}=PATH or --test-listing PATH")
            found[kind] = top[0]
    return found


# ---------------------------------------------------------------- the release

@dataclass
class AffWild2Release:
    """An Aff-Wild2 release as one track reads it: videos in batch*/, crops in
    cropped_aligned/, annotations in a `*/<annotation_folder>/{Train_Set,Validation_Set}` folder.
    A unit subclasses it with `track` set.

    The test listing: `test_listing` when given, else $TEST_LISTING (a file in any form
    read_test_listing reads, or a folder to look in), else found beside the annotations
    (the annotation folder, then its parent) or at the release root: our `test_set.csv`, else
    the organizers' `*_test_set_release.txt` (the names) and `*_test_set_sample.txt` (the names
    and, from its rows, the frame counts; where there is no sample file the frame counts come
    from the videos). A folder without annotations but with a test listing (a test set that
    came later) opens too; its labelled splits are then empty."""

    root: Path
    annotations: Path | None = None  # the track's annotation folder; found when None
    test_listing: Path | None = None
    annotation_fit: str | None = None  # error | fit | drop (FIT_MODES); default $VA_ANNOTATION_FIT, else error

    track = None  # the unit's AffWild2Track

    def __post_init__(self):
        self.root = Path(self.root)
        if not self.root.is_dir():
            raise DataError(f"{self.root}: data folder not found")
        self.annotation_fit = annotation_fit_mode(self.annotation_fit)
        explicit = self.test_listing is not None
        self.test_listing = listing_override(self.test_listing)
        self.listing_source = ("test_listing" if explicit else f"${TEST_LISTING_ENV}") if self.test_listing else None
        if self.annotations is None:
            found = [p for folder in self.track.annotation_folders for p in sorted(self.root.glob(f"**/{folder}"))
                     if p.is_dir() and "private" not in p.relative_to(self.root).parts]
            if found:
                self.annotations = found[0]
            elif self.test_listing is None and not find_listing([self.root], self.track):
                raise DataError(f"{self.root}: no {' or '.join(self.track.annotation_folders)} annotation folder found "
                                "(pass its path explicitly)")
        self.annotations = None if self.annotations is None else Path(self.annotations)

    @property
    def _label(self) -> str:
        return self.track.name.upper()

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
                raise DataError(f"{self.test_listing}: {self._label} test listing not found "
                                f"(named by {self.listing_source})")
            return [self.test_listing]
        found = find_listing(self.listing_places(), self.track)
        if "csv" in found:
            return [found["csv"]]
        if found:
            return [found[k] for k in ("list", "sample") if k in found]
        tried = "; ".join(f"{name} ({what})" for _, name, what, _ in listing_names(self.track))
        named = f" (named by {self.listing_source})" if self.test_listing is not None else ""
        raise DataError(f"no {self._label} test listing found: looked in "
                        f"{', '.join(str(p) for p in self.listing_places())}{named} for {tried}; name it with "
                        f"{TEST_LISTING_ENV}=PATH or --test-listing PATH")

    @cached_property
    def _test_listing(self) -> dict[str, int | None]:
        files = self.test_listing_files
        listing = read_test_listing(files[0], self._label)
        if len(files) == 2:  # the organizers' list (names) and sample submission (frame counts)
            counts = read_test_listing(files[1], self._label)
            only_list, only_sample = sorted(set(listing) - set(counts)), sorted(set(counts) - set(listing))
            if only_list or only_sample:
                raise DataError(f"{files[0]} and {files[1]} list other videos: "
                                + "; ".join(f"{len(v)} only in {f.name}, e.g. {v[:3]}"
                                            for v, f in ((only_list, files[0]), (only_sample, files[1])) if v)
                                + f"; name the one to read with {TEST_LISTING_ENV}=PATH or --test-listing PATH")
            listing = {video: counts[video] for video in listing}
        return listing

    def listing(self) -> dict[str, int | None]:
        """{test video: its frame count in the listing, or None where the videos give it}."""
        return dict(self._test_listing)

    def split_dir(self, split: str) -> Path:
        if self.annotations is None:
            raise DataError(f"{self.root}: no {self.track.annotation_folder} annotation folder, so no {split} split")
        return self.annotations / SPLIT_FOLDERS[split]

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
        return self.track.read_annotation(self.annotation_path(split, video))

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
        return file_fact("frames", path, lambda p: video_info(p, count=False)["frames"])

    def annotation_mismatch(self, video: str, split: str | None = None, lines: int | None = None) -> dict | None:
        """None when the video's annotation file fits its video (within annotation_tolerance),
        or when there is no video (or an unreadable one) to hold it against; else misfit's
        {file, video, lines, frames, tolerance}. `lines` (the annotation's frames) is counted
        when not given."""
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
            lines = file_fact("lines", path, count_annotation_lines)
        return misfit(path, self.video_path(video), lines, frames)

    @cached_property
    def video_files(self) -> dict[str, Path]:
        """{name: file} of every video under batch*/ (the first of a name)."""
        table = {}
        for path in sorted(self.root.glob("batch*/*")):
            if path.suffix.lower() in VIDEO_EXTS:
                table.setdefault(path.stem, path)
        return table

    def video_path(self, video: str) -> Path | None:
        """`name_left`/`name_right` annotation files share the video `name`."""
        return self.video_files.get(video) or self.video_files.get(SIDE_SUFFIX.sub("", video))

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

    def source(self, name: str, split: str) -> VideoSources:
        """Where each input of the video `name` lives (the video file is also its audio)."""
        video, crops = self.video_path(name), self.frames_dir(name)
        return VideoSources(name, split, video, video, None, crops if crops.is_dir() else None,
                            self.organizer_paths(name))

    # ---- the interface every track's release offers (folds, training, report use only this)
    grouping = "recording"  # without subjects, a video's `_left`/`_right` annotations share a group
    key_column = "video"    # the column a user's file (folds --groups) names videos by

    def group_of(self, key: str) -> str:
        return SIDE_SUFFIX.sub("", key)

    def key_of(self, raw) -> str:
        return str(raw)

    def test_listing_problem(self) -> str | None:
        return None  # opening the release already needs annotations or a test listing

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
        with no annotated frame (every line unannotated) and, with annotation_fit 'drop', those
        that do not fit their video (the fit policy, fit_verdict)."""
        out = {}
        for video, split in self._all_labelled().items():
            path = self.annotation_path(split, video)
            annotated = file_fact("annotated", path, lambda p: has_annotated_frame(self.track, p))
            m = self.annotation_mismatch(video, split) if annotated and self.annotation_fit == "drop" else None
            verdict = fit_verdict(self.annotation_fit, annotated, m)
            if verdict == "unannotated":
                out[video] = f"{path}: {no_annotated_frame(self.track)}"
                note_once((str(path), "unannotated"), logging.WARNING, "%s: %s", path,
                          left_out_words(self.track, video))
            elif verdict == "drop":
                out[video] = (f"{path}: {m['lines']} annotation lines for a video of {m['frames']} frames "
                              f"({FIT_ENV}=drop)")
                note_once((str(path), "drop"), logging.WARNING, "%s: %s: video %s is left out of training and of "
                          "the folds (%s=drop)", path, misfit_words(m), video, FIT_ENV)
        return out

    def fitted(self) -> dict[str, str]:
        """{video: what was done} of the annotation files that video_targets fits to their video
        (annotation_fit 'fit'); empty otherwise."""
        if self.annotation_fit != "fit":
            return {}
        out = {}
        for video, split in self.labelled_keys().items():
            m = self.annotation_mismatch(video, split)
            if fit_verdict(self.annotation_fit, True, m) == "fit":
                out[video] = (f"{m['file']}: {m['lines']} annotation lines {fit_done(self.track, m)} to the "
                              f"{m['frames']} frames of its video")
        return out

    def video_targets(self, key: str) -> np.ndarray:
        """The video's label: (frames, targets), unannotated frames at the track's mark. An
        annotation that does not fit its video is an error, or fitted to it (annotation_fit
        'fit', logged)."""
        split = self._split_of.get(key)
        if split is None:
            why = self.left_out().get(key)
            raise DataError(f"{self.annotations}: no annotation for video {key!r}"
                            + (f" (left out of training: {why})" if why else ""))
        values = self.labels(split, key)
        mismatch = self.annotation_mismatch(key, split, len(values))
        verdict = fit_verdict(self.annotation_fit, True, mismatch)
        if verdict == "fits":
            return values
        if verdict != "fit":
            raise DataError(mismatch_message(mismatch, self.track))
        frames, lines = mismatch["frames"], mismatch["lines"]
        note_once((str(mismatch["file"]), "fit"), logging.WARNING, "%s: %s: %s to the video's frames (%s=fit)",
                  mismatch["file"], misfit_words(mismatch), fit_done(self.track, mismatch, "unannotated "), FIT_ENV)
        fitted = np.full((frames, values.shape[1]), self.track.unannotated, np.float32)
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
        frame = optional_metadata(self.root / "metadata.csv", "video")
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
            if not count:
                raise DataError(f"{self.test_listing_files[0]}: test video {video!r} has no frames to predict"
                                + ("" if self._test_listing[video] is not None else f" (its video {self.video_path(video)})"))
            counts[video] = count
        return counts


# ---------------------------------------------------------------- predictions per frame

def parse_image_location(location: str) -> tuple[str, int] | None:
    match = _LOCATION.match(location.strip())
    return (match["video"], int(match["frame"])) if match else None


def read_single_file(path: Path, header: str, values_of) -> dict[str, np.ndarray]:
    """A single-file prediction (`header`: image_location, then the targets) -> {video: rows in
    frame order}; `values_of(table)` turns the rows' target columns into an array or raises."""
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    frame.columns = [c.strip() for c in frame.columns]
    if ",".join(frame.columns) != header:
        raise DataError(f"{path}: header must be {header!r}, got {','.join(frame.columns)!r}")
    located = frame["image_location"].map(parse_image_location)
    bad = np.flatnonzero(located.isna().to_numpy())
    if bad.size:
        raise DataError(f"{path}: line {bad[0] + 2}: image_location must look like "
                        f"<video>/00001.jpg, got {frame['image_location'].iloc[bad[0]]!r}")
    values = values_of(frame)
    out: dict[str, np.ndarray] = {}
    videos = np.array([v for v, _ in located])
    frames = np.array([f for _, f in located])
    for video in dict.fromkeys(videos):
        rows = np.flatnonzero(videos == video)
        order = rows[np.argsort(frames[rows], kind="stable")]
        if not np.array_equal(frames[order], np.arange(1, len(order) + 1)):
            raise DataError(f"{path}: frames of {video!r} are not numbered 1..{len(order)} "
                            "without gaps or duplicates")
        out[str(video)] = values[order]
    return out


def read_frame_table(text: str, counts: dict[str, int], where: str, problems: list[str]):
    """A single-file submission's rows (an `image_location` column first) with their video and
    frame, the location problems added to `problems`: bad locations, duplicates, videos missing
    from or not in the test listing, frames that are not 1..count. None when unreadable."""
    table = read_member(text, where, problems)
    if table is None:
        return None
    located = table["image_location"].map(parse_image_location)
    listed(problems, f"{where}: image_location not like <video>/00001.jpg",
           table["image_location"][located.isna()].tolist())
    table = table[located.notna()].assign(video=[v for v, _ in located.dropna()],
                                          frame=[f for _, f in located.dropna()])
    listed(problems, f"{where}: duplicate image_location",
           table["image_location"][table.duplicated(["video", "frame"])].tolist())
    listed(problems, f"{where}: missing test video", sorted(set(counts) - set(table["video"])))
    listed(problems, f"{where}: video not in the test listing", sorted(set(table["video"]) - set(counts)))
    for video, rows in table.groupby("video", sort=True):
        if video in counts:
            frames = set(rows["frame"])
            if frames != set(range(1, counts[video] + 1)):
                problems.append(f"{where}: {video}: frames {min(frames)}..{max(frames)} ({len(frames)} distinct), "
                                f"the test listing says 1..{counts[video]}")
    return table


def fit_lengths(track: Track, pred: dict[str, np.ndarray], counts: dict[str, int], source="predictions",
                tolerance: int = 10):
    """Pad (repeat the last value) or cut each video to the listing's frame count, when they
    differ by at most `tolerance` frames (decoders and annotations disagree by a few); the
    videos fitted are listed. A larger difference means the predictions are aligned to
    something else (another fps, another video): an error naming every such video."""
    missing = sorted(set(counts) - set(pred))
    if missing:
        raise DataError(f"{source}: no prediction for {len(missing)} test video(s), e.g. {missing[:5]}")
    fitted, adjusted, too_far = {}, [], []
    for video, n in sorted(counts.items()):
        values = np.clip(pred[video], track.low, track.high)
        if len(values) != n:
            if abs(len(values) - n) > tolerance or not len(values):
                too_far.append(f"{video}: {len(values)} predicted frames, the listing says {n}")
                continue
            adjusted.append(f"{video} ({len(values) - n:+d})")
            values = np.concatenate([values, np.repeat(values[-1:], n - len(values), 0)]) if len(values) < n \
                else values[:n]
        fitted[video] = values
    if too_far:
        raise DataError(f"{source}: {len(too_far)} test video(s) differ from the listing's frame count by more than "
                        f"{tolerance} frames (--frame-tolerance), which means the predictions follow another "
                        "frame rate or video:\n  " + "\n  ".join(too_far[:MAX_LISTED]))
    if adjusted:
        print(f"[submit] note: {len(adjusted)} video(s) padded with their last value or cut to the listing's frame "
              f"count (predicted - listed): {', '.join(adjusted[:MAX_LISTED])}"
              + (f" and {len(adjusted) - MAX_LISTED} more" if len(adjusted) > MAX_LISTED else ""))
    return fitted
