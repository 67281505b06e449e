"""python -m solution.inspect: a preflight check of a release, in seconds, before any long work.

    python -m solution.inspect DATA                        # the track found, the splits, media, problems
    python -m solution.inspect DATA --track va --folds 5   # also: are there groups enough for 5 folds
    python -m solution.inspect DATA --json                 # the same as one JSON document
    python -m solution.inspect DATA --videos               # VA: every video's frames, not only the odd ones

Says what the stages will read: the track found; each split with its counts; the media of
each kind (video, audio, face crops, transcripts) present and missing; the organizers'
features (vit/, wav2vec2/; and the generator's latent_face/, latent_voice/) with their widths
(from the first pickle of each folder); the test
listing found and where; for VA, each video's frame count (from its container header: a
probe of milliseconds, no decoding) against its annotation's lines, or the test listing's
frames; and every problem, with the file that has it. It reads no media beyond the headers,
extracts nothing and imports no model.

A problem is an `error` when a later stage would stop on it, or learn from something wrong
(an unreadable label file, an annotation that does not fit its video, a labelled or test video
without a video file, no test listing), a `warning` when the run goes on without that input
(a missing transcript, a video without an audio track or crops: the modality is marked
missing, as the features stage records it; a video with no annotated frame: left out of
training), a `note` otherwise. Exit status: 0 when there is no error, 2 when there is one.
run_all.sh runs this first and stops on an error.

VA annotations that do not fit their video (more than the larger of 5 frames and 2 % apart)
are errors unless VA_ANNOTATION_FIT accepts them: `fit` truncates or pads them to the video's
frames, `drop` leaves those videos out of training (see solution/layouts.py); they are then
warnings saying which was done.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from solution.errors import DataError
from solution.listing import TEST_LISTING_ENV, add_test_listing_option, export_listing

LEVELS = ("error", "warning", "note")
SHOW = 5  # ids shown in a line of the summary; --json has them all


@dataclass
class Inspection:
    """What was found (`facts`, JSON-able) and every problem with the file that has it."""

    data: Path
    facts: dict = field(default_factory=dict)
    problems: list = field(default_factory=list)

    def add(self, level: str, file, problem: str) -> None:
        file = "" if file is None else str(file)
        if file and problem.startswith(file + ": "):
            problem = problem[len(file) + 2:]
        self.problems.append({"level": level, "file": file, "problem": problem})

    def error_from(self, exc: Exception, fallback=None, level: str = "error") -> None:
        """A DataError (or MediaError) message 'FILE: problem' -> a problem naming FILE."""
        message = str(exc)
        head, sep, rest = message.partition(": ")
        if sep and ("/" in head or Path(head).exists()):
            self.add(level, head, rest)
        else:
            self.add(level, fallback, message)

    def count(self, level: str) -> int:
        return sum(p["level"] == level for p in self.problems)

    @property
    def ok(self) -> bool:
        return self.count("error") == 0

    def to_json(self) -> dict:
        return {"data": str(self.data), **self.facts, "problems": self.problems,
                "counts": {level: self.count(level) for level in LEVELS}, "ok": self.ok}


def _rel(path, root: Path) -> str:
    if path is None:
        return ""
    path = Path(path)
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def _some(ids) -> str:
    ids = list(ids)
    return ", ".join(map(str, ids[:SHOW])) + (f" (+{len(ids) - SHOW} more)" if len(ids) > SHOW else "")


# ---------------------------------------------------------------- EMI

def inspect_emi(found: Inspection, data: Path, folds: int | None) -> None:
    from solution.layouts import EmiRelease, emi_key

    release = EmiRelease(data)
    found.facts["layout"] = "Hume-Vidmimic2"
    splits = _emi_labelled_splits(found, release, data)
    labelled = set(splits["train"]) | set(splits["valid"])
    listing = data / release.test_csv
    files, test, listing_fact = _emi_files_and_test(found, release, data, listing, labelled)
    splits["test"] = test
    found.facts["test_listing"] = listing_fact
    found.facts["splits"] = {split: {"videos": len(ids), "file": name} for (split, ids), name in
                             zip(splits.items(), (release.train_csv, release.valid_csv, release.test_csv))}
    if not labelled:
        found.add("error", data / release.train_csv, "no labelled video: nothing to train on")
    if not test:
        found.add("error", listing if listing.is_file() else data, "no test video: nothing to predict or submit")
    again = sorted(set(test) & labelled)
    if again:
        found.add("warning", listing, f"{len(again)} test video(s) also labelled: {_some(emi_key(v) for v in again)}")

    every = sorted(labelled | set(test))
    found.facts["media"] = _emi_media(found, data, files, every)
    found.facts["organizer"] = _emi_organizer(found, data, files, every)

    nothing = [emi_key(v) for v in every if not any(v in table for table in files.values())]
    if nothing and any(files.values()):
        found.add("warning", data, f"{len(nothing)} video(s) with no media, transcript or feature file at all "
                  f"({_some(nothing)}): every input is missing for them")
    if not any(files.values()):
        found.add("error", data, "no media, transcripts or organizer features: nothing to extract")

    _metadata_and_groups(found, release, data, [emi_key(v) for v in sorted(labelled)], folds, per="video")


def _emi_labelled_splits(found: Inspection, release, data: Path) -> dict[str, list[int]]:
    """The video ids of train and valid (none for an unreadable file), each video in one of them."""
    splits: dict[str, list[int]] = {}
    for split, name in (("train", release.train_csv), ("valid", release.valid_csv)):
        try:
            splits[split] = sorted(int(v) for v in release.labels(split).index)
        except DataError as exc:
            found.error_from(exc, data / name)
            splits[split] = []
    both = sorted(set(splits["train"]) & set(splits["valid"]))
    if both:
        found.add("error", data / release.valid_csv, f"video id(s) {_some(both)} are also in {release.train_csv}")
    return splits


def _emi_files_and_test(found: Inspection, release, data: Path, listing: Path,
                        labelled: set) -> tuple[dict, list, dict]:
    """The release's files by kind, the test video ids and the listing's fact (where the ids come
    from). Both in one: without a listing, the files say which videos are the test ones."""
    from solution.layouts import EMI_KINDS, EMI_TEST_NAMES

    listing_fact = {"file": str(listing) if listing.is_file() else None,
                    "source": release.listing_source or ("found at the release root" if listing.is_file() else None)}
    try:
        files = release.files
    except DataError as exc:
        found.error_from(exc, data)
        files = {kind: {} for kind in EMI_KINDS}
    try:
        if listing.is_file() or release.test_listing is not None:
            test = release.test_ids()
        else:  # no listing: the test videos are those with media or features but no label
            test = sorted(set().union(*(set(t) for t in files.values())) - labelled)
            listing_fact["source"] = (f"none found (looked at the root for {', '.join(EMI_TEST_NAMES)}): the test "
                                      "videos are those with media or features but no label")
            found.add("note", data, listing_fact["source"])
    except DataError as exc:
        found.error_from(exc, listing)
        test = []
    return files, test, listing_fact


def _emi_media(found: Inspection, data: Path, files: dict, every: list[int]) -> dict:
    """Video, audio and transcripts present and missing among `every` video (the media fact)."""
    from solution.layouts import EMI_KINDS, emi_key, read_transcript

    media = {}
    for kind, label in (("video", "video"), ("audio", "audio"), ("transcript", "transcripts")):
        folder = EMI_KINDS[kind][0]
        have = [v for v in every if v in files.get(kind, {}) or (kind == "transcript" and v in files.get("timed_transcript", {}))]
        missing = [emi_key(v) for v in every if v not in set(have)]
        media[label] = {"folder": folder, "present": len(have), "missing": len(missing), "missing_ids": missing}
        if kind == "transcript":
            media[label]["timed"] = sum(v in files.get("timed_transcript", {}) for v in every)
        if not (data / folder).is_dir():
            found.add("note", data / folder, f"no {folder}/ folder: the {label} of every video is missing")
        elif missing:
            found.add("warning", data / folder, f"{len(missing)} of {len(every)} video(s) have no {label} file "
                      f"({_some(missing)}): that input is marked missing for them")
    media["crops"] = {"folder": None, "present": 0, "missing": 0, "note": "not in this layout"}
    for vid in every:  # a timed transcript the features stage could not read
        path = files.get("timed_transcript", {}).get(vid)
        if path is not None:
            try:
                read_transcript(path)
            except DataError as exc:
                found.error_from(exc, path, level="warning")
    return media


def _emi_organizer(found: Inspection, data: Path, files: dict, every: list[int]) -> dict:
    """The organizers' vit/ and wav2vec2/ folders (and the generator's latent_face/ and
    latent_voice/) that exist: their pickles present and missing among `every` video, and their width."""
    from solution.layouts import EMI_KINDS, LATENT_FOLDERS, ORGANIZER_FOLDERS, emi_key, load_feature_pickle

    organizer = {}
    for kind in ORGANIZER_FOLDERS + LATENT_FOLDERS:
        folder = data / EMI_KINDS[kind][0]
        table = files.get(kind, {})
        if not folder.is_dir():
            continue
        missing = [emi_key(v) for v in every if v not in table]
        fact = {"folder": str(folder), "files": len(table), "present": len(every) - len(missing),
                "missing": len(missing), "missing_ids": missing, "width": None, "read": None}
        for path in sorted(table.values()):
            if path.stat().st_size == 0:
                found.add("warning", path, "empty pickle: this video's organizer features are marked missing")
        for path in sorted(table.values())[:3]:  # the first readable pickle gives the width
            try:
                array = load_feature_pickle(path)
            except DataError as exc:
                found.error_from(exc, path, level="warning")
                continue
            fact.update(width=int(array.shape[1]), read=str(path), frames=int(array.shape[0]))
            break
        if table and fact["width"] is None:
            found.add("warning", folder, "none of the first pickles is readable: the folder's width is unknown")
        if missing and table:
            found.add("warning", folder, f"{len(missing)} of {len(every)} video(s) have no {kind} pickle ({_some(missing)})")
        organizer[kind] = fact
    return organizer


# ---------------------------------------------------------------- VA

def _listing_place(release, files: list[Path]) -> str:
    if release.test_listing is not None:
        return f"named by {release.listing_source}"
    folder = files[0].parent
    if release.annotations is not None and folder == release.annotations:
        return "found beside the annotations"
    if release.annotations is not None and folder == release.annotations.parent:
        return "found in the annotations' parent folder"
    return "found at the release root"


def _crops(folder: Path) -> int:
    with os.scandir(folder) as entries:
        return sum(1 for e in entries if e.name.lower().endswith(".jpg"))


@dataclass
class _VaMedia:
    """The videos found without a video file, an audio track or a crops folder, and the face
    images counted, as the videos are checked one by one."""

    video_missing: list = field(default_factory=list)
    audio_missing: list = field(default_factory=list)
    crops_missing: list = field(default_factory=list)
    crops_total: int = 0


def inspect_va(found: Inspection, data: Path, folds: int | None) -> None:
    from solution.layouts import VaRelease

    release = VaRelease(data)
    found.facts.update(layout="Aff-Wild2", annotations=str(release.annotations) if release.annotations else None,
                       annotation_fit=release.annotation_fit, frame_tolerance="the larger of 5 frames and 2 %")
    splits = _va_labelled_splits(found, release, data)
    listing, listing_fact = _va_test_listing(found, release, data)
    splits["test"] = sorted(listing)
    found.facts["test_listing"] = listing_fact
    where = _va_split_of_videos(found, release, splits, listing_fact)
    if not splits["train"] and not splits["valid"] and release.annotations is not None:
        found.add("error", release.annotations, "no annotation file in Train_Set or Validation_Set: nothing to train on")

    rows, left_out, media = _va_video_rows(found, release, data, splits, listing, listing_fact)
    found.facts["videos"] = rows
    found.facts["splits"] = _va_split_facts(rows, splits, left_out)
    labelled = [v for s in ("train", "valid") for v in splits[s] if v not in left_out]
    if (splits["train"] or splits["valid"]) and not labelled:
        found.add("error", release.annotations, "every annotated video is left out: nothing to train on")

    found.facts["media"] = _va_media_facts(found, data, rows, media)
    spare = sorted(set(release._video_files) - {release.video_path(v).stem for v in where if release.video_path(v)})
    if spare:
        found.add("note", data, f"{len(spare)} video file(s) under batch*/ in no split, ignored ({_some(spare)})")
    found.facts["organizer"] = _va_organizer(found, data, release, sorted(where))
    _metadata_and_groups(found, release, data, labelled, folds, per="recording")


def _va_organizer(found: Inspection, data: Path, release, videos: list[str]) -> dict:
    """The organizer-style folders a VA release can hold (the generator's latent_face/ and
    latent_voice/; Aff-Wild2 has none): their pickles present and missing, and their width."""
    from solution.layouts import LATENT_FOLDERS, load_feature_pickle

    organizer = {}
    for kind in LATENT_FOLDERS:
        folder = data / kind
        if not folder.is_dir():
            continue
        table = {v: p for v in videos if (p := release.organizer_paths(v).get(kind)) is not None}
        missing = [v for v in videos if v not in table]
        fact = {"folder": str(folder), "files": len(list(folder.glob("*.pkl"))), "present": len(table),
                "missing": len(missing), "missing_ids": missing, "width": None, "read": None}
        for path in sorted(table.values())[:3]:  # the first readable pickle gives the width
            try:
                array = load_feature_pickle(path)
            except DataError as exc:
                found.error_from(exc, path, level="warning")
                continue
            fact.update(width=int(array.shape[1]), read=str(path), frames=int(array.shape[0]))
            break
        if missing and table:
            found.add("warning", folder, f"{len(missing)} of {len(videos)} video(s) have no {kind} pickle ({_some(missing)})")
        organizer[kind] = fact
    return organizer


def _va_labelled_splits(found: Inspection, release, data: Path) -> dict[str, list[str]]:
    """The videos of train and valid (none for a split that cannot be read)."""
    splits: dict[str, list[str]] = {}
    if release.annotations is None:
        found.add("error", data, "no VA_Estimation_Challenge annotation folder: nothing to train on")
    for split in ("train", "valid"):
        try:
            splits[split] = release.videos(split)
        except DataError as exc:
            found.error_from(exc, data)
            splits[split] = []
    return splits


def _va_test_listing(found: Inspection, release, data: Path) -> tuple[dict, dict]:
    """The test listing (video -> its frames, or None when the videos give them) and its fact."""
    listing_fact = {"files": [], "source": None, "frame_counts": None}
    try:
        files = release.test_listing_files
        listing = dict(release._test_listing)
        listing_fact.update(files=[str(f) for f in files], source=_listing_place(release, files),
                            frame_counts="from the listing" if all(n is not None for n in listing.values()) else
                            ("from the videos" if all(n is None for n in listing.values()) else
                             "from the listing where it has them, else from the videos"))
    except DataError as exc:
        found.error_from(exc, release.annotations or data)
        listing = {}
    return listing, listing_fact


def _va_split_of_videos(found: Inspection, release, splits: dict, listing_fact: dict) -> dict[str, str]:
    """Video -> the first split it is in; a video in a second split is an error."""
    where = {}
    for split in ("train", "valid", "test"):
        for video in splits[split]:
            if video in where:
                found.add("error", release.annotation_path(split, video) if split != "test" else listing_fact["files"][0],
                          f"video {video!r} is in both {where[video]} and {split}")
            else:
                where[video] = split
    return where


def _va_video_rows(found: Inspection, release, data: Path, splits: dict, listing: dict,
                   listing_fact: dict) -> tuple[list[dict], dict, _VaMedia]:
    """A row per video of every split (its files, frames, annotation lines, status), the
    labelled videos left out of training (video -> why) and what the media lack."""
    rows, left_out, media = [], {}, _VaMedia()
    for split in ("train", "valid", "test"):
        for video in splits[split]:
            row = {"video": video, "split": split, "video_file": None, "frames": None, "fps": None,
                   "lines": None, "annotated": None, "listed": None, "crops": None, "status": "ok"}
            rows.append(row)
            label_file = release.annotation_path(split, video) if split != "test" else None
            owner = label_file or (listing_fact["files"][0] if listing_fact["files"] else data)
            path = _va_check_media(found, release, data, row, owner, media)
            if split == "test":
                _va_check_listed(found, row, listing.get(video), owner, path)
            else:
                _va_check_annotation(found, row, label_file, path, release.annotation_fit, left_out)
    return rows, left_out, media


def _va_check_media(found: Inspection, release, data: Path, row: dict, owner, media: _VaMedia) -> Path | None:
    """Fills the row's video file, frames, frame rate and crops from the files (the video's
    container header only); returns the video file."""
    from solution.media import MediaError, video_info

    video = row["video"]
    path = release.video_path(video)
    if path is None:
        media.video_missing.append(video)
        row["status"] = "no video"
        found.add("error", owner, f"no video file for {video!r} under {data}/batch*/ (.mp4 or .avi): its "
                  "frame rate and frames are unknown, so its labels cannot be placed in time")
    else:
        row["video_file"] = str(path)
        try:
            info = video_info(path, count=False)
            row.update(frames=info["frames"], fps=round(info["fps"], 3))
            if not info["fps"]:
                row["status"] = "no frame rate"
                found.add("error", path, "no frame rate in the file")
            if not info["has_audio"]:
                media.audio_missing.append(video)
        except MediaError as exc:
            row["status"] = "unreadable video"
            found.error_from(exc, path)
    crops = release.frames_dir(video)
    if crops.is_dir():
        row["crops"] = _crops(crops)
        media.crops_total += row["crops"]
    else:
        media.crops_missing.append(video)
    return path


def _va_check_listed(found: Inspection, row: dict, listed: int | None, owner, path: Path | None) -> None:
    """A test video's frames in the listing against its video's."""
    from solution.layouts import annotation_tolerance

    row["listed"] = listed
    if row["listed"] is not None and row["frames"]:
        tolerance = annotation_tolerance(row["frames"])
        if abs(row["listed"] - row["frames"]) > tolerance:
            row["status"] = "listing differs"
            found.add("warning", owner, f"test video {row['video']!r}: the listing gives {row['listed']} frames, "
                      f"its video {path} has {row['frames']} (more than {tolerance} apart); the "
                      "predictions follow the listing")


def _va_check_annotation(found: Inspection, row: dict, label_file: Path, path: Path | None, mode: str,
                         left_out: dict) -> None:
    """A labelled video's annotation: readable, with an annotated frame, its lines fitting the
    video's frames (else, by `mode`, an error, fitted, or left out of training)."""
    from solution.layouts import (VA_FIT_ENV, annotated_mask, annotation_tolerance, mismatch_message,
                                  read_va_annotation)

    video = row["video"]
    try:
        values = read_va_annotation(label_file)
    except DataError as exc:
        row["status"] = "unreadable annotation"
        found.error_from(exc, label_file)
        return
    row["lines"], row["annotated"] = int(len(values)), int(annotated_mask(values).sum())
    if row["annotated"] == 0:
        row["status"] = "left out: no annotated frame"
        left_out[video] = "no annotated frame"
        found.add("warning", label_file, f"no annotated frame (every line is -5,-5): video {video} is left "
                  "out of training and of the folds")
        return
    if not (row["frames"] and row["status"] == "ok"):
        return
    tolerance = annotation_tolerance(row["frames"])
    if abs(row["lines"] - row["frames"]) <= tolerance:
        return
    m = {"file": label_file, "video": path, "lines": row["lines"], "frames": row["frames"], "tolerance": tolerance}
    if mode == "error":
        row["status"] = "does not fit its video"
        found.add("error", label_file, mismatch_message(m))
    elif mode == "fit":
        row["status"] = "fitted to its video"
        found.add("warning", label_file, f"{m['lines']} annotation lines, but its video {path} has "
                  f"{m['frames']} frames: {'truncated' if m['lines'] > m['frames'] else 'padded with -5 lines'} "
                  f"to the video's frames ({VA_FIT_ENV}=fit)")
    else:
        row["status"] = "left out: does not fit its video"
        left_out[video] = "does not fit its video"
        found.add("warning", label_file, f"{m['lines']} annotation lines, but its video {path} has "
                  f"{m['frames']} frames: video {video} is left out of training ({VA_FIT_ENV}=drop)")


