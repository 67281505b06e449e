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
frames, `drop` leaves those videos out of training (see solution/tracks/affwild2.py); they are then
warnings saying which was done.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from solution.errors import DataError
from solution.listing import TEST_LISTING_ENV, add_test_listing_option, export_listing
from solution.preflight import LEVELS, Inspection, rel, some
from solution.tracks import detect_track, get_track, track_names
from solution.tracks.base import tracks_held


def inspect_release(data, track: str | None = None, folds: int | None = None) -> Inspection:
    data = Path(data)
    found = Inspection(data)
    if not data.is_dir():
        found.add("error", data, "data folder not found")
        return found
    held = tracks_held(data)
    try:
        detected = track if track in held else detect_track(data)
    except DataError as exc:
        detected = None
        if track is None:
            found.error_from(exc, data)
            return found
    if track is not None and detected is not None and track != detected:
        found.add("error", data, f"--track {track}, but the folder looks like a {detected.upper()} release")
    track = track or detected
    found.facts["track"] = track
    if len(held) > 1:  # an Aff-Wild2 release with several tracks' annotations: one release, a track at a time
        found.facts["tracks_held"] = held
    try:
        get_track(track).inspect(found, data, folds)
    except DataError as exc:  # the release cannot even be opened
        found.error_from(exc, data)
    return found


# ---------------------------------------------------------------- the summary

def _counts(fact: dict) -> str:
    if fact.get("note"):
        return fact["note"]
    text = f"{fact['present']} present, {fact['missing']} missing"
    if fact.get("missing_ids"):
        text += f" ({some(fact['missing_ids'])})"
    return text


def summary(found: Inspection, all_videos: bool = False) -> str:
    facts, data = found.facts, found.data
    name = facts.get("track")
    track = get_track(name) if name else None
    lines = [f"[inspect] {data}: " + (f"{name.upper()} release ({facts.get('layout', '?')} layout)" if name
                                      else "no release recognised")]
    if facts.get("tracks_held"):
        lines.append(f"  tracks        the release holds {', '.join(t.upper() for t in facts['tracks_held'])}; "
                     f"checked as {name.upper()} (TRACK or --track chooses)")
    if facts.get("annotations"):
        lines.append(f"  annotations   {rel(facts['annotations'], data)}")
    splits = facts.get("splits", {})
    if splits:
        lines.append("  splits")
        for split, s in splits.items():
            lines.append(f"    {split:<6}{s['videos']:>6} videos" + track.summary_split(split, s))
    listing = facts.get("test_listing")
    if listing:
        lines.append(f"  test listing  {track.summary_listing(listing, data)}")
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
            lines.append("  organizer features  none" + track.organizer_note)
        for kind, fact in organizer.items():
            width = f"width {fact['width']} (read {rel(fact['read'], data)})" if fact["width"] else "width unknown"
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
    parser.add_argument("--track", choices=track_names(), help="the track (default: found from the folder's layout)")
    parser.add_argument("--folds", type=int, metavar="K", help="also check there are groups enough for K folds")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of the summary")
    parser.add_argument("--videos", action="store_true",
                        help="VA, EXPR, AU: list every video's frames, not only the odd ones")
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
