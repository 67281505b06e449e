"""The preflight check (python -m solution.inspect) and the VA annotations that do not fit:
what a release holds, said in seconds, and every problem named with its file."""
import json
import logging
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from solution import folds, inspect, media
from solution.errors import DataError
from solution.layouts import VaRelease, annotation_tolerance, read_va_annotation
from solution.metrics import score_predictions
from solution.tracks import EMI_TARGETS, VA

REPO = Path(__file__).resolve().parent.parent
CHALLENGE = Path("6th_ABAW_Annotations") / "VA_Estimation_Challenge"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    """No TEST_LISTING or VA_ANNOTATION_FIT from the caller's shell; what a test sets is undone."""
    monkeypatch.setenv("TEST_LISTING", "")
    monkeypatch.delenv("VA_ANNOTATION_FIT", raising=False)
    return monkeypatch


def run(capsys, *argv) -> tuple[int, str]:
    capsys.readouterr()
    code = inspect.main([str(a) for a in argv])
    return code, capsys.readouterr().out


def copy(release: Path, dest: Path) -> Path:
    shutil.copytree(release, dest)
    return dest


def labelled_va(data: Path) -> dict[str, Path]:
    """{video: annotation file} of the release's train and valid splits."""
    return {p.stem: p for split in ("Train_Set", "Validation_Set") for p in sorted((data / CHALLENGE / split).glob("*.txt"))}


def cut(path: Path, keep: int) -> None:
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:1 + keep]) + "\n")


def unannotate(path: Path) -> None:
    lines = path.read_text().splitlines()
    path.write_text("valence,arousal\n" + "-5,-5\n" * (len(lines) - 1))


# ---------------------------------------------------------------- the summary of a good release

def test_emi_summary_says_what_the_release_holds(emi_data, capsys):
    code, out = run(capsys, emi_data, "--folds", "2")
    assert code == 0, out
    train = pd.read_csv(emi_data / "train_split.csv", dtype=str)
    valid = pd.read_csv(emi_data / "valid_split.csv", dtype=str)
    test = pd.read_csv(emi_data / "test_split.csv", dtype=str)
    assert "EMI release (Hume-Vidmimic2 layout)" in out
    assert re.search(rf"train +{len(train)} videos \(train_split.csv\)", out)
    assert re.search(rf"valid +{len(valid)} videos \(valid_split.csv\)", out) and re.search(rf"test +{len(test)} videos", out)
    assert "test listing  test_split.csv (found at the release root)" in out
    every = {int(v) for v in [*train.Filename, *valid.Filename, *test.Filename]}
    transcripts = {int(p.stem) for p in (emi_data / "transcripts").iterdir()}
    missing = len(every - transcripts)
    assert missing > 0, "the demo release has videos without a transcript"
    assert f"transcripts {len(every) - missing} present, {missing} missing" in out
    # Organizer features: the width of the first pickle of each folder.
    first = sorted((emi_data / "vit").glob("*.pkl"))[0]
    with open(first, "rb") as handle:
        width = np.asarray(__import__("pickle").load(handle)).shape[-1]
    assert f"width {width} (read vit/{first.name})" in out
    # A missing transcript is a warning (the text is marked missing), never an error.
    assert "0 error(s)" in out and f"warning {emi_data / 'transcripts'}: {missing} of {len(every)}" in out
    assert out.rstrip().endswith("[inspect] ok: nothing here stops a later stage")

    code, out = run(capsys, emi_data, "--json")
    facts = json.loads(out)
    assert code == 0 and facts["ok"] and facts["track"] == "emi"
    assert facts["splits"]["train"]["videos"] == len(train) and facts["splits"]["test"]["videos"] == len(test)
    assert facts["organizer"]["vit"]["width"] == width and facts["media"]["transcripts"]["missing"] == missing
    assert facts["test_listing"]["file"] == str(emi_data / "test_split.csv")


