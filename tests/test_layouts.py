"""The readers accept the real release's variants and name the file and problem otherwise."""
import logging
import pickle
import shutil

import numpy as np
import pytest

from solution import media
from solution.layouts import (DataError, EmiRelease, VaRelease, load_feature_pickle, open_release, read_emi_labels,
                              read_id_list, read_va_annotation, read_va_test_listing, release_videos)
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


# ---------------------------------------------------------------- test listings by the organizers' names

ORGANIZER_LIST = "Valence_Arousal_Estimation_Challenge_test_set_release.txt"
ORGANIZER_SAMPLE = "CVPR_5th_ABAW_VA_test_set_sample.txt"
TEST_VIDEOS = {"7-30-640x360": 6, "video12_left": 5}


def tiny_va(root, test_videos=TEST_VIDEOS, fps=5):
    """An Aff-Wild2-layout release with 3 annotated videos and the test videos' files, and no
    test listing: each test builds the listing in the naming it checks."""
    ann = root / "6th_ABAW_Annotations" / "VA_Estimation_Challenge"
    for folder, names in (("Train_Set", ("1-30-640x360", "2-30-640x360")), ("Validation_Set", ("3-30-640x360",))):
        for name in names:
            write(ann / folder / f"{name}.txt", "valence,arousal\n0.1,0.2\n-0.3,0.4\n0.5,-0.1\n")
    for video, frames in test_videos.items():
        media.write_video(root / "batch1" / f"{video.replace('_left', '')}.mp4", np.zeros((frames, 16, 16, 3), np.uint8), fps)
    return ann


def sample_rows(counts):
    return "image_location,valence,arousal\n" + "".join(
        f"{video}/{frame:05d}.jpg,0,0\n" for video, n in counts.items() for frame in range(1, n + 1))


@pytest.fixture
def no_override(monkeypatch):
    """No $TEST_LISTING from the caller's shell; whatever a test sets is undone after it."""
    monkeypatch.setenv("TEST_LISTING", "")
    return monkeypatch


def test_va_organizers_list_at_the_root_takes_frame_counts_from_the_videos(tmp_path, no_override):
    root = tmp_path / "aff"
    tiny_va(root)
    # The organizers' list: a header line, blank lines; the other challenges' lists beside it are not VA's.
    listing = write(root / ORGANIZER_LIST, "Valence_Arousal_Estimation_Challenge_test_set\n\n"
                    + "\n\n".join(TEST_VIDEOS) + "\n\n")
    write(root / "Expression_Classification_Challenge_test_set_release.txt", "other-video\n")
    write(root / "Action_Unit_Detection_Challenge_test_set_release.txt", "other-video\n")
    write(root / "CVPR_5th_ABAW_EXPR_test_set_sample.txt", sample_rows({"other-video": 3}))
    release = VaRelease(root)
    assert release.test_listing_files == [listing]
    assert release.test_keys() == sorted(TEST_VIDEOS)
    # No sample file: each video's frames counted in the file (`_left` shares its video).
    assert release.test_frame_counts() == TEST_VIDEOS
    sources = {s.vid: s for s in release_videos("va", root) if s.split == "test"}
    assert sorted(sources) == sorted(TEST_VIDEOS) and sources["video12_left"].video.name == "video12.mp4"


def test_va_sample_file_gives_the_frame_counts(tmp_path, no_override):
    root = tmp_path / "aff"
    ann = tiny_va(root)
    counts = {"7-30-640x360": 9, "video12_left": 4}  # not the videos' 6 and 5: the sample file wins
    # The list at the root, the sample beside the annotations (in their parent folder).
    listing = write(root / ORGANIZER_LIST, "\n".join(TEST_VIDEOS) + "\n")
    sample = write(ann.parent / ORGANIZER_SAMPLE, sample_rows(counts))
    release = VaRelease(root)
    assert release.test_listing_files == [listing, sample]
    assert release.test_frame_counts() == counts
    # The sample file alone: names and frame counts.
    listing.unlink()
    alone = VaRelease(root)
    assert alone.test_listing_files == [sample] and alone.test_frame_counts() == counts
    # A list and a sample that disagree: both named.
    write(root / ORGANIZER_LIST, "7-30-640x360\nvideo99\n")
    with pytest.raises(DataError, match=r"only in .*release\.txt, e.g. \['video99'\].*only in .*sample\.txt") as info:
        VaRelease(root).test_frame_counts()
    assert str(root / ORGANIZER_LIST) in str(info.value) and str(sample) in str(info.value)


