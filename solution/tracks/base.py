"""The Track contract and the registry (timm style): one unit of code per track.

A unit (solution/tracks/emi.py; solution/tracks/va.py on the Aff-Wild2 family of
solution/tracks/affwild2.py) subclasses Track and registers its one instance. The unit owns
its targets, kind, metric and granularity; the layout of its release (the reader, its test
listings, its media); the checks the preflight runs on it; its prediction and submission
formats and their validation; and, for a synthetic release, where its hidden test labels and
clean labels are. Every other module asks the track through the methods below and never
branches on its name. Registration order is detection order (solution/tracks/__init__.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from solution.errors import DataError

@dataclass(frozen=True)
class Track:
    """What a track is (the fields) and what generic code asks it (the methods).

    Fields are the facts every stage reads: the leaderboard's targets, their range, the
    metric (`pearson` or `ccc`: the per-dimension score, averaged), the granularity (`video`:
    one row per video; `frame`: one row per video frame), the kind of target, and the value a
    label file writes on a frame nobody annotated (None: every row is annotated)."""

    name: str
    targets: tuple[str, ...]
    low: float
    high: float
    metric: str
    level: str
    kind: str = "regression"
    unannotated: float | None = None

    # ---- set by each unit (class attributes, not fields)
    family = ""            # the release family: its reader and synthetic generator (solution/synth/<family>.py)
    layout = ""            # the layout's name, as the preflight reports it
    detect_hint = ""       # how a release of this track is recognised, for detect_track's error
    prediction_suffix = ""  # the suffix of every stage's prediction files (oof.<suffix>, test.<suffix>)
    hidden_test = ""       # where a synthetic release keeps its test labels aside (relative to the release)
    submission_formats = ()  # the leaderboard's forms (tuple of names); the first is the default
    organizer_note = ""    # said after the preflight summary's "organizer features  none"

    @property
    def dim(self) -> int:
        return len(self.targets)

    @property
    def rescalable(self) -> bool:
        """Whether an affine rescale of a blend can change its score (CCC yes; a Pearson
        correlation is blind to it)."""
        return self.metric == "ccc"

    @property
    def chooses_label_delay(self) -> bool:
        """Whether solution.delay chooses this track's label delay (a frame-level regression:
        annotators follow the media late)."""
        return self.level == "frame" and self.kind == "regression"

    def annotated(self, values: np.ndarray) -> np.ndarray:
        """(rows,) bool of the rows of `values` (rows, targets) that carry a label."""
        if self.unannotated is None:
            return np.ones(len(values), bool)
        return ~(values == self.unannotated).any(-1)

    # ---- the release
    def looks_like(self, data: Path) -> bool:
        """Whether the folder holds a release of this track (detect_track)."""
        raise NotImplementedError

    def open_release(self, data, test_listing=None):
        """The release reader; `test_listing` (default $TEST_LISTING) overrides the test
        listing found in the release. What generic code reads of every reader: track,
        labelled_keys, left_out, fitted (labels not taken as they are), video_targets,
        test_keys, subjects, metadata; grouping and group_of (the folds' groups without
        subjects), key_column and key_of (a video as a user's file names it -> its key),
        source (a video's VideoSources), test_listing_problem. Frame-level readers also offer
        video_fps, test_frame_counts and face_frames."""
        raise NotImplementedError

    def release_videos(self, data, test_listing=None) -> list:
        """Every video of every split (train, valid, test) as VideoSources, sorted by key."""
        raise NotImplementedError

    # ---- prediction files, scoring, the trivial predictor
    def write_predictions(self, path, predictions: dict) -> None:
        """{video key: values} in the track's leaderboard form (what evaluate and submit read)."""
        raise NotImplementedError

    def read_predictions(self, path) -> dict:
        """A prediction file -> {video key: float64 values}."""
        raise NotImplementedError

    def evaluate(self, pred_path, labels_path) -> dict:
        """The score of a prediction file against labels, as solution.evaluate prints it."""
        raise NotImplementedError

    def write_mean_predictions(self, data, out) -> None:
        """The training mean for every test sample (solution.predict_mean)."""
        raise NotImplementedError

    # ---- a synthetic release's labels kept aside
    def hidden_test_labels(self, data) -> dict | None:
        """{key: label} of the test videos, when the (synthetic) release keeps them aside."""
        raise NotImplementedError

    def clean_labels(self, data) -> dict | None:
        """{key: label} of the noise-free labels a synthetic release keeps aside, if any."""
        return None

    def ceiling_of(self, ceiling: dict) -> dict | None:
        """This track's {split: entry} of a synthetic release's ceiling.json (already read): the
        entries under the track's name where the file is keyed by track (a release that holds
        several tracks' annotations, e.g. Aff-Wild2's VA, EXPR and AU), else the file itself (a
        release of one track: its keys are the splits). None when the file is keyed by other
        tracks only."""
        if not isinstance(ceiling, dict):
            return None
        if any(name in ceiling for name in TRACKS):
            return ceiling.get(self.name)
        return ceiling

    # ---- submissions
    def submission_members(self, pred, data, form: str, frame_tolerance: int) -> dict[str, str]:
        """{member name: text} of the zip: the predictions in `form` (one of
        submission_formats), fitted to and checked against the release's test listing."""
        raise NotImplementedError

    def check_members(self, members: dict[str, str], zip_path: Path, data) -> list[str]:
        """Every problem of a zip's members against the test listing; [] means valid."""
        raise NotImplementedError

    def claims(self, members: dict[str, str]) -> bool:
        """Whether a zip with these members ({name: text}) is a submission of this track
        (--check without --track asks the tracks in registration order)."""
        raise NotImplementedError

    # ---- the preflight (solution.inspect)
    def inspect(self, found, data: Path, folds: int | None) -> None:
        """Fill found.facts and found.problems (solution.preflight.Inspection)."""
        raise NotImplementedError

    def summary_split(self, split: str, fact: dict) -> str:
        """What the preflight's summary says of a split after its video count."""
        raise NotImplementedError

    def summary_listing(self, listing: dict, data: Path) -> str:
        """The preflight's summary line of the test listing (after its label)."""
        raise NotImplementedError


TRACKS: dict[str, Track] = {}


def register(track: Track) -> Track:
    """Add a unit's track to the registry (in detection order); returns it."""
    if track.name in TRACKS:
        raise ValueError(f"track {track.name!r} is registered twice")
    TRACKS[track.name] = track
    return track


def track_names() -> list[str]:
    """The registered tracks' names, in registration order (every --track's choices)."""
    return list(TRACKS)


def get_track(name: str) -> Track:
    try:
        return TRACKS[name.lower()]
    except KeyError:
        raise ValueError(f"unknown track {name!r}; choose one of {sorted(TRACKS)}") from None


def as_track(track: Track | str) -> Track:
    return track if isinstance(track, Track) else get_track(track)


TRACK_ENV = "TRACK"  # which track a release holding several is read as (run_all.sh exports it)


def detect_track(data) -> str:
    """The track of a release folder: the one registered track whose release it holds; when it
    holds several (an Aff-Wild2 release with VA, EXPR and AU annotations), the one $TRACK names,
    else the first registered (said once)."""
    import logging
    import os

    data = Path(data)
    matches = [t.name for t in TRACKS.values() if t.looks_like(data)]
    if not matches:
        raise DataError(f"{data}: neither " + " nor ".join(t.detect_hint for t in TRACKS.values()))
    wanted = os.environ.get(TRACK_ENV, "").strip().lower()
    if wanted in matches:
        return wanted
    if len(matches) > 1 and (str(data), matches[0]) not in _SAID:
        _SAID.add((str(data), matches[0]))
        logging.getLogger("tracks").warning("%s holds the releases of several tracks (%s); reading it as %s (set "
                                            "%s=<track> to choose)", data, ", ".join(matches), matches[0], TRACK_ENV)
    return matches[0]


_SAID: set = set()


def tracks_held(data) -> list[str]:
    """Every registered track whose release the folder holds, in registration order."""
    return [t.name for t in TRACKS.values() if t.looks_like(Path(data))]


def open_release(track: Track | str, data, test_listing=None):
    """The release reader of a track. `test_listing` (default $TEST_LISTING) overrides the
    test listing found in the release."""
    return as_track(track).open_release(data, test_listing=test_listing)


def release_videos(track: Track | str, data, test_listing=None) -> list:
    """Every video of every split (train, valid, test), sorted by key (`test_listing`: as in
    open_release)."""
    return as_track(track).release_videos(data, test_listing=test_listing)