def _va_split_facts(rows: list[dict], splits: dict, left_out: dict) -> dict:
    from solution.layouts import VA_SPLIT_FOLDERS

    split_facts = {}
    for split in ("train", "valid"):
        mine = [r for r in rows if r["split"] == split]
        split_facts[split] = {"videos": len(mine), "folder": VA_SPLIT_FOLDERS[split],
                              "left_out": sum(r["video"] in left_out for r in mine),
                              "lines": sum(r["lines"] or 0 for r in mine),
                              "annotated": sum(r["annotated"] or 0 for r in mine if r["video"] not in left_out)}
    split_facts["test"] = {"videos": len(splits["test"]),
                           "frames": sum((r["listed"] or r["frames"] or 0) for r in rows if r["split"] == "test")}
    return split_facts


def _va_media_facts(found: Inspection, data: Path, rows: list[dict], media: _VaMedia) -> dict:
    """Video, audio and crops present and missing; a warning for each kind some videos lack."""
    video_missing, audio_missing, crops_missing = media.video_missing, media.audio_missing, media.crops_missing
    total = len(rows)
    facts = {
        "video": {"folder": "batch*/", "present": total - len(video_missing), "missing": len(video_missing),
                  "missing_ids": video_missing},
        "audio": {"folder": "the videos' audio tracks", "present": total - len(video_missing) - len(audio_missing),
                  "missing": len(video_missing) + len(audio_missing), "missing_ids": video_missing + audio_missing},
        "crops": {"folder": "cropped_aligned/", "present": total - len(crops_missing), "missing": len(crops_missing),
                  "missing_ids": crops_missing, "images": media.crops_total},
        "transcripts": {"folder": None, "present": 0, "missing": 0, "note": "not in this layout"},
    }
    if audio_missing:
        found.add("warning", data / "batch1" if (data / "batch1").is_dir() else data,
                  f"{len(audio_missing)} video(s) without an audio track ({_some(audio_missing)}): their audio is "
                  "marked missing")
    if crops_missing:
        where_crops = data / "cropped_aligned"
        found.add("warning", where_crops, (f"no crops folder for {len(crops_missing)} of {total} video(s) "
                                           f"({_some(crops_missing)})" if where_crops.is_dir() else
                                           "no cropped_aligned/ folder") + ": the face stream reads the videos' frames "
                  "where the extractor can, else it is marked missing")
    empty_crops = [r["video"] for r in rows if r["crops"] == 0]
    if empty_crops:
        found.add("warning", data / "cropped_aligned", f"{len(empty_crops)} crops folder(s) hold no .jpg ({_some(empty_crops)})")
    return facts


