"""Feature extraction: the offline defaults carry signal, runs resume and shard, every bad
input is recorded, and the pretrained-backbone paths work with tiny random models."""
import shutil

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import Ridge
from sklearn.model_selection import GroupKFold

from conftest import features_only_release
from solution import cache, features
from solution.extractors import create_extractor
from solution.faces import mtcnn_available
from solution.layouts import EmiRelease, emi_key
from solution.tracks import EMI_TARGETS


def folders(work):
    return {p.name.split("-")[0] + "-" + p.name.split("-")[1]: p for p in (work / "features").iterdir() if p.is_dir()}


def test_manifest_and_entries(emi_data, emi_features):
    found = folders(emi_features)
    assert {"visual-hog", "audio-egemaps", "text-minilm", "organizer-organizer_vit",
            "organizer-organizer_wav2vec2"} <= set(found)
    release = EmiRelease(emi_data)
    every = {emi_key(v) for v in list(release.labelled().index) + release.test_ids()}
    hog = cache.read_manifest(found["visual-hog"])
    assert hog["extractor"] == "hog" and hog["settings"]["fps"] == 5.0 and hog["key"].endswith(hog["key"][-10:])
    assert set(hog["entries"]) == every and hog["dim"] == 800
    entry = cache.read_entry(found["visual-hog"], sorted(every)[0])
    assert entry.features.shape == (15, 800) and entry.fps == pytest.approx(5.0)
    assert np.all(np.diff(entry.times) > 0)
    egemaps = cache.read_entry(found["audio-egemaps"], sorted(every)[0])
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
    share = pd.Series({v: cache.read_entry(hog, emi_key(v)).quality["face_share"] for v in meta.index})
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

    def pooled(kind, vid):
        entry = cache.read_entry(found[kind], emi_key(vid))
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
    vid = sorted(first)[0]
    np.testing.assert_array_equal(cache.read_entry(fbank, vid).features, cache.read_entry(once, vid).features)
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
    entry = cache.read_entry(folders(work)["visual-hog"], emi_key(corrupt))
    assert entry.missing and entry.features.shape == (0, 800)
    assert "missing entries" in capsys.readouterr().out
    # --strict: the first failure is an error naming the video.
    code = features.main(args[:4] + ["--work", str(tmp_path / "strict"), "--strict", "--visual", "hog", "--audio", "none",
                                     "--text", "none", "--organizer", "none"])
    assert code == 1 and emi_key(corrupt) in capsys.readouterr().err
    # --retry-failed tries again once the file is fixed.
    shutil.copy(emi_data / "raw" / f"{emi_key(corrupt)}.mp4", release.path("video", corrupt))
    assert features.main(args + ["--retry-failed"]) == 0
    assert not cache.read_entry(folders(work)["visual-hog"], emi_key(corrupt)).missing


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
    for vid in manifest["entries"]:
        entry = cache.read_entry(hog, vid)
        crops = va_data / "cropped_aligned" / vid
        frames = np.round(entry.times * 10).astype(int) + 1
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
