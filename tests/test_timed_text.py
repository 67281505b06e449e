"""Word-timed transcripts end to end: ASR JSON parsed (and refused, naming the file), one
cache row per word with its span, the ASR path that asks for word times (and its text held on
a frame-level track's label frames), and the generator's timed transcripts. Plain transcripts
stay one vector. How the store holds words on the time grid, masks the gaps and keeps text
aligned in crops and chunks: tests/test_data.py."""
import json

import numpy as np
import pandas as pd
import pytest
import torch

from solution import cache, extraction, features, synth
from solution.cache import Entry
from solution.config import TrainConfig
from solution.data import Normalizer, VideoStore, collate, prediction_pieces
from solution.errors import DataError
from solution.extractors import AsrTranscriber, asr_transcript
from solution.layouts import (EmiRelease, open_release, parse_transcript, read_transcript,
                              release_videos)

from conftest import TINY, expected_on_grid, sources, text_entry, text_folder


# ------------------------------------------------------------------ the formats

def test_parses_the_pipeline_and_the_words_forms(tmp_path):
    pipeline = {"text": " Hello there, friend.", "chunks": [
        {"text": " Hello", "timestamp": [0.0, 0.42]}, {"text": " there,", "timestamp": (0.42, 0.8)},
        {"text": " ", "timestamp": [0.8, 0.9]}, {"text": " friend.", "timestamp": [1.5, 2.25]}]}
    words = {"words": [{"word": "friend.", "start": 1.5, "end": 2.25, "probability": 0.9},
                       {"word": "Hello", "start": 0, "end": 0.42}, {"word": "there,", "start": 0.42, "end": 0.8}]}
    for name, obj in (("a.json", pipeline), ("b.json", words)):
        (tmp_path / name).write_text(json.dumps(obj))
        t = read_transcript(tmp_path / name)
        assert t.timed and t.words == ["Hello", "there,", "friend."]        # sorted by start, blank dropped
        np.testing.assert_allclose(t.starts, [0.0, 0.42, 1.5])
        np.testing.assert_allclose(t.ends, [0.42, 0.8, 2.25])
    assert read_transcript(tmp_path / "a.json").text == "Hello there, friend."
    assert read_transcript(tmp_path / "b.json").text == "Hello there, friend."  # no "text": the words joined
    # whisperX / faster-whisper segments: their words, or the segment itself when it has none.
    segments = {"segments": [{"start": 0.0, "end": 1.0, "text": "a b", "words": [
        {"word": "a", "start": 0.1, "end": 0.3}, {"word": "b", "start": 0.5, "end": 0.9}]},
        {"start": 2.0, "end": 3.5, "text": " no word times here"}]}
    t = parse_transcript(segments, "seg.json")
    assert t.words == ["a", "b", "no word times here"] and t.ends[-1] == 3.5
    assert parse_transcript([{"word": "x", "start": 1, "end": 2}], "list.json").words == ["x"]
    # Text alone (Whisper without timestamps) and a .txt: no times, one vector as always.
    plain = parse_transcript({"text": " just text "}, "plain.json")
    assert not plain.timed and plain.text == "just text"
    (tmp_path / "c.txt").write_text("plain words\n")
    assert not read_transcript(tmp_path / "c.txt").timed
    # Silence: no words at all is an empty transcript, not an error.
    empty = parse_transcript({"text": "", "chunks": []}, "silent.json")
    assert empty.timed and not empty.words and not empty.text
    # What the ASR path and the generator write reads back the same, in both forms.
    for form in ("chunks", "words"):
        again = parse_transcript(json.loads(json.dumps(read_transcript(tmp_path / "a.json").to_json(form))), form)
        assert again.words == ["Hello", "there,", "friend."] and np.allclose(again.starts, [0, 0.42, 1.5])


