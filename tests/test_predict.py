"""solution.predict: a test set that arrives after training -> the zip a full run would have
submitted, from the saved checkpoints and blend, without retraining."""
import json
import os
import pickle
import shutil
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest

from solution import ensemble, features, folds, predict, streams, submission
from solution.errors import DataError
from solution.layouts import open_release, release_videos
from solution.predictions import prediction_filename, read_predictions
from solution.runs import release_work
from solution.tracks import EMI
from solution.train_fold import main as train_main

REPO = Path(__file__).resolve().parent.parent
FAST = {"linear": ["--set", "seeds=1", "--set", "epochs=3", "--threads", "1"],
        "dual_stage": ["--no-stage1", "--set", "seeds=1", "--set", "epochs=3", "--set", "model.dim=16",
                       "--set", "batch_size=8", "--threads", "1"]}


def _train(data, work, runs, k=2, extra=()):
    assert folds.main(["--data", str(data), "--work", str(work), "--k", str(k)]) == 0
    for run in runs:
        for fold in range(k):
            assert train_main(["--model", run, "--fold", str(fold), "--data", str(data), "--work", str(work),
                               *FAST[run], *extra]) == 0


def _full_zip(data, work, out_dir, runs):
    """What a full run submits: solution.ensemble (fits and saves the blend), then solution.submit."""
    assert ensemble.main(["--data", str(data), "--work", str(work), "--runs", ",".join(runs)]) == 0
    rw = release_work(work, data)
    assert (rw.predictions / "blend.json").is_file()
    return submission.make_submission(rw.track.name, rw.predictions / prediction_filename(rw.track, "test"), data,
                                      out_dir, "full")


@pytest.fixture(scope="module")
def emi_run(emi_data, emi_features, tmp_path_factory):
    """Two folds of linear and dual_stage (no stage 1) on the small release, blended and submitted."""
    root = tmp_path_factory.mktemp("predict_emi")
    work = root / "work"
    shutil.copytree(emi_features / "features", work / "features")
    runs = ["linear", "dual_stage"]
    _train(emi_data, work, runs)
    return {"data": emi_data, "work": work, "root": root, "runs": runs,
            "zip": _full_zip(emi_data, work, root / "subs", runs)}


def copy_test_listing(data: Path, dest: Path) -> Path:
    """The test listing and the test videos' files only, in a new folder (new paths: their
    features must be extracted anew)."""
    ids = [line.split(",")[0] for line in (data / "test_split.csv").read_text().splitlines()[1:] if line]
    dest.mkdir()
    shutil.copy(data / "test_split.csv", dest / "test_split.csv")
    for folder in ("raw", "audio", "transcripts", "vit", "wav2vec2"):
        for vid in ids:
            for path in (data / folder).glob(f"{vid}.*"):
                (dest / folder).mkdir(exist_ok=True)
                shutil.copy(path, dest / folder / path.name)
    return dest


def _predict(run, new, name, *extra):
    return predict.main(["--train-data", str(run["data"]), "--work", str(run["work"]), "--out-dir",
                         str(run["root"] / "subs"), "--name", name, "--threads", "1",
                         *(["--data", str(new)] if new else []), *extra])


def _csv(zip_path) -> str:
    with zipfile.ZipFile(zip_path) as archive:
        return archive.read("predictions.csv").decode()


def _folders(work):
    return sorted(p.name for p in (work / "features").iterdir() if p.is_dir())


def test_a_new_test_listing_gives_the_full_runs_zip(emi_run, tmp_path):
    run = emi_run
    new = copy_test_listing(run["data"], tmp_path / "new")
    before = _folders(run["work"])
    hog = next(run["work"] / "features" / f for f in before if f.startswith("visual-hog"))
    entries = len(list(hog.glob("*.npz")))
    assert _predict(run, new, "later") == 0
    later = run["root"] / "subs" / "later.zip"
    assert submission.check_zip(later, new, "emi") == []
    assert _csv(later) == _csv(run["zip"])
    assert later.read_bytes() == run["zip"].read_bytes()
    # The new folder holds the same files as the release's test videos: their entries, in the
    # very folders the checkpoints were trained on, are found, not extracted again.
    assert _folders(run["work"]) == before
    assert len(list(hog.glob("*.npz"))) == entries
    # Each fold's seed average passed the writer of the trained fold's test.csv: the same bytes.
    rw = release_work(run["work"], run["data"])
    pred_dir = predict.default_pred_dir(rw, new)
    for name in run["runs"]:
        for fold in range(2):
            assert (pred_dir / "runs" / name / f"fold{fold}" / "test.csv").read_bytes() == \
                   (rw.fold(name, fold) / "test.csv").read_bytes()
    assert (pred_dir / "test.csv").read_bytes() == (rw.predictions / "test.csv").read_bytes()
    used = json.loads((pred_dir / "predict.json").read_text())
    assert used["blend"]["runs"] == run["runs"] and used["test_videos"] == len(read_predictions(pred_dir / "test.csv", EMI))

    # The test listing in the training release itself (a listing that arrived there): same zip.
    assert _predict(run, None, "same") == 0
    assert (run["root"] / "subs" / "same.zip").read_bytes() == run["zip"].read_bytes()

    # A newer cache folder of the same extractor with other settings, covering the test videos,
    # is never read instead of the one the models were trained on.
    assert features.main(["--data", str(run["data"]), "--work", str(run["work"]), "--visual", "hog", "--audio", "none",
                          "--text", "none", "--organizer", "none", "--fps", "4", "--splits", "test"]) == 0
    other = sorted(set(_folders(run["work"])) - set(before))
    assert len(other) == 1 and other[0].startswith("visual-hog")
    future = os.path.getmtime(hog / "spec.json") + 3600
    os.utime(run["work"] / "features" / other[0] / "spec.json", (future, future))
    assert _predict(run, None, "pinned") == 0
    assert (run["root"] / "subs" / "pinned.zip").read_bytes() == run["zip"].read_bytes()
    shutil.rmtree(run["work"] / "features" / other[0])