def test_va_our_csv_still_wins_and_the_override_beats_everything(tmp_path, no_override):
    root = tmp_path / "aff"
    ann = tiny_va(root)
    ours = write(ann / "test_set.csv", "video,frames\n7-30-640x360,3\nvideo12_left,2\n")
    write(root / ORGANIZER_LIST, "\n".join(TEST_VIDEOS) + "\n")
    assert VaRelease(root).test_listing_files == [ours]
    assert VaRelease(root).test_frame_counts() == {"7-30-640x360": 3, "video12_left": 2}
    # $TEST_LISTING, relative to the current folder: read instead of both.
    elsewhere = write(tmp_path / "mine" / "only_one.txt", "video\n7-30-640x360.mp4\n")
    no_override.chdir(tmp_path)
    no_override.setenv("TEST_LISTING", "mine/only_one.txt")
    for release in (VaRelease(root), open_release("va", root)):
        assert release.test_listing_files == [elsewhere]
        assert release.test_frame_counts() == {"7-30-640x360": 6}
    assert [s.vid for s in release_videos("va", root) if s.split == "test"] == ["7-30-640x360"]
    # A folder as the override: its files are looked up by the same names.
    sample = write(tmp_path / "mine" / ORGANIZER_SAMPLE, sample_rows({"video12_left": 7}))
    (tmp_path / "mine" / "only_one.txt").unlink()
    no_override.setenv("TEST_LISTING", str(tmp_path / "mine"))
    assert VaRelease(root).test_listing_files == [sample]
    # The explicit argument beats $TEST_LISTING; an empty $TEST_LISTING is no override.
    assert VaRelease(root, test_listing=ours).test_frame_counts() == {"7-30-640x360": 3, "video12_left": 2}
    no_override.setenv("TEST_LISTING", "")
    assert VaRelease(root).test_listing_files == [ours]


def test_va_no_listing_error_names_every_name_and_place(tmp_path, no_override):
    root = tmp_path / "aff"
    ann = tiny_va(root)
    write(root / "Expression_Classification_Challenge_test_set_release.txt", "other\n")
    release = VaRelease(root)
    assert release.labelled_keys()  # training needs no test listing
    with pytest.raises(DataError, match="no VA test listing found") as info:
        release.test_keys()
    message = str(info.value)
    for place in (ann, ann.parent, root):
        assert str(place) in message
    for name in ("test_set.csv", "*_test_set_release.txt", "*_test_set_sample.txt", "TEST_LISTING", "--test-listing"):
        assert name in message
    # An override that is not there says so, and by whom it was named.
    no_override.setenv("TEST_LISTING", str(tmp_path / "gone.txt"))
    with pytest.raises(DataError, match=r"gone.txt: VA test listing not found \(named by \$TEST_LISTING\)"):
        VaRelease(root).test_frame_counts()
    # Two VA lists in one place: which one is meant is the user's to say.
    no_override.setenv("TEST_LISTING", "")
    write(root / ORGANIZER_LIST, "a\n")
    write(root / "VA_Challenge_test_set_release.txt", "b\n")
    with pytest.raises(DataError, match=r"several VA test listings \(VA_Challenge.*, Valence_.*\); name the one"):
        VaRelease(root).test_keys()


def test_va_listing_forms_by_content(tmp_path):
    names = write(tmp_path / "a.txt", "# the test videos\n1-30-1280x720\n\nvideo59_right\n118-30-640x480_left.avi\n")
    assert read_va_test_listing(names) == dict.fromkeys(["1-30-1280x720", "video59_right", "118-30-640x480_left"])
    assert read_va_test_listing(write(tmp_path / "b.txt", "video_name\nv1\n")) == {"v1": None}
    assert read_va_test_listing(write(tmp_path / "c.csv", "video,frames,fps\nv1,10,30\n")) == {"v1": 10}
    no_header = write(tmp_path / "d.txt", "v1/00001.jpg,0,0\nv1/00002.jpg,0,0\nv2/00001.jpg,0,0\n")
    assert read_va_test_listing(no_header) == {"v1": 2, "v2": 1}
    with pytest.raises(DataError, match=r"line 3: frame v1/00001.jpg listed twice"):
        read_va_test_listing(write(tmp_path / "e.txt", "image_location,valence,arousal\nv1/00001.jpg,,\nv1/00001.jpg,,\n"))
    with pytest.raises(DataError, match=r"line 2: expected an image_location like <video>/00001.jpg, got 'v1'"):
        read_va_test_listing(write(tmp_path / "f.txt", "image_location,valence,arousal\nv1,0,0\n"))
    with pytest.raises(DataError, match=r"g.txt: line 2: video 'v1' listed twice"):
        read_va_test_listing(write(tmp_path / "g.txt", "v1\nv1.mp4\n"))


