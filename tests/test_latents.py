"""The generator's clean latent streams (solution.synth latents=true): written for every video
beside an otherwise unchanged release, read as organizer folders on both tracks, placed on the
time grid by the rate their pickles state, and carrying the signal the features lose."""
import hashlib
import json
import pickle

import numpy as np
import pandas as pd
import pytest

from solution import cache, features, synth
from solution.config import TrainConfig
from solution.data import VideoStore
from solution.errors import DataError
from solution.layouts import (LATENT_FOLDERS, EmiRelease, VaRelease, read_feature_pickle, release_videos,
                              stated_fps)
from solution.metrics import pearson_per_dim
from solution.streams import resolve_streams
from solution.tracks import EMI_TARGETS

TINY_EMI = dict(workers=1, videos=12, subjects=6, seconds=3.0, fps=8.0, size=32)
TINY_VA = dict(workers=1, videos=5, seconds=4.0, fps=8.0, size=32, other_fps=10.0, long_seconds=0.0)
LATENTS_ONLY = ["--visual", "none", "--audio", "none", "--text", "none", "--organizer", "latent_face,latent_voice",
                "--workers", "1"]


def hashes(root) -> dict:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """Each track's tiny release written without and with latents (same seed)."""
    root = tmp_path_factory.mktemp("latents")
    out = {}
    for track, settings in (("emi", TINY_EMI), ("va", TINY_VA)):
        for latents in (False, True):
            folder = root / f"{track}-{latents}"
            synth.generate(track, folder, seed=4, latents=latents, **settings)
            out[track, latents] = folder
    return out


@pytest.mark.parametrize("track", ["emi", "va"])
def test_latents_change_no_other_byte(pair, track):
    """Writing latents adds two folders and the marker's setting; everything else keeps its bytes,
    and a release without the setting records no `latents` (its marker is that of older releases)."""
    without, with_ = hashes(pair[track, False]), hashes(pair[track, True])
    added = {k for k in with_ if k not in without}
    assert added and {k.split("/")[0] for k in added} == set(LATENT_FOLDERS)
    assert set(without) <= set(with_)
    differ = [k for k in without if without[k] != with_[k]]
    assert differ == ["synth_config.json"]
    off = json.loads((pair[track, False] / "synth_config.json").read_text())["config"]
    on = json.loads((pair[track, True] / "synth_config.json").read_text())["config"]
    assert "latents" not in off and on.pop("latents") is True and on == off


def test_latent_files_for_every_video(pair):
    """One pickle per video and folder, labelled and test: a frame of the video a row, the
    video's own frame rate stated (the VA video at another rate too), 6 + 6 (EMI) or 2 + 2 (VA)
    columns, no randomness left in them (the face's drive is the voice's, up to the gains)."""
    emi = EmiRelease(pair["emi", True])
    meta = emi.metadata().astype({"frames": int, "fps": float})
    assert sorted(meta.index) == sorted([*emi.labelled().index, *emi.test_ids()])
    for vid, row in meta.iterrows():
        for folder in LATENT_FOLDERS:
            values, fps = read_feature_pickle(emi.path(folder, vid))
            assert values.shape == (row["frames"], 6) and values.dtype == np.float32 and fps == row["fps"]
        face, voice = emi.load_feature("latent_face", vid), emi.load_feature("latent_voice", vid)
        assert np.all(face >= 0) and np.all(voice >= 0) and voice.max() > 0.05
        # Default world: the voice hears the drive itself, the face shows it times the expressivity.
        ratio = face[voice > 0.05] / voice[voice > 0.05]
        assert np.allclose(ratio, ratio.flat[0], rtol=1e-4)
    va = VaRelease(pair["va", True])
    meta = va.metadata().astype({"frames": int, "fps": float})
    assert sorted(meta.fps.unique()) == [8.0, 10.0]
    videos = [s.vid for s in release_videos("va", pair["va", True])]
    assert sorted(videos) == sorted(meta.index)
    for name, row in meta.iterrows():
        assert set(va.organizer_paths(name)) == set(LATENT_FOLDERS)
        for folder in LATENT_FOLDERS:
            values, fps = read_feature_pickle(va.organizer_paths(name)[folder])
            assert values.shape == (row["frames"], 2) and fps == row["fps"]
            assert np.abs(values).max() <= 3 and values.std() > 0.01
    assert VaRelease(pair["va", False]).organizer_paths(videos[0]) == {}


def test_stated_rate_is_checked(tmp_path):
    assert stated_fps(np.zeros((2, 3)), "x") is None and stated_fps({"features": np.zeros((2, 3))}, "x") is None
    path = tmp_path / "00001.pkl"
    path.write_bytes(pickle.dumps({"features": np.ones((4, 2), np.float32), "fps": 12.5}))
    values, fps = read_feature_pickle(path)
    assert values.shape == (4, 2) and fps == 12.5
    for bad in (0, -3.0, float("nan"), "15", True):
        path.write_bytes(pickle.dumps({"features": np.ones((4, 2), np.float32), "fps": bad}))
        with pytest.raises(DataError, match="fps"):
            read_feature_pickle(path)


