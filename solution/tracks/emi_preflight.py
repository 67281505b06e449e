"""The EMI track's preflight checks (solution.inspect on a Hume-Vidmimic2 release): the
labelled splits, the test listing (or, without one, the unlabelled videos), the media and
transcripts present and missing, the organizers' feature folders and their widths, metadata
and the groups the folds will make."""
from __future__ import annotations

from pathlib import Path

from solution.errors import DataError
from solution.preflight import Inspection, metadata_and_groups, probe_width, some
from solution.readers import LATENT_FOLDERS, ORGANIZER_FOLDERS
from solution.tracks.emi import EMI, EMI_KINDS, EMI_TEST_NAMES, EmiRelease, emi_key
from solution.transcripts import read_transcript


def inspect_emi(found: Inspection, data: Path, folds: int | None) -> None:
    """Every check of a Hume-Vidmimic2 release."""
    release = EmiRelease(data)
    found.facts["layout"] = EMI.layout
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
        found.add("warning", listing, f"{len(again)} test video(s) also labelled: {some(emi_key(v) for v in again)}")

    every = sorted(labelled | set(test))
    found.facts["media"] = _emi_media(found, data, files, every)
    found.facts["organizer"] = _emi_organizer(found, data, files, every)

    nothing = [emi_key(v) for v in every if not any(v in table for table in files.values())]
    if nothing and any(files.values()):
        found.add("warning", data, f"{len(nothing)} video(s) with no media, transcript or feature file at all "
                  f"({some(nothing)}): every input is missing for them")
    if not any(files.values()):
        found.add("error", data, "no media, transcripts or organizer features: nothing to extract")

    metadata_and_groups(found, release, data, [emi_key(v) for v in sorted(labelled)], folds)


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
        found.add("error", data / release.valid_csv, f"video id(s) {some(both)} are also in {release.train_csv}")
    return splits


def _emi_files_and_test(found: Inspection, release, data: Path, listing: Path,
                        labelled: set) -> tuple[dict, list, dict]:
    """The release's files by kind, the test video ids and the listing's fact (where the ids come
    from). Both in one: without a listing, the files say which videos are the test ones."""
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
                      f"({some(missing)}): that input is marked missing for them")
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
        probe_width(found, list(table.values()), fact)
        if table and fact["width"] is None:
            found.add("warning", folder, "none of the first pickles is readable: the folder's width is unknown")
        if missing and table:
            found.add("warning", folder, f"{len(missing)} of {len(every)} video(s) have no {kind} pickle ({some(missing)})")
        organizer[kind] = fact
    return organizer
