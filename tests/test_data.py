"""solution/data.py: how a video's streams land on the model's time grid (the aligners, on
hand-made entries), and the VideoStore on small releases: durations kept, words held on the
grid with the gaps masked, crops and chunks that keep text aligned with the faces."""
from pathlib import Path

import numpy as np
import pytest
import torch

from solution.cache import Entry
from solution.config import TrainConfig
from solution.data import (Normalizer, Piece, VideoStore, align_frames, collate, entry_times, gather, hold_spans,
                           hold_timed_text, merged_quality, prediction_pieces, text_vector_steps, training_pieces)
from solution.layouts import open_release, release_videos
from solution.streams import Stream
from solution.windows import grid_times

from conftest import expected_on_grid, sources, text_entry


# ------------------------------------------------------------------ the aligners, on hand-made entries

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
    assert merged_quality(pairs[::-1]) == {"face_share": 0.9, "snr": 4.0}, "whatever the order of the streams"


def test_rows_without_timestamps_take_the_kinds_rate_or_spread_over_the_video():
    features = np.zeros((4, 1))
    timed = entry(features, times=[0.0, 0.1, 0.2, 0.3], fps=10.0)
    assert np.allclose(entry_times(stream(1), timed, 99.0), [0.0, 0.1, 0.2, 0.3])
    assert np.allclose(entry_times(stream(1, "wav2vec2", organizer=True), entry(features), 99.0), [0, 0.02, 0.04, 0.06])
    assert np.allclose(entry_times(stream(1, "vit", organizer=True), entry(features), 2.0), [0.25, 0.75, 1.25, 1.75])


def test_own_timestamps_win_over_a_kinds_rate_and_own_streams_without_them_spread_evenly():
    features = np.zeros((4, 1))
    stamped = entry(features, times=[0.0, 0.04, 0.08, 0.12], fps=25.0)
    assert np.allclose(entry_times(stream(1, "wav2vec2", organizer=True), stamped, 99.0), [0.0, 0.04, 0.08, 0.12])
    assert np.allclose(entry_times(stream(1), entry(features), 4.0), [0.5, 1.5, 2.5, 3.5])


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


def test_frame_quality_is_the_first_own_streams_with_unknown_frames_counted_as_good():
    at = np.array([0.0, 0.5, 1.0])
    times = dict(times=[0.0, 1.0], fps=1.0)
    organizer = (stream(1, "vit", organizer=True), entry([[5.0], [5.0]], frame_quality=[0.0, 0.0], **times))
    no_quality = (stream(1), entry([[1.0], [1.0]], frame_quality=[], **times))  # rows without a quality each
    first = (stream(1), entry([[0.0], [2.0]], frame_quality=[np.nan, 0.0], **times))
    second = (stream(1), entry([[0.0], [2.0]], frame_quality=[0.0, 1.0], **times))
    values, quality = align_frames([organizer, no_quality, first, second], at, 1.0)
    assert values.shape == (3, 4) and np.allclose(values[:, 0], 5.0) and np.allclose(values[:, 2], [0.0, 1.0, 2.0])
    assert np.allclose(quality, [1.0, 0.5, 0.0])
    _, quality = align_frames([organizer, (stream(2), entry(np.zeros((0, 2)), missing=True))], at, 1.0)
    assert np.allclose(quality, 1.0), "a missing own stream gives no quality: ones, not the organizer's zeros"


def test_timed_text_streams_hold_words_over_their_spans_and_mask_the_gaps():
    at = np.array([0.0, 0.5, 1.0, 1.5, 2.0])
    words = entry([[1.0], [3.0]], times=[0.0, 1.5], ends=[0.75, 2.5])
    values, mask = hold_timed_text([(stream(1, modality="text"), words)], at)
    assert mask.tolist() == [True, True, False, True, True]
    assert values[:, 0].tolist() == [1.0, 1.0, 0.0, 3.0, 3.0]
    other = entry([[5.0]], times=[0.9], ends=[1.2])  # a second timed stream: a step with a word in either is real
    values, mask = hold_timed_text([(stream(1, modality="text"), words), (stream(1, modality="text"), other)], at)
    assert mask.all() and values[:, 1].tolist() == [0.0, 0.0, 5.0, 0.0, 0.0]
    plain = entry([[2.0], [4.0]])  # a plain transcript among timed ones: its mean over the whole video
    values, mask = hold_timed_text([(stream(1, modality="text"), words), (stream(1, modality="text"), plain)], at)
    assert mask.all() and np.allclose(values[:, 1], 3.0)