@pytest.mark.parametrize("content,problem", [
    ('{"text": "a", "chunks": [{"text": "a", "timestamp": [0.1, 0.4]}', "not valid JSON"),
    ('{"chunks": [{"text": "a"}]}', "word 0 ('a') has no times"),
    ('{"chunks": [{"text": "a", "timestamp": [0.5, null]}]}', "end is None, not a number"),
    ('{"words": [{"word": "a", "start": 0.9, "end": 0.4}]}', "end 0.4 is before start 0.9"),
    ('{"words": [{"word": "a", "start": NaN, "end": 0.4}]}', "start is nan"),
    ('{"words": [{"word": "a", "start": -1, "end": 0.4}]}', "start is negative"),
    ('{"words": [{"word": "a", "start": "0.1", "end": 0.4}]}', "not a number of seconds"),
    ('{"chunks": [{"text": "a", "timestamp": [0.1]}]}', "timestamp must be [start, end]"),
    ('{"chunks": [{"timestamp": [0.1, 0.2]}]}', "word 0 has no 'text' or 'word' string"),
    ('{"text": "hello", "chunks": []}', "has text but no timed word"),
    ('{"transcription": "hello"}', "no 'chunks', 'words', 'segments' or 'text'"),
    ('"hello"', "must be an object or a list"),
])
def test_bad_json_is_refused_naming_the_file(tmp_path, content, problem):
    path = tmp_path / "00042.json"
    path.write_text(content)
    with pytest.raises(DataError) as error:
        read_transcript(path)
    assert str(error.value).startswith(str(path)) and problem in str(error.value)


# ------------------------------------------------------------------ the cache

def test_a_timed_entry_round_trips_and_old_entries_still_read(tmp_path):
    rng = np.random.default_rng(0)
    timed = Entry(rng.normal(size=(4, 3)).astype(np.float32), np.array([0.0, 0.5, 0.9, 2.0], np.float32),
                  np.ones(4, np.float32), {"words": 4.0, "from_asr": 0.0, "missing": 0.0}, None, source="x.json",
                  ends=np.array([0.4, 0.9, 1.3, 2.2], np.float32))
    cache.write_entry(tmp_path, "00001", "a" * 12, timed)
    back = cache.read_entry(tmp_path, "00001", "a" * 12)
    assert back.timed and back.quality == timed.quality and back.source == "x.json"
    for name in ("features", "times", "ends", "frame_quality"):
        np.testing.assert_array_equal(getattr(back, name), getattr(timed, name))
    # A plain entry has no ends; neither has one written by version 2 (before spans existed).
    cache.write_entry(tmp_path, "00002", "b" * 12, Entry(np.ones((1, 3), np.float32), np.zeros(1, np.float32),
                                                         np.ones(1, np.float32), {"words": 2.0}, None))
    with open(cache.entry_path(tmp_path, "00003", "c" * 12), "wb") as handle:
        np.savez(handle, features=np.ones((1, 3), np.float32), times=np.zeros(1, np.float32),
                 frame_quality=np.ones(1, np.float32),
                 meta=np.array(json.dumps({"quality": {}, "fps": None, "source": "", "version": 2})))
    for vid, key in (("00002", "b" * 12), ("00003", "c" * 12)):
        old = cache.read_entry(tmp_path, vid, key)
        assert old.ends is None and not old.timed and old.features.shape == (1, 3)
    manifest = cache.write_manifest(tmp_path, {"extractor": "minilm", "modality": "text"})
    assert manifest["entries"][f"00001.{'a' * 12}"]["timed"] is True
    assert "timed" not in manifest["entries"][f"00002.{'b' * 12}"] and manifest["dim"] == 3
    with pytest.raises(ValueError, match="3 span ends for 4 rows"):
        cache.write_entry(tmp_path, "00004", "d" * 12, Entry(timed.features, timed.times, timed.frame_quality,
                                                             ends=timed.ends[:3]))


# ------------------------------------------------------------------ a tiny release, end to end

