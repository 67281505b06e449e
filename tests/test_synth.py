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

from conftest import SMALL_EMI


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
    assert set(ceiling) == {"train", "valid", "test"}
    assert 0.3 < ceiling["train"]["mean"] < 1.0


def test_emi_media_is_real_and_matches_flags(emi_data):
    release = EmiRelease(emi_data)
    meta = release.metadata()
    for vid, row in meta.iterrows():
        video = release.path("video", vid)
        assert video is not None and video.name == f"{vid:05d}.mp4"
        assert (release.path("audio", vid) is None) == (row["audio"] == "missing")
        assert (release.path("transcript", vid) is None) == (row["transcript"] == "missing")
        vit, w2v = release.load_feature("vit", vid), release.load_feature("wav2vec2", vid)
        assert vit.shape == (SMALL_EMI["seconds"] * SMALL_EMI["fps"], 96)
        assert w2v.shape == (SMALL_EMI["seconds"] * 50, 64)
    vid = int(meta.index[0])
    info = media.video_info(release.path("video", vid))
    assert info["frames"] == 30 and info["width"] == 64 and info["fps"] == 10
    ok_audio = meta.index[meta.audio == "ok"][0]
    samples = media.read_audio(release.path("audio", ok_audio))
    assert len(samples) == 3 * 16000 and np.abs(samples).max() > 0.05
    silent = meta.index[meta.audio == "silent"]
    if len(silent):
        assert np.abs(media.read_audio(release.path("audio", silent[0]))).max() < 0.02


def test_emi_labels_drive_behaviour_over_time(emi_data):
    """What is seen and heard follows the labels: louder, faster-moving faces and voices for
    more intense videos, and the organizer stand-ins predict held-out subjects."""
    release = EmiRelease(emi_data)
    labels = release.labelled()
    meta = release.metadata().loc[labels.index]
    mouth_activity, loudness = [], []
    for vid in labels.index:
        gray = media.read_video(release.path("video", vid))[0].astype(np.float32).mean(-1)
        size = gray.shape[1]
        mouth = gray[:, int(size * .6):int(size * .85), int(size * .3):int(size * .7)]
        mouth_activity.append(np.percentile(np.abs(mouth - np.median(mouth, 0)).mean((1, 2)), 90))
        audio = release.path("audio", vid)
        loudness.append(np.sqrt(np.mean(media.read_audio(audio) ** 2)) if audio and meta.loc[vid, "audio"] == "ok"
                        else np.nan)
    # Smiles, laughter and excitement move the mouth: more of them, more mouth activity.
    mouth_emotions = labels[["Amusement", "Excitement", "Joy"]].sum(axis=1).to_numpy()
    face_ok = (meta.face == "ok").to_numpy()
    assert np.corrcoef(np.array(mouth_activity)[face_ok], mouth_emotions[face_ok])[0, 1] > 0.2
    # Excitement raises pitch and loudness: correlation across clean-audio videos.
    ok = ~np.isnan(loudness)
    assert np.corrcoef(np.array(loudness)[ok], labels["Excitement"].to_numpy()[ok])[0, 1] > 0.2

    def pooled(a):
        return np.concatenate([a.mean(0), a.max(0), a.std(0)])

    X = np.stack([np.concatenate([pooled(release.load_feature("vit", v)),
                                  pooled(release.load_feature("wav2vec2", v))]) for v in labels.index])
    y = labels[list(EMI_TARGETS)].to_numpy()
    oof = np.zeros_like(y)
    for train, held in GroupKFold(4).split(X, y, meta.subject):
        oof[held] = Ridge(alpha=10).fit(X[train], y[train]).predict(X[held])
    assert pearson_per_dim(oof, y).mean() > 0.2


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


def test_va_layout(va_data):
    release = VaRelease(va_data)
    counts = release.test_frame_counts()
    train, valid = release.videos("train"), release.videos("valid")
    assert train and valid and counts
    assert not set(train) & set(valid) and not set(train) & set(counts)
    n_frames = int(8 * 10)
    saw_unannotated = False
    for video in train + valid:
        path = release.annotations / ("Train_Set" if video in train else "Validation_Set") / f"{video}.txt"
        assert path.read_text().splitlines()[0] == "valence,arousal"
        values = release.labels("train" if video in train else "valid", video)
        assert values.shape == (n_frames, 2)
        saw_unannotated |= not annotated_mask(values).all()
        assert np.abs(values[annotated_mask(values)]).max() <= 1
        info = media.video_info(release.video_path(video))
        assert info["frames"] == n_frames and info["has_audio"]
        crops = sorted(release.frames_dir(video).glob("*.jpg"))
        assert crops and crops[0].name == "00001.jpg" or len(crops) < n_frames
    assert saw_unannotated, "some frames should carry the -5 marker"
    assert all(n == n_frames for n in counts.values())
    assert (va_data / "private" / "VA_Estimation_Challenge" / "Test_Set").is_dir()
    # The audio track decodes to 16 kHz mono of the video's length.
    audio = media.read_audio(release.video_path(train[0]))
    assert abs(len(audio) - 8 * 16000) <= 16000 * 0.05
    ceiling = json.loads((va_data / "ceiling.json").read_text())
    assert 0.3 < ceiling["train"]["mean"] < 1.0
