"""Shared fixtures: small synthetic releases, generated once per test session."""
import os
import shutil

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from solution import cache, synth  # noqa: E402
from solution.layouts import release_videos  # noqa: E402

SMALL_EMI = dict(videos=60, subjects=12, seconds=3.0, fps=10.0, size=64, label_noise=0.06)
SMALL_VA = dict(videos=8, seconds=8.0, fps=10.0, size=64, other_fps=12.0, long_seconds=30.0)


@pytest.fixture(scope="session")
def emi_data(tmp_path_factory):
    out = tmp_path_factory.mktemp("emi") / "release"
    synth.generate("emi", out, seed=7, workers=2, **SMALL_EMI)
    return out


@pytest.fixture(scope="session")
def va_data(tmp_path_factory):
    out = tmp_path_factory.mktemp("va") / "release"
    synth.generate("va", out, seed=7, workers=2, **SMALL_VA)
    return out


@pytest.fixture(scope="session")
def expr_data(tmp_path_factory):
    """A small Aff-Wild2 release holding VA, EXPR and AU annotations of the same videos."""
    out = tmp_path_factory.mktemp("expr") / "release"
    synth.generate("expr", out, seed=7, workers=2, **SMALL_VA)
    return out


@pytest.fixture(scope="session")
def emi_features(emi_data, tmp_path_factory):
    """The small EMI release through the default extractors (the offline path run_all uses)."""
    from solution import features

    work = tmp_path_factory.mktemp("emi_work")
    assert features.main(["--data", str(emi_data), "--work", str(work), "--workers", "2"]) == 0
    return work


@pytest.fixture(scope="session")
def va_features(va_data, tmp_path_factory):
    """The small VA release through the default extractors, with 2 grouped folds."""
    from solution import features, folds

    work = tmp_path_factory.mktemp("va_work")
    assert features.main(["--data", str(va_data), "--work", str(work), "--workers", "2"]) == 0
    assert folds.main(["--data", str(va_data), "--work", str(work), "--k", "2"]) == 0
    return work


FAST = ["--set", "epochs=25", "--set", "stage1_epochs=3", "--set", "patience=8", "--set", "model.dim=32", "--set", "batch_size=16",
        "--set", "seeds=1", "--threads", "1"]


@pytest.fixture(scope="session")
def trained(emi_data, emi_features, tmp_path_factory):
    """3 grouped folds; every fold of dual_stage and of linear."""
    from solution import folds
    from solution.train_fold import main as train_main

    work = tmp_path_factory.mktemp("trained")
    shutil.copytree(emi_features / "features", work / "features")
    assert folds.main(["--data", str(emi_data), "--work", str(work), "--k", "3"]) == 0
    for model in ("dual_stage", "linear"):
        for fold in range(3):
            args = ["--model", model, "--fold", str(fold), "--data", str(emi_data), "--work", str(work)]
            assert train_main(args + (FAST if model == "dual_stage" else ["--set", "seeds=1", "--threads", "1"])) == 0
    return work


@pytest.fixture(scope="session")
def features_release(tmp_path_factory):
    """A features-only EMI release big enough to learn from (170 labelled videos): the
    organizer-style pickles, no media (the generator's media=false), no metadata, so no
    subject ids. The small release's 50 training videos are too few for honest stand-ins."""
    out = tmp_path_factory.mktemp("features_only") / "release"
    synth.generate("emi", out, seed=7, workers=2, videos=200, subjects=40, seconds=3.0, fps=10.0,
                   size=64, label_noise=0.06, media=False)
    (out / "metadata.csv").unlink()
    return out


def features_only_release(emi_data, dest):
    """A copy of the release as a user with only the organizers' pickles has it: the split
    CSVs, vit/ and wav2vec2/; no media, no transcripts, no metadata."""
    dest.mkdir()
    for name in ("train_split.csv", "valid_split.csv", "test_split.csv"):
        shutil.copy(emi_data / name, dest / name)
    for folder in ("vit", "wav2vec2"):
        shutil.copytree(emi_data / folder, dest / folder)
    return dest


# ------------------------------------------------------------------ word-timed transcripts

TINY = dict(workers=1, videos=12, subjects=6, seconds=3.0, fps=8.0, size=48)
TEXT_ONLY = ["--visual", "hog", "--face", "none", "--audio", "none", "--text", "minilm", "--workers", "1"]


@pytest.fixture(scope="session")
def timed_release(tmp_path_factory):
    """12 videos, half of the transcripts word-timed JSON, through the default text extractor."""
    from solution import features

    root = tmp_path_factory.mktemp("timed")
    data, work = root / "release", root / "work"
    synth.generate("emi", data, seed=3, timed_transcripts=0.5, **TINY)
    assert features.main(["--data", str(data), "--work", str(work)] + TEXT_ONLY) == 0
    return data, work


def sources(data) -> dict:
    return {s.vid: s for s in release_videos("emi", data)}


def text_folder(work):
    return next(p for p in (work / "features").iterdir() if p.name.startswith("text-"))


def text_entry(work, src):
    folder = text_folder(work)
    return cache.read_entry(folder, src.vid, cache.source_key(src, "text"))


def expected_on_grid(entry, at):
    """The rule, computed the slow way: a step holds the word whose span contains its time
    (the latest start among several); a word containing no step takes the nearest step to
    its middle if that is free and within half a step of the grid."""
    index = np.full(len(at), -1)
    for k, t in enumerate(at):
        inside = [w for w in range(len(entry.times)) if entry.times[w] <= t < entry.ends[w]]
        if inside:
            index[k] = max(inside, key=lambda w: (entry.times[w], w))
    step = at[1] - at[0]
    for w in np.argsort(entry.times, kind="stable"):
        if not any(entry.times[w] <= t < entry.ends[w] for t in at):
            middle = (entry.times[w] + entry.ends[w]) / 2
            k = int(np.argmin(np.abs(at - middle)))
            if at[0] - step / 2 <= middle < at[-1] + step / 2 and index[k] < 0:
                index[k] = w
    return index