def test_the_generator_writes_timed_transcripts(timed_release, tmp_path):
    data, _ = timed_release
    meta = EmiRelease(data).metadata()
    timed = {f"{v:05d}" for v in meta.index[meta.transcript_timed.astype(str) == "True"]}
    assert timed and len(timed) < (meta.transcript == "ok").sum()  # both kinds, so mixing is tested
    forms = set()
    for src in sources(data).values():
        if src.vid in timed:
            assert src.transcript.suffix == ".json" and not (data / "transcripts" / f"{src.vid}.txt").exists()
            obj = json.loads(src.transcript.read_text())
            forms |= {"chunks", "words"} & set(obj)
            t = read_transcript(src.transcript)
            seconds = float(meta.loc[int(src.vid), "seconds"])
            assert t.timed and len(t.words) >= 3 and t.starts[0] >= 0 and t.ends[-1] <= seconds
            assert np.all(t.starts[1:] >= t.ends[:-1])             # words do not overlap
        elif src.transcript is not None:
            assert src.transcript.suffix == ".txt"
    assert forms, "no timed transcript was written"
    # Emotion words are spoken inside their emotion's burst; fillers anywhere.
    timing = np.array([[0.5, 0.4, 1.0, 0.5], [4.0, 0.3, 0.6, 0.4]])
    words = [("funny", 1)] * 3 + [("the", -1)] * 4 + [("amazing", 0)] * 2
    t = synth.timed_words(words, timing, 8.0, np.random.default_rng(0))
    middles = (t.starts + t.ends) / 2
    for word, low, high in (("amazing", 0.7, 2.15), ("funny", 4.15, 5.5)):
        inside = [low - 0.5 <= m <= high + 0.5 for w, m in zip(t.words, middles) if w == word]
        assert inside and all(inside), (word, middles)
    # The default writes no JSON and no new column: the demo is unchanged.
    plain = tmp_path / "plain"
    synth.generate("emi", plain, seed=3, **TINY)
    assert not list((plain / "transcripts").glob("*.json"))
    assert "transcript_timed" not in pd.read_csv(plain / "metadata.csv").columns
    assert "timed_transcripts" not in json.loads((plain / "synth_config.json").read_text())["config"]


def test_features_write_one_row_per_word(timed_release):
    data, work = timed_release
    srcs = sources(data)
    checked = 0
    for src in srcs.values():
        if src.transcript is None:
            continue
        entry = text_entry(work, src)
        t = read_transcript(src.transcript)
        if t.timed:
            assert entry.features.shape == (len(t.words), 384) and entry.timed
            np.testing.assert_allclose(entry.times, t.starts, atol=1e-6)
            np.testing.assert_allclose(entry.ends, t.ends, atol=1e-6)
            assert entry.quality == {"words": float(len(t.text.split())), "from_asr": 0.0, "missing": 0.0}
            assert entry.source == str(src.transcript)
            checked += 1
        else:
            assert entry.features.shape == (1, 384) and entry.ends is None
    assert checked
    manifest = cache.read_manifest(text_folder(work))
    assert sum(bool(e.get("timed")) for e in manifest["entries"].values()) == checked


def test_bad_timed_transcript_is_a_recorded_failure(timed_release, tmp_path, capsys):
    import shutil

    data, _ = timed_release
    copy = tmp_path / "release"
    shutil.copytree(data, copy)
    victim = next(p for p in sorted((copy / "transcripts").glob("*.json")))
    obj = json.loads(victim.read_text())
    items = obj.get("chunks") or obj["words"]
    if "timestamp" in items[1]:
        items[1]["timestamp"] = [items[1]["timestamp"][1], items[1]["timestamp"][0] - 0.05]
    else:
        items[1]["end"] = items[1]["start"] - 0.05
    victim.write_text(json.dumps(obj))
    work = tmp_path / "work"
    args = ["--data", str(copy), "--work", str(work), "--visual", "none", "--audio", "none", "--organizer", "none"]
    assert features.main(args) == 0
    failures = pd.read_csv(work / "features" / "failures.csv", dtype=str).set_index("id").reason
    assert str(victim) in failures[victim.stem] and "is before start" in failures[victim.stem]
    assert features.main(args[:3] + [str(tmp_path / "strict"), "--strict"] + args[4:]) == 1
    assert str(victim) in capsys.readouterr().err


# ------------------------------------------------------------------ ASR with word times