# ---------------------------------------------------------------- both

def _metadata_and_groups(found: Inspection, release, data: Path, labelled: list[str], folds: int | None,
                         per: str) -> None:
    meta_path = data / "metadata.csv"
    fact = {"file": str(meta_path) if meta_path.is_file() else None}
    try:
        subjects = release.subjects()
        meta = release.metadata()
        if meta is not None:
            fact.update(rows=int(len(meta)), columns=[str(c) for c in meta.columns][:12])
        elif meta_path.is_file():
            found.add("note", meta_path, "no id column: the file is ignored")
    except DataError as exc:
        found.error_from(exc, meta_path)
        subjects = None
    if subjects is not None:
        missing = [k for k in labelled if k not in subjects]
        if missing:
            found.add("error", meta_path, f"no subject for {len(missing)} labelled video(s) ({_some(missing)}): the "
                      "folds group videos by subject")
        groups = {subjects[k] for k in labelled if k in subjects}
        fact.update(subjects=len(groups), grouping="subject")
    else:
        if meta_path.is_file():
            found.add("note", meta_path, "no 'subject' column: each video is its own subject for the folds")
        groups = {re.sub(r"_(left|right)$", "", k) for k in labelled} if per == "recording" else set(labelled)
        fact.update(subjects=None, grouping=per)
    fact["groups"] = len(groups)
    found.facts["metadata"] = fact
    if folds is not None and folds > 1 and labelled and len(groups) < folds:
        found.add("error", meta_path if subjects is not None else data,
                  f"only {len(groups)} group(s) ({fact['grouping']}) for {folds} folds: use fewer folds")


