"""Feature extraction: the offline defaults carry signal, runs resume and shard, every bad
input is recorded, and the pretrained-backbone paths work with tiny random models."""
import json
import logging
import pickle
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import Ridge
from sklearn.model_selection import GroupKFold

from conftest import features_only_release
from solution import cache, extraction, features, synth
from solution.extractors import create_extractor
from solution.faces import mtcnn_available
from solution.layouts import EmiRelease, detect_track, emi_key, release_videos
from solution.tracks import EMI_TARGETS


def folders(work):
    return {p.name.split("-")[0] + "-" + p.name.split("-")[1]: p for p in (work / "features").iterdir() if p.is_dir()}


def sources(data) -> dict:
    """video key -> VideoSources of a release."""
    return {s.vid: s for s in release_videos(detect_track(data), data)}


def read(folder, src):
    """A video's entry in a stream folder, under the source key of its files as they are now."""
    stream = json.loads((folder / "spec.json").read_text())
    return cache.read_entry(folder, src.vid, cache.stream_source_key(stream, src))


def test_manifest_and_entries(emi_data, emi_features):
    found = folders(emi_features)
    assert {"visual-hog", "audio-egemaps", "text-minilm", "organizer-organizer_vit",
            "organizer-organizer_wav2vec2"} <= set(found)
    release = EmiRelease(emi_data)
    every = {emi_key(v) for v in list(release.labelled().index) + release.test_ids()}
    hog = cache.read_manifest(found["visual-hog"])
    assert hog["extractor"] == "hog" and hog["settings"]["fps"] == 5.0
    # The folder is named by the key of the recorded settings; another fps would name another folder.
    inputs = {name: hog["settings"][name] for name in ("fps", "face", "face_size")}
    assert found["visual-hog"].name == hog["key"] == create_extractor("hog").key(inputs)
    assert create_extractor("hog").key({**inputs, "fps": 10.0}).rsplit("-", 1)[1] != hog["key"].rsplit("-", 1)[1]
    srcs = sources(emi_data)
    assert {e["id"] for e in hog["entries"].values()} == every and hog["dim"] == 800
    assert set(hog["entries"]) == {f"{v}.{cache.source_key(srcs[v], 'visual')}" for v in every}
    first = srcs[sorted(every)[0]]
    entry = read(found["visual-hog"], first)
    seconds = float(release.metadata().loc[int(first.vid), "seconds"])
    assert abs(entry.features.shape[0] - seconds * 5) <= 1 and entry.features.shape[1] == 800
    assert entry.fps == pytest.approx(5.0) and entry.source == str(first.video)
    assert np.all(np.diff(entry.times) > 0)
    egemaps = read(found["audio-egemaps"], first)
    if not egemaps.missing:
        assert egemaps.features.shape[1] == 25 and egemaps.fps == 100
        assert {"snr_db", "speech_share", "level_db"} <= set(egemaps.quality)
        assert len(egemaps.frame_quality) == len(egemaps.features)


def test_failures_match_the_corruptions(emi_data, emi_features):
    meta = EmiRelease(emi_data).metadata()
    failures = pd.read_csv(emi_features / "features" / "failures.csv", dtype=str)
    by_kind = {kind: set(failures.id[failures.extractor.str.startswith(kind)]) for kind in ("audio", "text", "visual")}
    keys = {emi_key(v): row for v, row in meta.iterrows()}
    assert by_kind["text"] == {k for k, r in keys.items() if r.transcript == "missing"}
    assert by_kind["audio"] == {k for k, r in keys.items() if r.audio in ("missing", "silent")}
    assert not by_kind["visual"]
    reasons = failures.set_index("id").reason
    for key, row in keys.items():
        if row.audio == "silent":
            assert "silent audio" in reasons[key]


