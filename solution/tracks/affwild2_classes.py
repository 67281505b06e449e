"""The Aff-Wild2 tracks whose labels are classes per frame (EXPR: one of eight expressions;
AU: twelve action units, each on or off): what they share on the family of affwild2.py.

An annotation file has the challenge's header (the class or unit names, comma-separated), then
a line per video frame: EXPR one integer, the class (0-7); AU one 0/1 per unit; -1 marks a
frame nobody annotated (every unit -1 for AU). Inside the harness a label is a (frames, K)
float array over the K = len(targets) classes or units: one-hot (EXPR) or one 0/1 per unit
(AU), a row of -1 on an unannotated frame; predictions are probabilities of the same shape
(softmax over the classes, a sigmoid per unit), so runs average and blends weigh them as they
do values. The leaderboard's labels are made only when a submission is written, by the
default decision (decide): the most probable class, or each unit whose probability is above
0.5. A decision rule chosen out of fold (class biases, unit thresholds) is a monotone map of
the probabilities the blend applies before that (solution/blend.py), so the default decision
then makes its choice.

Prediction files inside the harness (every fold's oof and test files, the blend's): the
single-file form with probabilities, `image_location,<targets>` and K values a row.
Submissions: the ABAW single file, `image_location,<targets>` and, a row per frame, the label
(EXPR: one integer 0-7; AU: the 12 0/1 values), or one `<video>.txt` per video with the
track's header and a label a line. The readers take either form, labels or probabilities.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from solution import fileio
from solution.errors import DataError
from solution.tracks.affwild2 import AffWild2Track, read_frame_table, read_single_file
from solution.tracks.validation import listed

CLASS_UNANNOTATED = -1.0


class ClassTrack(AffWild2Track):
    """A per-frame class track of the Aff-Wild2 family (see the module docstring). A unit sets
    the Track fields (kind "multiclass" or "multilabel"), annotation_folder, other_folders and
    listing_words."""

    @property
    def file_columns(self) -> int:
        """Values on an annotation (or label) line: one class, or one value per unit."""
        return 1 if self.kind == "multiclass" else self.dim

    @property
    def header(self) -> str:
        return ",".join(self.targets)

    @property
    def unannotated_line(self) -> str:
        return ",".join(["-1"] * self.file_columns)

    # ---- labels: the file's integers <-> the harness's (frames, K) arrays
    def encode(self, labels: np.ndarray) -> np.ndarray:
        """(frames, file_columns) integers -> (frames, K) float32: one-hot or 0/1 per unit,
        rows of -1 where the frame is unannotated."""
        labels = np.asarray(labels)
        unannotated = (labels == -1).all(1)
        if self.kind == "multiclass":
            out = np.zeros((len(labels), self.dim), np.float32)
            out[np.flatnonzero(~unannotated), labels[~unannotated, 0].astype(int)] = 1.0
        else:
            out = labels.astype(np.float32)
        out[unannotated] = CLASS_UNANNOTATED
        return out

    def decide(self, probabilities: np.ndarray) -> np.ndarray:
        """(frames, K) probabilities -> (frames, file_columns) integer labels: the most probable
        class, or each unit above 0.5 (the default decision; see the module docstring)."""
        probabilities = np.asarray(probabilities)
        if self.kind == "multiclass":
            return probabilities.argmax(1)[:, None]
        return (probabilities > 0.5).astype(int)

    def read_annotation(self, path, check_range: bool = True) -> np.ndarray:
        return self.encode(self.read_label_file(path, allow_unannotated=True))

    def read_label_file(self, path, allow_unannotated: bool) -> np.ndarray:
        """A file with the track's header and a label a line -> (frames, file_columns) int;
        every problem names the file and the line."""
        path = Path(path)
        if not path.is_file():
            raise DataError(f"{path}: annotation file not found")
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        return self.parse_labels(lines, str(path), allow_unannotated)

    def parse_labels(self, lines: list[str], where: str, allow_unannotated: bool) -> np.ndarray:
        header = lines[0].replace(" ", "").lower() if lines else ""
        if header != self.header.lower():
            raise DataError(f"{where}: first line must be {self.header!r} (the {self.name.upper()} challenge's "
                            f"header), got {lines[0] if lines else ''!r}")
        rows = [(n, line.strip().rstrip(",")) for n, line in enumerate(lines[1:], start=2) if line.strip()]
        if not rows:
            raise DataError(f"{where}: annotation file has no frames")
        try:  # numpy's C parser first; anything it refuses is read line by line, which names the line
            values = np.loadtxt([line for _, line in rows], delimiter=",", comments=None, dtype=np.float64, ndmin=2)
            if values.shape != (len(rows), self.file_columns):
                raise ValueError("shape")
        except ValueError:
            values = np.empty((len(rows), self.file_columns))
            for i, (number, line) in enumerate(rows):
                cells = line.split(",")
                if len(cells) != self.file_columns:
                    raise DataError(f"{where}: line {number}: {len(cells)} value(s), expected {self.file_columns} "
                                    f"({'the class' if self.file_columns == 1 else 'one 0/1 per unit'})") from None
                try:
                    values[i] = [float(c) for c in cells]
                except ValueError:
                    raise DataError(f"{where}: line {number}: not a number: {line!r}") from None
        allowed = set(range(self.dim)) if self.kind == "multiclass" else {0, 1}
        allowed = allowed | ({-1} if allow_unannotated else set())
        bad = ~np.isin(values, sorted(allowed)) | (values != np.round(values))
        if bad.any():
            row = int(np.flatnonzero(bad.any(1))[0])
            what = (f"a class 0-{self.dim - 1}" if self.kind == "multiclass" else "0 or 1 per unit")
            raise DataError(f"{where}: line {rows[row][0]}: {rows[row][1]!r}: expected {what}"
                            + (" or -1 (not annotated)" if allow_unannotated else ""))
        partial = (values == -1).any(1) & ~(values == -1).all(1)
        if partial.any():
            row = int(np.flatnonzero(partial)[0])
            raise DataError(f"{where}: line {rows[row][0]}: some units -1 and some not; a frame is annotated "
                            "for every unit or for none")
        return values.astype(int)

    # ---- predictions: probabilities inside the harness, labels in a submission
    def single_text(self, predictions: dict[str, np.ndarray]) -> str:
        lines = [f"image_location,{self.header}"]
        for video in sorted(predictions):
            lines += [f"{video}/{i:05d}.jpg," + ",".join(f"{p:.6f}" for p in row)
                      for i, row in enumerate(predictions[video], start=1)]
        return "\n".join(lines) + "\n"

    def file_text(self, values: np.ndarray) -> str:
        return self.header + "\n" + "".join(",".join(f"{p:.6f}" for p in row) + "\n" for row in values)

    def label_single_text(self, predictions: dict[str, np.ndarray]) -> str:
        lines = [f"image_location,{self.header}"]
        for video in sorted(predictions):
            lines += [f"{video}/{i:05d}.jpg," + ",".join(map(str, row))
                      for i, row in enumerate(self.decide(predictions[video]), start=1)]
        return "\n".join(lines) + "\n"

    def label_file_text(self, values: np.ndarray) -> str:
        return self.header + "\n" + "".join(",".join(map(str, row)) + "\n" for row in self.decide(values))

    def read_frame_predictions(self, path) -> dict[str, np.ndarray]:
        """{video: (frames, K) probabilities} from a single file or a folder of per-video files,
        of probabilities or of labels (a label is a probability of 1)."""
        path = Path(path)
        if path.is_dir():
            files = fileio.listed(path, "*.txt")
            if not files:
                raise DataError(f"{path}: no <video>.txt prediction files")
            return {f.stem: self.parse_values(f.read_text(encoding="utf-8", errors="replace").splitlines(), str(f))
                    for f in files}
        if not path.is_file():
            raise DataError(f"{path}: {self.name.upper()} prediction file not found")
        return read_single_file(path, f"image_location,{self.header}",
                                lambda frame: self.values_of(frame[list(self.targets)], str(path)))

    def parse_values(self, lines: list[str], where: str) -> np.ndarray:
        """A per-video file (the track's header, then a row per frame) -> (frames, K) probabilities."""
        header = lines[0].replace(" ", "") if lines else ""
        if header.lower() != self.header.lower():
            raise DataError(f"{where}: first line must be {self.header!r}, got {header!r}")
        text = [line.strip().split(",") for line in lines[1:] if line.strip()]
        if not text:
            raise DataError(f"{where}: no frames")
        width = len(text[0])
        if any(len(row) != width for row in text):
            raise DataError(f"{where}: rows of different lengths")
        return self.values_of(pd.DataFrame(text, columns=list(self.targets)[:width] if width <= self.dim else None),
                              where)

    def values_of(self, table: pd.DataFrame, where: str) -> np.ndarray:
        """Cells of a prediction file -> (frames, K) float32 probabilities. A multi-class file may
        hold one label a row (filled in the first column, as the submission form is) or K
        probabilities; a multi-label one 0/1 labels or probabilities."""
        numbers = table.apply(lambda c: pd.to_numeric(c.astype(str).str.strip(), errors="coerce"))
        filled = numbers.notna().sum(axis=0).to_numpy()
        if self.kind == "multiclass" and filled[0] == len(numbers) and not filled[1:].any():
            labels = numbers.iloc[:, 0].to_numpy(np.float64)
            if not np.isin(labels, range(self.dim)).all():
                raise DataError(f"{where}: a label outside 0-{self.dim - 1}")
            return self.encode(labels.astype(int)[:, None])
        values = numbers.to_numpy(np.float64)
        if values.shape[1] != self.dim or not np.isfinite(values).all():
            row = int(np.flatnonzero(~np.isfinite(values).all(1))[0]) if values.shape[1] == self.dim else 0
            raise DataError(f"{where}: row {row + 1}: expected {self.dim} numbers (probabilities), or the label")
        if (values < 0).any() or (values > 1).any():
            raise DataError(f"{where}: a probability outside [0, 1]")
        return values.astype(np.float32)

    def write_predictions(self, path, predictions: dict) -> None:
        fileio.write_text(path, self.single_text({k: np.clip(v, 0.0, 1.0) for k, v in predictions.items()}))

    def submission_members(self, pred, data, form: str, frame_tolerance: int) -> dict[str, str]:
        from solution.tracks.affwild2 import SINGLE_NAME, fit_lengths

        fitted = fit_lengths(self, self.read_frame_predictions(pred), self.open_release(data).test_frame_counts(),
                             source=pred, tolerance=frame_tolerance)
        return ({SINGLE_NAME: self.label_single_text(fitted)} if form == "single"
                else {f"{video}.txt": self.label_file_text(values) for video, values in sorted(fitted.items())})

    # ---- the submission's checks: every frame of every test video, labels in range
    def check_single_text(self, text: str, counts: dict[str, int], where: str) -> list[str]:
        problems: list[str] = []
        expected = f"image_location,{self.header}"
        header = text.splitlines()[0].strip() if text.strip() else ""
        if header.replace(" ", "") != expected:
            return [f"{where}: header must be {expected!r}, got {header!r}"]
        table = read_frame_table(text, counts, where, problems)
        if table is None:
            return problems
        self.check_labels(problems, where, table[list(self.targets)], table["image_location"].tolist())
        return problems

    def check_video_text(self, text: str, n_expected: int, where: str) -> list[str]:
        header = text.splitlines()[0].replace(" ", "") if text.strip() else ""
        if header != self.header:
            return [f"{where}: header must be {self.header!r}, got {header!r}"]
        problems: list[str] = []
        rows = [line.strip().split(",") for line in text.splitlines()[1:] if line.strip()]
        if len(rows) != n_expected:
            problems.append(f"{where}: {len(rows)} frames, the test listing says {n_expected}")
        if any(len(r) != self.file_columns for r in rows):
            problems.append(f"{where}: every line must hold {self.file_columns} value(s)")
            return problems
        table = pd.DataFrame(rows, columns=list(self.targets)[: self.file_columns])
        self.check_labels(problems, where, table, [f"frame {i}" for i in range(1, len(rows) + 1)])
        return problems

    def check_labels(self, problems: list[str], where: str, table: pd.DataFrame, row_names) -> None:
        """Every label an integer in range: a class 0-7 in the first column (the rest empty), or
        0/1 for every unit."""
        columns = table.iloc[:, : self.file_columns]
        values = columns.apply(lambda c: pd.to_numeric(c.astype(str).str.strip(), errors="coerce")).to_numpy()
        allowed = list(range(self.dim)) if self.kind == "multiclass" else [0, 1]
        bad = (~np.isin(values, allowed)).any(1)
        what = f"a class 0-{self.dim - 1}" if self.kind == "multiclass" else "0 or 1 for every unit"
        listed(problems, f"{where}: not {what}", np.asarray(row_names)[bad])

    # ---- scoring, the trivial predictor
    def evaluate(self, pred_path, labels_dir) -> dict:
        """The track's metric (from the default decision) over every annotated frame pooled, with
        the per-class (per-unit) F1 beside it."""
        from solution.metrics import per_video_score, score_predictions

        labels_dir = Path(labels_dir)
        files = fileio.listed(labels_dir, "*.txt") if labels_dir.is_dir() else []
        if not files:
            raise DataError(f"{labels_dir}: no <video>.txt annotation files")
        predictions = self.read_frame_predictions(pred_path)
        targets = {f.stem: self.read_annotation(f) for f in files}
        for file in files:
            if file.stem not in predictions:
                raise DataError(f"{pred_path}: no prediction for video {file.stem!r}")
            if len(predictions[file.stem]) < len(targets[file.stem]):
                raise DataError(f"{pred_path}: video {file.stem!r} has {len(predictions[file.stem])} predicted "
                                f"frames, annotation {file} has {len(targets[file.stem])}")
        result = score_predictions(self, predictions, targets)
        result["videos"] = len(files)
        result["frames"] = int(sum(self.annotated(t).sum() for t in targets.values()))
        result["per_video_mean"] = round(per_video_score(self, predictions, targets)["mean"], 6)
        return result

    def write_mean_predictions(self, data, out) -> None:
        """The training frames' class (unit) frequencies, for every frame of every test video."""
        release = self.open_release(data)
        frames = np.concatenate([release.labels(s, v) for s in ("train", "valid") for v in release.videos(s)])
        mean = frames[self.annotated(frames)].mean(0)
        fileio.write_text(out, self.label_single_text({video: np.tile(mean, (n, 1))
                                                       for video, n in release.test_frame_counts().items()}))