def inspect_release(data, track: str | None = None, folds: int | None = None) -> Inspection:
    from solution.layouts import detect_track

    data = Path(data)
    found = Inspection(data)
    if not data.is_dir():
        found.add("error", data, "data folder not found")
        return found
    try:
        detected = detect_track(data)
    except DataError as exc:
        detected = None
        if track is None:
            found.error_from(exc, data)
            return found
    if track is not None and detected is not None and track != detected:
        found.add("error", data, f"--track {track}, but the folder looks like a {detected.upper()} release")
    track = track or detected
    found.facts["track"] = track
    try:
        (inspect_emi if track == "emi" else inspect_va)(found, data, folds)
    except DataError as exc:  # the release cannot even be opened
        found.error_from(exc, data)
    return found


# ---------------------------------------------------------------- the summary

def _counts(fact: dict) -> str:
    if fact.get("note"):
        return fact["note"]
    text = f"{fact['present']} present, {fact['missing']} missing"
    if fact.get("missing_ids"):
        text += f" ({_some(fact['missing_ids'])})"
    return text


def summary(found: Inspection, all_videos: bool = False) -> str:
    facts, data = found.facts, found.data
    track = facts.get("track")
    lines = [f"[inspect] {data}: " + (f"{track.upper()} release ({facts.get('layout', '?')} layout)" if track
                                      else "no release recognised")]
    if facts.get("annotations"):
        lines.append(f"  annotations   {_rel(facts['annotations'], data)}")
    splits = facts.get("splits", {})
    if splits:
        lines.append("  splits")
        for split, s in splits.items():
            text = f"    {split:<6}{s['videos']:>6} videos"
            if track == "va" and split != "test":
                text += (f", {s['annotated']} annotated frames of {s['lines']} lines ({s['folder']}/)"
                         + (f", {s['left_out']} left out" if s["left_out"] else ""))
            elif track == "va":
                text += f", {s['frames']} frames to predict"
            else:
                text += f" ({s['file']})"
            lines.append(text)
    listing = facts.get("test_listing")
    if listing:
        if track == "va":
            files = ", ".join(_rel(f, data) for f in listing["files"]) or "none found"
            lines.append(f"  test listing  {files}" + (f" ({listing['source']}; frame counts {listing['frame_counts']})"
                                                       if listing["files"] else ""))
        else:
            lines.append(f"  test listing  {_rel(listing['file'], data) or 'none'}" + (
                f" ({listing['source']})" if listing["file"] else f": {listing['source']}"))
        if os.environ.get(TEST_LISTING_ENV):
            lines.append(f"                (${TEST_LISTING_ENV}={os.environ[TEST_LISTING_ENV]})")
    media = facts.get("media")
    if media:
        total = sum(s["videos"] for s in splits.values())
        lines.append(f"  media (of the {total} videos in the splits)")
        for kind, fact in media.items():
            where = f"  [{fact['folder']}]" if fact.get("folder") else ""
            extra = ""
            if kind == "crops" and fact.get("images"):
                extra = f", {fact['images']} face images"
            if kind == "transcripts" and fact.get("timed"):
                extra = f", {fact['timed']} with word times"
            lines.append(f"    {kind:<12}{_counts(fact)}{extra}{where}")
    organizer = facts.get("organizer")
    if organizer is not None:
        if not organizer:
            lines.append("  organizer features  none" + (" (not in this layout)" if track == "va" else ""))
        for kind, fact in organizer.items():
            width = f"width {fact['width']} (read {_rel(fact['read'], data)})" if fact["width"] else "width unknown"
            lines.append(f"  organizer {(kind + ' '):<10}{fact['files']} pickles, {fact['present']} present, "
                         f"{fact['missing']} missing; {width}")
    meta = facts.get("metadata")
    if meta:
        text = f"{meta.get('rows', 0)} rows" if meta["file"] else "none"
        lines.append(f"  metadata.csv  {text}; folds grouped by {meta['grouping']}: {meta['groups']} group(s)")
    rows = facts.get("videos")
    if rows:
        shown = rows if all_videos or len(rows) <= 30 else [r for r in rows if r["status"] != "ok"]
        lines.append(f"  frames: each video's frames (its container header) against its annotation lines or the "
                     f"listing; tolerance {facts['frame_tolerance']}; {facts['annotation_fit']} on a misfit "
                     f"(VA_ANNOTATION_FIT)")
        if shown:
            width = max(len(r["video"]) for r in shown)
            lines.append(f"    {'video':<{width}}  split  {'frames':>7} {'fps':>6}  {'lines':>7} {'annotated':>9} "
                         f"{'listed':>7}  status")
            for r in shown:
                lines.append(f"    {r['video']:<{width}}  {r['split']:<5}  {_num(r['frames']):>7} {_num(r['fps']):>6}  "
                             f"{_num(r['lines']):>7} {_num(r['annotated']):>9} {_num(r['listed']):>7}  {r['status']}")
        if len(shown) < len(rows):
            lines.append(f"    ... {len(rows) - len(shown)} more video(s), all fit (--videos lists every one)")
    errors, warnings, notes = (found.count(level) for level in LEVELS)
    lines.append(f"  problems      {errors} error(s), {warnings} warning(s), {notes} note(s)")
    order = {level: i for i, level in enumerate(LEVELS)}
    for p in sorted(found.problems, key=lambda p: order[p["level"]]):
        lines.append(f"    {p['level']:<8}{p['file'] + ': ' if p['file'] else ''}{p['problem']}")
    lines.append("[inspect] " + ("ok: nothing here stops a later stage" if found.ok else
                                 f"{errors} error(s): a later stage would stop on them, or learn from something wrong; "
                                 "fix them first (exit status 2)"))
    return "\n".join(lines)


def _num(value) -> str:
    return "-" if value is None else (f"{value:g}" if isinstance(value, float) else str(value))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m solution.inspect", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("data", type=Path, help="the release folder")
    parser.add_argument("--track", choices=["emi", "va"], help="the track (default: found from the folder's layout)")
    parser.add_argument("--folds", type=int, metavar="K", help="also check there are groups enough for K folds")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of the summary")
    parser.add_argument("--videos", action="store_true", help="VA: list every video's frames, not only the odd ones")
    add_test_listing_option(parser)
    args = parser.parse_args(argv)
    export_listing(args)
    found = inspect_release(args.data, args.track, args.folds)
    if args.json:
        print(json.dumps(found.to_json(), indent=1, default=str))
    else:
        print(summary(found, args.videos))
    return 0 if found.ok else 2


if __name__ == "__main__":
    sys.exit(main())
