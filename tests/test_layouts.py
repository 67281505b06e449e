"""The readers accept the real release's variants and name the file and problem otherwise."""
import pickle
import shutil

import numpy as np
import pytest

from solution import media
from solution.layouts import (DataError, EmiRelease, VaRelease, load_feature_pickle, read_emi_labels,
                              read_id_list, read_va_annotation, read_va_test_listing)
from solution.tracks import EMI_TARGETS

HEADER = "Filename," + ",".join(EMI_TARGETS)


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_labels_accept_padded_and_unpadded_ids(tmp_path):
    path = write(tmp_path / "l.csv", f"{HEADER}\n00012,0,0.5,1,0.2,0.3,0.4\n7,0.1,0.1,0.1,0.1,0.1,0.1\n")
    labels = read_emi_labels(path)
    assert labels.index.tolist() == [12, 7]
    assert labels.loc[12, "Empathic Pain"] == pytest.approx(0.2)


@pytest.mark.parametrize("body, message", [
    ("Filename,Admiration,Amusement\n1,0.1,0.2\n", r"missing column\(s\) \['Determination'"),
    (f"{HEADER}\n1,0,0,0,0,0,0\n01,0,0,0,0,0,0\n", r"duplicate video id\(s\) \[1\]"),
    (f"{HEADER}\n1,0,0,,0,0,0\n", r"NaN or non-numeric value\(s\) on line\(s\) 2 \(first in column 'Determination'"),
    (f"{HEADER}\n1,0,0,nan,0,0,0\n", "NaN"),
    (f"{HEADER}\n1,0,0,1.5,0,0,0\n", r"outside \[0, 1\] on line\(s\) 2"),
    (f"{HEADER}\nabc,0,0,0,0,0,0\n", "not video ids on line"),
    ("", "cannot parse"),
])
def test_bad_label_files_name_the_file_and_problem(tmp_path, body, message):
    path = write(tmp_path / "bad.csv", body)
    with pytest.raises(DataError, match=message) as info:
        read_emi_labels(path)
    assert str(path) in str(info.value)


def test_missing_label_file(tmp_path):
    with pytest.raises(DataError, match="nope.csv: EMI label file not found"):
        read_emi_labels(tmp_path / "nope.csv")


@pytest.mark.parametrize("payload", [
    np.ones((5, 3), np.float64), [[1.0, 2.0, 3.0]] * 5, {"features": np.ones((5, 3))}, np.ones((1, 5, 3)),
])
def test_feature_pickle_variants(tmp_path, payload):
    path = tmp_path / "00001.pkl"
    path.write_bytes(pickle.dumps(payload))
    array = load_feature_pickle(path)
    assert array.dtype == np.float32 and array.shape in {(5, 3)}


@pytest.mark.parametrize("payload, message", [
    (np.ones((2, 3, 4)), r"expected a \(frames x dim\) array, got shape \(2, 3, 4\)"),
    (np.zeros((0, 8)), "got shape"),
    (np.array([[1.0, np.nan], [0, 0]]), r"NaN or inf in 1 of 2 frame\(s\)"),
    ({"a": np.ones(3), "b": np.ones(3)}, "dict with keys"),
    ("text", "numeric array"),
])
def test_bad_feature_pickles(tmp_path, payload, message):
    path = tmp_path / "00002.pkl"
    path.write_bytes(pickle.dumps(payload))
    with pytest.raises(DataError, match=message) as info:
        load_feature_pickle(path)
    assert "00002.pkl" in str(info.value)


def test_truncated_pickle(tmp_path):
    path = tmp_path / "00003.pkl"
    path.write_bytes(pickle.dumps(np.ones((4, 4)))[:30])
    with pytest.raises(DataError, match="00003.pkl: unreadable pickle"):
        load_feature_pickle(path)


def test_release_finds_wav_unpadded_and_test_ids_without_listing(emi_data, tmp_path):
    copy = tmp_path / "release"
    shutil.copytree(emi_data, copy)
    release = EmiRelease(copy)
    test_ids = release.test_ids()
    first = test_ids[0]
    # A user's release: unpadded names, .wav audio, no test listing.
    audio = release.path("audio", first)
    if audio is not None:
        samples = media.read_audio(audio)
        audio.unlink()
        media.write_audio(copy / "audio" / f"{first}.wav", samples)
    (copy / "raw" / f"{first:05d}.mp4").rename(copy / "raw" / f"{first}.mp4")
    (copy / "test_split.csv").unlink()
    fresh = EmiRelease(copy)
    assert fresh.test_ids() == test_ids
    assert fresh.path("video", first).name == f"{first}.mp4"
    if audio is not None:
        assert fresh.path("audio", first).suffix == ".wav"
        assert len(media.read_audio(fresh.path("audio", first))) == len(samples)


