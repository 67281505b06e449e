"""python -m solution.submit: format predictions for the leaderboard, validate, and zip.

  python -m solution.submit --track emi --pred test_pred.csv --data DATA_DIR
  python -m solution.submit --track va --pred PRED (file or folder) --data DATA_DIR [--va-format per-video]
  python -m solution.submit --check submissions/NAME.zip --data DATA_DIR

EMI: one CSV, header Filename + the six targets, one row per test id, sorted, 5-digit ids,
values clipped to [0, 1]. VA: the ABAW6 single file `image_location,valence,arousal`
(default) or one `<video>.txt` per video (older rounds), values clipped to [-1, 1]. A video
whose predicted frames differ from the test listing's count by at most --frame-tolerance
(default 10) is padded with its last value or cut, and listed; a larger difference stops
with the video named (the predictions follow another frame rate or video).
--check lists every problem in a zip and exits 1 if there is any.
"""
from __future__ import annotations

import argparse
import io
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from solution.fileio import atomic_path
from solution.layouts import DataError, EmiRelease, VaRelease, parse_video_id
from solution.listing import add_test_listing_option
from solution.predictions import (VA_SINGLE_HEADER, parse_image_location, read_emi_predictions,
                                  read_va_predictions, va_file_text, va_single_text)
from solution.tracks import EMI, EMI_TARGETS, VA

DEFAULT_OUT_DIR = Path(__file__).resolve().parent.parent / "submissions"

EMI_HEADER = ",".join(("Filename",) + EMI_TARGETS)
EMI_CSV_NAME = "predictions.csv"
VA_SINGLE_NAME = "predictions.txt"
MAX_LISTED = 20  # per kind of problem, so a badly broken file still gives a readable report
DEFAULT_FRAME_TOLERANCE = 10  # VA: frames a prediction may be longer or shorter than the listing


# ------------------------------------------------------------------ formatting

def format_emi(pred: pd.DataFrame, test_ids: list[int], source="predictions") -> str:
    missing = sorted(set(test_ids) - set(pred.index))
    if missing:
        raise DataError(f"{source}: no prediction for {len(missing)} test id(s), e.g. {missing[:5]}")
    extra = sorted(set(pred.index) - set(test_ids))
    if extra:
        print(f"[submit] note: dropping {len(extra)} id(s) not in the test listing, e.g. {extra[:5]}")
    values = pred.loc[sorted(test_ids), list(EMI_TARGETS)].clip(EMI.low, EMI.high)
    lines = [EMI_HEADER] + [f"{vid:05d}," + ",".join(f"{x:.6f}" for x in row)
                            for vid, row in zip(values.index, values.to_numpy())]
    return "\n".join(lines) + "\n"


def fit_va_lengths(pred: dict[str, np.ndarray], counts: dict[str, int], source="predictions",
                   tolerance: int = DEFAULT_FRAME_TOLERANCE):
    """Pad (repeat the last value) or cut each video to the listing's frame count, when they
    differ by at most `tolerance` frames (decoders and annotations disagree by a few); the
    videos fitted are listed. A larger difference means the predictions are aligned to
    something else (another fps, another video): an error naming every such video."""
    missing = sorted(set(counts) - set(pred))
    if missing:
        raise DataError(f"{source}: no prediction for {len(missing)} test video(s), e.g. {missing[:5]}")
    fitted, adjusted, too_far = {}, [], []
    for video, n in sorted(counts.items()):
        values = np.clip(pred[video], VA.low, VA.high)
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


def write_zip(path: Path, members: dict[str, str]) -> None:
    with atomic_path(path) as tmp:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as archive:
            for name, text in members.items():
                # A fixed timestamp keeps the zip identical for identical predictions.
                info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_DEFLATED
                archive.writestr(info, text)


# ------------------------------------------------------------------ checking

def _listed(problems: list[str], label: str, items) -> None:
    items = list(items)
    if items:
        shown = ", ".join(map(str, items[:MAX_LISTED]))
        problems.append(f"{label} ({len(items)}): {shown}{' ...' if len(items) > MAX_LISTED else ''}")


