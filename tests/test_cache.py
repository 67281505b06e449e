"""The cache format: entries keyed by the files they were computed from, failures, manifests."""
import dataclasses
import json
import os

import numpy as np
import pytest

from solution import cache
from solution.cache import Entry
from solution.layouts import VideoSources


def entry(frames: int, dim: int, source: str = "") -> Entry:
    return Entry(np.ones((frames, dim), np.float32), np.arange(frames, dtype=np.float32),
                 np.ones(frames, np.float32), {"missing": 0.0}, 5.0, source=source)


@pytest.fixture
def video(tmp_path):
    """One video's inputs on disk, as a release has them."""
    for name, data in (("raw/00001.mp4", b"video"), ("audio/00001.mp3", b"audio"),
                       ("transcripts/00001.txt", b"hello"), ("vit/00001.pkl", b"vit"),
                       ("wav2vec2/00001.pkl", b"w2v")):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(data)
    return VideoSources("00001", "train", tmp_path / "raw/00001.mp4", tmp_path / "audio/00001.mp3",
                        tmp_path / "transcripts/00001.txt", None,
                        {"vit": tmp_path / "vit/00001.pkl", "wav2vec2": tmp_path / "wav2vec2/00001.pkl"})


def test_source_key_follows_each_streams_inputs(video, tmp_path):
    keys = {m: cache.source_key(video, m) for m in ("visual", "audio", "text")}
    keys["vit"] = cache.source_key(video, "organizer", "vit")
    assert all(len(k) == 12 and int(k, 16) >= 0 for k in keys.values())
    assert keys["vit"] != cache.source_key(video, "organizer", "wav2vec2")
    assert keys == {**{m: cache.source_key(video, m) for m in ("visual", "audio", "text")},
                    "vit": cache.source_key(video, "organizer", "vit")}   # stable

    def changed():
        now = {m: cache.source_key(video, m) for m in ("visual", "audio", "text")}
        now["vit"] = cache.source_key(video, "organizer", "vit")
        return {m for m in now if now[m] != keys[m]}

    # Touching a file changes nothing; rewriting it (same size, other bytes) changes its streams' keys.
    os.utime(video.transcript, ns=(1, 1))
    assert changed() == set()
    video.transcript.write_bytes(b"howdy")
    assert changed() == {"text"}
    keys["text"] = cache.source_key(video, "text")
    # The video feeds the face, the voice (its track) and the organizer streams (the duration).
    video.video.write_bytes(b"another video")
    assert changed() == {"visual", "audio", "vit"}
    keys.update(visual=cache.source_key(video, "visual"), audio=cache.source_key(video, "audio"),
                vit=cache.source_key(video, "organizer", "vit"))
    # The same bytes under the same name elsewhere (a copied release) are the same input;
    # another name, or another id, is another input.
    (tmp_path / "elsewhere").mkdir()
    moved = dataclasses.replace(video, organizer={"vit": tmp_path / "elsewhere" / "00001.pkl"})
    moved.organizer["vit"].write_bytes(video.organizer["vit"].read_bytes())
    assert cache.source_key(moved, "organizer", "vit") == keys["vit"]
    renamed = dataclasses.replace(video, organizer={"vit": tmp_path / "elsewhere" / "copy.pkl"})
    renamed.organizer["vit"].write_bytes(video.organizer["vit"].read_bytes())
    assert cache.source_key(renamed, "organizer", "vit") != keys["vit"]
    assert cache.source_key(dataclasses.replace(video, vid="00002"), "text") != keys["text"]
    # No transcript reads as "none": stable, and not the key of one.
    bare = dataclasses.replace(video, transcript=None)
    assert cache.source_key(bare, "text") == cache.source_key(bare, "text") != keys["text"]
    with pytest.raises(ValueError, match="kind"):
        cache.source_key(video, "organizer")
    with pytest.raises(ValueError, match="unknown stream modality"):
        cache.source_key(video, "face")


