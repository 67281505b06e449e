"""Faults: a killed stage, a full disk, a truncated file. Each is shown on the small release
against an uninterrupted run of every stage in its own work folder (`reference`).

The visual stream is left out (face detection takes minutes here): egemaps and the
organizers' pickles are extracted, and folds train the linear model and a small dual-stage
(one epoch of its contrastive stage 1, then three of stage 2).
"""
import contextlib
import errno
import io
import json
import logging
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
import traceback
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from solution import cache, ensemble, features, fileio, folds, inference, submit
from solution.cache import Entry
from solution.errors import DataError
from solution.layouts import EmiRelease
from solution.predictions import write_predictions
from solution.runs import release_work
from solution.tracks import EMI
from solution.train_fold import main as train_main

REPO = Path(__file__).resolve().parent.parent
EXTRACT = ["--visual", "none", "--text", "none"]
TRAIN = {"linear": ["--set", "epochs=20", "--set", "seeds=1", "--threads", "1"],
         # dropout 0.2 as by default: determinism with dropout is part of what is shown; stage 1
         # on, so a fold killed in its second phase resumes there
         "dual_stage": ["--set", "stage1_epochs=1", "--set", "epochs=3", "--set", "model.dim=16",
                        "--set", "batch_size=16", "--set", "seeds=1", "--threads", "1"]}
K = 2


def train_args(model, fold, data, work):
    return ["--model", model, "--fold", str(fold), "--data", str(data), "--work", str(work), *TRAIN[model]]


def blend_args(data, work, out, zips):
    return ["--data", str(data), "--work", str(work), "--runs", "linear,dual_stage", "--out", str(out),
            "--zip", "final", "--zip-dir", str(zips)]


@pytest.fixture(scope="module")
def reference(emi_data, tmp_path_factory):
    """Every stage, uninterrupted: features, folds, both models on every fold, blend and zip."""
    work = tmp_path_factory.mktemp("faults_reference")
    assert features.main(["--data", str(emi_data), "--work", str(work), *EXTRACT, "--workers", "2"]) == 0
    assert folds.main(["--data", str(emi_data), "--work", str(work), "--k", str(K)]) == 0
    for model in TRAIN:
        for fold in range(K):
            assert train_main(train_args(model, fold, emi_data, work)) == 0
    assert ensemble.main(blend_args(emi_data, work, work / "blend", work / "zips")) == 0
    return work


def features_and_folds(reference, emi_data, work):
    """A work folder with the reference's features cache and folds, nothing trained."""
    shutil.copytree(reference / "features", work / "features")
    src, dst = release_work(reference, emi_data), release_work(work, emi_data)
    for item in ("folds.csv", "folds.json"):
        shutil.copy(src.root / item, dst.root / item)
    return work


def stream_folder(work, prefix: str) -> Path:
    return next(p for p in (work / "features").iterdir() if p.name.startswith(prefix))


def cache_content(work) -> dict:
    """Every file of the features cache: arrays of entries (an .npz holds its write time),
    bytes of the rest. Hidden files (temporary files a killed write leaves) are not content."""
    root = work / "features"
    out = {}
    for path in sorted(root.rglob("*")):
        if path.is_dir() or path.name.startswith("."):
            continue
        if path.suffix == ".npz":
            with np.load(path) as data:
                out[path.relative_to(root).as_posix()] = {k: (data[k].dtype.str, data[k].shape, data[k].tobytes())
                                                          for k in data.files}
        else:
            out[path.relative_to(root).as_posix()] = path.read_bytes()
    return out


def zip_members(path) -> dict:
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def truncate(path: Path) -> None:
    """What a killed copy or a crash that lost data leaves: the first half of the file."""
    os.truncate(path, path.stat().st_size // 2)


def temporaries(folder: Path) -> list:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".")) if folder.is_dir() else []