def test_va_summary_holds_each_video_against_its_annotation(va_data, capsys):
    code, out = run(capsys, va_data, "--track", "va", "--folds", "2")
    assert code == 0, out
    assert "VA release (Aff-Wild2 layout)" in out and f"annotations   {CHALLENGE}" in out
    assert f"test listing  {CHALLENGE / 'test_set.csv'} (found beside the annotations; frame counts from the listing)" in out
    code, out = run(capsys, va_data, "--json")
    facts = json.loads(out)
    rows = {r["video"]: r for r in facts["videos"]}
    annotations = labelled_va(va_data)
    listing = pd.read_csv(va_data / CHALLENGE / "test_set.csv", dtype={"video": str})
    assert set(rows) == set(annotations) | set(listing.video)
    for video, path in annotations.items():
        values = read_va_annotation(path)
        info = media.video_info(va_data / "batch1" / f"{video}.mp4")
        assert rows[video]["lines"] == len(values) and rows[video]["frames"] == info["frames"]
        assert rows[video]["annotated"] == int((values[:, 0] != -5).sum()) and rows[video]["status"] == "ok"
    for video, frames in zip(listing.video, listing.frames):
        assert rows[video]["split"] == "test" and rows[video]["listed"] == frames
    assert facts["splits"]["test"]["videos"] == len(listing) and facts["media"]["video"]["missing"] == 0
    assert facts["media"]["crops"]["present"] == len(rows) and facts["problems"] == []


# ---------------------------------------------------------------- broken releases exit 2 naming the file

def test_broken_va_release_exits_2_naming_each_file(va_data, tmp_path, capsys, clean_env):
    data = copy(va_data, tmp_path / "va")
    annotations = labelled_va(data)
    short, gone, empty = sorted(annotations)[:3]
    frames = media.video_info(data / "batch1" / f"{short}.mp4")["frames"]
    kept = int(frames * 0.6)  # 40 % fewer lines than the video has frames
    cut(annotations[short], kept)
    (data / "batch1" / f"{gone}.mp4").unlink()
    unannotate(annotations[empty])
    code, out = run(capsys, data)
    assert code == 2, out
    problems = json.loads(run(capsys, data, "--json")[1])["problems"]
    by_file = {p["file"]: p for p in problems}
    misfit = by_file[str(annotations[short])]
    assert misfit["level"] == "error" and f"{kept} annotation lines" in misfit["problem"]
    assert f"has {frames} frames" in misfit["problem"] and "VA_ANNOTATION_FIT=fit" in misfit["problem"]
    assert by_file[str(annotations[gone])]["level"] == "error" and "no video file" in by_file[str(annotations[gone])]["problem"]
    assert by_file[str(annotations[empty])]["level"] == "warning"
    assert "left out of training" in by_file[str(annotations[empty])]["problem"]
    assert f"error   {annotations[short]}: {kept} annotation lines" in out and "does not fit its video" in out
    assert "2 error(s)" in out and "exit status 2" in out

    # Accepted, the misfit is a warning saying what was done; the missing video is still an error.
    clean_env.setenv("VA_ANNOTATION_FIT", "fit")
    code, out = run(capsys, data, "--json")
    problems = json.loads(out)["problems"]
    assert code == 2 and sum(p["level"] == "error" for p in problems) == 1
    fitted = next(p for p in problems if p["file"] == str(annotations[short]))
    assert fitted["level"] == "warning" and "padded with -5 lines" in fitted["problem"]


def test_broken_emi_csv_columns_exit_2_naming_the_file(emi_data, tmp_path, capsys):
    data = copy(emi_data, tmp_path / "emi")
    train = (data / "train_split.csv").read_text().replace("Admiration", "Admiraton", 1)
    (data / "train_split.csv").write_text(train)
    code, out = run(capsys, data)
    assert code == 2, out
    assert f"error   {data / 'train_split.csv'}: " in out and "missing column(s) ['Admiration']" in out


def test_va_without_a_test_listing_and_with_the_wrong_track(va_data, tmp_path, capsys):
    data = copy(va_data, tmp_path / "va")
    (data / CHALLENGE / "test_set.csv").unlink()
    code, out = run(capsys, data)
    assert code == 2 and "no VA test listing found" in out and "test_set_release.txt" in out
    code, out = run(capsys, va_data, "--track", "emi")
    assert code == 2 and "--track emi, but the folder looks like a VA release" in out
    code, out = run(capsys, tmp_path / "nowhere")
    assert code == 2 and "data folder not found" in out