def test_untimed_text_is_one_step_of_each_streams_mean():
    pairs = [(stream(2, modality="text"), entry([[1.0, 2.0], [3.0, 4.0]])),
             (stream(1, modality="text"), entry(np.zeros((0, 1)), missing=True))]
    assert text_vector_steps(pairs).tolist() == [[2.0, 3.0, 0.0]]


def test_a_missing_or_empty_stream_is_zeros_of_its_width_in_every_aligner():
    at = np.array([0.0, 0.5, 1.0])
    gone, empty = entry(np.zeros((0, 2)), missing=True), entry(np.zeros((0, 3)))
    face = entry([[1.0], [3.0]], times=[0.0, 1.0], fps=1.0)
    values, _ = align_frames([(stream(2), gone), (stream(1), face), (stream(3), empty)], at, 1.0)
    assert values.shape == (3, 6) and not values[:, :2].any() and not values[:, 3:].any()
    assert np.allclose(values[:, 2], [1.0, 2.0, 3.0])
    text = (stream(2, modality="text"), gone)
    words = (stream(1, modality="text"), entry([[7.0]], times=[0.4], ends=[0.9]))
    values, mask = hold_timed_text([text, words, (stream(3, modality="text"), empty)], at)
    assert values.shape == (3, 6) and mask.tolist() == [False, True, False]
    assert values[:, 2].tolist() == [0.0, 7.0, 0.0] and not values[:, :2].any() and not values[:, 3:].any()
    values, mask = hold_timed_text([text], at)
    assert values.shape == (3, 2) and not values.any() and not mask.any(), "no words: every step masked"
    steps = text_vector_steps([(stream(3, modality="text"), empty), words])
    assert steps.shape == (1, 4) and steps.tolist() == [[0.0, 0.0, 0.0, 7.0]]


# ------------------------------------------------------------------ words held over their spans

def test_words_hold_over_their_spans_and_gaps_are_masked():
    at = grid_times(3.0, 10.0)                                  # 0.0, 0.1, ..., 2.9
    values = np.arange(1, 6, dtype=np.float32)[:, None] * np.ones((1, 2), np.float32)
    starts = np.array([0.2, 0.65, 0.72, 1.5, 3.4])              # the last one is after the video's end
    ends = np.array([0.6, 0.7, 1.1, 1.55, 3.6])                 # word 1 (0.65-0.7) contains no step
    out, held = hold_spans(values, starts, ends, at)
    index = np.full(len(at), -1)
    index[2:6] = 0                                              # 0.2 .. 0.5: word 0
    index[8:11] = 2                                             # 0.8 .. 1.0: word 2
    index[15] = 3                                               # 1.5: word 3
    index[7] = 1                                                # 0.7 is word 1's nearest step, and free
    np.testing.assert_array_equal(held, index >= 0)
    np.testing.assert_array_equal(out[:, 0], np.where(index >= 0, index + 1, 0))
    # Overlapping words: the one that started last holds the step.
    out, held = hold_spans(values[:2], np.array([0.0, 0.3]), np.array([1.0, 0.6]), at)
    np.testing.assert_array_equal(out[:10, 0], [1, 1, 1, 2, 2, 2, 1, 1, 1, 1])
    assert not held[10:].any()
    # The rule the test file states independently agrees with the implementation on random words.
    rng = np.random.default_rng(5)
    starts = np.sort(rng.uniform(0, 3.2, 25))
    ends = starts + rng.exponential(0.2, 25)
    out, held = hold_spans(np.arange(25, dtype=np.float32)[:, None], starts, ends, at)
    expected = expected_on_grid(Entry(None, starts, None, ends=ends), at)
    np.testing.assert_array_equal(np.where(held, out[:, 0], -1), expected)


# ------------------------------------------------------------------ the store, on small releases

