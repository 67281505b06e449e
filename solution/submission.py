"""Submissions: predictions formatted for the leaderboard, validated against the test listing,
zipped (write_zip, check_zip), and the ledger of every zip written (ledger.csv beside it).
python -m solution.submit is its command line; solution.ensemble and solution.predict write
their zips through make_submission too.

EMI: one CSV, header Filename + the six targets, one row per test id, sorted, 5-digit ids,
values clipped to [0, 1]. VA: the ABAW6 single file `image_location,valence,arousal` or one
`<video>.txt` per video (older rounds), values clipped to [-1, 1]. A video whose predicted
frames differ from the test listing's count by at most the frame tolerance (default 10) is
padded with its last value or cut, and listed; a larger difference stops with the video named.
"""
from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
import subprocess
import time
import zipfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from solution import fileio
from solution.fileio import atomic_path
from solution.layouts import DataError, EmiRelease, VaRelease, parse_video_id
from solution.predictions import (VA_SINGLE_HEADER, parse_image_location, read_emi_predictions,
                                  read_va_predictions, va_file_text, va_single_text)
from solution.tracks import EMI, EMI_TARGETS, VA

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT_DIR = REPO / "submissions"

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


# ------------------------------------------------------------------ the ledger

LEDGER_NAME = "ledger.csv"
# One row per zip written, in the order written. time: when (UTC, ISO 8601); zip: its file
# name in the ledger's folder; fingerprint: the release work folder's suffix
# (WORK/<track>-<fingerprint>, solution/runs.py); runs and blend: the runs blended (joined by
# +) and the way (solution/blend.py's chosen way: equal, shared, per_target, +rescale, and
# the smoothing width on frame-level tracks); metric and honest_oof: the blend's honest
# out-of-fold score as solution.ensemble measured it (the whole procedure, nested: each fold
# blended by the way, weights and smoothing chosen without it; empty when no fitted blend is known); settings_digest: sha256 of the blend as
# blend.json holds it (solution.fileio.write_json's form: sorted keys, indent 2), so two zips
# with the same digest came from the same runs' predictions blended the same way; commit:
# the project's `git rev-parse --short HEAD`, `-dirty` with uncommitted changes, empty without
# git; zip_sha256: the zip's bytes (zips are byte-identical for identical predictions); pred:
# the prediction file or folder the zip was made from.
LEDGER_COLUMNS = ("time", "track", "zip", "fingerprint", "runs", "blend", "metric", "honest_oof",
                  "settings_digest", "commit", "zip_sha256", "pred")


def ledger_path(out_dir) -> Path:
    return Path(out_dir) / LEDGER_NAME


def read_ledger(path) -> list[dict]:
    """The ledger's rows ([] when there is none yet).

    A damaged ledger (empty, cut short, not UTF-8, another header, a row with another number
    of fields) is an error naming it, never set aside or rewritten: it is the one record of
    which zip was what, so silently starting a new one would hide earlier submissions.
    make_submission reads it before it writes a zip, so a damaged ledger stops a submission
    before there is a zip the ledger would not list."""
    path = Path(path)
    if not path.exists():
        return []
    fix = ("it lists the zips written to this folder: repair it (header: " + ",".join(LEDGER_COLUMNS)
           + "; one row per zip) or move it away to start a new ledger, then run again")
    try:
        text = path.read_text(encoding="utf-8")
        if not text:
            raise ValueError("the file is empty")
        if not text.endswith("\n"):  # every row written ends with one: a cut in the last row
            raise ValueError("the last row does not end with a line break: cut short")
        lines = [row for row in csv.reader(io.StringIO(text, newline="")) if row]
        if tuple(lines[0]) != LEDGER_COLUMNS:
            raise ValueError(f"header {','.join(lines[0])!r} is not the ledger's")
        for number, row in enumerate(lines[1:], start=2):
            if len(row) != len(LEDGER_COLUMNS):
                raise ValueError(f"row {number} has {len(row)} fields, the header {len(LEDGER_COLUMNS)}")
    except (OSError, ValueError, csv.Error) as exc:  # ValueError: also UnicodeDecodeError
        raise fileio.unreadable(path, "submission ledger", exc, fix) from exc
    return [dict(zip(LEDGER_COLUMNS, row)) for row in lines[1:]]