@pytest.mark.skipif(not mtcnn_available(), reason="facenet-pytorch not installed")
def test_face_cues_fall_on_missing_and_occluded_faces(emi_data, emi_features):
    meta = EmiRelease(emi_data).metadata()
    hog = folders(emi_features)["visual-hog"]
    srcs = sources(emi_data)
    share = pd.Series({v: read(hog, srcs[emi_key(v)]).quality["face_share"] for v in meta.index})
    by_flag = share.groupby(meta.face).mean()
    assert by_flag["ok"] > 0.4
    for flag in ("occluded", "missing"):
        if flag in by_flag:
            assert by_flag[flag] < by_flag["ok"] - 0.2


def test_cached_features_beat_the_mean(emi_data, emi_features):
    release = EmiRelease(emi_data)
    labels = release.labelled()
    meta = release.metadata().loc[labels.index]
    found = folders(emi_features)
    srcs = sources(emi_data)

    def pooled(kind, vid):
        entry = read(found[kind], srcs[emi_key(vid)])
        if entry.missing:
            return np.zeros(3 * entry.features.shape[1] + 1)
        f = entry.features
        return np.concatenate([f.mean(0), f.max(0), f.std(0), [1.0]])

    X = np.stack([np.concatenate([pooled("visual-hog", v), pooled("audio-egemaps", v)]) for v in labels.index])
    X = (X - X.mean(0)) / (X.std(0) + 1e-6)
    y = labels[list(EMI_TARGETS)].to_numpy()
    ridge, mean = np.zeros_like(y), np.zeros_like(y)
    for train, held in GroupKFold(4).split(X, y, meta.subject):
        ridge[held] = Ridge(alpha=300).fit(X[train], y[train]).predict(X[held])
        mean[held] = y[train].mean(0)
    assert ((ridge - y) ** 2).mean() < ((mean - y) ** 2).mean()
    from solution.metrics import pearson_per_dim
    assert pearson_per_dim(ridge, y).mean() > 0.15


def test_rerun_skips_and_interrupted_run_resumes(emi_data, emi_features, tmp_path, capsys):
    work = tmp_path / "work"
    shutil.copytree(emi_features, work)
    hog = folders(work)["visual-hog"]
    assert features.main(["--data", str(emi_data), "--work", str(work)]) == 0
    table = capsys.readouterr().out
    assert "computed_now" in table and all(line.split()[-1] == "0" for line in table.splitlines()[1:6])
    # Lose some entries, as a killed run would: only those are computed again.
    lost = sorted(hog.glob("*.npz"))[:3]
    for path in lost:
        path.unlink()
    assert features.main(["--data", str(emi_data), "--work", str(work), "--visual", "hog", "--audio", "none",
                          "--text", "none", "--organizer", "none"]) == 0
    line = [l for l in capsys.readouterr().out.splitlines() if l.strip().startswith("hog")][0]
    assert line.split()[-1] == "3"
    assert all(p.is_file() for p in lost)


def test_shards_together_equal_one_run(emi_data, emi_features, tmp_path):
    work = tmp_path / "sharded"
    args = ["--data", str(emi_data), "--work", str(work), "--audio", "fbank", "--text", "none", "--visual", "none",
            "--organizer", "none"]
    assert features.main(args + ["--shard", "0/2"]) == 0
    fbank = folders(work)["audio-fbank"]
    first = set(cache.read_manifest(fbank)["entries"])
    assert features.main(args + ["--shard", "1/2"]) == 0
    both = cache.read_manifest(fbank)["entries"]
    assert first < set(both) and len(first) == len(both) // 2 + len(both) % 2
    assert features.main(["--data", str(emi_data), "--work", str(tmp_path / "once")] + args[4:]) == 0
    once = folders(tmp_path / "once")["audio-fbank"]
    assert cache.read_manifest(once)["entries"] == both
    vid, key = sorted(first)[0].split(".")
    np.testing.assert_array_equal(cache.read_entry(fbank, vid, key).features, cache.read_entry(once, vid, key).features)
    with pytest.raises(SystemExit):
        features.main(args + ["--shard", "2/2"])