def _check_values(problems, where: str, table: pd.DataFrame, columns, low, high, row_names):
    values = table[list(columns)].apply(lambda c: pd.to_numeric(c.astype(str).str.strip(), errors="coerce"))
    values = values.to_numpy(dtype=np.float64)
    nan_rows = ~np.isfinite(values).all(1)
    _listed(problems, f"{where}: NaN, empty or non-numeric value", np.asarray(row_names)[nan_rows])
    with np.errstate(invalid="ignore"):
        out = ((values < low) | (values > high)).any(1) & ~nan_rows
    _listed(problems, f"{where}: value outside [{low:g}, {high:g}]", np.asarray(row_names)[out])


def _read_member(text: str, where: str, problems: list[str]) -> pd.DataFrame | None:
    try:
        return pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        problems.append(f"{where}: not a readable CSV ({exc})")
        return None


def check_emi_text(text: str, test_ids: list[int], where: str) -> list[str]:
    problems: list[str] = []
    header = text.splitlines()[0].strip() if text.strip() else ""
    if header != EMI_HEADER:
        problems.append(f"{where}: header must be {EMI_HEADER!r}, got {header!r}")
    table = _read_member(text, where, problems)
    if table is None or "Filename" not in table.columns:
        return problems
    ids = table["Filename"].map(parse_video_id)
    _listed(problems, f"{where}: Filename that is not a video id", table["Filename"][ids.isna()].tolist())
    ids = ids.dropna().astype(int)
    counts = ids.value_counts()
    _listed(problems, f"{where}: duplicate id", sorted(counts.index[counts > 1]))
    _listed(problems, f"{where}: missing test id", sorted(set(test_ids) - set(ids)))
    _listed(problems, f"{where}: id not in the test listing", sorted(set(ids) - set(test_ids)))
    if ids.tolist() != sorted(ids.tolist()):
        problems.append(f"{where}: rows are not sorted by Filename")
    present = [c for c in EMI_TARGETS if c in table.columns]
    if present:
        _check_values(problems, where, table, present, EMI.low, EMI.high, table["Filename"].tolist())
    return problems


def check_va_single_text(text: str, counts: dict[str, int], where: str) -> list[str]:
    problems: list[str] = []
    header = text.splitlines()[0].strip() if text.strip() else ""
    if header != VA_SINGLE_HEADER:
        problems.append(f"{where}: header must be {VA_SINGLE_HEADER!r}, got {header!r}")
        return problems
    table = _read_member(text, where, problems)
    if table is None:
        return problems
    located = table["image_location"].map(parse_image_location)
    _listed(problems, f"{where}: image_location not like <video>/00001.jpg",
            table["image_location"][located.isna()].tolist())
    table = table[located.notna()].assign(video=[v for v, _ in located.dropna()],
                                          frame=[f for _, f in located.dropna()])
    dup = table.duplicated(["video", "frame"])
    _listed(problems, f"{where}: duplicate image_location", table["image_location"][dup].tolist())
    _listed(problems, f"{where}: missing test video", sorted(set(counts) - set(table["video"])))
    _listed(problems, f"{where}: video not in the test listing", sorted(set(table["video"]) - set(counts)))
    for video, rows in table.groupby("video", sort=True):
        if video in counts:
            frames = set(rows["frame"])
            if frames != set(range(1, counts[video] + 1)):
                problems.append(f"{where}: {video}: frames {min(frames)}..{max(frames)} "
                                f"({len(frames)} distinct), the test listing says 1..{counts[video]}")
    _check_values(problems, where, table, VA.targets, VA.low, VA.high, table["image_location"].tolist())
    return problems


def check_va_video_text(text: str, n_expected: int, where: str) -> list[str]:
    problems: list[str] = []
    header = text.splitlines()[0].replace(" ", "") if text.strip() else ""
    if header != "valence,arousal":
        return [f"{where}: header must be 'valence,arousal', got {header!r}"]
    table = _read_member(text, where, problems)
    if table is not None:
        if len(table) != n_expected:
            problems.append(f"{where}: {len(table)} frames, the test listing says {n_expected}")
        _check_values(problems, where, table, VA.targets, VA.low, VA.high,
                      [f"frame {i}" for i in range(1, len(table) + 1)])
    return problems