@pytest.mark.parametrize("track", ["emi", "va"])
def test_latent_streams_on_the_time_grid(pair, tmp_path, track):
    """The features stage caches the latent folders only when named (auto takes the organizers'
    alone), with each video's stated rate; training reads them on both tracks, row k at k / fps
    seconds, also when they are the only streams of a release without media."""
    data = pair[track, True]
    if track == "emi":  # latents alone: no media, no stand-ins
        data = tmp_path / "latents-only"
        synth.generate("emi", data, seed=4, latents=True, media=False, standins=False, **TINY_EMI)
    work = tmp_path / "work"
    assert features.main(["--data", str(data), "--work", str(work)] + LATENTS_ONLY) == 0
    sources = {s.vid: s for s in release_videos(track, data)}
    streams = resolve_streams(work, sources)
    assert {m: [s.spec for s in v] for m, v in streams.items()} == {
        "visual": ["organizer:latent_face"], "audio": ["organizer:latent_voice"]}
    release = EmiRelease(data) if track == "emi" else VaRelease(data)
    meta = release.metadata().astype({"frames": int, "fps": float})
    for key, src in sources.items():  # every video's entry at its own rate (VA: one video at another)
        for stream in streams["visual"] + streams["audio"]:
            entry = cache.read_entry(stream.folder, key, stream.entry_keys[key])
            fps = meta.loc[int(key) if track == "emi" else key, "fps"]
            assert entry.fps == fps and np.allclose(entry.times, np.arange(len(entry.features)) / fps, atol=1e-5)
    store = VideoStore(release, streams, TrainConfig())
    for key in [k for k, s in sources.items() if s.split != "test"][:4]:
        row = meta.loc[int(key) if track == "emi" else key]
        video = store.load(key, normalise=False)
        assert video.duration == pytest.approx(row["frames"] / row["fps"], abs=1e-4)
        raw = read_feature_pickle(sources[key].organizer["latent_face"])[0]
        if track == "va":  # frame-level: one step per label frame, at k / fps, the latent's own row k
            assert np.allclose(video.seqs["visual"], raw, atol=1e-5)
        else:  # on the 5 Hz visual grid, interpolated between the video's frames
            at = np.arange(len(video.seqs["visual"])) / store.rate("visual")
            expected = np.stack([np.interp(at, np.arange(len(raw)) / row["fps"], raw[:, j]) for j in range(6)], 1)
            assert np.allclose(video.seqs["visual"], expected, atol=1e-5)


def test_latents_are_not_read_unless_named(pair, tmp_path, monkeypatch):
    """`--organizer auto` caches the organizers' folders, not the latents; and where latents sit
    in the cache beside other features, training with default streams leaves them out."""
    data, work = pair["emi", True], tmp_path / "work"
    args = ["--data", str(data), "--work", str(work), "--visual", "none", "--audio", "none", "--text", "none",
            "--workers", "1"]
    assert features.main(args) == 0
    sources = {s.vid: s for s in release_videos("emi", data)}
    assert {s.spec for v in resolve_streams(work, sources).values() for s in v} == {
        "organizer:vit", "organizer:wav2vec2"}
    assert features.main(args + ["--organizer", "latent_face,latent_voice"]) == 0
    assert {s.spec for v in resolve_streams(work, sources).values() for s in v} == {
        "organizer:vit", "organizer:wav2vec2"}
    named = resolve_streams(work, sources, {"visual": ["organizer:latent_face"], "audio": ["organizer:latent_voice"]})
    assert [s.dim for s in named["visual"] + named["audio"]] == [6, 6]


def test_latents_carry_the_signal_the_features_lose(tmp_path):
    """A linear probe (least squares on per-video means, 5 folds grouped by subject) predicts
    the EMI labels far better from the latent streams than from the vit stand-in given as many
    columns (its first 12 principal components)."""
    data = tmp_path / "probe"
    synth.generate("emi", data, seed=7, workers=1, videos=60, subjects=12, seconds=3.0, fps=8.0, size=32,
                   media=False, latents=True)
    release = EmiRelease(data)
    test = pd.read_csv(data / "private" / "test_labels.csv", dtype={"Filename": str})
    test.index = test.pop("Filename").astype(int)
    labels = pd.concat([release.labelled()[list(EMI_TARGETS)], test[list(EMI_TARGETS)]]).sort_index()
    y = labels.to_numpy()
    subjects = release.metadata().loc[labels.index, "subject"].to_numpy()
    order = {s: i % 5 for i, s in enumerate(np.random.default_rng(0).permutation(np.unique(subjects)))}
    fold = np.array([order[s] for s in subjects])

    def means(folder):
        return np.stack([release.load_feature(folder, v).mean(0) for v in labels.index])

    def probe(x, components=None):
        pred = np.zeros_like(y)
        for f in range(5):
            train, held = x[fold != f], x[fold == f]
            centre = train.mean(0)
            train, held = train - centre, held - centre
            if components:
                basis = np.linalg.svd(train, full_matrices=False)[2][:components].T
                train, held = train @ basis, held @ basis
            w = np.linalg.lstsq(np.c_[train, np.ones(len(train))], y[fold != f], rcond=None)[0]
            pred[fold == f] = np.c_[held, np.ones(len(held))] @ w
        return float(pearson_per_dim(pred, y).mean())

    latent = probe(np.concatenate([means("latent_face"), means("latent_voice")], 1))
    vit = probe(means("vit"), components=12)
    print(f"linear probe, mean Pearson: latents {latent:.3f}, vit stand-in (12 components) {vit:.3f}")
    assert latent > 0.5 and latent > vit + 0.15, (latent, vit)