def test_bad_media_recorded_and_strict_stops(emi_data, tmp_path, capsys):
    data = tmp_path / "release"
    shutil.copytree(emi_data, data)
    release = EmiRelease(data)
    ids = sorted(release.files["audio"])
    corrupt, empty = ids[0], ids[1]
    release.path("video", corrupt).write_bytes(b"\x00garbage" * 100)
    release.path("audio", empty).write_bytes(b"")
    work = tmp_path / "work"
    args = ["--data", str(data), "--work", str(work), "--audio", "fbank", "--text", "none", "--organizer", "none",
            "--splits", "train,valid,test"]
    assert features.main(args) == 0
    failures = pd.read_csv(work / "features" / "failures.csv", dtype=str).set_index(["id", "extractor"]).reason
    visual = [k for k in failures.index if k[0] == emi_key(corrupt) and k[1].startswith("visual")]
    assert visual and "unreadable media file" in failures[visual[0]]
    audio = [k for k in failures.index if k[0] == emi_key(empty) and k[1].startswith("audio")]
    assert audio and "unreadable media file" in failures[audio[0]]
    entry = read(folders(work)["visual-hog"], sources(data)[emi_key(corrupt)])
    assert entry.missing and entry.features.shape == (0, 800)
    assert "missing entries" in capsys.readouterr().out
    # --strict: the first failure is an error naming the video.
    code = features.main(args[:4] + ["--work", str(tmp_path / "strict"), "--strict", "--visual", "hog", "--audio", "none",
                                     "--text", "none", "--organizer", "none"])
    assert code == 1 and emi_key(corrupt) in capsys.readouterr().err
    # A fixed file is another input: extracted again, and its old failure leaves failures.csv.
    shutil.copy(emi_data / "raw" / f"{emi_key(corrupt)}.mp4", release.path("video", corrupt))
    assert features.main(args) == 0
    assert not read(folders(work)["visual-hog"], sources(data)[emi_key(corrupt)]).missing
    failures = pd.read_csv(work / "features" / "failures.csv", dtype=str)
    assert emi_key(corrupt) not in set(failures.id) and emi_key(empty) in set(failures.id)
    capsys.readouterr()
    # --retry-failed tries the recorded failures of unchanged files again (and they fail again).
    assert features.main(args + ["--retry-failed"]) == 0
    computed = {line.split()[0]: int(line.split()[-1]) for line in capsys.readouterr().out.splitlines()[1:3]}
    assert computed == {"hog": 0, "fbank": int(failures.extractor.str.startswith("audio-fbank").sum())}


def test_organizer_only_release_needs_no_media(emi_data, tmp_path, capsys):
    data = features_only_release(emi_data, tmp_path / "features-only")
    work = tmp_path / "work"
    assert features.main(["--data", str(data), "--work", str(work)]) == 0
    assert set(folders(work)) == {"organizer-organizer_vit", "organizer-organizer_wav2vec2"}
    vit = cache.read_manifest(folders(work)["organizer-organizer_vit"])
    assert vit["dim"] == 96 and all(e["status"] == "ok" for e in vit["entries"].values())


def test_va_uses_crops_and_marks_faceless_frames(va_data, tmp_path):
    work = tmp_path / "work"
    assert features.main(["--data", str(va_data), "--work", str(work), "--audio", "fbank", "--fps", "5"]) == 0
    hog = folders(work)["visual-hog"]
    manifest = cache.read_manifest(hog)
    assert manifest["settings"]["face"] == "crops"
    fps = pd.read_csv(va_data / "metadata.csv").set_index("video").fps
    for info in manifest["entries"].values():
        entry, vid = cache.read_entry(hog, info["id"], info["key"]), info["id"]
        crops = va_data / "cropped_aligned" / vid
        frames = np.round(entry.times * fps[vid]).astype(int) + 1  # each video at its own frame rate
        expected = np.array([(crops / f"{f:05d}.jpg").is_file() for f in frames], float)
        np.testing.assert_array_equal(entry.frame_quality, expected)
    audio = cache.read_manifest(folders(work)["audio-fbank"])
    assert any(e["status"] == "ok" for e in audio["entries"].values())


