"""`solution.jobs sbatch` on a real Slurm cluster: the job array and its dependent gather job,
submitted with sbatch, train `linear` and `rcma` on 2 folds of a small EMI release from
scratch; the fold predictions and the submission zip equal those of `solution.jobs run` (the
same gather stage, on this machine) for the same folds in another work folder.

A cluster is reachable when `sinfo` answers: tests/slurm_cluster.sh starts a one-node one
(`eval "$(bash tests/slurm_cluster.sh start)"`, as .ci/run does) and sets ABAW_SLURM. Without
one the test is skipped with the reason; under CI=true as root it fails instead, since CI
must test Slurm, unless Debian's packages could not be installed. On one's own cluster: ABAW_SLURM_TMP, a folder the compute nodes see (the
release, the work folders and the zips go there); ABAW_SLURM_SBATCH, more sbatch options
(e.g. "--partition=cpu --account=abc"); ABAW_SLURM_TIMEOUT, seconds to wait (default 400)."""
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import pytest

from solution.predictions import prediction_filename
from solution.runs import release_work

REPO = Path(__file__).resolve().parent.parent
MODELS = ["linear", "rcma"]
FOLDS = 2
TRAIN = ["--set", "epochs=2", "--set", "seeds=1"]  # a few seconds a fold
RELEASE = ["--track", "emi", "--videos", "24", "--subjects", "6", "--seconds", "2", "--fps", "8", "--size", "48"]
START = 'eval "$(bash tests/slurm_cluster.sh start)"'


def env():
    return {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def run(argv, timeout=300, **kwargs):
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, env=env(), cwd=REPO,
                          timeout=timeout, **kwargs)


def ok(argv, timeout=300):
    done = run(argv, timeout)
    assert done.returncode == 0, f"{shlex.join(map(str, argv))}: exit {done.returncode}\n" \
                                 f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def py(module, *args, timeout=300):
    return ok([sys.executable, "-m", f"solution.{module}", *args], timeout)


def sinfo_answers() -> str | None:
    """None when a Slurm cluster answers, else why not."""
    if not shutil.which("sbatch") or not shutil.which("sinfo"):
        return "sbatch/sinfo not installed"
    try:
        done = subprocess.run(["sinfo", "-h", "-o", "%T %D"], capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        return "sinfo did not answer in 20 s"
    if done.returncode != 0:
        return f"sinfo fails: {(done.stderr.strip().splitlines() or [f'exit {done.returncode}'])[-1][:300]}"
    if not any(line.split()[0].rstrip("*~#") in ("idle", "mixed", "allocated", "completing")
               for line in done.stdout.splitlines() if line.strip()):
        return f"no node that can run jobs (sinfo: {done.stdout.strip()[:300]})"
    return None


@pytest.fixture(scope="module")
def cluster():
    """Skip (or, in CI as root, fail) without a cluster that answers."""
    state = os.environ.get("ABAW_SLURM", "")
    reason = sinfo_answers()
    if reason is None:
        return
    if state.startswith("unavailable"):
        reason = f"{state} (then: {reason})"
    else:
        reason = f"no Slurm cluster: {reason}; as root, start one on this machine with: {START}"
    no_package = "apt-get" in state  # Slurm cannot be had here: skipped, as off root
    if os.environ.get("CI", "").lower() in ("true", "1") and os.geteuid() == 0 and not no_package:
        pytest.fail(f"CI runs as root, so it must test Slurm (.ci/run starts the cluster): {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def root(cluster):
    """A folder the compute nodes see: ABAW_SLURM_TMP, or a temporary one (a one-node cluster)."""
    base = os.environ.get("ABAW_SLURM_TMP")
    if base:
        Path(base).mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix="abaw-slurm-test-", dir=base or None))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def squeue(ids: list[str]) -> list[list[str]]:
    """`id state reason` of those jobs (array tasks one a line) still known to the queue."""
    done = subprocess.run(["squeue", "-h", "-j", ",".join(ids), "-o", "%i %T %r"], capture_output=True,
                          text=True, timeout=30)
    if done.returncode != 0:  # ids that finished long ago: squeue says "Invalid job id"
        return [] if "Invalid job id" in done.stderr else [["squeue", "error", done.stderr.strip()]]
    return [line.split(None, 2) for line in done.stdout.splitlines() if line.strip()]


def slurm_outputs(rw) -> str:
    text = []
    for path in sorted((rw.root / "slurm").glob("*.out")):
        text.append(f"--- {path}\n" + "\n".join(path.read_text(errors="replace").splitlines()[-15:]))
    return "\n".join(text) or "(no Slurm output file)"


def wait_for(ids: list[str], rw, timeout: float) -> None:
    """Until none of the jobs is queued or running; fails (and cancels them) on a dependency
    that can never be met, or after `timeout` seconds."""
    deadline = time.time() + timeout
    while True:
        left = squeue(ids)
        if not left:
            return
        never = [row for row in left if len(row) > 2 and "DependencyNeverSatisfied" in row[2]]
        if never or time.time() > deadline:
            subprocess.run(["scancel", *ids], capture_output=True, timeout=30)
            why = "a job the gather depends on failed" if never else f"not finished after {timeout:.0f} s"
            pytest.fail(f"Slurm jobs {ids}: {why}; queue: {left}\n{slurm_outputs(rw)}")
        time.sleep(2)