def test_listing_sources_are_those_of_the_release_reader(emi_data):
    """A test-only folder's videos are found as layouts.release_videos finds a full release's."""
    release = open_release("emi", emi_data)
    keys = release.test_keys()
    expected = {s.vid: s for s in release_videos("emi", emi_data) if s.split == "test"}
    assert predict.listing_sources(EMI, release, keys) == expected


def test_stream_mismatches_are_clear_errors(emi_run, tmp_path, capsys, monkeypatch):
    run = dict(emi_run)
    run["work"] = tmp_path / "work"
    shutil.copytree(emi_run["work"], run["work"], ignore=shutil.ignore_patterns("predict"))
    new = copy_test_listing(run["data"], tmp_path / "new")
    features_root = run["work"] / "features"
    hog = next(p for p in features_root.iterdir() if p.name.startswith("visual-hog"))
    vit = next(p for p in features_root.iterdir() if p.name.startswith("organizer-organizer_vit"))
    width = json.loads((vit / "manifest.json").read_text())["dim"]

    # Organizer features of another width than the models were trained on.
    narrow = tmp_path / "narrow"
    narrow.mkdir()
    shutil.copy(new / "test_split.csv", narrow / "test_split.csv")
    (narrow / "vit").mkdir()
    for path in sorted((new / "vit").glob("*.pkl")):
        with open(path, "rb") as handle:
            array = np.asarray(pickle.load(handle))
        with open(narrow / "vit" / path.name, "wb") as handle:
            pickle.dump(array[:, : width - 6], handle)
    assert _predict(run, narrow, "narrow") == 2
    err = capsys.readouterr().err
    assert "stream 'organizer:vit'" in err and f"has {width - 6} columns" in err and f"trained on {width}" in err

    # Cache folders whose width is not the checkpoint's: named, with both widths.
    rw = release_work(run["work"], run["data"])
    checkpoints = {"linear": predict.find_checkpoints(rw, "linear")}
    payloads = {p: predict.read_settings(p) for paths in checkpoints["linear"] for p in paths}
    pinned = streams.pinned_streams(run["work"], checkpoints, payloads)
    release, keys, sources = predict.new_release_sources(EMI, run["data"])
    path = checkpoints["linear"][0][0]
    trained = payloads[path]["spec"]["dims"]["audio"]
    payloads[path]["spec"]["dims"]["audio"] += 3
    with pytest.raises(DataError, match=rf"stream egemaps \(audio-egemaps-\w+, \d+ wide now\).*: audio features "
                                        rf"are {trained} wide now; .* was trained on {trained + 3}"):
        predict.pinned_store(predict.ListingView(release), sources, keys, payloads[path], pinned, path)

    # The extractor changed since training: the same spec now gives another cache folder.
    from solution.extractors import HogExtractor

    settings = HogExtractor.settings
    monkeypatch.setattr(HogExtractor, "settings", lambda self: {**settings(self), "version": 2})
    assert _predict(run, new, "changed") == 2
    err = capsys.readouterr().err
    assert f"stream 'hog': the checkpoints were trained on features/{hog.name}" in err and "differing: version" in err
    monkeypatch.undo()

    # The folder the checkpoints read is gone: its settings are unknown.
    shutil.rmtree(hog)
    assert _predict(run, new, "gone") == 2
    err = capsys.readouterr().err
    assert "stream 'hog'" in err and f"features from {hog}, which is gone" in err
    assert not (run["root"] / "subs" / "gone.zip").exists()