def ledger_text(rows: list[dict]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=LEDGER_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows({c: row.get(c, "") for c in LEDGER_COLUMNS} for row in rows)
    return out.getvalue()


@contextlib.contextmanager
def _folder_lock(folder: Path):
    """An exclusive flock on the folder itself (no lock file is left behind), so two
    submissions writing to the same folder at once both keep their rows. Where the file
    system has no flock, no lock."""
    try:
        import fcntl

        fd = os.open(folder, os.O_RDONLY)
    except (ImportError, OSError):
        yield
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:
            pass
        yield
    finally:
        os.close(fd)  # closing releases the lock


def append_ledger(path, row: dict) -> None:
    """Read the ledger, add `row`, write it whole, atomically (solution.fileio)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _folder_lock(path.parent):
        rows = read_ledger(path)
        fileio.write_text(path, ledger_text(rows + [row]))


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def git_commit(repo: Path = REPO) -> str:
    """`git rev-parse --short HEAD` of the project, `-dirty` when `git status --porcelain`
    lists anything; empty when git or the repository is not there."""
    try:
        head = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=30)
        if head.returncode != 0 or not head.stdout.strip():
            return ""
        status = subprocess.run(["git", "-C", str(repo), "status", "--porcelain"], capture_output=True,
                                text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return ""
    dirty = status.returncode != 0 or bool(status.stdout.strip())
    return head.stdout.strip() + ("-dirty" if dirty else "")


def blend_beside(pred) -> tuple[dict | None, dict | None, Path | None]:
    """(the blend, predict.json's record or None, the file it came from) of the predictions
    `pred`: solution.ensemble writes blend.json beside its test predictions, solution.predict
    writes predict.json (holding the blend it applied) beside its own. None when neither is
    there; an unreadable one is noted and left out (it only informs the ledger)."""
    pred = Path(pred)
    folders = [pred] if pred.is_dir() else []
    folders.append(pred.parent)
    for folder in folders:
        for name in ("blend.json", "predict.json"):
            path = folder / name
            if not path.is_file():
                continue
            try:
                record = fileio.read_json(path)
            except DataError as exc:
                print(f"[submit] note: the ledger row leaves out the blend: {exc}")
                return None, None, None
            if name == "blend.json":
                return (record, None, path) if isinstance(record, dict) and "runs" in record else (None, None, None)
            blend = record.get("blend") if isinstance(record, dict) else None
            return (blend, record, path) if isinstance(blend, dict) and "runs" in blend else (None, record, path)
    return None, None, None


def blend_way(blend: dict) -> str:
    """How the runs were blended, in solution.ensemble's words (its table's chosen way)."""
    scores = blend.get("scores") or {}
    way = scores.get("chosen") or blend.get("method") or "equal (not fitted)"
    smooth = blend.get("smooth_seconds")
    return way + (f", smoothed {float(smooth):g} s" if smooth else "")


def honest_score(blend: dict) -> tuple[str, str]:
    """(metric, honest out-of-fold score) that solution.ensemble saved in the blend: the whole
    procedure's nested estimate (blends saved before it: the smoothed blend's on frame-level
    tracks, else the chosen way's); empty when the blend was not fitted (solution.predict
    --runs: equal weights, no score)."""
    scores = blend.get("scores") or {}
    value = (scores.get("nested") or {}).get("score")
    if value is None:
        value = (scores.get("smoothing") or {}).get("honest")
    if value is None:
        value = (scores.get("blends") or {}).get(scores.get("chosen"), {}).get("honest")
    return (str(scores.get("metric", "")), "" if value is None else f"{float(value):.6f}")


def release_fingerprint(track: str, pred, data, record: dict | None = None) -> str:
    """The suffix of the release work folder (WORK/<track>-<fingerprint>) the predictions
    were made in: the folder above `pred` that holds release.json (where ensemble and predict
    write). Predictions kept elsewhere: the fingerprint of the training release predict.json
    names, or else of the release in `data` (as solution.runs.release_work names its folder);
    empty when that release has no labelled videos (a test listing alone)."""
    for folder in Path(pred).resolve().parents:
        if folder.name.startswith(f"{track}-") and (folder / "release.json").is_file():
            return folder.name[len(track) + 1:]
    from solution.layouts import open_release
    from solution.runs import fingerprint

    source = (record or {}).get("train_data") or data
    try:
        keys = list(open_release(track, source).labelled_keys())
    except Exception:  # noqa: BLE001 - only informs the ledger: a release we cannot read leaves it empty
        return ""
    return fingerprint(keys) if keys else ""


def ledger_row(track: str, zip_path: Path, pred, data) -> dict:
    blend, record, _ = blend_beside(pred)
    row = {"time": datetime.now(timezone.utc).isoformat(timespec="seconds"), "track": track,
           "zip": zip_path.name, "fingerprint": release_fingerprint(track, pred, data, record),
           "commit": git_commit(), "zip_sha256": _sha256_file(zip_path), "pred": str(Path(pred).resolve())}
    if blend is not None:
        canonical = json.dumps(blend, indent=2, sort_keys=True) + "\n"  # = blend.json's bytes
        row.update(runs="+".join(blend.get("runs", [])), blend=blend_way(blend),
                   settings_digest=hashlib.sha256(canonical.encode("utf-8")).hexdigest())
        row["metric"], row["honest_oof"] = honest_score(blend)
    return row


def format_ledger(rows: list[dict], folder: Path) -> str:
    """The ledger as a table, oldest first, with each zip's state on disk now."""
    headers = ["#", "time (UTC)", "track", "zip", "runs", "blend", "honest oof", "release", "settings", "commit",
               "zip now"]
    first_of: dict[str, str] = {}
    table = []
    for number, row in enumerate(rows, start=1):
        path = folder / row["zip"]
        if not path.is_file():
            state = "missing"
        elif row["zip_sha256"] and _sha256_file(path) != row["zip_sha256"]:
            state = "replaced (written again later, or changed)"
        else:
            state = "ok"
        if row["zip_sha256"] in first_of:
            state += f"; same bytes as {first_of[row['zip_sha256']]}"
        elif row["zip_sha256"]:
            first_of[row["zip_sha256"]] = row["zip"]
        score = f"{row['honest_oof']} {row['metric']}".strip() or "-"
        table.append([str(number), row["time"].replace("T", " ")[:19], row["track"], row["zip"], row["runs"] or "-",
                      row["blend"] or "-", score, row["fingerprint"] or "-", row["settings_digest"][:12] or "-",
                      row["commit"] or "-", state])
    widths = [max(len(r[i]) for r in [headers] + table) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [headers] + table]
    return "\n".join(lines[:1] + ["  ".join("-" * w for w in widths)] + lines[1:])


# ------------------------------------------------------------------ driver

def make_submission(track: str, pred, data, out_dir, name: str | None = None, va_format: str = "single",
                    frame_tolerance: int = DEFAULT_FRAME_TOLERANCE) -> Path:
    """Format `pred` for the leaderboard, validate it, zip it, add it to the folder's ledger;
    returns the zip path."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    zip_path = Path(out_dir) / f"{name or f'{track}-{stamp}'}.zip"
    ledger = ledger_path(out_dir)
    read_ledger(ledger)  # a damaged ledger stops here, before there is a zip it would not list
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
    try:
        append_ledger(ledger, ledger_row(track, zip_path, pred, data))
    except BaseException as exc:  # every zip in the folder is in its ledger: no row, no zip
        zip_path.unlink(missing_ok=True)
        exc.add_note(f"{zip_path} was removed: its row could not be added to {ledger}")
        raise
    print(f"[submit] added {zip_path.name} to {ledger}")
    return zip_path
