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

from solution import fileio
from solution.errors import DataError
from solution.fileio import atomic_path
from solution.tracks import TRACKS, detect_track, get_track
from solution.tracks.emi import EMI_HEADER  # noqa: F401 - the EMI header, by its older place

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT_DIR = REPO / "submissions"
DEFAULT_FRAME_TOLERANCE = 10  # frame-level tracks: frames a prediction may be longer or shorter than the listing


def write_zip(path: Path, members: dict[str, str]) -> None:
    with atomic_path(path) as tmp:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as archive:
            for name, text in members.items():
                # A fixed timestamp keeps the zip identical for identical predictions.
                info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_DEFLATED
                archive.writestr(info, text)


def check_zip(zip_path, data, track: str | None = None) -> list[str]:
    """Every problem found in a submission zip, as readable lines; [] means valid. Without
    `track`, the first track (in registration order) that claims the zip's members (EMI: csv;
    an Aff-Wild2 track: .txt files whose header names its targets) checks it, else the track
    of the release in `data`."""
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
    unit = get_track(track) if track is not None else next((t for t in TRACKS.values() if t.claims(members)), None)
    if unit is None:  # no header names a track's targets: the release's track says what was expected
        unit = get_track(detect_track(data))
    return unit.check_members(members, zip_path, data)


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
    from solution.runs import fingerprint
    from solution.tracks import open_release

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
    # `va_format`: the form, among the track's submission_formats (its name is older than the other tracks)
    members = get_track(track).submission_members(pred, data, va_format, frame_tolerance)
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