def test_missing_checkpoints_and_blend_are_named(emi_run, tmp_path, capsys):
    run = dict(emi_run)
    run["work"] = tmp_path / "work"
    shutil.copytree(emi_run["work"], run["work"], ignore=shutil.ignore_patterns("predict"))
    rw = release_work(run["work"], run["data"])
    checkpoint = predict.find_checkpoints(rw, "dual_stage")[1][0]
    checkpoint.unlink()
    (rw.fold("dual_stage", 0) / "metrics.json").unlink()
    assert _predict(run, None, "missing") == 2
    err = capsys.readouterr().err
    assert "run 'dual_stage': 2 checkpoint(s) missing" in err
    assert f"{rw.fold('dual_stage', 0)} (fold not finished" in err and str(checkpoint) in err
    # Without a saved blend: said, with the way out; --runs averages runs with equal weights.
    (rw.predictions / "blend.json").unlink()
    assert _predict(run, None, "noblend") == 2
    assert "no saved blend" in capsys.readouterr().err
    assert _predict(run, None, "equal", "--runs", "linear") == 0
    # One run with weight 1: what solution.ensemble writes for that run alone.
    assert ensemble.main(["--data", str(run["data"]), "--work", str(run["work"]), "--runs", "linear",
                          "--out", str(tmp_path / "alone")]) == 0
    ours = predict.default_pred_dir(rw, run["data"]) / "test.csv"
    assert ours.read_bytes() == (tmp_path / "alone" / "test.csv").read_bytes()


def test_va_test_listing(va_data, tmp_path):
    """A frame-level track: the test listing's frame counts, a CCC blend with its rescale."""
    work = tmp_path / "work"
    assert features.main(["--data", str(va_data), "--work", str(work), "--workers", "2"]) == 0
    _train(va_data, work, ["linear"], extra=["--set", "window=30", "--set", "hop=20"])
    full = _full_zip(va_data, work, tmp_path / "subs", ["linear"])
    listing = next(va_data.glob("*/VA_Estimation_Challenge/test_set.csv"))
    new = tmp_path / "new"
    (new / listing.parent.relative_to(va_data)).mkdir(parents=True)
    shutil.copy(listing, new / listing.relative_to(va_data))
    release = open_release("va", va_data)
    for video in release.test_keys():
        path = release.video_path(video)
        (new / path.parent.name).mkdir(exist_ok=True)
        shutil.copy(path, new / path.parent.name / path.name)
        if release.frames_dir(video).is_dir():
            shutil.copytree(release.frames_dir(video), new / "cropped_aligned" / video)
    run = {"data": va_data, "work": work, "root": tmp_path}
    assert _predict(run, new, "later") == 0
    later = tmp_path / "subs" / "later.zip"
    assert submission.check_zip(later, new, "va") == []
    assert later.read_bytes() == full.read_bytes()


def test_run_all_predict_flag(emi_run, tmp_path):
    """PREDICT_DATA=NEW bash run_all.sh with the training run's DATA_DIR and WORK_DIR: no training."""
    run = emi_run
    new = copy_test_listing(run["data"], tmp_path / "new")
    env = {**os.environ, "DATA_DIR": str(run["data"]), "WORK_DIR": str(run["work"]), "PREDICT_DATA": str(new),
           "SUBMISSIONS_DIR": str(tmp_path / "subs"), "JOBS": "1"}
    done = subprocess.run(["bash", str(REPO / "run_all.sh")], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "training" not in done.stdout
    zips = list((tmp_path / "subs").glob("*.zip"))
    assert len(zips) == 1 and submission.check_zip(zips[0], new, "emi") == []
    ours = read_predictions(_extract_csv(zips[0], tmp_path), EMI)
    reference = read_predictions(_extract_csv(run["zip"], tmp_path / "ref"), EMI)
    assert sorted(ours) == sorted(reference)
    for key in ours:  # the threads may differ from the training's: equal to the printed digits, or next to them
        np.testing.assert_allclose(ours[key], reference[key], atol=2e-6)


def _extract_csv(zip_path, folder) -> Path:
    folder.mkdir(exist_ok=True)
    path = folder / "predictions.csv"
    path.write_text(_csv(zip_path))
    return path


def test_bad_arguments(emi_run, capsys):
    with pytest.raises(SystemExit):
        predict.main(["--train-data", str(emi_run["data"]), "--work", str(emi_run["work"]), "--runs", "linear",
                      "--blend", "x.json"])
    assert "exclude each other" in capsys.readouterr().err
    with pytest.raises(DataError, match="no test_split.csv"):
        empty = emi_run["root"] / "empty"
        empty.mkdir(exist_ok=True)
        predict.new_release_sources(EMI, empty)