def check_zip(zip_path, data, track: str | None = None) -> list[str]:
    """Every problem found in a submission zip, as readable lines; [] means valid."""
    zip_path = Path(zip_path)
    if not zip_path.is_file():
        return [f"{zip_path}: file not found"]
    try:
        with zipfile.ZipFile(zip_path) as archive:
            members = {i.filename: archive.read(i).decode("utf-8", errors="replace")
                       for i in archive.infolist() if not i.is_dir()}
    except zipfile.BadZipFile as exc:
        return [f"{zip_path}: not a zip file ({exc})"]
    if not members:
        return [f"{zip_path}: the zip is empty"]
    names = list(members)
    if track is None:
        track = "va" if any(n.endswith(".txt") for n in names) else "emi"
    if track == "emi":
        csvs = [n for n in names if n.lower().endswith(".csv")]
        if len(csvs) != 1:
            return [f"{zip_path}: an EMI submission holds exactly one .csv, found {csvs or names}"]
        test_ids = EmiRelease(data).test_ids()
        return check_emi_text(members[csvs[0]], test_ids, f"{zip_path.name}:{csvs[0]}")
    counts = VaRelease(data).test_frame_counts()
    texts = [n for n in names if n.lower().endswith(".txt")]
    if len(texts) == 1 and Path(texts[0]).stem not in counts:
        return check_va_single_text(members[texts[0]], counts, f"{zip_path.name}:{texts[0]}")
    problems: list[str] = []
    by_video = {Path(n).stem: n for n in texts}
    _listed(problems, f"{zip_path.name}: missing <video>.txt for test video", sorted(set(counts) - set(by_video)))
    _listed(problems, f"{zip_path.name}: file for a video not in the test listing", sorted(set(by_video) - set(counts)))
    for video in sorted(set(counts) & set(by_video)):
        problems += check_va_video_text(members[by_video[video]], counts[video], f"{zip_path.name}:{by_video[video]}")
    return problems


# ------------------------------------------------------------------ driver

def make_submission(track: str, pred, data, out_dir, name: str | None = None, va_format: str = "single",
                    frame_tolerance: int = DEFAULT_FRAME_TOLERANCE) -> Path:
    """Format `pred` for the leaderboard, validate it, zip it; returns the zip path."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    zip_path = Path(out_dir) / f"{name or f'{track}-{stamp}'}.zip"
    if track == "emi":
        text = format_emi(read_emi_predictions(pred), EmiRelease(data).test_ids(), source=pred)
        members = {EMI_CSV_NAME: text}
    else:
        fitted = fit_va_lengths(read_va_predictions(pred), VaRelease(data).test_frame_counts(), source=pred,
                                tolerance=frame_tolerance)
        members = ({VA_SINGLE_NAME: va_single_text(fitted)} if va_format == "single"
                   else {f"{video}.txt": va_file_text(values) for video, values in sorted(fitted.items())})
    write_zip(zip_path, members)
    problems = check_zip(zip_path, data, track)
    if problems:
        zip_path.unlink()
        raise DataError("the formatted submission failed validation:\n  " + "\n  ".join(problems))
    return zip_path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m solution.submit", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--track", choices=["emi", "va"], help="required to build; guessed for --check")
    parser.add_argument("--pred", type=Path, help="test predictions (EMI CSV; VA single file or folder)")
    parser.add_argument("--data", type=Path, required=True, help="the release folder (for the test listing)")
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT_DIR,
                        help="where the zip goes (default: submissions/ in the repository)")
    parser.add_argument("--name", help="zip file name without .zip (default: <track>-<timestamp>)")
    parser.add_argument("--va-format", choices=["single", "per-video"], default="single",
                        help="VA: ABAW6 single file, or one <video>.txt per video")
    parser.add_argument("--frame-tolerance", type=int, default=DEFAULT_FRAME_TOLERANCE, metavar="N",
                        help="VA: pad or cut a video whose predicted frames differ from the listing by at most N "
                             f"(listed); more is an error (default {DEFAULT_FRAME_TOLERANCE})")
    parser.add_argument("--check", type=Path, metavar="FILE.zip", help="validate this zip instead of building one")
    add_test_listing_option(parser)
    args = parser.parse_args(argv)
    try:
        if args.check:
            problems = check_zip(args.check, args.data, args.track)
            for line in problems:
                print(f"problem: {line}")
            print(f"{args.check}: {'INVALID, ' + str(len(problems)) + ' problem(s)' if problems else 'valid'}")
            return 1 if problems else 0
        if not (args.track and args.pred):
            parser.error("building a submission needs --track and --pred (or use --check FILE.zip)")
        if args.frame_tolerance < 0:
            parser.error("--frame-tolerance must be 0 or more")
        path = make_submission(args.track, args.pred, args.data, args.out_dir, args.name, args.va_format,
                               args.frame_tolerance)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"[submit] wrote {path} (validated against the test listing of {args.data})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