def test_unknown_or_mismatched_extractor_is_refused(emi_data, tmp_path, capsys):
    assert features.main(["--data", str(emi_data), "--work", str(tmp_path), "--visual", "sift"]) == 1
    assert "unknown extractor 'sift'" in capsys.readouterr().err
    assert features.main(["--data", str(emi_data), "--work", str(tmp_path), "--visual", "egemaps"]) == 1
    assert "egemaps is a audio extractor" in capsys.readouterr().err
    assert features.main(["--data", str(emi_data), "--work", str(tmp_path), "--audio", "hf-audio:/no/such"]) == 1
    assert "not found (weights are never downloaded)" in capsys.readouterr().err


# ------------------------------------------------------------------ the cache follows the input files

@pytest.mark.filterwarnings("ignore::solution.metrics.ConstantInputWarning")  # tiny releases' ceilings
def test_second_release_in_the_same_work_gets_its_own_features(tmp_path, capsys):
    small = dict(workers=1, videos=12, subjects=6, seconds=1.0, fps=8.0, size=48)
    a, b = tmp_path / "a", tmp_path / "b"
    synth.generate("emi", a, seed=1, **small)
    synth.generate("emi", b, seed=2, **small)
    shared = sorted(set(sources(a)) & set(sources(b)))
    assert shared, "the two releases must share video ids for this test to mean anything"
    vit_a, vit_b = EmiRelease(a), EmiRelease(b)
    assert any(not np.array_equal(vit_a.load_feature("vit", int(v)), vit_b.load_feature("vit", int(v))) for v in shared)
    args = ["--visual", "hog", "--face", "none", "--audio", "fbank", "--text", "none"]
    work = tmp_path / "work"
    assert features.main(["--data", str(a), "--work", str(work)] + args) == 0
    assert features.main(["--data", str(b), "--work", str(work)] + args) == 0
    assert features.main(["--data", str(b), "--work", str(tmp_path / "fresh")] + args) == 0
    found, fresh, srcs = folders(work), folders(tmp_path / "fresh"), sources(b)
    for vid in shared:
        np.testing.assert_array_equal(read(found["organizer-organizer_vit"], srcs[vid]).features,
                                      vit_b.load_feature("vit", int(vid)))
        for stream in ("visual-hog", "audio-fbank"):
            ours, alone = read(found[stream], srcs[vid]), read(fresh[stream], srcs[vid])
            assert ours.missing == alone.missing
            np.testing.assert_array_equal(ours.features, alone.features)
    entries = cache.read_manifest(found["organizer-organizer_vit"])["entries"]
    assert len(entries) == len(sources(a)) + len(srcs)          # both releases' entries, shared ids twice
    # The first release's entries are untouched: extracting it again computes nothing.
    capsys.readouterr()
    assert features.main(["--data", str(a), "--work", str(work)] + args) == 0
    rows = capsys.readouterr().out.splitlines()[1:5]
    assert len(rows) == 4 and all(row.split()[-1] == "0" for row in rows)


def test_cached_rerun_loads_no_model(emi_data, emi_features, tmp_path, monkeypatch, capsys):
    import sentence_transformers

    from solution import extractors

    work = tmp_path / "work"
    shutil.copytree(emi_features, work)

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded although every entry is cached")

    monkeypatch.setattr(sentence_transformers, "SentenceTransformer", refuse)
    monkeypatch.setattr(extractors.Extractor, "load", refuse, raising=False)
    monkeypatch.setattr(extraction, "MtcnnDetector", refuse)
    assert features.main(["--data", str(emi_data), "--work", str(work), "--workers", "1"]) == 0
    rows = capsys.readouterr().out.splitlines()[1:6]
    assert len(rows) == 5 and all(row.split()[-1] == "0" for row in rows)


def test_model_that_cannot_load_stops_the_run(emi_data, tmp_path, capsys):
    weights = tmp_path / "broken.safetensors"
    weights.write_bytes(b"not a safetensors file")
    spec = f"timm:test_vit?weights={weights}"
    work = tmp_path / "work"
    code = features.main(["--data", str(emi_data), "--work", str(work), "--visual", spec, "--face", "none",
                          "--audio", "none", "--text", "none", "--organizer", "none", "--workers", "2"])
    assert code == 1 and f"error: {spec}: cannot load the model" in capsys.readouterr().err
    assert not list((work / "features").glob("*/*.failed.json"))  # not every video's failure


