"""The Aff-Wild2 family's preflight checks (solution.inspect on a release of VA, or of another
track of the family): the annotation folder and its splits, the test listing and where it was
found, each video's frame count (from its container header: a probe of milliseconds, no
decoding) against its annotation's lines (the fit policy of affwild2.py, the one the reader
uses) or the listing's frames, the media (videos, their audio tracks, face crops), the
generator's latent folders, metadata and the groups the folds will make."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from solution.errors import DataError
from solution.preflight import Inspection, metadata_and_groups, probe_width, some
from solution.readers import LATENT_FOLDERS
from solution.tracks.affwild2 import (SIDE_SUFFIX, FIT_ENV, SPLIT_FOLDERS, annotation_tolerance, fit_done, fit_verdict,
                                      left_out_words, misfit, misfit_words, mismatch_message)


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
class _Media:
    """The videos found without a video file, an audio track or a crops folder, and the face
    images counted, as the videos are checked one by one."""

    video_missing: list = field(default_factory=list)
    audio_missing: list = field(default_factory=list)
    crops_missing: list = field(default_factory=list)
    crops_total: int = 0


def inspect_affwild2(track, found: Inspection, data: Path, folds: int | None) -> None:
    """Every check of an Aff-Wild2 release as `track` reads it."""
    release = track.open_release(data)
    found.facts.update(layout=track.layout, annotations=str(release.annotations) if release.annotations else None,
                       annotation_fit=release.annotation_fit, frame_tolerance="the larger of 5 frames and 2 %")
    splits = _labelled_splits(found, release, data)
    listing, listing_fact = _test_listing(found, release, data)
    splits["test"] = sorted(listing)
    found.facts["test_listing"] = listing_fact
    where = _split_of_videos(found, release, splits, listing_fact)
    if not splits["train"] and not splits["valid"] and release.annotations is not None:
        found.add("error", release.annotations, "no annotation file in Train_Set or Validation_Set: nothing to train on")

    rows, left_out, media = _video_rows(found, release, data, splits, listing, listing_fact)
    found.facts["videos"] = rows
    found.facts["splits"] = _split_facts(rows, splits, left_out)
    labelled = [v for s in ("train", "valid") for v in splits[s] if v not in left_out]
    if (splits["train"] or splits["valid"]) and not labelled:
        found.add("error", release.annotations, "every annotated video is left out: nothing to train on")

    found.facts["media"] = _media_facts(found, data, rows, media)
    spare = sorted(set(release.video_files) - {release.video_path(v).stem for v in where if release.video_path(v)})
    if spare:
        found.add("note", data, f"{len(spare)} video file(s) under batch*/ in no split, ignored ({some(spare)})")
    found.facts["organizer"] = _organizer(found, data, release, sorted(where))
    metadata_and_groups(found, release, data, labelled, folds)


def _organizer(found: Inspection, data: Path, release, videos: list[str]) -> dict:
    """The organizer-style folders an Aff-Wild2 release can hold (the generator's latent_face/
    and latent_voice/; Aff-Wild2 has none): their pickles present and missing, and their width."""
    organizer = {}
    for kind in LATENT_FOLDERS:
        folder = data / kind
        if not folder.is_dir():
            continue
        table = {v: p for v in videos if (p := release.organizer_paths(v).get(kind)) is not None}
        missing = [v for v in videos if v not in table]
        fact = {"folder": str(folder), "files": len(list(folder.glob("*.pkl"))), "present": len(table),
                "missing": len(missing), "missing_ids": missing, "width": None, "read": None}
        probe_width(found, list(table.values()), fact)
        if missing and table:
            found.add("warning", folder, f"{len(missing)} of {len(videos)} video(s) have no {kind} pickle ({some(missing)})")
        organizer[kind] = fact
    return organizer


def _labelled_splits(found: Inspection, release, data: Path) -> dict[str, list[str]]:
    """The videos of train and valid (none for a split that cannot be read)."""
    splits: dict[str, list[str]] = {}
    if release.annotations is None:
        found.add("error", data, f"no {release.track.annotation_folder} annotation folder: nothing to train on")
    for split in ("train", "valid"):
        try:
            splits[split] = release.videos(split)
        except DataError as exc:
            found.error_from(exc, data)
            splits[split] = []
    return splits


def _test_listing(found: Inspection, release, data: Path) -> tuple[dict, dict]:
    """The test listing (video -> its frames, or None when the videos give them) and its fact."""
    listing_fact = {"files": [], "source": None, "frame_counts": None}
    try:
        files = release.test_listing_files
        listing = release.listing()
        listing_fact.update(files=[str(f) for f in files], source=_listing_place(release, files),
                            frame_counts="from the listing" if all(n is not None for n in listing.values()) else
                            ("from the videos" if all(n is None for n in listing.values()) else
                             "from the listing where it has them, else from the videos"))
    except DataError as exc:
        found.error_from(exc, release.annotations or data)
        listing = {}
    return listing, listing_fact


def _split_of_videos(found: Inspection, release, splits: dict, listing_fact: dict) -> dict[str, str]:
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


def _video_rows(found: Inspection, release, data: Path, splits: dict, listing: dict,
                listing_fact: dict) -> tuple[list[dict], dict, _Media]:
    """A row per video of every split (its files, frames, annotation lines, status), the
    labelled videos left out of training (video -> why) and what the media lack."""
    rows, left_out, media = [], {}, _Media()
    for split in ("train", "valid", "test"):
        for video in splits[split]:
            row = {"video": video, "split": split, "video_file": None, "frames": None, "fps": None,
                   "lines": None, "annotated": None, "listed": None, "crops": None, "status": "ok"}
            rows.append(row)
            label_file = release.annotation_path(split, video) if split != "test" else None
            owner = label_file or (listing_fact["files"][0] if listing_fact["files"] else data)
            path = _check_media(found, release, data, row, owner, media)
            if split == "test":
                _check_listed(found, row, listing.get(video), owner, path)
            else:
                _check_annotation(found, release, row, label_file, path, left_out)
    return rows, left_out, media


def _check_media(found: Inspection, release, data: Path, row: dict, owner, media: _Media) -> Path | None:
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
        if SIDE_SUFFIX.search(video):
            # Two people share the video: only the crops say whose face the labels describe.
            row["status"] = "no crops"
            found.add("error", owner, f"{video!r} is one of two people in {path.name if path else 'its video'}, but "
                      f"its face crops {crops} are missing: a face detector on the video cannot tell which person "
                      "the labels describe; add the organizers' cropped_aligned folder for it")
    return path


def _check_listed(found: Inspection, row: dict, listed: int | None, owner, path: Path | None) -> None:
    """A test video's frames in the listing against its video's; a listing without its frame
    count and a video without frames leave nothing to predict (the reader's test_frame_counts
    refuses it)."""
    row["listed"] = listed
    if row["listed"] is None and row["frames"] == 0:
        row["status"] = "no frames"
        found.add("error", owner, f"test video {row['video']!r} has no frames to predict: the listing gives no "
                  f"frame count and its video {path} has 0 frames; check the video file")
    if row["listed"] is not None and row["frames"]:
        tolerance = annotation_tolerance(row["frames"])
        if abs(row["listed"] - row["frames"]) > tolerance:
            row["status"] = "listing differs"
            found.add("warning", owner, f"test video {row['video']!r}: the listing gives {row['listed']} frames, "
                      f"its video {path} has {row['frames']} (more than {tolerance} apart); the "
                      "predictions follow the listing")


def _check_annotation(found: Inspection, release, row: dict, label_file: Path, path: Path | None,
                      left_out: dict) -> None:
    """A labelled video's annotation: readable, with an annotated frame, its lines fitting the
    video's frames (else, by the release's fit mode, an error, fitted, or left out of training:
    the fit policy, as the reader applies it)."""
    track, video = release.track, row["video"]
    try:
        values = track.read_annotation(label_file)
    except DataError as exc:
        row["status"] = "unreadable annotation"
        found.error_from(exc, label_file)
        return
    row["lines"], row["annotated"] = int(len(values)), int(track.annotated(values).sum())
    checked = row["frames"] and row["status"] == "ok"  # a video that cannot be read has nothing to fit
    m = misfit(label_file, path, row["lines"], row["frames"]) if checked else None
    verdict = fit_verdict(release.annotation_fit, row["annotated"] > 0, m)
    if verdict == "unannotated":
        row["status"] = "left out: no annotated frame"
        left_out[video] = "no annotated frame"
        found.add("warning", label_file, left_out_words(track, video))
    elif verdict == "error":
        row["status"] = "does not fit its video"
        found.add("error", label_file, mismatch_message(m, track))
    elif verdict == "fit":
        row["status"] = "fitted to its video"
        found.add("warning", label_file, f"{misfit_words(m)}: {fit_done(track, m)} to the video's frames "
                  f"({FIT_ENV}=fit)")
    elif verdict == "drop":
        row["status"] = "left out: does not fit its video"
        left_out[video] = "does not fit its video"
        found.add("warning", label_file, f"{misfit_words(m)}: video {video} is left out of training ({FIT_ENV}=drop)")


def _split_facts(rows: list[dict], splits: dict, left_out: dict) -> dict:
    split_facts = {}
    for split in ("train", "valid"):
        mine = [r for r in rows if r["split"] == split]
        split_facts[split] = {"videos": len(mine), "folder": SPLIT_FOLDERS[split],
                              "left_out": sum(r["video"] in left_out for r in mine),
                              "lines": sum(r["lines"] or 0 for r in mine),
                              "annotated": sum(r["annotated"] or 0 for r in mine if r["video"] not in left_out)}
    split_facts["test"] = {"videos": len(splits["test"]),
                           "frames": sum((r["listed"] or r["frames"] or 0) for r in rows if r["split"] == "test")}
    return split_facts


def _media_facts(found: Inspection, data: Path, rows: list[dict], media: _Media) -> dict:
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
                  f"{len(audio_missing)} video(s) without an audio track ({some(audio_missing)}): their audio is "
                  "marked missing")
    if crops_missing:
        where_crops = data / "cropped_aligned"
        found.add("warning", where_crops, (f"no crops folder for {len(crops_missing)} of {total} video(s) "
                                           f"({some(crops_missing)})" if where_crops.is_dir() else
                                           "no cropped_aligned/ folder") + ": the face stream reads the videos' frames "
                  "where the extractor can, else it is marked missing")
    empty_crops = [r["video"] for r in rows if r["crops"] == 0]
    if empty_crops:
        found.add("warning", data / "cropped_aligned", f"{len(empty_crops)} crops folder(s) hold no .jpg ({some(empty_crops)})")
    return facts