def test_release_errors(emi_data, tmp_path):
    with pytest.raises(DataError, match="data folder not found"):
        EmiRelease(tmp_path / "missing")
    copy = tmp_path / "dup"
    shutil.copytree(emi_data, copy)
    video = sorted((copy / "raw").glob("*.mp4"))[0]
    shutil.copy(video, video.with_name(video.name.lstrip("0")))
    with pytest.raises(DataError, match="two files for video id"):
        EmiRelease(copy).files
    # An id in both train and valid.
    train = (copy / "train_split.csv").read_text().splitlines()
    write(copy / "valid_split.csv", "\n".join([train[0], train[1]]) + "\n")
    with pytest.raises(DataError, match="in both train_split.csv and valid_split.csv"):
        EmiRelease(copy).labelled()
    with pytest.raises(DataError, match="no vit file for video id 99999"):
        EmiRelease(emi_data).load_feature("vit", 99999)


def test_id_list_forms(tmp_path):
    assert read_id_list(write(tmp_path / "a.csv", "Filename\n00003\n2\n")) == [2, 3]
    assert read_id_list(write(tmp_path / "b.csv", "00005\n00004\n")) == [4, 5]
    with pytest.raises(DataError, match="needs a 'Filename' column"):
        read_id_list(write(tmp_path / "c.csv", "video,x\na,1\n"))


def test_unreadable_and_missing_media(tmp_path):
    bad = tmp_path / "00001.mp4"
    bad.write_bytes(b"\x00\x01not a video" * 50)
    with pytest.raises(media.MediaError, match="00001.mp4: unreadable media file"):
        media.read_video(bad)
    with pytest.raises(media.MediaError, match="file not found"):
        media.read_audio(tmp_path / "none.mp3")
    silent_video = tmp_path / "v.mp4"
    media.write_video(silent_video, np.zeros((4, 16, 16, 3), np.uint8), 4)
    with pytest.raises(media.MediaError, match="no audio stream"):
        media.read_audio(silent_video)
    empty = tmp_path / "e.mp3"
    empty.write_bytes(b"")
    with pytest.raises(media.MediaError, match="e.mp3: unreadable media file"):
        media.read_audio(empty)


@pytest.mark.parametrize("body, message", [
    ("v,a\n0.1,0.2\n", "first line must be 'valence,arousal'"),
    ("valence,arousal\n", "has no frames"),
    ("valence,arousal\n0.1,1.5\n", r"outside \[-1, 1\].*frame\(s\) \[1\]"),
    ("valence,arousal\n0.1,x\n", "non-numeric"),
    ("valence,arousal\n-5,0.3\n", "mark only one"),
])
def test_bad_va_annotations(tmp_path, body, message):
    path = write(tmp_path / "vid.txt", body)
    with pytest.raises(DataError, match=message) as info:
        read_va_annotation(path)
    assert "vid.txt" in str(info.value)


def test_va_release_and_listing_forms(va_data, tmp_path):
    release = VaRelease(va_data)
    video = release.videos("train")[0]
    assert release.video_path(video).suffix == ".mp4"
    assert release.video_path(video + "_left") == release.video_path(video)
    names_only = write(tmp_path / "names.txt", "\n".join(release.test_frame_counts()) + "\n")
    assert read_va_test_listing(names_only) == dict.fromkeys(release.test_frame_counts())
    # Frame counts then come from the videos themselves.
    assert VaRelease(va_data, test_listing=names_only).test_frame_counts() == release.test_frame_counts()
    with pytest.raises(DataError, match="frame count must be a positive integer"):
        read_va_test_listing(write(tmp_path / "bad.csv", "video,frames\nx,abc\n"))
    with pytest.raises(DataError, match="no VA_Estimation_Challenge annotation folder"):
        VaRelease(tmp_path)
