"""solution/data.py's aligners: how a video's streams land on the model's time grid."""
from pathlib import Path

import numpy as np

from solution.cache import Entry
from solution.data import align_frames, entry_times, hold_timed_text, merged_quality, text_vector_steps
from solution.streams import Stream


def stream(dim: int, kind: str = "", organizer: bool = False, modality: str = "visual") -> Stream:
    return Stream("organizer:" + kind if organizer else "hog", modality, Path("unused"), dim,
                  "organizer" if organizer else modality, kind)


def entry(features, times=None, fps=None, quality=None, frame_quality=None, ends=None, missing=False) -> Entry:
    features = np.asarray(features, np.float32)
    times = np.arange(len(features), dtype=np.float64) if times is None else np.asarray(times, np.float64)
    frame_quality = np.ones(len(features), np.float32) if frame_quality is None else np.asarray(frame_quality, np.float32)
    return Entry(features, times, frame_quality, quality or {}, fps, missing, ends=None if ends is None else np.asarray(ends))


def test_the_projects_own_quality_wins_over_the_organizers():
    own, organizer = stream(2), stream(3, "vit", organizer=True)
    pairs = [(organizer, entry(np.zeros((2, 3)), quality={"face_share": 0.1, "snr": 4.0})),
             (own, entry(np.zeros((2, 2)), quality={"face_share": 0.9}))]
    assert merged_quality(pairs) == {"face_share": 0.9, "snr": 4.0}


def test_rows_without_timestamps_take_the_kinds_rate_or_spread_over_the_video():
    features = np.zeros((4, 1))
    timed = entry(features, times=[0.0, 0.1, 0.2, 0.3], fps=10.0)
    assert np.allclose(entry_times(stream(1), timed, 99.0), [0.0, 0.1, 0.2, 0.3])
    assert np.allclose(entry_times(stream(1, "wav2vec2", organizer=True), entry(features), 99.0), [0, 0.02, 0.04, 0.06])
    assert np.allclose(entry_times(stream(1, "vit", organizer=True), entry(features), 2.0), [0.25, 0.75, 1.25, 1.75])


def test_frames_are_interpolated_side_by_side_and_a_missing_stream_is_zeros():
    at = np.array([0.0, 0.5, 1.0])
    face = entry([[0.0], [2.0]], times=[0.0, 1.0], fps=1.0, frame_quality=[1.0, 0.0])
    gone = entry(np.zeros((0, 3)), missing=True)
    values, quality = align_frames([(stream(1), face), (stream(3), gone)], at, 1.0)
    assert values.shape == (3, 4)
    assert np.allclose(values[:, 0], [0.0, 1.0, 2.0]) and not values[:, 1:].any()
    assert np.allclose(quality, [1.0, 0.5, 0.0])
    organizer_only, quality = align_frames([(stream(1, "vit", organizer=True), face)], at, 1.0)
    assert np.allclose(quality, 1.0), "organizer features carry no frame quality of their own"


def test_words_are_held_over_their_spans_and_gaps_are_masked():
    at = np.array([0.0, 0.5, 1.0, 1.5, 2.0])
    words = entry([[1.0], [3.0]], times=[0.0, 1.5], ends=[0.75, 2.5])
    values, mask = hold_timed_text([(stream(1, modality="text"), words)], at)
    assert mask.tolist() == [True, True, False, True, True]
    assert values[:, 0].tolist() == [1.0, 1.0, 0.0, 3.0, 3.0]
    plain = entry([[2.0], [4.0]])  # a plain transcript among timed ones: its mean over the whole video
    values, mask = hold_timed_text([(stream(1, modality="text"), words), (stream(1, modality="text"), plain)], at)
    assert mask.all() and np.allclose(values[:, 1], 3.0)


def test_untimed_text_is_one_step_of_each_streams_mean():
    pairs = [(stream(2, modality="text"), entry([[1.0, 2.0], [3.0, 4.0]])),
             (stream(1, modality="text"), entry(np.zeros((0, 1)), missing=True))]
    assert text_vector_steps(pairs).tolist() == [[2.0, 3.0, 0.0]]