def test_pickle_of_another_width_is_recorded_and_1d_pickle_is_said(emi_data, tmp_path, capsys, caplog):
    data = features_only_release(emi_data, tmp_path / "features-only")
    ids = sorted(p.stem for p in (data / "vit").glob("*.pkl"))
    narrow, flat = ids[3], ids[5]
    width = EmiRelease(data).load_feature("vit", int(narrow)).shape[1]
    (data / "vit" / f"{narrow}.pkl").write_bytes(pickle.dumps(np.zeros((10, width - 1), np.float32)))
    (data / "vit" / f"{flat}.pkl").write_bytes(pickle.dumps(np.ones(width, np.float32)))
    work = tmp_path / "work"
    with caplog.at_level(logging.WARNING, logger="features"):
        assert features.main(["--data", str(data), "--work", str(work)]) == 0
    reason = f"{data / 'vit' / narrow}.pkl: {width - 1} columns where the other {len(ids) - 1} videos have {width}"
    vit = folders(work)["organizer-organizer_vit"]
    failures = pd.read_csv(work / "features" / "failures.csv", dtype=str)
    assert failures.to_dict("records") == [{"id": narrow, "extractor": vit.name, "reason": reason}]
    assert reason in caplog.text
    assert f"{data / 'vit' / flat}.pkl: 1-D array read as a single frame" in caplog.text
    summary = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()[1:3]}
    assert summary["organizer:vit"][2:5] == [str(width), str(len(ids) - 1), "1"]   # dim, ok, missing
    srcs = sources(data)
    assert read(vit, srcs[narrow]).missing and read(vit, srcs[narrow]).features.shape == (0, width)
    assert read(vit, srcs[flat]).features.shape == (1, width)
    assert cache.read_manifest(vit)["dim"] == width
    # --strict: an error naming the file.
    code = features.main(["--data", str(data), "--work", str(tmp_path / "strict"), "--strict"])
    assert code == 1 and f"{narrow}.pkl: {width - 1} columns" in capsys.readouterr().err


# ------------------------------------------------------------------ pretrained backbones, tiny and random

def test_timm_backbone_loads_local_weights(tmp_path):
    import timm
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(0)
    reference = timm.create_model("test_vit", pretrained=False, num_classes=0).eval()
    save_file(reference.state_dict(), str(tmp_path / "w.safetensors"))
    extractor = create_extractor(f"timm:test_vit?weights={tmp_path / 'w.safetensors'}", batch_size=3)
    faces = np.random.default_rng(0).integers(0, 255, (5, 48, 48, 3), dtype=np.uint8)
    out = extractor(faces)
    with torch.no_grad():
        expected = reference(extractor._prepare(faces)).numpy()
    assert out.shape == (5, reference.num_features)
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="weights=random"):
        create_extractor("timm:test_vit")