def test_large_file_identity_reads_its_ends_only(video, tmp_path):
    """A video's identity hashes its first and last 64 KiB: a change there (a re-encode changes
    the header and the index) is seen; the middle of a long file is not read."""
    size = 4 * cache.SAMPLED_BYTES
    video.video.write_bytes(bytes(size))
    before = cache.source_key(video, "visual")
    for i, (offset, seen) in enumerate(((10, True), (size - 10, True), (size // 2, False))):
        data = bytearray(size)
        data[offset] = 1
        video.video.write_bytes(bytes(data))
        os.utime(video.video, ns=(i + 1, i + 1))  # coarse clocks: writes within one tick share an mtime
        assert (cache.source_key(video, "visual") != before) == seen, offset


def test_identities_recorded_in_the_work_folder(video, tmp_path, monkeypatch):
    """The features stage's record lets a later process key files without reading them; an
    entry for a file that changed since (same mtime put back: ctime differs) is not used, and a
    damaged record is ignored."""
    work = tmp_path / "work"
    key = cache.source_key(video, "text")
    cache.save_identities(work)
    recorded = json.loads(cache.identities_path(work).read_text())
    assert any(k.split("|")[0].endswith("00001.txt") for k in recorded)
    monkeypatch.setattr(cache, "_IDENTITIES", {})
    monkeypatch.setattr(cache, "_LOADED", set())
    cache.load_identities(work)
    assert cache.source_key(video, "text") == key
    mtime = video.transcript.stat().st_mtime_ns
    video.transcript.write_bytes(b"HELLO")                   # same size, other bytes, mtime put back
    os.utime(video.transcript, ns=(mtime, mtime))
    assert cache.source_key(video, "text") != key
    cache.identities_path(work).write_text("[1, 2")
    monkeypatch.setattr(cache, "_LOADED", set())
    cache.load_identities(work)                               # damaged: ignored, nothing raised


def test_crops_folder_by_names_and_end_files_without_statting_every_crop(video, tmp_path):
    crops = tmp_path / "cropped_aligned" / "00001"
    crops.mkdir(parents=True)
    for name in ("00001.jpg", "00002.jpg", "00003.jpg"):
        (crops / name).write_bytes(b"x")
    with_crops = dataclasses.replace(video, crops=crops)
    before, mtime = cache.source_key(with_crops, "visual"), crops.stat().st_mtime_ns
    (crops / "00004.jpg").write_bytes(b"x")
    os.utime(crops, ns=(mtime, mtime))
    assert cache.source_key(with_crops, "visual") != before   # one more crop, even at the same mtime
    before = cache.source_key(with_crops, "visual")
    (crops / "00001.jpg").write_bytes(b"changed")               # the first (or last) crop: looked at
    assert cache.source_key(with_crops, "visual") != before
    before = cache.source_key(with_crops, "visual")
    (crops / "00002.jpg").write_bytes(b"y")                     # a crop in between: not looked at
    assert cache.source_key(with_crops, "visual") == before


def test_entries_failures_and_manifest(tmp_path):
    folder = tmp_path / "features" / "organizer-organizer_vit-0123456789"
    a, b = "aaaaaaaaaaaa", "bbbbbbbbbbbb"
    assert cache.entry_path(folder, "00001", a) == folder / f"00001.{a}.npz"
    assert cache.failure_path(folder, "00001", a) == folder / f"00001.{a}.failed.json"
    assert cache.status(folder, "00001", a) is None
    cache.write_entry(folder, "00001", a, entry(4, 8, "vit/00001.pkl"))
    cache.write_failure(folder, "00001", b, "no vit pickle for this video", {"missing": 1.0})
    cache.write_entry(folder, "00002", a, entry(3, 8))
    assert cache.status(folder, "00001", a) == "ok" and cache.status(folder, "00001", b) == "failed"
    got = cache.read_entry(folder, "00001", a)
    assert got.features.shape == (4, 8) and got.fps == 5.0 and got.source == "vit/00001.pkl" and not got.missing
    (folder / "00003.npz").write_bytes(b"")                      # version 1 layout: ignored
    (folder / "spec.json").write_text(json.dumps({"extractor": "organizer:vit", "modality": "organizer"}))
    manifest = cache.write_manifest(folder, {"extractor": "organizer:vit", "settings": {"x": 1}})
    assert manifest["dim"] == 8 and manifest["version"] == 2 and manifest["settings"] == {"x": 1}
    assert set(manifest["entries"]) == {f"00001.{a}", f"00001.{b}", f"00002.{a}"}
    assert manifest["entries"][f"00001.{b}"] == {"status": "missing", "id": "00001", "key": b,
                                                 "reason": "no vit pickle for this video"}
    missing = cache.read_entry(folder, "00001", b)
    assert missing.missing and missing.features.shape == (0, 8) and missing.reason.startswith("no vit")
    assert cache.read_entry(folder, "00001", b, dim=3).features.shape == (0, 3)
    with pytest.raises(FileNotFoundError, match="00004"):
        cache.read_entry(folder, "00004", a)
    table = cache.write_failures_table(tmp_path)
    assert table.to_dict("records") == [{"id": "00001", "extractor": folder.name,
                                         "reason": "no vit pickle for this video"}]
    # An entry replaces a failure of the same inputs, and the other way round.
    cache.write_entry(folder, "00001", b, entry(2, 8))
    assert cache.status(folder, "00001", b) == "ok" and not cache.failure_path(folder, "00001", b).exists()
    cache.write_failure(folder, "00001", b, "odd width")
    assert cache.status(folder, "00001", b) == "failed" and not cache.entry_path(folder, "00001", b).exists()


def test_failures_table_lists_a_releases_current_failures(video, tmp_path):
    work = tmp_path / "work"
    folder = cache.features_root(work) / "text-minilm-0123456789"
    folder.mkdir(parents=True)
    (folder / "spec.json").write_text(json.dumps({"extractor": "minilm", "modality": "text"}))
    old = cache.source_key(video, "text")
    cache.write_failure(folder, video.vid, old, "empty transcript")
    assert list(cache.write_failures_table(work, [video]).id) == ["00001"]
    video.transcript.write_text("fixed, and longer")            # fixed: the old failure is history
    assert cache.write_failures_table(work, [video]).empty
    assert list(cache.write_failures_table(work).id) == ["00001"]  # without sources: every record
