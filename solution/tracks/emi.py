"""The EMI track (Emotional Mimicry Intensity, Hume-Vidmimic2): one unit of code.

Six intensities in [0, 1] per video, scored by the mean Pearson over the six across videos.
The release: `train_split.csv` and `valid_split.csv` (`Filename` + the six targets), the test
listing (`test_split.csv` or another of EMI_TEST_NAMES at the root; $TEST_LISTING or
`--test-listing` names another), and per video id the folders of EMI_KINDS: raw/ video,
audio/, transcripts/ (`.txt`, or word-timed ASR `.json`), the organizers' vit/ and wav2vec2/
pickles, the generator's latent_face/ and latent_voice/. Ids are zero-padded or not; the
video key is the 5-digit id (emi_key). metadata.csv is optional and read for what it has.
Predictions and the submission: one CSV, `Filename` + the six targets, a row per video.
A synthetic release keeps its test labels in private/test_labels.csv and the noise-free
intensities in private/clean_intensities.csv. The preflight's checks: emi_preflight.py.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from solution import fileio
from solution.errors import DataError
from solution.listing import TEST_LISTING_ENV, listing_override
from solution.preflight import rel
from solution.readers import (LATENT_FOLDERS, ORGANIZER_FOLDERS, VideoSources, csv_lines, load_feature_pickle,
                              note_once, numeric_block, optional_metadata, parse_ids, parse_video_id, read_csv,
                              require_columns)
from solution.tracks.base import Track, register
from solution.tracks.validation import check_values, listed, read_member
from solution.transcripts import read_transcript

EMI_TARGETS = ("Admiration", "Amusement", "Determination", "Empathic Pain", "Excitement", "Joy")


def emi_key(vid: int) -> str:
    return f"{int(vid):05d}"


# ---------------------------------------------------------------- the track

class EmiTrack(Track):
    """A label per video, in the Hume-Vidmimic2 release (EmiRelease)."""

    family = "emi"
    layout = "Hume-Vidmimic2"
    detect_hint = "an EMI release (train_split.csv)"
    prediction_suffix = "csv"
    hidden_test = "private/test_labels.csv"
    submission_formats = ("csv",)

    def looks_like(self, data: Path) -> bool:
        return (Path(data) / "train_split.csv").is_file()

    def open_release(self, data, test_listing=None) -> "EmiRelease":
        return EmiRelease(data, test_listing=test_listing)

    def release_videos(self, data, test_listing=None) -> list[VideoSources]:
        release = EmiRelease(data, test_listing=test_listing)
        labelled = release.labelled()
        splits = {**{int(v): s for v, s in labelled["split"].items()}, **dict.fromkeys(release.test_ids(), "test")}
        return [release.source(emi_key(vid), split) for vid, split in sorted(splits.items())]

    def write_predictions(self, path, predictions: dict) -> None:
        keys = sorted(predictions)
        frame = pd.DataFrame(np.stack([np.asarray(predictions[k], np.float64) for k in keys]) if keys else
                             np.zeros((0, self.dim)), index=pd.Index([int(k) for k in keys]), columns=list(self.targets))
        write_emi_predictions(path, frame)

    def read_predictions(self, path) -> dict:
        frame = read_emi_predictions(path)
        return {f"{int(v):05d}": row for v, row in zip(frame.index, frame.to_numpy(np.float64))}

    def evaluate(self, pred_path, labels_path) -> dict:
        return evaluate_emi(pred_path, labels_path)

    def write_mean_predictions(self, data, out) -> None:
        write_emi_predictions(out, predict_emi(data))

    def hidden_test_labels(self, data) -> dict | None:
        path = Path(data) / self.hidden_test
        if not path.is_file():
            return None
        table = read_emi_labels(path, what="hidden test label")
        return {emi_key(v): row for v, row in zip(table.index, table.to_numpy(np.float64))}

    def clean_labels(self, data) -> dict | None:
        path = Path(data) / "private" / "clean_intensities.csv"
        if not path.is_file():
            return None
        truth = read_emi_labels(path, what="clean intensity")
        return {emi_key(v): row for v, row in zip(truth.index, truth.to_numpy())}

    def submission_members(self, pred, data, form: str, frame_tolerance: int) -> dict[str, str]:
        return {EMI_CSV_NAME: format_emi(read_emi_predictions(pred), EmiRelease(data).test_ids(), source=pred)}

    def check_members(self, members: dict[str, str], zip_path: Path, data) -> list[str]:
        csvs = [n for n in members if n.lower().endswith(".csv")]
        if len(csvs) != 1:
            return [f"{zip_path}: an EMI submission holds exactly one .csv, found {csvs or list(members)}"]
        test_ids = EmiRelease(data).test_ids()
        return check_emi_text(members[csvs[0]], test_ids, f"{zip_path.name}:{csvs[0]}")

    def claims(self, members: dict[str, str]) -> bool:
        return not any(n.endswith(".txt") for n in members)  # the per-frame forms are .txt

    def inspect(self, found, data: Path, folds: int | None) -> None:
        from solution.tracks.emi_preflight import inspect_emi

        inspect_emi(found, data, folds)

    def summary_split(self, split: str, fact: dict) -> str:
        return f" ({fact['file']})"

    def summary_listing(self, listing: dict, data: Path) -> str:
        return (rel(listing["file"], data) or "none") + (
            f" ({listing['source']})" if listing["file"] else f": {listing['source']}")


EMI = register(EmiTrack("emi", EMI_TARGETS, 0.0, 1.0, "pearson", "video"))


# ---------------------------------------------------------------- labels and listings

def read_emi_labels(path, what: str = "EMI label", check_range: bool = True) -> pd.DataFrame:
    """A split CSV (`Filename` + the six targets) -> float frame indexed by int video id.
    Predictions use the same reader with check_range=False (they are clipped later)."""
    path = Path(path)
    frame = read_csv(path, what)
    require_columns(frame, ("Filename", *EMI_TARGETS), path, f"{what} file")
    ids = parse_ids(frame, "Filename", path)
    values = numeric_block(frame, EMI_TARGETS, path)
    out = np.flatnonzero(((values < 0) | (values > 1)).any(1))
    if check_range and out.size:
        raise DataError(f"{path}: label(s) outside [0, 1] on line(s) {csv_lines(out)}")
    return pd.DataFrame(values, index=pd.Index(ids, name="Filename"), columns=list(EMI_TARGETS))


def read_id_list(path) -> list[int]:
    """A test listing: a CSV with a `Filename` column (other columns ignored), or one id per
    line, with no header or a one-word header (`id`, `video`, ...); blank lines are skipped."""
    path = Path(path)
    frame = read_csv(path, "id list")
    if "Filename" not in frame.columns:
        if len(frame.columns) == 1 and parse_video_id(frame.columns[0]) is not None:
            frame = pd.read_csv(path, dtype=str, header=None, names=["Filename"], skipinitialspace=True)
        elif len(frame.columns) == 1:
            frame = frame.rename(columns={frame.columns[0]: "Filename"})
        else:
            raise DataError(f"{path}: id list needs a 'Filename' column; found {list(frame.columns)}")
    return sorted(parse_ids(frame, "Filename", path).tolist())



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
        note_once((str(self.root), "emi test listing"), logging.INFO,
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
        frame = optional_metadata(self.root / "metadata.csv", "Filename")
        if frame is None:
            return None
        return frame.set_index(pd.Index(parse_ids(frame, "Filename", self.root / "metadata.csv"), name="Filename"))

    grouping = "video"       # without subjects, each video is its own group in the folds
    key_column = "Filename"  # the column a user's file (folds --groups) names videos by

    def group_of(self, key: str) -> str:
        return key

    def key_of(self, raw) -> str | None:
        """A video as a file writes it (42, '42', '00042', '42.mp4') -> its key; None when it
        is not a video id."""
        vid = parse_video_id(str(raw))
        return None if vid is None else emi_key(vid)

    def source(self, key: str, split: str) -> VideoSources:
        """Where each input of the video `key` lives."""
        vid = int(key)
        return VideoSources(key, split, self.path("video", vid), self.path("audio", vid), self.transcript_path(vid),
                            None, self.organizer_paths(vid))

    def test_listing_problem(self) -> str | None:
        """Why the test videos cannot be known, or None: without labels (a test set that came
        later) the folder must list them, since the unlabelled videos cannot be told apart."""
        if (self.root / self.test_csv).is_file() or (self.root / self.train_csv).is_file():
            return None
        return f"{self.root}: no {self.test_csv} (a folder without labels must list its test videos)"


# ---------------------------------------------------------------- predictions, scores, the trivial predictor

def read_emi_predictions(path) -> pd.DataFrame:
    return read_emi_labels(path, what="EMI prediction", check_range=False)


def write_emi_predictions(path, frame: pd.DataFrame, clip: bool = True) -> None:
    """`frame` indexed by int video id with the six target columns; sorted, ids 5-digit."""
    values = frame.loc[:, list(EMI_TARGETS)].sort_index()
    if clip:
        values = values.clip(EMI.low, EMI.high)
    out = values.reset_index(drop=True)
    out.insert(0, "Filename", [f"{int(i):05d}" for i in values.index])
    fileio.write_csv(path, out)


def evaluate_emi(pred_path, labels_path) -> dict:
    """Mean Pearson over the six targets across the labelled videos, in the label file's
    order, predictions clipped to [0, 1] first (as the leaderboard does)."""
    from solution.metrics import score

    labels = read_emi_labels(labels_path)
    pred = read_emi_predictions(pred_path)
    missing = labels.index.difference(pred.index)
    if len(missing):
        raise DataError(f"{pred_path}: no prediction for {len(missing)} labelled video(s), "
                        f"e.g. {missing[:5].tolist()}")
    pred = pred.loc[labels.index].clip(EMI.low, EMI.high)
    result = score(EMI, pred.to_numpy(), labels.to_numpy())
    result["videos"] = int(len(labels))
    return result


def predict_emi(data) -> pd.DataFrame:
    """The training mean (train and valid) for every test video."""
    release = EmiRelease(data)
    mean = release.labelled()[list(EMI_TARGETS)].mean()
    ids = release.test_ids()
    return pd.DataFrame(np.tile(mean.to_numpy(), (len(ids), 1)), index=pd.Index(ids, name="Filename"),
                        columns=list(EMI_TARGETS))


# ---------------------------------------------------------------- the submission

EMI_HEADER = ",".join(("Filename",) + EMI_TARGETS)
EMI_CSV_NAME = "predictions.csv"


def format_emi(pred: pd.DataFrame, test_ids: list[int], source="predictions") -> str:
    """The submission CSV: a row per test id, sorted, 5-digit ids, values clipped to [0, 1]."""
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


def check_emi_text(text: str, test_ids: list[int], where: str) -> list[str]:
    problems: list[str] = []
    header = text.splitlines()[0].strip() if text.strip() else ""
    if header != EMI_HEADER:
        problems.append(f"{where}: header must be {EMI_HEADER!r}, got {header!r}")
    table = read_member(text, where, problems)
    if table is None or "Filename" not in table.columns:
        return problems
    ids = table["Filename"].map(parse_video_id)
    listed(problems, f"{where}: Filename that is not a video id", table["Filename"][ids.isna()].tolist())
    ids = ids.dropna().astype(int)
    counts = ids.value_counts()
    listed(problems, f"{where}: duplicate id", sorted(counts.index[counts > 1]))
    listed(problems, f"{where}: missing test id", sorted(set(test_ids) - set(ids)))
    listed(problems, f"{where}: id not in the test listing", sorted(set(ids) - set(test_ids)))
    if ids.tolist() != sorted(ids.tolist()):
        problems.append(f"{where}: rows are not sorted by Filename")
    present = [c for c in EMI_TARGETS if c in table.columns]
    if present:
        check_values(problems, where, table, present, EMI.low, EMI.high, table["Filename"].tolist())
    return problems
