"""run_all.sh as a user runs it (on the small fixture release instead of the full demo)."""
import os
import subprocess
from pathlib import Path

import pytest

from solution import submit

REPO = Path(__file__).resolve().parent.parent
FAST_TRAINING = "--set epochs=15 --set stage1_epochs=2 --set seeds=1"


@pytest.mark.parametrize("track", ["emi", "va"])
def test_run_all_writes_a_valid_zip(track, emi_data, va_data, tmp_path):
    data = emi_data if track == "emi" else va_data
    env = dict(os.environ, TRACK=track, DATA_DIR=str(data), WORK_DIR=str(tmp_path / "work"),
               SUBMISSIONS_DIR=str(tmp_path / "subs"), FOLDS="2", TRAIN_ARGS=FAST_TRAINING)
    done = subprocess.run(["bash", str(REPO / "run_all.sh")], env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert (tmp_path / "work" / "features" / "failures.csv").is_file()
    if track == "emi":
        assert "dual_stage" in done.stdout and "linear" in done.stdout and "ceiling (noise-free)" in done.stdout
        assert "the submitted predictions score" in done.stdout
        for model in ("dual_stage", "linear"):
            assert all((tmp_path / "work" / "runs" / model / f"fold{k}" / "metrics.json").is_file() for k in range(2))
        zips = list((tmp_path / "subs").glob("dual_stage-*.zip"))
    else:
        assert "model training for VA arrives with a later issue" in done.stdout
        zips = list((tmp_path / "subs").glob("va-mean-*.zip"))
    assert len(zips) == 1
    assert submit.check_zip(zips[0], data, track) == []


def test_run_all_rejects_bad_settings(tmp_path):
    env = dict(os.environ, TRACK="xyz", WORK_DIR=str(tmp_path))
    done = subprocess.run(["bash", str(REPO / "run_all.sh")], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 2 and "TRACK must be emi or va" in done.stderr
    env = dict(os.environ, DATA_DIR=str(tmp_path / "absent"), WORK_DIR=str(tmp_path))
    done = subprocess.run(["bash", str(REPO / "run_all.sh")], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 2 and "is not a folder" in done.stderr
