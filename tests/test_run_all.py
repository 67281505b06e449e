"""run_all.sh as a user runs it (on the small fixture releases instead of the full demo)."""
import json
import os
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

from conftest import features_only_release
from solution import submission
from solution.runs import release_work

REPO = Path(__file__).resolve().parent.parent
CONFIG = """
[train]
epochs = 12
seeds = 1
[model.dual_stage]
stage1_epochs = 2
dim = 32
"""


def run_all(tmp_path, **env):
    env = {**os.environ, "WORK_DIR": str(tmp_path / "work"), "SUBMISSIONS_DIR": str(tmp_path / "subs"), "FOLDS": "2", **env}
    return subprocess.run(["bash", str(REPO / "run_all.sh")], env=env, capture_output=True, text=True, timeout=1200)


def test_run_all_emi_then_another_release_in_the_same_checkout(emi_data, tmp_path):
    (tmp_path / "run.toml").write_text(CONFIG)
    # TRAIN_ARGS with a quoted TOML inline table (split like a shell would), CONFIG for every stage.
    streams = "--set 'streams={visual=[\"hog\", \"organizer:vit\"], audio=[\"egemaps\"], text=[\"minilm\"]}'"
    done = run_all(tmp_path, DATA_DIR=str(emi_data), CONFIG=str(tmp_path / "run.toml"), TRAIN_ARGS=streams)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "dual_stage" in done.stdout and "linear" in done.stdout and "ceiling (noise-free)" in done.stdout
    assert "the submitted predictions score" in done.stdout
    # The default submits the blend of the three models, its weights fit out of fold.
    rw = release_work(tmp_path / "work", emi_data)
    blend = json.loads((rw.predictions / "blend.json").read_text())
    assert blend["runs"] == ["dual_stage", "foalnet", "rcma"]
    assert all(min(w) >= 0 for w in blend["weights"].values())
    metrics = json.loads((rw.fold("dual_stage", 0) / "metrics.json").read_text())
    assert metrics["settings"]["train"]["epochs"] == 12 and metrics["settings"]["model_config"]["dim"] == 32
    assert [s.split("@")[0] for s in metrics["settings"]["streams"]["visual"]] == ["hog", "organizer:vit"]
    zips = list((tmp_path / "subs").glob("dual_stage+foalnet+rcma-*.zip"))
    assert len(zips) == 1 and submission.check_zip(zips[0], emi_data, "emi") == []
    # The console is a progress report: a line per fold with its score; the folds' chatter is in their logs.
    assert "[jobs] rcma fold 1: held-out pearson" in done.stdout and "[train]" not in done.stdout + done.stderr
    assert "seed 0 main epoch" in (rw.fold("rcma", 1) / "train.log").read_text()
    # The stages file: the settings, the CONFIG file, every stage with its time and command lines.
    stages = [json.loads(line) for line in (rw.root / "stages.jsonl").read_text().splitlines()]
    assert stages[0]["settings"]["MODELS"] == "dual_stage,foalnet,rcma" and stages[0]["settings"]["TRAIN_ARGS"] == streams
    assert stages[1] == {"config": CONFIG}
    assert [s["stage"].split()[0] for s in stages[2:]] == [f"{k}/8" for k in range(1, 9)]
    assert "-m solution.inspect" in stages[3]["command"] and "--folds 2" in stages[3]["command"]
    assert "[inspect] ok: nothing here stops a later stage" in done.stdout
    assert all(isinstance(s["seconds"], int) for s in stages[2:])
    training = stages[6]["command"]
    assert "-m solution.jobs run" in training and "'streams={visual=[\"hog\", \"organizer:vit\"]" in training
    assert "-m solution.report" in stages[9]["command"] and "--stages" in stages[9]["command"]
    assert (rw.root / "report" / "summary.md").is_file() and f"report: {rw.root}/report/" in done.stdout

    # The user's own release next, in the same checkout and work folder: nothing of the first is reused.
    other = features_only_release(emi_data, tmp_path / "features-only")
    train_csv = (other / "train_split.csv").read_text().splitlines()
    (other / "train_split.csv").write_text("\n".join(train_csv[:1] + train_csv[6:]) + "\n")  # other labelled videos
    (other / "test_split.csv").write_text("Filename\n" + "\n".join(
        line.split(",")[0] for line in (emi_data / "test_split.csv").read_text().splitlines()[1:6]) + "\n")
    done = run_all(tmp_path, DATA_DIR=str(other), CONFIG=str(tmp_path / "run.toml"), MODELS="dual_stage")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    second = release_work(tmp_path / "work", other)
    assert second.root != rw.root
    metrics = json.loads((second.fold("dual_stage", 1) / "metrics.json").read_text())
    assert set(metrics["settings"]["streams"]) == {"visual", "audio"}
    zips = sorted((tmp_path / "subs").glob("dual_stage-*.zip"))
    assert len(zips) == 1 and submission.check_zip(zips[0], other, "emi") == []


