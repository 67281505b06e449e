"""The work layout, defined once: training writes it; report, ensemble and predict read it.

    WORK/features/                          the features cache (shared; entries keyed by their source files)
    WORK/<track>-<fingerprint>/             one folder per release, keyed by its labelled videos
        release.json                        the track, the data folder, how many labelled videos
        folds.csv, folds.json               the fold assignment every model of this release shares
        runs/<name>/fold<k>/                oof.csv, test.csv, metrics.json, fusion_weights.csv (FoldFiles)
        runs/<name>/fold<k>/seed<s>/        best.pt, last.pt, log.csv, predictions.pkl (SeedFiles; refit/: the same with train.refit)
        report.json, predictions/           the report; blend.json and the blended predictions

The fold file (folds.csv, folds.json) is written by python -m solution.folds and read here by
every stage (read_folds, fold_count). The fingerprint hashes the labelled video keys only, so
a second release in the same WORK never meets the first one's folds, runs or predictions,
while a test listing that arrives later in the same release folder still finds the trained
folds.
"""
from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from solution import fileio
from solution.errors import DataError
from solution.tracks import Track, detect_track, get_track, open_release


@dataclass(frozen=True)
class FoldFiles:
    """A trained fold's files: train_fold writes them, ensemble, predict and report read them."""
    dir: Path

    metrics = property(lambda self: self.dir / "metrics.json")   # present once the fold is finished
    oof = property(lambda self: self.dir / "oof.csv")             # its held-out videos, seeds averaged
    test = property(lambda self: self.dir / "test.csv")           # the test videos, seeds averaged
    fusion_weights = property(lambda self: self.dir / "fusion_weights.csv")  # models that fuse with weights


@dataclass(frozen=True)
class SeedFiles:
    """One seed's files (or, with train.refit, those of its refit on every training video)."""
    dir: Path

    best = property(lambda self: self.dir / "best.pt")            # the chosen epoch: solution.checkpoints.load_checkpoint
    last = property(lambda self: self.dir / "last.pt")            # the state to resume from
    log = property(lambda self: self.dir / "log.csv")             # one row per epoch
    predictions = property(lambda self: self.dir / "predictions.pkl")  # the seed's predictions: the seed is done
    chosen = property(lambda self: self.dir / "chosen.pkl")       # train.refit: the inner split's choice, before the refit


def fingerprint(keys) -> str:
    return hashlib.sha256(",".join(sorted(map(str, keys))).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class ReleaseWork:
    root: Path
    track: Track

    @property
    def folds_csv(self) -> Path:
        return self.root / "folds.csv"

    @property
    def folds_json(self) -> Path:
        return self.root / "folds.json"

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    def run(self, name: str) -> Path:
        return self.runs / name

    def fold(self, name: str, fold: int) -> Path:
        return self.run(name) / f"fold{fold}"

    def seed(self, name: str, fold: int, seed: int) -> Path:
        return self.fold(name, fold) / f"seed{seed}"

    def refit_dir(self, name: str, fold: int, seed: int) -> Path:
        """With train.refit: the seed trained again on every training video for its chosen epochs."""
        return self.seed(name, fold, seed) / "refit"

    def seed_checkpoint(self, name: str, fold: int, seed: int, refit: bool) -> Path:
        """The checkpoint whose predictions the seed gave (trained with train.refit or not)."""
        return self.seed_files(name, fold, seed, refit).best

    def fold_files(self, name: str, fold: int) -> FoldFiles:
        return FoldFiles(self.fold(name, fold))

    def seed_files(self, name: str, fold: int, seed: int, refit: bool = False) -> SeedFiles:
        return SeedFiles(self.refit_dir(name, fold, seed) if refit else self.seed(name, fold, seed))

    def fold_count(self) -> int:
        """k of the release's fold file (python -m solution.folds writes it)."""
        if not self.folds_json.is_file():
            raise DataError(f"{self.root}: no fold file; run python -m solution.folds first")
        return fileio.read_json(self.folds_json, "fold file",
                                "run python -m solution.folds again with its settings and --overwrite")["k"]

    @property
    def blend_json(self) -> Path:
        return self.predictions / "blend.json"

    @property
    def report_json(self) -> Path:
        return self.root / "report.json"

    @property
    def predictions(self) -> Path:
        return self.root / "predictions"

    def run_names(self) -> list[str]:
        return sorted(p.name for p in self.runs.iterdir() if p.is_dir()) if self.runs.is_dir() else []


def release_work(work, data, track: Track | str | None = None) -> ReleaseWork:
    """The work folder of the release in `data` (created, with release.json, on first use)."""
    track = get_track(track) if isinstance(track, str) else track or get_track(detect_track(data))
    release = open_release(track, data)
    keys = list(release.labelled_keys())
    if not keys:
        raise DataError(f"{data}: no labelled videos")
    root = Path(work) / f"{track.name}-{fingerprint(keys)}"
    info = root / "release.json"
    if not info.is_file():
        fileio.write_json(info, {"track": track.name, "data": str(Path(data).resolve()), "labelled": len(keys)})
    return ReleaseWork(root, track)


def read_release_info(root: Path) -> dict:
    return fileio.read_json(Path(root) / "release.json", "release record", "delete it; the next stage writes it again")


def write_folds(rw: ReleaseWork, table: pd.DataFrame, info: dict) -> None:
    fileio.write_csv(rw.folds_csv, table)
    fileio.write_json(rw.folds_json, info)


def read_folds(rw: ReleaseWork, data=None) -> tuple[pd.DataFrame, dict]:
    """The fold file of a release's work folder, checked against the release in `data` when given."""
    if not rw.folds_csv.is_file() or not rw.folds_json.is_file():
        raise DataError(f"{rw.root}: no fold file (folds.csv/folds.json); run python -m solution.folds "
                        f"--data DATA --work {rw.root.parent}")
    table = pd.read_csv(rw.folds_csv, dtype={"id": str, "group": str})
    info = fileio.read_json(rw.folds_json, "fold file", "run python -m solution.folds again")
    if fingerprint(table["id"]) != info.get("fingerprint"):
        raise DataError(f"{rw.folds_csv}: does not match its folds.json (edited by hand?); make the folds again "
                        "with --overwrite")
    if data is not None:
        current = list(open_release(rw.track, data).labelled_keys())
        if fingerprint(current) != info["fingerprint"]:
            raise DataError(f"{rw.folds_csv} was made for another release ({info['videos']} videos) than {data} "
                            f"({len(current)} labelled videos)")
    return table, info


def folds_digest(table: pd.DataFrame) -> str:
    """A hash of the assignment itself: a run trained on other folds must not be reused."""
    return fingerprint(f"{i}:{g}:{f}" for i, g, f in zip(table["id"], table["group"], table["fold"]))


def main(argv=None) -> int:
    """python -m solution.runs --data DIR --work WORK: print the release's work folder."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m solution.runs", description=main.__doc__.split(": ", 1)[1])
    parser.add_argument("--data", type=Path, required=True, help="the release folder")
    parser.add_argument("--work", type=Path, required=True, help="the work folder")
    args = parser.parse_args(argv)
    try:
        print(release_work(args.work, args.data).root)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