class FakePipeline:
    """Answers like the transformers speech-recognition pipeline with word timestamps: the last
    chunk's end left open, as Whisper does when speech runs to the end of the audio."""

    def __init__(self, refuse_words=False):
        self.calls, self.refuse_words = [], refuse_words

    def __call__(self, inputs, return_timestamps=None):
        self.calls.append(return_timestamps)
        if return_timestamps == "word" and self.refuse_words:
            raise ValueError("no alignment_heads in the generation config")
        seconds = len(inputs["raw"]) / inputs["sampling_rate"]
        if return_timestamps is True:
            return {"text": " so happy today", "chunks": [{"text": " so happy today", "timestamp": (0.0, None)}]}
        return {"text": " so happy today", "chunks": [
            {"text": " so", "timestamp": (0.2, 0.5)}, {"text": " happy", "timestamp": (0.5, 0.3 * seconds)},
            {"text": " today", "timestamp": (0.6 * seconds, None)}]}


def test_asr_asks_for_word_timestamps_and_closes_the_last_word(tmp_path):
    asr = AsrTranscriber(str(tmp_path))
    asr.pipe = FakePipeline()
    t = asr(np.zeros(16000 * 40, np.float32))                 # 40 s: Whisper needs timestamps past 30 s
    assert asr.pipe.calls == ["word"] and t.words == ["so", "happy", "today"]
    np.testing.assert_allclose(t.starts, [0.2, 0.5, 24.0])
    np.testing.assert_allclose(t.ends, [0.5, 12.0, 40.0])      # the open end is the audio's end
    # A model without alignment heads: segment times instead, once said, then kept.
    asr.pipe = FakePipeline(refuse_words=True)
    t = asr(np.zeros(16000 * 3, np.float32))
    assert asr.pipe.calls == ["word", True] and t.words == ["so happy today"] and t.ends[0] == 3.0
    asr(np.zeros(16000, np.float32))
    assert asr.pipe.calls == ["word", True, True]
    assert not asr_transcript({"text": " words only"}, 2.0, "asr").timed
    with pytest.raises(DataError, match="asr: word 0"):
        asr_transcript({"text": "x", "chunks": [{"text": "x", "timestamp": (2.0, 1.0)}]}, 3.0, "asr")


def test_frame_level_text_from_asr_sits_on_the_label_frames(tmp_path, monkeypatch):
    """VA has no transcripts: --asr writes timed ones (and saves them), and the text stream is
    held on the label frames, windows cutting it where they cut the faces."""

    class FakeAsr(AsrTranscriber):
        def __init__(self, folder, device="cpu"):
            super().__init__(folder, device)
            self.pipe = FakePipeline()

    data, work = tmp_path / "va", tmp_path / "work"
    synth.generate("va", data, seed=1, workers=1, videos=5, seconds=4.0, fps=10.0, size=48, other_fps=0, long_seconds=0)
    monkeypatch.setattr(extraction, "AsrTranscriber", FakeAsr)
    assert features.main(["--data", str(data), "--work", str(work), "--visual", "hog", "--audio", "none",
                          "--text", "minilm", "--asr", str(tmp_path), "--workers", "1"]) == 0
    release = open_release("va", data)
    srcs = {s.vid: s for s in release_videos("va", data)}
    spoken = [k for k in srcs if (work / "transcripts" / f"{k}.json").is_file()]
    assert spoken and all((work / "transcripts" / f"{k}.txt").read_text() == "so happy today\n" for k in spoken)
    saved = read_transcript(work / "transcripts" / f"{spoken[0]}.json")
    assert saved.words == ["so", "happy", "today"]
    store = VideoStore.from_cache(work, release, srcs, TrainConfig(window=12, hop=8))
    assert store.text_timed and store.frame_level
    spoken = [k for k in spoken if k in release.labelled_keys()]   # test videos have no label frames here
    assert spoken
    for key in spoken:
        folder = text_folder(work)
        stream = json.loads((folder / "spec.json").read_text())
        entry = cache.read_entry(folder, key, cache.stream_source_key(stream, srcs[key]))
        assert entry.timed and entry.quality["from_asr"] == 1.0
        video = store.load(key, normalise=False)
        frames = len(release.video_targets(key))
        at = np.arange(frames) / release.video_fps(key)
        assert len(video.seqs["text"]) == len(video.seqs["visual"]) == frames
        np.testing.assert_array_equal(video.masks["text"], expected_on_grid(entry, at) >= 0)
        assert video.masks["text"].any() and not video.masks["text"][at < 0.2].any()   # silence, then "so"
        np.testing.assert_array_equal(video.masks["text"][-3:], True)                   # "today" runs to the end
    store.set_normalizer(Normalizer.fit(store, sorted(release.labelled_keys())))
    key = spoken[0]
    whole = store.load(key)
    items = [store.piece(p) for p in prediction_pieces(store, [key])]
    assert len(items) > 1
    batch = collate(items, store.modalities, store.dims, True, store.text_timed)
    assert batch["text"].shape[:2] == batch["visual"].shape[:2] == batch["frame_mask"].shape
    for j, piece in enumerate(prediction_pieces(store, [key])):
        a, b = int(piece.start), int(piece.stop)
        np.testing.assert_array_equal(batch["text"][j, :b - a].numpy(), whole.seqs["text"][a:b])
        np.testing.assert_array_equal(batch["text_mask"][j, :b - a].numpy(), whole.masks["text"][a:b])