def test_va_test_only_folder_with_the_organizers_list(tmp_path, no_override):
    """A test set that came later: videos and the organizers' list, no annotation folder."""
    full = tmp_path / "aff"
    tiny_va(full)
    new = tmp_path / "new"
    shutil.copytree(full / "batch1", new / "batch1")
    write(new / ORGANIZER_LIST, "\n".join(TEST_VIDEOS) + "\n")
    release = open_release("va", new)
    assert release.labelled_keys() == {} and release.test_frame_counts() == TEST_VIDEOS
    with pytest.raises(DataError, match="no VA_Estimation_Challenge annotation folder found"):
        VaRelease(tmp_path / "new" / "batch1")


def test_generated_release_renamed_to_the_organizers_names(va_data, tmp_path, no_override):
    """The demo release with its listing in the organizers' files: the same test videos, frames and sources."""
    copy = tmp_path / "release"
    shutil.copytree(va_data, copy, ignore=shutil.ignore_patterns("cropped_aligned"))
    before = VaRelease(copy)
    counts = before.test_frame_counts()
    ours = before.test_listing_files[0]
    ours.unlink()
    write(copy / ORGANIZER_LIST, "\n".join(counts) + "\n")
    write(ours.parent.parent / ORGANIZER_SAMPLE, sample_rows(counts))
    after = VaRelease(copy)
    assert after.test_frame_counts() == counts and after.test_keys() == before.test_keys()
    assert [s.vid for s in release_videos("va", copy) if s.split == "test"] == before.test_keys()
    # A submission is written and validated against the organizers' listing, with no renaming.
    from solution import predict_mean, submit
    from solution.predictions import write_va_single

    write_va_single(tmp_path / "test.txt", predict_mean.predict_va(copy))
    made = submit.make_submission("va", tmp_path / "test.txt", copy, tmp_path / "subs", "organizers")
    assert submit.check_zip(made, copy, "va") == []
    (ours.parent.parent / ORGANIZER_SAMPLE).unlink()
    assert VaRelease(copy).test_frame_counts() == counts  # from the videos: the generator's listing agrees