def start(module: str, *args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", module, *map(str, args)], env=dict(os.environ, PYTHONPATH=str(REPO)),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def kill_when(proc: subprocess.Popen, ready, timeout: float = 300) -> None:
    """SIGKILL (no handler, no cleanup) as soon as `ready()`; it must not have ended by itself."""
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None and not ready():
        time.sleep(0.005)
    proc.kill()
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, f"ended by itself (exit {proc.returncode}) before it could be killed"


def read_if_there(path: Path) -> str:
    return path.read_text() if path.is_file() else ""


def warned(caplog, path: Path) -> bool:
    return any(r.levelno == logging.WARNING and str(path) in r.getMessage() for r in caplog.records)


# ------------------------------------------------------------------ 1. killed stages and other processes, the same bytes

def test_killed_stages_and_other_processes_reproduce_the_uninterrupted_submission(emi_data, reference, tmp_path):
    """Every stage killed (or left half-written) and run again, the training in another
    process with another hash seed: the same cache, the same predictions byte for byte
    (determinism on the CPU with the same seed and threads), the same blend and zip."""
    work = tmp_path / "work"
    ref = release_work(reference, emi_data)
    # Features: SIGKILL once a few entries are written; the rerun completes the cache, which
    # then holds exactly what an uninterrupted extraction holds.
    audio = work / "features" / stream_folder(reference, "audio-egemaps").name
    proc = start("solution.features", "--data", emi_data, "--work", work, *EXTRACT, "--workers", "1")
    kill_when(proc, lambda: audio.is_dir() and len(list(audio.glob("[!.]*.npz"))) >= 5)
    assert not (audio / "manifest.json").exists()
    assert features.main(["--data", str(emi_data), "--work", str(work), *EXTRACT, "--workers", "2"]) == 0
    assert cache_content(work) == cache_content(reference)

    # Folds: each model's fold 0 SIGKILLed in the middle of training (linear after its first
    # checkpoint, dual_stage once in stage 2, its stage 1 done); then every fold again in one
    # other process with another string hash seed (set and dict orders). The killed folds
    # resume where they were, the others train from the start, and each fold writes what the
    # uninterrupted run wrote, byte for byte.
    assert folds.main(["--data", str(emi_data), "--work", str(work), "--k", str(K)]) == 0
    rw = release_work(work, emi_data)
    assert rw.folds_csv.read_bytes() == ref.folds_csv.read_bytes()
    killed_when = {"linear": lambda: (rw.seed("linear", 0, 0) / "last.pt").is_file(),
                   "dual_stage": lambda: "stage2" in read_if_there(rw.seed("dual_stage", 0, 0) / "log.csv")}
    for model, ready in killed_when.items():
        proc = start("solution.train_fold", *train_args(model, 0, emi_data, work))
        kill_when(proc, ready)
        assert not (rw.fold(model, 0) / "metrics.json").exists()
    script = ("import json, sys; from solution.train_fold import main; "
              "sys.exit(max(main(a) for a in json.loads(sys.argv[1])))")
    argv = [train_args(model, fold, emi_data, work) for model in TRAIN for fold in range(K)]
    done = subprocess.run([sys.executable, "-c", script, json.dumps(argv)], capture_output=True, text=True, timeout=900,
                          env=dict(os.environ, PYTHONPATH=str(REPO), PYTHONHASHSEED="12345"))
    assert done.returncode == 0, done.stderr
    assert f"{rw.seed('linear', 0, 0)}: resuming main at epoch" in done.stderr, done.stderr
    assert re.search(re.escape(f"{rw.seed('dual_stage', 0, 0)}: resuming stage2 at epoch ") + "[1-9]", done.stderr), \
        done.stderr
    assert not any(f"{rw.seed(model, 1, 0)}: resuming" in done.stderr for model in TRAIN), done.stderr
    for model in TRAIN:
        for fold in range(K):
            for name in ("oof.csv", "test.csv"):
                assert (rw.fold(model, fold) / name).read_bytes() == (ref.fold(model, fold) / name).read_bytes(), \
                    (model, fold, name)

    # The blend and the zip: a killed run left a stale temporary file and a test.csv cut short
    # (as a non-atomic writer would), a killed submit a partial zip; the rerun is unaffected.
    out, zips = work / "blend", work / "zips"
    out.mkdir()
    zips.mkdir()
    shutil.copy(reference / "blend" / "blend.json", out / "blend.json")
    test_csv = (reference / "blend" / "test.csv").read_bytes()
    (out / "test.csv").write_bytes(test_csv[: len(test_csv) // 2])
    (out / ".test.csv.k1ll3d00.csv").write_bytes(test_csv[:100])
    (zips / ".final.zip.k1ll3d00.zip").write_bytes(b"PK\x03\x04")
    assert ensemble.main(blend_args(emi_data, work, out, zips)) == 0
    for name in ("blend.json", "oof.csv", "test.csv"):
        assert (out / name).read_bytes() == (reference / "blend" / name).read_bytes(), name
    assert zip_members(zips / "final.zip") == zip_members(reference / "zips" / "final.zip")
    assert submit.check_zip(zips / "final.zip", emi_data) == []


# ------------------------------------------------------------------ 2. a full disk

class _FullDisk(io.FileIO):
    """A file on a disk with `room` bytes left: the write that goes past them fails."""

    room = 0

    def write(self, data):
        data = bytes(data)
        if len(data) > self.room:
            if self.room:
                self.room -= super().write(data[: self.room])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(data)
        return super().write(data)


@contextlib.contextmanager
def disk_full(monkeypatch, room: int = 64):
    """Every binary file opened for writing from Python (pathlib, zipfile: both open through
    io.open) takes `room` bytes, then fails with ENOSPC, as a full disk does."""
    real_open = io.open

    def full_open(file, mode="r", *args, **kwargs):
        if "b" not in mode or not set(mode) & set("wax"):
            return real_open(file, mode, *args, **kwargs)
        raw = _FullDisk(file, mode.replace("b", ""))
        raw.room = room
        return io.BufferedRandom(raw) if "+" in mode else io.BufferedWriter(raw)

    with monkeypatch.context() as patch:
        patch.setattr(io, "open", full_open)
        yield


def test_a_full_disk_leaves_no_truncated_file(emi_data, tmp_path, monkeypatch):
    """Cache entries, failure records, a manifest (JSON), predictions (CSV), the submission
    zip: written on a full disk, each fails naming its file, and leaves the file absent (or
    as it was) and no temporary file."""
    folder, key = tmp_path / "features" / "stream", "0123456789ab"
    entry = Entry(np.ones((40, 8), np.float32), np.arange(40, dtype=np.float32), np.ones(40, np.float32), {}, 5.0)
    ids = [f"{i:05d}" for i in EmiRelease(emi_data).test_ids()]
    preds = {k: np.full(6, 0.5) for k in ids}
    runs = tmp_path / "run"
    writers = {
        cache.entry_path(folder, "00001", key): lambda: cache.write_entry(folder, "00001", key, entry),
        cache.failure_path(folder, "00002", key): lambda: cache.write_failure(folder, "00002", key, "no audio"),
        folder / "manifest.json": lambda: cache.write_manifest(folder, {"extractor": "egemaps"}),
        runs / "test.csv": lambda: write_predictions(runs / "test.csv", EMI, preds),
        tmp_path / "zips" / "final.zip": lambda: submit.make_submission("emi", tmp_path / "pred.csv", emi_data,
                                                                        tmp_path / "zips", "final"),
    }
    write_predictions(tmp_path / "pred.csv", EMI, preds)  # what the submission is made of
    for path in writers:
        path.parent.mkdir(parents=True, exist_ok=True)

    def fill_the_disk(before: dict) -> None:
        for path, write in writers.items():
            with disk_full(monkeypatch), pytest.raises(OSError) as info:
                write()
            assert info.value.errno == errno.ENOSPC and str(path) in str(info.value), str(info.value)
            now = path.read_bytes() if path.exists() else None
            assert now == before[path], f"{path}: changed by a failed write"
            assert temporaries(path.parent) == [], f"{path}: temporary files left"

    fill_the_disk(dict.fromkeys(writers))           # nothing there yet: nothing there after
    for write in writers.values():
        write()
    fill_the_disk({path: path.read_bytes() for path in writers})  # the previous complete file stays
    assert cache.read_entry(folder, "00001", key).features.shape == (40, 8)
    assert submit.check_zip(tmp_path / "zips" / "final.zip", emi_data) == []


@contextlib.contextmanager
def file_size_limit(limit: int):
    """The OS refuses to grow any file of this process past `limit` bytes (EFBIG; Python
    ignores the signal that comes with it). torch.save writes from C++, out of reach of a
    Python patch, so this is how its writes are made to fail."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


def test_a_failed_checkpoint_write_leaves_the_old_checkpoint(tmp_path):
    path = tmp_path / "seed0" / "last.pt"
    big = {"model": torch.arange(100_000, dtype=torch.float32)}

    def save_fails() -> None:
        with pytest.raises((RuntimeError, OSError)) as info:
            with file_size_limit(4096), fileio.atomic_path(path) as tmp:
                torch.save(big, tmp)
        assert str(path) in "".join(traceback.format_exception(info.value))  # torch's own message names no file
        assert temporaries(path.parent) == []

    save_fails()
    assert not path.exists()
    with fileio.atomic_path(path) as tmp:
        torch.save({"model": torch.ones(3)}, tmp)
    before = path.read_bytes()
    save_fails()
    assert path.read_bytes() == before
    assert torch.equal(torch.load(path)["model"], torch.ones(3))


# ------------------------------------------------------------------ 3. a truncated file

def test_truncated_cache_files_are_named_then_extracted_again(emi_data, reference, tmp_path, capsys, caplog):
    work = features_and_folds(reference, emi_data, tmp_path / "work")
    audio = stream_folder(work, "audio-egemaps")
    entry = sorted(audio.glob("[!.]*.npz"))[0]
    failed = sorted(audio.glob("[!.]*.failed.json"))[0]
    manifest = stream_folder(work, "organizer-organizer_vit") / "manifest.json"
    truncate(entry)
    # Training reads every entry before its first epoch: the cut one is an error naming it.
    assert train_main(train_args("linear", 0, emi_data, work)) == 2
    err = capsys.readouterr().err
    assert f"{entry}: unreadable cache entry" in err and "run python -m solution.features again" in err, err
    # So is a cut failure record, or manifest.
    truncate(failed)
    truncate(manifest)
    vid, key = failed.name.removesuffix(".failed.json").rsplit(".", 1)
    with pytest.raises(DataError, match=re.escape(f"{failed}: unreadable failure record")):
        cache.read_entry(audio, vid, key)
    with pytest.raises(DataError, match=re.escape(f"{manifest}: unreadable manifest") + ".* rebuilds it"):
        cache.read_manifest(manifest.parent)
    # The features stage finds them (a warning names each), extracts them again and rebuilds
    # the manifest: the cache is again what an uninterrupted extraction wrote.
    assert features.main(["--data", str(emi_data), "--work", str(work), *EXTRACT, "--workers", "1"]) == 0
    assert warned(caplog, entry) and warned(caplog, failed)
    assert cache_content(work) == cache_content(reference)


@pytest.mark.parametrize("refit", [False, True])
def test_truncated_checkpoints_are_redone(emi_data, reference, tmp_path, caplog, refit):
    """A fold's files cut short (the behaviour is train_fold's): metrics.json redoes the fold
    from its seeds' predictions, predictions.pkl is made again from best.pt, an unreadable
    best.pt trains its seed again, an unreadable last.pt starts its seed over. Each says so
    in a warning naming the file, and the fold ends as the uninterrupted one did. With refit
    the files the seed predicts with are its refit's, under seed0/refit/."""
    caplog.set_level(logging.INFO)
    work = features_and_folds(reference, emi_data, tmp_path / "work")
    rw = release_work(work, emi_data)
    refit_args = ["--set", f"refit={str(refit).lower()}"]
    for k in range(K):
        assert train_main(train_args("linear", k, emi_data, work) + refit_args) == 0
    args = train_args("linear", 0, emi_data, work) + refit_args
    fold = rw.fold("linear", 0)
    uninterrupted = {name: (fold / name).read_bytes() for name in ("oof.csv", "test.csv")}
    seed_done = rw.seed_files("linear", 0, 0).predictions  # the seed's outcome, read before its files
    predicting = rw.seed_files("linear", 0, 0, refit)  # the files the seed predicts with
    assert rw.refit_dir("linear", 0, 0).is_dir() == refit
    metrics, done, best, last = fold / "metrics.json", predicting.predictions, predicting.best, predicting.last

    def rerun(damaged: Path) -> None:
        caplog.clear()
        assert train_main(args) == 0
        assert warned(caplog, damaged), f"no warning names {damaged}"
        json.loads(metrics.read_text())
        for name in ("oof.csv", "test.csv"):
            assert (fold / name).read_bytes() == uninterrupted[name], name

    def stamp(path: Path) -> int:
        return path.stat().st_mtime_ns

    def cut(*paths: Path) -> None:
        for path in {metrics, seed_done, *paths}:
            truncate(path)

    truncate(metrics)
    with pytest.raises(DataError, match=re.escape(f"{metrics}: unreadable") + ".* redoes the fold"):
        inference.run_predictions(rw, "linear")
    before = {p: stamp(p) for p in (done, best, last)}
    rerun(metrics)
    assert {p: stamp(p) for p in (done, best, last)} == before, "the seed's predictions were not reused"

    cut(done)
    rerun(done)
    assert (stamp(best), stamp(last)) == (before[best], before[last]), "trained again instead of reading best.pt"

    cut(done, best)
    rerun(best)
    assert stamp(last) != before[last], "best.pt was unreadable: the seed should have trained again"

    for path in {metrics, seed_done, done}:
        path.unlink()
    truncate(last)
    rerun(last)