def zip_members(path: Path) -> dict:
    with zipfile.ZipFile(path) as z:
        return {name: z.read(name) for name in z.namelist()}


def test_sbatch_array_and_gather_on_slurm_equal_jobs_run(root):
    seconds = {}
    t0 = time.time()
    data, on_slurm, here = root / "release", root / "work-slurm", root / "work-here"
    py("synth", *RELEASE, "--out", data, "--workers", "2")
    py("features", "--data", data, "--work", on_slurm, "--workers", "2")
    shutil.copytree(on_slurm / "features", here / "features")  # one extraction for both work folders
    for work in (on_slurm, here):
        py("folds", "--data", data, "--work", work, "--k", str(FOLDS))
    seconds["release, features, folds"] = time.time() - t0

    # The array and its gather job, submitted as the sbatch script says.
    script, subs = root / "folds.sbatch", root / "subs-slurm"
    extra = [f"--sbatch={option}" for option in shlex.split(os.environ.get("ABAW_SLURM_SBATCH", ""))]
    py("jobs", "sbatch", "--data", data, "--work", on_slurm, "--models", ",".join(MODELS), "--folds", str(FOLDS),
       "--out", script, "--cpus-per-task", "1", "--time", "00:20:00", "--job-name", "abaw-test",
       "--submissions", subs, *extra, "--", *TRAIN)
    gather = root / "folds.gather.sh"
    t1 = time.time()
    array_id = ok(["sbatch", "--parsable", script], 60).stdout.strip().split(";")[0]
    gather_id = ok(["sbatch", "--parsable", f"--dependency=afterok:{array_id}", gather], 60).stdout.strip().split(";")[0]
    assert array_id.isdigit() and gather_id.isdigit(), (array_id, gather_id)

    # Meanwhile, the same folds on this machine, and the same gather stage by hand.
    t2 = time.time()
    py("jobs", "run", "--data", data, "--work", here, "--models", ",".join(MODELS), "--folds", str(FOLDS),
       "--jobs", "2", "--threads", "1", "--", *TRAIN, timeout=600)
    rw_here = release_work(here, data)
    py("ensemble", "--data", data, "--work", here, "--runs", ",".join(MODELS))
    pred = rw_here.predictions / prediction_filename(rw_here.track, "test")
    py("submit", "--track", "emi", "--pred", pred, "--data", data, "--out-dir", root / "subs-here", "--name", "here")
    seconds["jobs run + gather here"] = time.time() - t2

    rw = release_work(on_slurm, data)
    wait_for([array_id, gather_id], rw, float(os.environ.get("ABAW_SLURM_TIMEOUT", "400")))
    seconds["slurm, from submission"] = time.time() - t1

    # Every task ran under Slurm, and finished; then the gather job.
    outputs = slurm_outputs(rw)
    for k, (model, fold) in enumerate((m, f) for m in MODELS for f in range(FOLDS)):
        log = rw.fold(model, fold).joinpath("train.log")
        assert log.is_file(), f"no {log}\n{outputs}"
        assert f"slurm job {array_id} task {k} on " in log.read_text(), outputs
        assert (rw.fold(model, fold) / "metrics.json").is_file(), f"{model} fold {fold} did not finish\n{outputs}"
    task_outputs = list((rw.root / "slurm").glob(f"abaw-test-{array_id}_*.out"))
    assert len(task_outputs) == len(MODELS) * FOLDS, outputs
    assert all(": done; log: " in p.read_text() for p in task_outputs), outputs
    gathered = (rw.root / "slurm" / f"abaw-test-gather-{gather_id}.out")
    assert gathered.is_file() and "done: the report in" in gathered.read_text(), outputs
    assert (rw.root / "report" / "summary.md").is_file()

    # The same predictions, fold by fold and blended, and the same zip.
    for model in MODELS:
        for fold in range(FOLDS):
            for name in ("oof.csv", "test.csv"):
                assert (rw.fold(model, fold) / name).read_bytes() == (rw_here.fold(model, fold) / name).read_bytes(), \
                    f"{model} fold {fold} {name} differs"
    for name in ("oof.csv", "test.csv"):
        assert (rw.predictions / name).read_bytes() == (rw_here.predictions / name).read_bytes()
    blends = [json.loads((r.predictions / "blend.json").read_text()) for r in (rw, rw_here)]
    assert blends[0]["weights"] == blends[1]["weights"]
    zips = sorted(subs.glob("linear+rcma-*.zip"))
    assert len(zips) == 1, (zips, outputs)
    assert f"{zips[0]}: valid" in gathered.read_text()
    slurm_zip, here_zip = zip_members(zips[0]), zip_members(root / "subs-here" / "here.zip")
    assert sorted(slurm_zip) == sorted(here_zip) and slurm_zip, (sorted(slurm_zip), sorted(here_zip))
    assert slurm_zip == here_zip
    seconds["total"] = time.time() - t0
    print("[slurm test] seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in seconds.items()))
