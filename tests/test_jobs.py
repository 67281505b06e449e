"""solution.jobs: the command list, the Slurm array script run task by task without Slurm, the
gather stage, and the local runner (progress on the console, chatter in the folds' logs,
failures, interruption, one GPU a slot)."""
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from solution import ensemble, folds, jobs
from solution.jobs import Job, gpu_ids, gpus_for_slot, run_jobs, slot_environment
from solution.runs import release_work

REPO = Path(__file__).resolve().parent.parent
MODELS = "linear,foalnet"
TRAIN = ["--set", "epochs=2", "--set", "seeds=1"]  # a few seconds a fold


def fresh_work(emi_data, emi_features, path: Path) -> Path:
    """A work folder with the fixture's features and two folds, nothing trained."""
    path.mkdir(parents=True)
    shutil.copytree(emi_features / "features", path / "features")
    assert folds.main(["--data", str(emi_data), "--work", str(path), "--k", "2"]) == 0
    return path


def env():
    return {**os.environ, "PYTHONPATH": str(REPO)}


def jobs_cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "solution.jobs", *args], capture_output=True, text=True,
                          env=env(), cwd=REPO, timeout=timeout)


@pytest.fixture(scope="module")
def ran_here(emi_data, emi_features, tmp_path_factory):
    """`solution.jobs run` on a fresh work folder: (work, the finished process)."""
    work = fresh_work(emi_data, emi_features, tmp_path_factory.mktemp("jobs") / "here")
    done = jobs_cli("run", "--data", str(emi_data), "--work", str(work), "--models", MODELS, "--jobs", "2",
                    "--threads", "1", "--", *TRAIN)
    return work, done