def test_videos_keep_their_duration(emi_data, emi_features):
    """A second is the same number of steps in every video, whatever its length; a video
    longer than the training crop is predicted whole, in chunks."""
    release = open_release("emi", emi_data)
    sources = {s.vid: s for s in release_videos("emi", emi_data)}
    store = VideoStore.from_cache(emi_features, release, sources, TrainConfig(crop_seconds=1.5))
    meta = release.metadata()
    lengths = {}
    for key in list(sources)[:12]:
        video = store.load(key)
        expected = float(meta.loc[int(key), "seconds"])
        assert video.duration == pytest.approx(expected, abs=0.25)
        for m in ("visual", "audio"):
            if video.seqs[m] is not None:
                assert len(video.seqs[m]) == pytest.approx(expected * store.rate(m), abs=2)
        lengths[key] = video.duration
    assert max(lengths.values()) - min(lengths.values()) > 0.5, "the fixture's videos should differ in length"
    long = max(lengths, key=lengths.get)
    pieces = prediction_pieces(store, [long])
    assert len(pieces) > 1 and pieces[0].start == 0 and pieces[-1].stop == pytest.approx(lengths[long])
    items = [store.piece(p) for p in pieces]
    assert all(len(it["seqs"]["visual"]) <= 1.5 * store.rate("visual") + 2 for it in items if it["seqs"]["visual"] is not None)
    merged = gather(store, pieces, [np.full(6, i, float) for i in range(len(pieces))])
    assert merged[long].shape == (6,) and 0 < merged[long][0] < len(pieces) - 1
    # One shared grid for every modality (what joint cross-modal attention needs).
    shared = VideoStore.from_cache(emi_features, release, sources, TrainConfig(grid="shared", shared_rate=8.0)).load(long)
    steps = {len(s) for m, s in shared.seqs.items() if s is not None and m != "text"}
    assert steps == {round(lengths[long] * 8.0)}

def test_the_store_holds_words_on_the_grid_and_masks_gaps(timed_release):
    data, work = timed_release
    release, srcs = open_release("emi", data), sources(data)
    store = VideoStore.from_cache(work, release, srcs, TrainConfig(grid="shared", shared_rate=10.0))
    assert store.text_timed and store.rate("text") == 10.0
    timed = [k for k, s in srcs.items() if s.transcript is not None and s.transcript.suffix == ".json"]
    plain = [k for k, s in srcs.items() if s.transcript is not None and s.transcript.suffix == ".txt"]
    for key in timed:
        entry, video = text_entry(work, srcs[key]), store.load(key, normalise=False)
        seq, mask = video.seqs["text"], video.masks["text"]
        assert len(seq) == len(video.seqs["visual"]) == len(grid_times(video.duration, 10.0))
        index = expected_on_grid(entry, grid_times(video.duration, 10.0))
        np.testing.assert_array_equal(mask, index >= 0)
        np.testing.assert_array_equal(seq[mask], entry.features[index[mask]])
        assert not seq[~mask].any() and (~mask).any() and mask.any()
        np.testing.assert_array_equal(video.quality["text"], mask.astype(np.float32))
    for key in plain:  # a plain transcript among timed ones: its one vector over the whole video
        entry, video = text_entry(work, srcs[key]), store.load(key, normalise=False)
        assert video.masks["text"].all() and len(video.seqs["text"]) == len(video.seqs["visual"])
        np.testing.assert_allclose(video.seqs["text"], np.repeat(entry.features, len(video.seqs["text"]), 0))
    # Statistics from word steps only; after normalisation a gap is still zeros.
    normalizer = Normalizer.fit(store, list(srcs))
    words = np.concatenate([store.load(k, normalise=False).seqs["text"][store.load(k, normalise=False).masks["text"]]
                            for k in srcs if store.load(k, normalise=False).seqs["text"] is not None])
    np.testing.assert_allclose(normalizer.stats["text"][0], words.mean(0), atol=1e-5)
    store.set_normalizer(normalizer)
    video = store.load(timed[0])
    assert not video.seqs["text"][~video.masks["text"]].any() and video.seqs["text"][video.masks["text"]].any()
    # A store of plain transcripts alone is untimed, exactly as before: one vector, (B, 1, d).
    untimed = VideoStore.from_cache(work, release, {k: srcs[k] for k in plain}, TrainConfig())
    assert not untimed.text_timed
    video = untimed.load(plain[0])
    assert video.seqs["text"].shape == (1, 384) and video.rates["text"] is None and not video.masks
    batch = collate([untimed.piece(Piece(k, 0.0, 1.0)) for k in plain[:3]], untimed.modalities, untimed.dims, False)
    assert batch["text"].shape == (3, 1, 384) and batch["text_mask"].all()
    # Forced off (a checkpoint built for one vector): a timed transcript is its words' mean.
    pooled = VideoStore.from_cache(work, release, srcs, TrainConfig(), text_timed=False).load(timed[0], normalise=False)
    np.testing.assert_allclose(pooled.seqs["text"][0], text_entry(work, srcs[timed[0]]).features.mean(0), rtol=1e-5)