def test_run_all_va_trains_every_model_and_writes_a_valid_zip(va_data, tmp_path):
    """The VA track end to end: each fold's label delay chosen on its own training videos, the
    three models and the baseline frame by frame, the blend with smoothing chosen out of fold,
    a valid zip whose rows follow the test listing frame for frame (one test video is at
    another frame rate)."""
    (tmp_path / "run.toml").write_text(CONFIG)
    done = run_all(tmp_path, TRACK="va", DATA_DIR=str(va_data), CONFIG=str(tmp_path / "run.toml"))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert (tmp_path / "work" / "features" / "failures.csv").is_file()  # the demo has mute videos
    rw = release_work(tmp_path / "work", va_data)
    delay = json.loads((rw.root / "delay.json").read_text())
    for fold in (0, 1):  # each fold trained with the delay chosen on its own training videos
        metrics = json.loads((rw.fold("rcma", fold) / "metrics.json").read_text())
        assert metrics["settings"]["train"]["label_delay"] == delay["by_fold"][str(fold)]
    assert len(delay["scores"]) > 5 and sorted(delay["by_fold"]) == ["0", "1"]
    assert "OOF, frame-level" in done.stdout and "without face" in done.stdout
    blend = json.loads((rw.predictions / "blend.json").read_text())
    assert blend["runs"] == ["dual_stage", "foalnet", "rcma"] and "smooth_seconds" in blend
    assert "smoothing over time" in done.stdout and "the submitted predictions score" in done.stdout
    zips = list((tmp_path / "subs").glob("dual_stage+foalnet+rcma-*.zip"))
    assert len(zips) == 1 and submission.check_zip(zips[0], va_data, "va") == []


def test_run_all_records_only_finished_stages_and_stops_at_a_failed_fold(emi_data, emi_features, tmp_path):
    """A stage that fails is announced but not recorded; a fold that fails names its log."""
    (tmp_path / "work").mkdir()
    shutil.copytree(emi_features / "features", tmp_path / "work" / "features")  # the features stage: a quick no-op
    done = run_all(tmp_path, DATA_DIR=str(emi_data), MODELS="linear", BASELINE="",
                   TRAIN_ARGS="--set epochs=2 --set seeds=1 --set lr=fast")
    assert done.returncode != 0
    assert "== 5/8 training linear" in done.stdout and "[jobs] FAILED linear fold 0" in done.stderr
    rw = release_work(tmp_path / "work", emi_data)
    assert f"log: {rw.fold('linear', 0) / 'train.log'}" in done.stderr
    stages = [json.loads(line) for line in (rw.root / "stages.jsonl").read_text().splitlines()]
    assert "settings" in stages[0] and [s["stage"].split()[0] for s in stages[1:]] == ["1/8", "2/8", "3/8", "4/8"]


@pytest.mark.parametrize("env,message", [
    ({"TRACK": "xyz"}, "TRACK must be one of emi, va, expr, au"),
    ({"DATA_DIR": "/nonexistent/release"}, "is not a folder"),
    ({"JOBS": "0"}, "JOBS must be a whole number of at least 1"),
    ({"FOLDS": "two"}, "FOLDS must be a whole number"),
    ({"CONFIG": "/nonexistent/run.toml"}, "is not a file"),
    ({"TRAIN_ARGS": "--set 'lr=3"}, "unbalanced quotes"),
    ({"SCHEME": "random"}, "SCHEME must be grouped or official"),
])
def test_run_all_rejects_bad_settings(tmp_path, env, message):
    done = run_all(tmp_path, **env)
    assert done.returncode == 2 and message in done.stderr, done.stderr[-2000:]


VENV_PROBE = r"""
set -u
before="$(compgen -v | sort)"
PYTHON="$1" VENV_DIR="$2" source "$3/solution/venv.sh"
echo "status=$?"
after="$(compgen -v | sort)"
echo "new=$(comm -13 <(echo "$before") <(echo "$after") | grep -v -x -e before -e after -e PY | tr '\n' ' ')"
echo alive
"""