def test_sbatch_array_run_task_by_task_then_gathered_equals_jobs_run(emi_data, emi_features, ran_here, tmp_path,
                                                                     capsys):
    """The scale-out recipe without Slurm: the command list, the array script's tasks one by
    one (SLURM_ARRAY_TASK_ID=k bash script), the gather script; the same fold predictions,
    blend and submission as `solution.jobs run` on this machine."""
    work = fresh_work(emi_data, emi_features, tmp_path / "cluster")
    flags = ["--data", str(emi_data), "--work", str(work), "--models", MODELS, "--folds", "2"]
    capsys.readouterr()
    assert jobs.main(["list", *flags, "--threads", "1", "--", *TRAIN]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert len(listed) == 4 and all(" -m solution.train_fold " in line for line in listed)
    assert "--model linear --fold 1 " in listed[1] and "--model foalnet --fold 0 " in listed[2]

    script = tmp_path / "folds.sbatch"
    assert jobs.main(["sbatch", *flags, "--out", str(script), "--cpus-per-task", "1", "--partition", "gpu",
                      "--time", "04:00:00", "--submissions", str(tmp_path / "subs"), "--", *TRAIN]) == 0
    gather = tmp_path / "folds.gather.sh"
    text = script.read_text()
    for line in ("#SBATCH --array=0-3", "#SBATCH --partition=gpu", "#SBATCH --time=04:00:00",
                 "#SBATCH --cpus-per-task=1", "#SBATCH --ntasks=1"):
        assert line in text
    # Task k runs line k+1 of the list (whose `env TRACK=...` the script exports once).
    assert all(line.startswith("env TRACK=emi ") for line in listed) and "export TRACK=emi" in text
    assert [line.split("set -- ", 1)[1].removesuffix(" ;;") for line in text.splitlines()
            if line.strip().startswith("set -- ")] == [re.sub(r"^env (\S+=\S+ )+", "", line) for line in listed]
    for path in (script, gather):
        assert subprocess.run(["bash", "-n", str(path)]).returncode == 0

    rw = release_work(work, emi_data)
    for k in range(4):
        done = subprocess.run(["bash", str(script)], env={**env(), "SLURM_ARRAY_TASK_ID": str(k)},
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"[task {k}]" in done.stdout and "done" in done.stdout and "[train]" not in done.stdout + done.stderr
    assert "seed 0 main epoch 2" in rw.fold("foalnet", 1).joinpath("train.log").read_text()
    wrong = subprocess.run(["bash", str(script)], env={**env(), "SLURM_ARRAY_TASK_ID": "4"},
                           capture_output=True, text=True, timeout=60)
    assert wrong.returncode == 2 and "must be one of 0-3" in wrong.stderr

    done = subprocess.run(["bash", str(gather)], env=env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert (rw.root / "report" / "summary.md").is_file()
    zips = list((tmp_path / "subs").glob("linear+foalnet-*.zip"))
    assert len(zips) == 1 and f"{zips[0]}: valid" in done.stdout

    here, ran = ran_here
    assert ran.returncode == 0, ran.stdout + ran.stderr
    rw_here = release_work(here, emi_data)
    for model in ("linear", "foalnet"):
        for k in range(2):
            for name in ("oof.csv", "test.csv"):
                assert (rw.fold(model, k) / name).read_bytes() == (rw_here.fold(model, k) / name).read_bytes()
    assert ensemble.main(["--data", str(emi_data), "--work", str(here), "--runs", MODELS]) == 0
    for name in ("oof.csv", "test.csv"):
        assert (rw.predictions / name).read_bytes() == (rw_here.predictions / name).read_bytes()
    blends = [json.loads((r.predictions / "blend.json").read_text()) for r in (rw, rw_here)]
    assert blends[0]["weights"] == blends[1]["weights"]


def test_jobs_run_console_is_a_progress_report(emi_data, ran_here):
    """One line per finished fold with its held-out score; the folds' own output (epochs,
    the text model's loading) only in their train.log."""
    work, done = ran_here
    assert done.returncode == 0, done.stdout + done.stderr
    rw = release_work(work, emi_data)
    for model in ("linear", "foalnet"):
        for k in range(2):
            score = json.loads((rw.fold(model, k) / "metrics.json").read_text())["held_score"]
            assert f"[jobs] {model} fold {k}: held-out pearson {score:.4f}" in done.stdout
            log = (rw.fold(model, k) / "train.log").read_text()
            assert f"[train] {model} fold {k} seed 0 main epoch 1" in log and "-m solution.train_fold" in log
    console = done.stdout + done.stderr
    assert "[train]" not in console and "epoch" not in console and "Loading" not in console
    assert "folds: 100%" in done.stderr and "4/4" in done.stderr
    assert "[jobs] 4 of 4 folds done" in done.stdout


def test_jobs_run_reports_a_failed_fold_and_lets_the_others_finish(emi_data, emi_features, tmp_path):
    work = fresh_work(emi_data, emi_features, tmp_path / "work")
    # A setting foalnet does not have: its folds fail (first), linear's train to the end.
    done = jobs_cli("run", "--data", str(emi_data), "--work", str(work), "--models", "foalnet,linear",
                    "--jobs", "2", "--threads", "1", "--", *TRAIN, "--set", "model.foalnet.nonexistent=1")
    assert done.returncode == 1, done.stdout + done.stderr
    rw = release_work(work, emi_data)
    for k in range(2):
        log = rw.fold("foalnet", k) / "train.log"
        assert f"[jobs] FAILED foalnet fold {k} (exit 2); log: {log}" in done.stderr
        assert "model.foalnet.nonexistent: no such setting" in log.read_text()
        assert f"[jobs] linear fold {k}: held-out pearson" in done.stdout
        assert (rw.fold("linear", k) / "metrics.json").is_file()
    assert "| error: --set model.foalnet.nonexistent: no such setting" in done.stderr  # the log's last lines
    assert "2 of 4 folds done" in done.stderr

    # Rerun without the bad setting: linear's folds count as done, foalnet's train.
    again = jobs_cli("run", "--data", str(emi_data), "--work", str(work), "--models", "foalnet,linear",
                     "--jobs", "2", "--threads", "1", "--", *TRAIN)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "2 finished earlier" in again.stdout and "[jobs] linear fold 1: held-out pearson" in again.stdout
    assert "(trained earlier)" in again.stdout and "[jobs] 4 of 4 folds done" in again.stdout


def test_gpu_slots():
    """Slot i takes GPU i mod the GPUs (an existing CUDA_VISIBLE_DEVICES list is what they share)."""
    assert [gpus_for_slot(i, ["0", "1"]) for i in range(5)] == [["0"], ["1"], ["0"], ["1"], ["0"]]
    assert [gpus_for_slot(i, ["0", "1", "2", "3"], per_slot=2) for i in range(3)] == [["0", "1"], ["2", "3"],
                                                                                         ["0", "1"]]
    assert gpu_ids(None, None, detect=lambda: 3) == ["0", "1", "2"]
    assert gpu_ids(2, None, detect=lambda: 8) == ["0", "1"]
    assert gpu_ids(None, "2,3", detect=lambda: pytest.fail("the list is given")) == ["2", "3"]
    assert gpu_ids(1, "5,7") == ["5"]
    assert gpu_ids(None, "", detect=lambda: 0) == []
    assert jobs.count_nvidia_smi("GPU 0: NVIDIA A100 (UUID: GPU-1)\nGPU 1: NVIDIA A100 (UUID: GPU-2)\n") == 2
    assert slot_environment(3, "cuda", ["4", "6"]) == {"CUDA_VISIBLE_DEVICES": "6"}
    assert slot_environment(3, "cpu", ["4", "6"]) == {} and slot_environment(0, "cuda:1", ["0"]) == {}


def test_cuda_without_gpus_is_an_error(emi_data, emi_features, tmp_path, monkeypatch, capsys):
    work = fresh_work(emi_data, emi_features, tmp_path / "work")
    monkeypatch.setattr(jobs, "detect_gpus", lambda: 0)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert jobs.main(["run", "--data", str(emi_data), "--work", str(work), "--models", "linear",
                      "--device", "cuda", "--gpus-per-fold", "1"]) == 2
    assert "no GPU found" in capsys.readouterr().err
    assert jobs.main(["list", "--data", str(emi_data), "--work", str(work), "--models", "linear",
                      "--gpus-per-fold", "2"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert len(listed) == 2 and "-m torch.distributed.run --standalone --nproc-per-node 2 -m solution.train_fold" \
        in listed[0] and "--device cuda" in listed[0]
    assert jobs.main(["list", "--data", str(emi_data), "--work", str(work), "--models", "linear",
                      "--", "--device", "cuda"]) == 2
    assert "--device after --" in capsys.readouterr().err


def fake_job(root: Path, k: int, code: str) -> Job:
    return Job("fake", k, (sys.executable, "-c", code), root / f"fold{k}")


def test_slots_get_their_gpu_and_a_failure_shows_its_log_tail(tmp_path):
    """Without GPUs: each slot's CUDA_VISIBLE_DEVICES as the processes see it; a failed job's
    last 20 lines; the other jobs finish."""
    show = "import os; print('gpu', os.environ.get('CUDA_VISIBLE_DEVICES'))"
    fail = "import time\nfor i in range(30): print('line', i)\ntime.sleep(0.5)\nraise SystemExit(3)"
    batch = [fake_job(tmp_path, 0, fail), fake_job(tmp_path, 1, show + "; import time; time.sleep(3)"),
             fake_job(tmp_path, 2, show)]
    out, err = io.StringIO(), io.StringIO()
    code = run_jobs(batch, 2, lambda slot: slot_environment(slot, "cuda", ["5", "7"]), out=out, err=err)
    assert code == 1
    assert "gpu 7" in (tmp_path / "fold1" / "train.log").read_text()
    assert "gpu 5" in (tmp_path / "fold2" / "train.log").read_text()  # slot 0, freed by the failed job
    text = err.getvalue()
    assert f"FAILED fake fold 0 (exit 3); log: {tmp_path / 'fold0' / 'train.log'}" in text
    assert "| line 29" in text and "| line 10" in text and "| line 9\n" not in text
    assert "fake fold 1: done" in out.getvalue() and "fake fold 2: done" in out.getvalue()


INTERRUPTED = """
import sys
from pathlib import Path
from solution.jobs import Job, run_jobs
root = Path(sys.argv[1])
code = "import os, time; open(os.path.join(%r, 'pid%d'), 'w').write(str(os.getpid())); print('started', flush=True); time.sleep(120)"
batch = [Job("fake", k, (sys.executable, "-c", code % (str(root), k)), root / f"fold{k}") for k in range(3)]
sys.exit(run_jobs(batch, 2, grace=20))
"""


def test_sigterm_stops_every_running_job(tmp_path):
    runner = subprocess.Popen([sys.executable, "-c", INTERRUPTED, str(tmp_path)], env=env(), cwd=REPO,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not all((tmp_path / f"pid{k}").is_file() for k in range(2)) and time.time() < deadline:
        time.sleep(0.1)
    time.sleep(0.3)
    runner.send_signal(signal.SIGTERM)
    out, err = runner.communicate(timeout=60)
    assert runner.returncode == 128 + signal.SIGTERM, out + err
    assert "SIGTERM: stopping 2 running fold(s)" in err and "1 not started" in err
    for k in range(2):
        pid = int((tmp_path / f"pid{k}").read_text())
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
        assert "solution.jobs: stopped (SIGTERM)" in (tmp_path / f"fold{k}" / "train.log").read_text()
    assert not (tmp_path / "fold2").exists()