def test_test_listing_option_exports_the_override(tmp_path, no_override, capsys):
    """--test-listing on a stage sets $TEST_LISTING (absolute) for it and the processes it starts;
    solution.jobs' commands and Slurm scripts export it with $TRACK."""
    import os

    from solution import folds, jobs

    root = tmp_path / "aff"
    tiny_va(root)
    mine = write(tmp_path / "mine.txt", "7-30-640x360\n")
    no_override.chdir(tmp_path)
    assert folds.main(["--data", str(root), "--work", str(tmp_path / "work"), "--k", "2",
                       "--test-listing", "mine.txt"]) == 0
    assert os.environ["TEST_LISTING"] == str(mine)
    assert VaRelease(root).test_keys() == ["7-30-640x360"]
    assert jobs.job_exports("va") == f"export TRACK=va TEST_LISTING={mine}\n"
    # The jobs' commands and scripts carry the track they were planned for, beside the listing.
    capsys.readouterr()
    assert jobs.main(["list", "--data", str(root), "--work", str(tmp_path / "work"), "--models", "linear"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert len(listed) == 2 and all(line.startswith(f"env TRACK=va TEST_LISTING={mine} ") for line in listed)
    script = tmp_path / "folds.sbatch"
    assert jobs.main(["sbatch", "--data", str(root), "--work", str(tmp_path / "work"), "--models", "linear",
                      "--out", str(script)]) == 0
    for written in (script, tmp_path / "folds.gather.sh"):
        assert f"\nexport TRACK=va TEST_LISTING={mine}\n" in written.read_text()
    no_override.setenv("TEST_LISTING", "")
    assert jobs.job_exports("expr") == "export TRACK=expr\n"
    args = jobs._parser().parse_args(["list", "--data", str(root), "--work", "w", "--models", "linear",
                                      "--test-listing", str(tmp_path / "other.txt")])
    assert args.test_listing == tmp_path / "other.txt" and os.environ["TEST_LISTING"] == str(tmp_path / "other.txt")


# ---------------------------------------------------------------- EMI test split, optional metadata

def tiny_emi(root, labelled=(1, 2, 3, 4), unlabelled=(5, 6)):
    rows = [f"{i:05d},0.1,0.2,0.3,0.4,0.5,0.6" for i in labelled]
    write(root / "train_split.csv", HEADER + "\n" + "\n".join(rows[:-1]) + "\n")
    write(root / "valid_split.csv", HEADER + "\n" + rows[-1] + "\n")
    (root / "vit").mkdir(parents=True)
    for i in (*labelled, *unlabelled):
        (root / "vit" / f"{i:05d}.pkl").write_bytes(pickle.dumps(np.ones((3, 4), np.float32)))
    return root


def test_emi_test_split_names_and_override(tmp_path, no_override, caplog):
    root = tiny_emi(tmp_path / "hume")
    caplog.set_level(logging.INFO, logger="layouts")
    assert EmiRelease(root).test_ids() == [5, 6]  # no listing: the ids with features and no label, said so
    assert "test_split.csv, test_split.txt, test_set.csv, test_set.txt" in caplog.text and "TEST_LISTING" in caplog.text
    write(root / "test_split.txt", "id\n\n6\n")  # another name, a header of its own, a blank line
    release = EmiRelease(root)
    assert release.test_csv == "test_split.txt" and release.test_ids() == [6]
    mine = write(tmp_path / "elsewhere" / "ids.csv", "Filename,extra\n00005,x\n")
    no_override.setenv("TEST_LISTING", str(mine))
    assert EmiRelease(root).test_ids() == [5] and open_release("emi", root).test_keys() == ["00005"]
    assert [s.vid for s in release_videos("emi", root) if s.split == "test"] == ["00005"]
    no_override.setenv("TEST_LISTING", str(tmp_path / "gone.csv"))
    with pytest.raises(DataError, match=r"gone.csv: EMI test listing not found \(named by \$TEST_LISTING\)"):
        EmiRelease(root).test_ids()


def test_metadata_without_subject_is_read_for_what_it_has(tmp_path, no_override, caplog):
    from solution.folds import make_folds

    caplog.set_level(logging.INFO, logger="layouts")
    emi = tiny_emi(tmp_path / "hume")
    write(emi / "metadata.csv", "Filename,frames,camera\n00001,30,a\n2,40,b\n")
    release = EmiRelease(emi)
    assert release.subjects() is None
    assert release.metadata().loc[2, "frames"] == "40" and "camera" in release.metadata().columns
    assert "no 'subject' column" in caplog.text and str(emi / "metadata.csv") in caplog.text
    table, info = make_folds(emi, k=2)
    assert info["grouping"] == "video" and len(table) == 4
    # Without the id column there is nothing to index by: ignored, with a warning.
    write(emi / "metadata.csv", "frames,camera\n30,a\n")
    assert EmiRelease(emi).metadata() is None and EmiRelease(emi).subjects() is None
    assert "no 'Filename' column" in caplog.text
    # VA: per recording, as with no metadata.csv at all; unknown columns kept.
    root = tmp_path / "aff"
    tiny_va(root)
    write(root / "metadata.csv", "video,fps,lighting\n1-30-640x360,30,dim\n")
    va = VaRelease(root)
    assert va.subjects() is None and va.metadata().loc["1-30-640x360", "lighting"] == "dim"
    table, info = make_folds(root, k=2)
    assert info["grouping"] == "recording"
    write(root / "metadata.csv", "video,subject,lighting\n1-30-640x360,s1,dim\n2-30-640x360,s1,ok\n3-30-640x360,s2,ok\n")
    assert VaRelease(root).subjects() == {"1-30-640x360": "s1", "2-30-640x360": "s1", "3-30-640x360": "s2"}
