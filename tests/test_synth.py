"""The synthetic release: official layouts, real media, honest signal, determinism."""
import hashlib
import json

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import Ridge
from sklearn.model_selection import GroupKFold

from solution import media, synth
from solution.layouts import EmiRelease, VaRelease, annotated_mask
from solution.metrics import pearson_per_dim
from solution.tracks import EMI_TARGETS

from conftest import SMALL_EMI, SMALL_VA


def test_emi_layout_and_labels(emi_data):
    header = "Filename," + ",".join(EMI_TARGETS)
    for name in ("train_split.csv", "valid_split.csv"):
        assert (emi_data / name).read_text().splitlines()[0] == header
    release = EmiRelease(emi_data)
    labels = release.labelled()
    test_ids = release.test_ids()
    assert len(labels) + len(test_ids) == SMALL_EMI["videos"]
    assert not set(labels.index) & set(test_ids)
    # Labels are k/N rater fractions with N in 3..6.
    values = labels[list(EMI_TARGETS)].to_numpy()
    assert values.min() >= 0 and values.max() <= 1
    assert np.all([min(abs(v * n - round(v * n)) for n in (3, 4, 5, 6)) < 1e-4 for v in values.ravel()])
    hidden = pd.read_csv(emi_data / "private" / "test_labels.csv", dtype={"Filename": str})
    assert sorted(hidden.Filename.astype(int)) == test_ids
    meta = release.metadata()
    # Splits are disjoint in subjects, so grouped folds are the honest ones.
    by_split = meta.groupby("split")["subject"].apply(set)
    assert not (by_split["train"] & by_split["valid"]) and not (by_split["train"] & by_split["test"])
    ceiling = json.loads((emi_data / "ceiling.json").read_text())
    assert set(ceiling) == {"train", "valid", "test", "labelled"}
    assert 0.3 < ceiling["train"]["mean"] < 1.0


def test_emi_lengths_vary_around_the_mean(emi_data):
    """Each video has its own length, so padding and masking downstream meet ragged input."""
    meta = EmiRelease(emi_data).metadata()
    frames, seconds = meta.frames.astype(int), meta.seconds.astype(float)
    mean_frames = SMALL_EMI["seconds"] * SMALL_EMI["fps"]
    assert frames.nunique() > 10
    assert 0.85 * mean_frames < frames.mean() < 1.15 * mean_frames
    assert frames.min() < 0.7 * mean_frames and frames.max() > 1.3 * mean_frames
    assert np.allclose(seconds, frames / SMALL_EMI["fps"], atol=1e-4)