def test_venv_script_returns_instead_of_closing_the_shell(tmp_path):
    """Sourced with a Python that cannot build the environment, venv.sh reports, returns
    non-zero and leaves the user's shell running, with no helper variables behind; a venv
    built by another Python version is rebuilt, not reused."""
    fake_python = tmp_path / "python"
    fake_python.write_text("#!/bin/bash\nif [ \"$1\" = -c ]; then echo 3.99; exit 0; fi\necho \"$@\" >> \"$(dirname \"$0\")/calls\"; exit 1\n")
    fake_python.chmod(0o755)
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to("/usr/bin/env")  # 'python -c ...' in the old venv fails: another version
    done = subprocess.run(["bash", "-c", VENV_PROBE, "probe", str(fake_python), str(venv), str(REPO)],
                          capture_output=True, text=True, timeout=60)
    assert "alive" in done.stdout and "status=1" in done.stdout, done.stdout + done.stderr
    assert "built with another Python" in done.stdout and "could not rebuild" in done.stderr
    assert "-m venv --clear" in (tmp_path / "calls").read_text()
    new = done.stdout.split("new=")[1].split("\n")[0].split()
    assert new == [], f"venv.sh left variables behind: {new}"


def test_a_release_names_its_own_track(va_data, emi_data, tmp_path):
    """DATA_DIR without TRACK: the release's layout decides the track (an invalid FOLDS stops
    the run right after, before any work). TRACK, when given, wins."""
    for data, track in ((va_data, "va"), (emi_data, "emi")):
        done = run_all(tmp_path, DATA_DIR=str(data), FOLDS="0", TRACK="")
        assert done.returncode == 2 and "FOLDS must be" in done.stderr, done.stderr[-2000:]
        assert f"[run_all] {data}: track {track}" in done.stdout
    done = run_all(tmp_path, DATA_DIR=str(va_data), FOLDS="0", TRACK="emi")
    assert done.returncode == 2 and "[run_all]" not in done.stdout


def test_run_all_expr_and_au_in_both_formats_then_another_release(expr_data, tmp_path):
    """TRACK=expr and TRACK=au on one Aff-Wild2 release that holds both (and VA): each trains,
    blends with a decision rule chosen out of fold, and writes a validated zip, single-file and
    per-video; a second release made with another seed in the same checkout gets its own work
    folders and never reads the first one's runs."""
    fast = "--set epochs=3 --set seeds=1 --set patience=2"
    zips = {}
    for track, form in (("expr", "single"), ("au", "per-video")):
        done = run_all(tmp_path, DATA_DIR=str(expr_data), TRACK=track, MODELS="linear,foalnet", BASELINE="",
                       TRAIN_ARGS=fast, SUBMIT_FORMAT=form)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        rw = release_work(tmp_path / "work", expr_data, track)
        assert rw.root.name.startswith(f"{track}-") and "delay.json" not in os.listdir(rw.root)
        blend = json.loads((rw.predictions / "blend.json").read_text())
        # A rule is kept only where it helps videos it was not fit on; either way it was weighed
        assert blend["decision"] is None or blend["decision"]["kind"] == ("biases" if track == "expr" else "thresholds")
        assert set(blend["scores"]["decision"]) >= {"rule", "by_part", "before"}
        assert "decision rule" in done.stdout and "decision rule" in (rw.root / "report" / "summary.md").read_text()
        made = sorted((tmp_path / "subs").glob("linear+foalnet-*.zip"))
        zips[track] = [z for z in made if z not in sum(zips.values(), [])]
        assert len(zips[track]) == 1 and submission.check_zip(zips[track][0], expr_data, track) == []
        assert submission.check_zip(zips[track][0], expr_data) == []  # the header says which track
        names = zipfile.ZipFile(zips[track][0]).namelist()
        assert names == ["predictions.txt"] if form == "single" else all(n.endswith(".txt") for n in names) and len(names) > 1
    other = tmp_path / "other"
    from solution import synth
    from conftest import SMALL_VA

    synth.generate("au", other, seed=8, workers=2, **SMALL_VA)
    done = run_all(tmp_path, DATA_DIR=str(other), TRACK="au", MODELS="linear", BASELINE="", TRAIN_ARGS=fast)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    first, second = release_work(tmp_path / "work", expr_data, "au"), release_work(tmp_path / "work", other, "au")
    assert first.root != second.root and "already done" not in (second.fold("linear", 0) / "train.log").read_text()
    latest = max((tmp_path / "subs").glob("linear-*.zip"), key=os.path.getmtime)
    assert submission.check_zip(latest, other, "au") == []