def test_missing_crops_are_a_warning_and_too_few_groups_an_error(va_data, tmp_path, capsys):
    data = copy(va_data, tmp_path / "va")
    video = sorted(labelled_va(data))[0]
    shutil.rmtree(data / "cropped_aligned" / video)
    code, out = run(capsys, data)
    assert code == 0 and "no crops folder for 1 of" in out and f"({video})" in out
    code, out = run(capsys, data, "--folds", "50")
    assert code == 2 and "for 50 folds: use fewer folds" in out


def test_preflight_imports_no_model_and_takes_seconds(va_data):
    probe = ("import sys, time; t = time.time(); from solution import inspect; code = inspect.main([sys.argv[1]]); "
             "print('took', time.time() - t); print('heavy', sorted(m for m in ('torch', 'transformers', 'timm', "
             "'sklearn', 'facenet_pytorch') if m in sys.modules)); sys.exit(code)")
    done = subprocess.run([sys.executable, "-c", probe, str(va_data)], capture_output=True, text=True, timeout=120,
                          cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "heavy []" in done.stdout
    assert float(done.stdout.split("took ")[1].split()[0]) < 30  # seconds on a busy machine; about 1 s idle


def test_run_all_stops_at_the_preflight(va_data, tmp_path):
    data = copy(va_data, tmp_path / "va")
    short = sorted(labelled_va(data).items())[0][1]
    cut(short, 10)
    env = {**os.environ, "TRACK": "va", "DATA_DIR": str(data), "WORK_DIR": str(tmp_path / "work"),
           "SUBMISSIONS_DIR": str(tmp_path / "subs"), "FOLDS": "2"}
    done = subprocess.run(["bash", str(REPO / "run_all.sh")], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 2, done.stdout[-3000:] + done.stderr[-3000:]
    assert "== 2/8 preflight check" in done.stdout and "== 3/8" not in done.stdout
    assert f"error   {short}: 10 annotation lines" in done.stdout
    assert not (tmp_path / "work" / "features").exists()


# ---------------------------------------------------------------- the annotations that do not fit, in the readers

def test_annotation_that_does_not_fit_its_video(va_data, tmp_path, caplog):
    data = copy(va_data, tmp_path / "va")
    annotations = labelled_va(data)
    video, near = sorted(annotations)[:2]
    frames = media.video_info(data / "batch1" / f"{video}.mp4")["frames"]
    cut(annotations[video], frames // 2)
    near_frames = media.video_info(data / "batch1" / f"{near}.mp4")["frames"]
    assert annotation_tolerance(near_frames) >= 5
    cut(annotations[near], near_frames - 3)  # within the tolerance: taken as it is
    release = VaRelease(data)
    with pytest.raises(DataError) as info:
        release.video_targets(video)
    message = str(info.value)
    assert message.startswith(f"{annotations[video]}: {frames // 2} annotation lines")
    assert f"has {frames} frames" in message and "VA_ANNOTATION_FIT=fit" in message and "VA_ANNOTATION_FIT=drop" in message
    assert len(release.video_targets(near)) == near_frames - 3
    with pytest.raises(DataError, match=str(annotations[video])):  # the folds stage reads every annotation
        folds.make_folds(data, k=2)

    with caplog.at_level(logging.WARNING, logger="layouts"):
        fitted = VaRelease(data, annotation_fit="fit")
        target = fitted.video_targets(video)
    assert target.shape == (frames, 2) and (target[frames // 2:] == -5).all()
    np.testing.assert_array_equal(target[:frames // 2], read_va_annotation(annotations[video]))
    assert f"{annotations[video]}: {frames // 2} annotation lines" in caplog.text and "padded" in caplog.text
    assert list(fitted.fitted()) == [video]

    dropped = VaRelease(data, annotation_fit="drop")
    assert video not in dropped.labelled_keys() and near in dropped.labelled_keys()
    assert "VA_ANNOTATION_FIT=drop" in dropped.left_out()[video]
    with pytest.raises(DataError, match="left out of training"):
        dropped.video_targets(video)
    with pytest.raises(DataError, match="VA_ANNOTATION_FIT='bogus': choose one of error"):
        VaRelease(data, annotation_fit="bogus")


def test_video_without_an_annotated_frame_is_left_out_and_named(va_data, tmp_path, caplog, capsys):
    data = copy(va_data, tmp_path / "va")
    annotations = labelled_va(data)
    video = sorted(annotations)[0]
    unannotate(annotations[video])
    with caplog.at_level(logging.WARNING, logger="layouts"):
        release = VaRelease(data)
        keys = release.labelled_keys()
    assert video not in keys and len(keys) == len(annotations) - 1
    assert f"{annotations[video]}: no annotated frame" in caplog.text and f"video {video} is left out" in caplog.text
    work = tmp_path / "work"
    assert folds.main(["--data", str(data), "--work", str(work), "--k", "2"]) == 0
    info = json.loads(next(work.glob("va-*/folds.json")).read_text())
    assert list(info["left_out"]) == [video] and "no annotated frame" in info["left_out"][video]
    table = pd.read_csv(next(work.glob("va-*/folds.csv")), dtype=str)
    assert video not in set(table.id)


def test_no_fold_is_left_without_annotated_frames(va_data, tmp_path):
    data = copy(va_data, tmp_path / "va")
    for path in (data / CHALLENGE / "Validation_Set").glob("*.txt"):
        unannotate(path)  # the official scheme's one fold (the valid split) holds nothing to score
    with pytest.raises(DataError, match=r"fold 0 would hold 0 annotated frame\(s\) to score, in 0 video"):
        folds.make_folds(data, k=1, scheme="official")
    table = pd.DataFrame({"id": ["a", "b", "c"], "fold": [0, 1, 1]})
    with pytest.raises(DataError, match=r"fold 0 would hold 1 annotated frame\(s\) to score, in 1 video\(s\) "
                                        r"\(annotated frames in brackets\): a \(1\)"):
        folds.check_fold_frames(table, {"a": 1, "b": 40, "c": 9}, 2, "use fewer folds (--k)")
    folds.check_fold_frames(table, {"a": 2, "b": 40, "c": 9}, 2, "use fewer folds (--k)")


def test_too_few_samples_to_correlate_names_the_fold_and_the_videos():
    targets = {"vid-a": np.array([[-5, -5], [0.2, 0.1], [-5, -5]], np.float32),
               "vid-b": np.full((4, 2), -5, np.float32)}
    predictions = {k: np.zeros_like(v) for k, v in targets.items()}
    with pytest.raises(DataError) as info:
        score_predictions(VA, predictions, targets, context="linear fold 1, held-out videos")
    message = str(info.value)
    assert message.startswith("linear fold 1, held-out videos: need at least 2 samples to correlate, got 1")
    assert "vid-a (1 of 3)" in message and "vid-b (0 of 4)" in message
    with pytest.raises(DataError, match="need at least 2 samples to correlate, got 0: no video"):
        score_predictions(VA, {}, {})


@pytest.mark.parametrize("body", ["valence,arousal\n0.1, 0.2\n\n-5,-5\n 0.3 ,-0.4\n", "valence, arousal\n1e-1,2E-1\n"])
def test_annotation_reader_fast_path_reads_what_the_slow_one_did(tmp_path, body):
    path = tmp_path / "v.txt"
    path.write_text(body)
    rows = [line for line in body.splitlines()[1:] if line.strip()]
    expected = np.array([[float(x) for x in line.split(",")] for line in rows], np.float32)
    np.testing.assert_array_equal(read_va_annotation(path), expected)


def test_emi_targets_are_untouched(emi_data):
    """The EMI reader has nothing left out or fitted: one label a video."""
    from solution.layouts import EmiRelease

    release = EmiRelease(emi_data)
    assert release.left_out() == {} and release.fitted() == {}
    assert len(release.labelled_keys()) == len(release.labelled()) and EMI_TARGETS


def test_report_lists_the_labels_not_taken_as_they_are():
    from solution.report import summary_annotations

    assert summary_annotations(None) == []
    lines = summary_annotations({"left_out": {"v1": "a/v1.txt: no annotated frame (every line is -5,-5)"},
                                 "fitted": {}})
    assert "## Labels not taken as they are" in lines and "Left out of training and of the folds: 1 video(s)." in lines
    assert "- v1: a/v1.txt: no annotated frame (every line is -5,-5)" in lines and not any("Fitted" in x for x in lines)