@pytest.mark.parametrize("grid", ["shared", "own"])
def test_crops_and_chunks_keep_text_aligned(timed_release, grid):
    data, work = timed_release
    release, srcs = open_release("emi", data), sources(data)
    store = VideoStore.from_cache(work, release, srcs, TrainConfig(grid=grid, crop_seconds=1.2))
    store.set_normalizer(Normalizer.fit(store, list(srcs)))
    timed = [k for k, s in srcs.items() if s.transcript is not None and s.transcript.suffix == ".json"]
    rate = store.rate("text")
    for key in timed:
        whole = store.load(key)
        pieces = prediction_pieces(store, [key]) + [Piece(key, crop_seed=s) for s in range(4)]
        assert len(pieces) > 4, "the crop must be shorter than the videos"
        for piece in pieces:
            item = store.piece(piece)
            start = piece.start
            if start is None:  # a random crop: where piece() put it
                length = min(store.cfg.crop_seconds, whole.duration)
                start = float(np.random.default_rng(piece.crop_seed).uniform(0, whole.duration - length))
            a = min(int(np.floor(start * rate + 1e-6)), len(whole.seqs["text"]) - 1)
            text, mask = item["seqs"]["text"], item["masks"]["text"]
            np.testing.assert_array_equal(text, whole.seqs["text"][a:a + len(text)])
            np.testing.assert_array_equal(mask, whole.masks["text"][a:a + len(text)])
            if grid == "shared":  # the same steps as the faces: step j of both is the same instant
                assert len(text) == len(item["seqs"]["visual"])
                np.testing.assert_array_equal(item["seqs"]["visual"], whole.seqs["visual"][a:a + len(text)])
    # Batches: text is a sequence with its gaps masked, padding masked too.
    items = [store.piece(p) for p in training_pieces(store, timed + [k for k in srcs if k not in timed],
                                                     np.random.default_rng(0))]
    batch = collate(items, store.modalities, store.dims, False, store.text_timed)
    assert batch["text"].shape[1] == max(len(it["seqs"]["text"]) for it in items if it["seqs"]["text"] is not None)
    for j, it in enumerate(items):
        if it["seqs"]["text"] is None:
            assert not batch["text_mask"][j].any()
            continue
        n = len(it["seqs"]["text"])
        np.testing.assert_array_equal(batch["text_mask"][j, :n].numpy(), it["masks"]["text"])
        assert not batch["text_mask"][j, n:].any()
    # On the shared grid every timed modality has one length in a batch, even where the
    # longest video of the batch has no transcript (step t is one instant in all of them).
    if grid == "shared":
        longest = max(srcs, key=lambda k: store.load(k).duration)
        shorter = [k for k in timed if store.load(k).duration < store.load(longest).duration]
        pair = [store.piece(Piece(k)) for k in (longest, shorter[0])]
        pair[0]["seqs"]["text"] = None                            # as if its transcript were missing
        both = collate(pair, store.modalities, store.dims, False, True, shared_grid=True)
        assert both["text"].shape[1] == both["visual"].shape[1] == len(pair[0]["seqs"]["visual"])
        np.testing.assert_array_equal(both["text_mask"][1, :len(pair[1]["seqs"]["text"])].numpy(),
                                      pair[1]["masks"]["text"])
        assert not both["text_mask"][0].any() and not both["text_mask"][1, len(pair[1]["seqs"]["text"]):].any()
    # A model that pools with the mask takes it as it is (the linear baseline).
    from solution.data import cue_slices
    from solution.models import InputSpec, create_model
    spec = InputSpec(store.modalities, store.dims, cue_slices(store.modalities), 6, 0.0, 1.0, "video",
                     extra={"text_timed": store.text_timed})
    out = create_model("linear", spec).eval()(batch)["pred"]
    assert out.shape == (len(items), 6) and torch.isfinite(out).all()