def test_hf_text_embeds_many_words_in_batches(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    from solution.extractors import create_extractor

    words = ["[PAD]", "[UNK]", "happy", "sad", "i", "am"]
    tokenizer = Tokenizer(models.WordLevel(vocab={w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="[UNK]", pad_token="[PAD]").save_pretrained(tmp_path)
    BertModel(BertConfig(vocab_size=6, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32)).save_pretrained(tmp_path)
    text = create_extractor(f"hf-text:{tmp_path}", batch_size=2)
    texts = ["i am happy", "sad", "i", "am sad", "happy"]
    many = text.many(texts)
    assert many.shape == (5, 16)
    np.testing.assert_allclose(many, np.concatenate([text(t) for t in texts]), atol=1e-5)


def tiny_whisper(folder):
    """A randomly initialised Whisper of a few thousand weights with a byte-level vocabulary
    and Whisper's special and timestamp tokens, saved like a real one (nothing downloaded)."""
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import (GenerationConfig, WhisperConfig, WhisperFeatureExtractor,
                              WhisperForConditionalGeneration, WhisperTokenizer)

    vocab = {c: i for i, c in enumerate(ByteLevel.alphabet())}
    specials = ["<|endoftext|>", "<|startoftranscript|>", "<|en|>", "<|translate|>", "<|transcribe|>",
                "<|startoflm|>", "<|startofprev|>", "<|nocaptions|>", "<|notimestamps|>"]
    for token in specials + [f"<|{i * 0.02:.2f}|>" for i in range(1501)]:
        vocab[token] = len(vocab)
    ids = {t: vocab[t] for t in specials}
    WhisperTokenizer(vocab=vocab, merges=[], pad_token="<|endoftext|>").save_pretrained(folder)
    ends = dict(decoder_start_token_id=ids["<|startoftranscript|>"], eos_token_id=ids["<|endoftext|>"],
                pad_token_id=ids["<|endoftext|>"], bos_token_id=ids["<|endoftext|>"])
    torch.manual_seed(0)
    model = WhisperForConditionalGeneration(WhisperConfig(
        vocab_size=len(vocab), d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, num_mel_bins=80, **ends))
    model.generation_config = GenerationConfig(
        **ends, no_timestamps_token_id=ids["<|notimestamps|>"], is_multilingual=False, max_initial_timestamp_index=50,
        alignment_heads=[[0, 0], [0, 1]], max_length=40, begin_suppress_tokens=[ids["<|endoftext|>"]])
    model.save_pretrained(folder)
    WhisperFeatureExtractor(feature_size=80).save_pretrained(folder)


@pytest.mark.filterwarnings("ignore")
def test_a_real_whisper_pipeline_gives_timed_words_past_30_seconds(tmp_path):
    """The transformers pipeline itself (a tiny random Whisper: its words are noise, their
    times are real output), on audio longer than Whisper's 30 s window."""
    tiny_whisper(tmp_path)
    asr = AsrTranscriber(str(tmp_path))
    t = asr((0.1 * np.random.default_rng(0).normal(size=16000 * 45)).astype(np.float32))
    assert asr.timestamps == "word" and t.timed and t.words and t.text
    assert np.all(np.isfinite(t.ends)) and np.all(t.ends >= t.starts) and t.ends.max() > 30.0