def test_hf_vision_audio_text_from_local_folders(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import (BertConfig, BertModel, PreTrainedTokenizerFast, ViTConfig, ViTImageProcessor, ViTModel,
                              Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model)

    vit = tmp_path / "vit"
    ViTModel(ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                       intermediate_size=64)).save_pretrained(vit)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(vit)
    faces = np.random.default_rng(1).integers(0, 255, (4, 40, 40, 3), dtype=np.uint8)
    assert create_extractor(f"hf-vision:{vit}")(faces).shape == (4, 32)

    w2v = tmp_path / "w2v"
    Wav2Vec2Model(Wav2Vec2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                                 conv_dim=(16,) * 7, num_conv_pos_embeddings=16,
                                 num_conv_pos_embedding_groups=2)).save_pretrained(w2v)
    Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True,
                             return_attention_mask=False).save_pretrained(w2v)
    feats, rate = create_extractor(f"hf-audio:{w2v}?layer=1")(np.random.default_rng(2).normal(0, 0.1, 32000).astype(np.float32))
    assert feats.shape[1] == 32 and 45 < rate < 55

    bert = tmp_path / "bert"
    words = ["[PAD]", "[UNK]", "happy", "sad", "i", "am"]
    tokenizer = Tokenizer(models.WordLevel(vocab={w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="[UNK]", pad_token="[PAD]").save_pretrained(bert)
    BertModel(BertConfig(vocab_size=6, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64)).save_pretrained(bert)
    text = create_extractor(f"hf-text:{bert}")
    happy, sad = text("i am happy"), text("i am sad")
    assert happy.shape == (1, 32) and not np.allclose(happy, sad)


def test_cache_keys_follow_settings():
    a = create_extractor("hog").key({"fps": 5})
    assert a == create_extractor("hog").key({"fps": 5})
    assert a != create_extractor("hog").key({"fps": 10})
    assert a != create_extractor("hog?cell=8").key({"fps": 5})


def test_moved_release_keeps_its_features_and_folds(tmp_path, capsys):
    """A release copied elsewhere (new paths, new mtimes) reuses its features and finished
    folds; a video whose bytes change is extracted again, and only that video."""
    from solution import folds
    from solution.train_fold import main as train_main

    small = dict(workers=1, videos=12, subjects=6, seconds=1.0, fps=8.0, size=48)
    first, work = tmp_path / "disk1" / "release", tmp_path / "work"
    synth.generate("emi", first, seed=3, **small)
    args = ["--visual", "hog", "--face", "none", "--audio", "fbank", "--text", "none"]
    train = ["--model", "linear", "--fold", "0", "--work", str(work), "--set", "epochs=2", "--set", "seeds=1", "--threads", "1"]

    def stage(data):
        """features, folds and one fold on `data`; -> the features table's computed_now per stream."""
        capsys.readouterr()
        assert features.main(["--data", str(data), "--work", str(work)] + args) == 0
        table = capsys.readouterr().out.splitlines()
        assert folds.main(["--data", str(data), "--work", str(work), "--k", "2"]) == 0
        assert train_main(train + ["--data", str(data)]) == 0
        return {row.split()[0]: int(row.split()[-1]) for row in table[1:] if row.split() and row.split()[-1].isdigit()}

    assert all(n > 0 for n in stage(first).values())
    metrics = next(work.glob("emi-*/runs/linear/fold0/metrics.json"))
    trained = metrics.read_bytes(), metrics.stat().st_mtime_ns
    moved = tmp_path / "disk2" / "mounted" / "release"
    shutil.copytree(first, moved, copy_function=shutil.copyfile)   # new paths, new mtimes
    shutil.rmtree(first)
    assert set(stage(moved).values()) == {0}
    assert (metrics.read_bytes(), metrics.stat().st_mtime_ns) == trained, "the finished fold was trained again"
    # One video's bytes change (another video in its place): its streams are extracted again.
    videos = sorted((moved / "raw").glob("*.mp4"))
    shutil.copyfile(videos[1], videos[0])
    capsys.readouterr()
    assert features.main(["--data", str(moved), "--work", str(work)] + args) == 0
    computed = {row.split()[0]: int(row.split()[-1]) for row in capsys.readouterr().out.splitlines()[1:]
                if row.split() and row.split()[-1].isdigit()}
    assert computed == {"hog": 1, "fbank": 1, "organizer:vit": 1, "organizer:wav2vec2": 1}, computed


def test_cached_rerun_imports_no_model(emi_data, emi_features, tmp_path):
    """A features stage with every entry cached imports neither the face detector nor torch."""
    import subprocess
    import sys

    work = tmp_path / "work"
    shutil.copytree(emi_features, work)
    code = ("import sys; from solution import features; "
            f"assert features.main(['--data', {str(emi_data)!r}, '--work', {str(work)!r}]) == 0; "
            "print(sorted(m for m in ('torch', 'facenet_pytorch', 'sentence_transformers', 'transformers', 'timm', "
            "'opensmile') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          cwd=Path(__file__).resolve().parent.parent)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"