def test_emi_media_is_real_and_matches_flags(emi_data):
    """Every file of a video has that video's own length: frames, audio, both stand-ins."""
    release = EmiRelease(emi_data)
    meta = release.metadata().astype({"frames": int, "seconds": float})
    for vid, row in meta.iterrows():
        video = release.path("video", vid)
        assert video is not None and video.name == f"{vid:05d}.mp4"
        assert (release.path("audio", vid) is None) == (row["audio"] == "missing")
        assert (release.path("transcript", vid) is None) == (row["transcript"] == "missing")
        vit, w2v = release.load_feature("vit", vid), release.load_feature("wav2vec2", vid)
        assert vit.shape == (row["frames"], 96)
        assert w2v.shape == (round(row["seconds"] * 16000) // 320, 64)
    for vid in meta.index[:3]:
        info = media.video_info(release.path("video", vid))
        assert info["frames"] == meta.loc[vid, "frames"] and info["width"] == 64 and info["fps"] == 10
    ok_audio = meta.index[meta.audio == "ok"][:3]
    for vid in ok_audio:
        samples = media.read_audio(release.path("audio", vid))
        assert len(samples) == round(meta.loc[vid, "seconds"] * 16000) and np.abs(samples).max() > 0.05
    silent = meta.index[meta.audio == "silent"]
    if len(silent):
        assert np.abs(media.read_audio(release.path("audio", silent[0]))).max() < 0.02


def test_emi_labels_drive_behaviour_over_time(emi_data):
    """What is seen and heard follows the labels: louder, faster-moving faces and voices for
    more intense videos, and the organizer stand-ins predict held-out subjects."""
    release = EmiRelease(emi_data)
    labels = release.labelled()
    meta = release.metadata().loc[labels.index]
    mouth_activity = []
    for vid in labels.index:
        gray = media.read_video(release.path("video", vid))[0].astype(np.float32).mean(-1)
        size = gray.shape[1]
        mouth = gray[:, int(size * .6):int(size * .85), int(size * .3):int(size * .7)]
        mouth_activity.append(np.percentile(np.abs(mouth - np.median(mouth, 0)).mean((1, 2)), 90))
    # Smiles, laughter and excitement move the mouth: more of them, more mouth activity.
    mouth_emotions = labels[["Amusement", "Excitement", "Joy"]].sum(axis=1).to_numpy()
    face_ok = (meta.face == "ok").to_numpy()
    assert np.corrcoef(np.array(mouth_activity)[face_ok], mouth_emotions[face_ok])[0, 1] > 0.2

    # Excitement raises the voice's loudness. The subject's own loudness (x0.5-1) and the
    # share of pauses in a few seconds dwarf the effect in a plain RMS over 40-odd videos, so:
    # loudness of the voiced 50 ms frames, compared within each subject, against the clean
    # intensities (no rater noise), over every clean-audio video.
    everyone = release.metadata()
    clean = pd.read_csv(emi_data / "private" / "clean_intensities.csv", dtype={"Filename": str})
    clean.index = clean.Filename.astype(int)
    heard = everyone.index[everyone.audio == "ok"]
    loudness = []
    for vid in heard:
        samples = media.read_audio(release.path("audio", vid))
        frames = np.sqrt((samples[: len(samples) // 800 * 800].reshape(-1, 800) ** 2).mean(1))
        loudness.append(np.log(frames[frames > 0.3 * frames.max()].mean()))
    by_subject = pd.DataFrame({"loudness": loudness, "excitement": clean.loc[heard, "Excitement"].to_numpy()},
                              index=heard).groupby(everyone.loc[heard, "subject"].to_numpy())
    within = by_subject.transform(lambda x: x - x.mean())
    assert np.corrcoef(within.loudness, within.excitement)[0, 1] > 0.2

    def pooled(a):
        return np.concatenate([a.mean(0), a.max(0), a.std(0)])

    X = np.stack([np.concatenate([pooled(release.load_feature("vit", v)),
                                  pooled(release.load_feature("wav2vec2", v))]) for v in labels.index])
    y = labels[list(EMI_TARGETS)].to_numpy()
    oof = np.zeros_like(y)
    for train, held in GroupKFold(4).split(X, y, meta.subject):
        oof[held] = Ridge(alpha=10).fit(X[train], y[train]).predict(X[held])
    assert pearson_per_dim(oof, y).mean() > 0.2


def test_va_crops_follow_the_face(va_data, tmp_path):
    """One crop per frame with a face found, numbered within 1..frames: every frame but the
    detector's short misses (metadata's no_crop_frames) for a face that stays, fewer than
    frames (but some) for a face that leaves for part of the video."""
    release = VaRelease(va_data)
    meta = pd.read_csv(va_data / "metadata.csv").set_index("video")
    for video, row in meta.iterrows():
        numbers = _crop_numbers(release, video)
        assert set(numbers) <= set(range(1, row["frames"] + 1)), video
        if row["face"] != "missing":
            assert 0 < row["no_crop_frames"] < row["frames"] / 2, video
            assert len(numbers) == row["frames"] - row["no_crop_frames"], video
    gone = tmp_path / "gone"
    synth.generate("va", gone, seed=2, workers=1, videos=5, seconds=3.0, fps=8.0, size=48, other_fps=0, long_seconds=0,
                   occluded=0.0, face_missing=1.0)
    release = VaRelease(gone)
    meta = pd.read_csv(gone / "metadata.csv").set_index("video")
    assert (meta.face == "missing").all()
    for video, row in meta.iterrows():
        numbers = _crop_numbers(release, video)
        assert 0 < len(numbers) < row["frames"], video
        assert min(numbers) >= 1 and max(numbers) <= row["frames"]


def test_standins_degrade_with_the_media():
    """A covered or absent face, and noisy, silent or missing audio, leave the organizer
    stand-ins with little or no emotion and make them look unlike a clean face or voice."""
    rng = np.random.default_rng(0)
    subject = synth.make_subject(rng, 6)
    T = 300
    acts = [rng.uniform(-0.3, 1.4, (T, len(synth.ACTIONS))) for _ in range(2)]
    everywhere, nowhere = np.ones(T, bool), np.zeros(T, bool)
    no_hand, hand = np.zeros(T, np.int64), np.full(T, 1)

    def vit(actions, present, occluder):
        return synth.vit_standin(actions, present, occluder, subject, 96, 1, np.random.default_rng(5))

    def moved(present, occluder):  # how much the stand-in moves with the face's actions
        return np.abs(vit(acts[0], present, occluder) - vit(acts[1], present, occluder)).mean()

    assert moved(nowhere, no_hand) == 0  # no face, no emotion
    assert moved(everywhere, hand) < 0.8 * moved(everywhere, no_hand)  # the covered actions are gone

    n = T * 16000 // 15
    samples = [rng.normal(0, s, n).astype(np.float32) for s in (0.1, 0.3)]
    controls = [{k: rng.uniform(0, 1, T) for k in ("f0", "energy", "rate", "tilt", "breath", "laugh")}
                for _ in range(2)]

    def w2v(kind, heard, said):  # `heard` picks the samples, `said` the voice controls
        return synth.wav2vec2_standin(samples[heard], controls[said], 15.0, kind, subject, 64, 1,
                                      np.random.default_rng(5))

    def voiced(kind):  # how much the stand-in moves with what the voice does
        return np.abs(w2v(kind, 0, 0) - w2v(kind, 0, 1)).mean()

    assert voiced("silent") == voiced("missing") == 0
    assert np.array_equal(w2v("missing", 0, 0), w2v("missing", 1, 0))  # not even the loudness
    assert voiced("noisy") < 0.3 * voiced("ok")


def test_standins_do_not_say_which_videos_are_corrupt(tmp_path):
    """Organizer-width stand-ins behave like real features: no dimension (its mean over a
    video's frames) follows a corruption flag or a noise-free intensity closely, yet together
    they still carry the emotion (a ridge on them predicts the clean intensities)."""
    from sklearn.linear_model import RidgeCV
    from sklearn.model_selection import cross_val_predict

    data = tmp_path / "features-only"
    synth.generate("emi", data, seed=11, workers=2, videos=90, subjects=12, seconds=3.0, fps=8.0, size=48,
                   occluded=0.15, face_missing=0.1, noisy=0.1, silent=0.1, audio_missing=0.05,
                   vit_dim=768, wav2vec2_dim=768, media=False)
    assert not (data / "raw").exists() and not (data / "audio").exists()
    meta = pd.read_csv(data / "metadata.csv", dtype={"Filename": str})
    clean = pd.read_csv(data / "private" / "clean_intensities.csv", dtype={"Filename": str}).set_index("Filename")
    clean = clean.loc[meta.Filename].to_numpy()
    flags = {"face not ok": meta.face != "ok", "face missing": meta.face == "missing",
             "occluded": meta.face == "occluded", "audio not ok": meta.audio != "ok",
             "no voice": meta.audio.isin(["silent", "missing"])}
    for stream in ("vit", "wav2vec2"):
        means = np.stack([pd.read_pickle(data / stream / f"{f}.pkl").mean(0) for f in meta.Filename])
        assert means.shape == (90, 768)
        standard = (means - means.mean(0)) / (means.std(0) + 1e-12)

        def closest(y):
            y = (y - y.mean()) / (y.std() + 1e-12)
            return float(np.abs(standard.T @ y / len(y)).max())

        for name, flag in flags.items():
            assert flag.any(), name
            assert closest(flag.to_numpy(float)) < 0.7, (stream, name)
        for j, target in enumerate(synth.EMI_TARGETS):
            assert closest(clean[:, j]) < 0.7, (stream, target)
    vit = np.stack([pd.read_pickle(data / "vit" / f"{f}.pkl").mean(0) for f in meta.Filename])
    predicted = cross_val_predict(RidgeCV(alphas=np.logspace(0, 4, 9)), vit, clean, cv=5)
    r = np.mean([np.corrcoef(predicted[:, j], clean[:, j])[0, 1] for j in range(6)])
    assert r > 0.3


def test_world_knobs(tmp_path):
    """The world's settings change the release; at their defaults they change nothing."""
    tiny = dict(videos=5, seconds=6.0, fps=10.0, size=48, other_fps=0, long_seconds=0)
    synth.generate("va", tmp_path / "plain", seed=2, workers=1, **tiny)
    synth.generate("va", tmp_path / "defaults", seed=2, workers=1, annotator_lag=0.5, gap_seconds=0.9, **tiny)
    assert _digest(tmp_path / "plain") == _digest(tmp_path / "defaults")
    synth.generate("va", tmp_path / "world", seed=2, workers=1, mapping="nonlinear", style=0.3, silences=0.4,
                   occlusion_seconds=2.0, gap_seconds=2.5, annotator_lag=1.0, annotator_smooth=1.0,
                   annotator_bias=0.1, **tiny)
    plain = pd.read_csv(tmp_path / "plain" / "metadata.csv")
    world = pd.read_csv(tmp_path / "world" / "metadata.csv")
    assert (world.lag > plain.lag).all()                                  # later annotators
    assert world.no_crop_frames.sum() > plain.no_crop_frames.sum()        # longer detector misses
    config = json.loads((tmp_path / "world" / "synth_config.json").read_text())["config"]
    assert config["mapping"] == "nonlinear" and config["silences"] == 0.4
    with pytest.raises(SystemExit, match="mapping must be"):
        synth.generate("va", tmp_path / "bad", seed=2, mapping="cubic", **tiny)
    with pytest.raises(SystemExit, match="no setting"):
        synth.generate("va", tmp_path / "bad", seed=2, colour=1, **tiny)


def _digest(folder):
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("track", ["emi", "va"])
def test_same_seed_same_bytes_any_worker_count(tmp_path, track):
    small = dict(videos=6, subjects=5, seconds=2.0, fps=8.0, size=48) if track == "emi" else \
        dict(videos=5, seconds=3.0, fps=8.0, size=48)
    synth.generate(track, tmp_path / "a", seed=3, workers=1, **small)
    synth.generate(track, tmp_path / "b", seed=3, workers=2, **small)
    synth.generate(track, tmp_path / "c", seed=4, workers=2, **small)
    a, b, c = _digest(tmp_path / "a"), _digest(tmp_path / "b"), _digest(tmp_path / "c")
    assert a == b
    assert a != c  # another seed, another dataset


def test_rerun_skips_and_refuses_foreign_folder(tmp_path, capsys):
    small = dict(videos=6, subjects=5, seconds=1.0, fps=8.0, size=48)
    synth.generate("emi", tmp_path / "d", seed=1, workers=1, **small)
    synth.generate("emi", tmp_path / "d", seed=1, workers=1, **small)
    assert "nothing to do" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="--overwrite"):
        synth.generate("emi", tmp_path / "d", seed=2, workers=1, **small)
    # A release of an older version of the generator (its stand-ins said which frames were bad)
    # is written again, not reused.
    marker = tmp_path / "d" / "synth_config.json"
    old = json.loads(marker.read_text())
    del old["version"]
    marker.write_text(json.dumps(old))
    (tmp_path / "d" / "stale.txt").write_text("left by the old version")
    synth.generate("emi", tmp_path / "d", seed=1, workers=1, **small)
    assert "older version" in capsys.readouterr().out
    assert json.loads(marker.read_text())["version"] == synth.GENERATOR_VERSION
    assert not (tmp_path / "d" / "stale.txt").exists()


def _crop_numbers(release, video):
    """Frame numbers of a video's face crops; fails on any name that is not 5-digit .jpg."""
    names = sorted(p.name for p in release.frames_dir(video).glob("*"))
    assert all(len(n) == 9 and n.endswith(".jpg") and n[:5].isdigit() for n in names), names[:5]
    return [int(n[:5]) for n in names]


def test_va_layout(va_data):
    release = VaRelease(va_data)
    meta = pd.read_csv(va_data / "metadata.csv").set_index("video")
    counts = release.test_frame_counts()
    train, valid = release.videos("train"), release.videos("valid")
    assert train and valid and counts
    assert not set(train) & set(valid) and not set(train) & set(counts)
    assert meta.frames.nunique() > 1, "videos should differ in length"
    assert np.allclose(meta.seconds, meta.frames / meta.fps, atol=1e-4)
    # One video at another frame rate (in test), one long video (in train), lagged labels.
    assert sorted(meta.fps.unique()) == sorted({SMALL_VA["fps"], SMALL_VA["other_fps"]})
    other = meta.index[meta.fps == SMALL_VA["other_fps"]]
    assert len(other) == 1 and meta.loc[other[0], "split"] == "test"
    assert media.video_info(release.video_path(other[0]))["fps"] == SMALL_VA["other_fps"]
    assert meta.loc[meta.seconds.idxmax(), "seconds"] == SMALL_VA["long_seconds"]
    assert meta.loc[meta.seconds.idxmax(), "split"] == "train"
    assert (meta.split == "valid").sum() >= 1 and meta.lag.between(0.2, 0.9).all()
    saw_unannotated = False
    for video in train + valid:
        n_frames = meta.loc[video, "frames"]
        assert video.split("-")[1] == str(round(meta.loc[video, "seconds"]))  # Aff-Wild2 names
        path = release.annotations / ("Train_Set" if video in train else "Validation_Set") / f"{video}.txt"
        assert path.read_text().splitlines()[0] == "valence,arousal"
        values = release.labels("train" if video in train else "valid", video)
        assert values.shape == (n_frames, 2)
        saw_unannotated |= not annotated_mask(values).all()
        assert np.abs(values[annotated_mask(values)]).max() <= 1
        info = media.video_info(release.video_path(video))
        assert info["frames"] == n_frames and info["has_audio"]
        # The audio track decodes to 16 kHz mono of the video's own length.
        audio = media.read_audio(release.video_path(video))
        assert abs(len(audio) - meta.loc[video, "seconds"] * 16000) <= 16000 * 0.05
    assert saw_unannotated, "some frames should carry the -5 marker"
    # The test listing carries each test video's own frame count.
    assert counts == {video: meta.loc[video, "frames"] for video in meta.index[meta.split == "test"]}
    for video, n in counts.items():
        assert media.video_info(release.video_path(video))["frames"] == n
    assert (va_data / "private" / "VA_Estimation_Challenge" / "Test_Set").is_dir()
    ceiling = json.loads((va_data / "ceiling.json").read_text())
    assert 0.3 < ceiling["train"]["mean"] < 1.0
