"""python -m solution.jobs: every (model, fold) of a release as one train_fold command; listed,
written as a Slurm job array, or run on this machine N at a time.

    python -m solution.jobs list   --data D --work W --models dual_stage,foalnet --folds 5 [-- TRAIN_FOLD FLAGS]
    python -m solution.jobs sbatch --data D --work W --models dual_stage,foalnet,linear --blend dual_stage,foalnet \\
        --out folds.sbatch [--partition P --gpus-per-task 1 --time 04:00:00 --cpus-per-task 8] [-- FLAGS]
    python -m solution.jobs run    --data D --work W --models dual_stage,foalnet --jobs 4 [--device cuda] [-- FLAGS]

Flags after `--` go to every `python -m solution.train_fold` (e.g. `--config run.toml --set
epochs=30 --log-every 10`); --folds defaults to the folds of WORK's fold file (solution.folds
makes it, and the features, before any fold is trained). Data and work paths are made
absolute and the interpreter is this one, so the commands run from any folder of a machine
that sees the same files (with the checkout on PYTHONPATH, or from the checkout).

--label-delays FILE (frame-level tracks): solution.delay's delay.json; fold k's command gets
`--set label_delay=<d_k>`, d_k being FILE's by_fold entry for fold k, the delay chosen on
fold k's training videos alone (run_all.sh passes it with LABEL_DELAY=auto). A FILE that is
missing or damaged, a planned fold it has no delay for, or a `--set label_delay` after `--`
as well, is an error; one delay for every fold is `-- --set label_delay=0.4` instead.

list: one shell-quoted command per line, models in the given order and folds in order, for
any scheduler (GNU parallel, a cluster's array jobs, a notebook loop). Each starts with `env
TRACK=<track>` (and `TEST_LISTING=<path>` when one was named), as the sbatch scripts export
them: a release holding several tracks is then read as the one the jobs were planned for.

sbatch: FILE, a Slurm job-array script whose task k runs line k+1 of that list, its output
appended to the fold's log (WORK/<track>-<fingerprint>/runs/<model>/fold<k>/train.log;
Slurm's own output goes to .../slurm/), and FILE's gather script (folds.sbatch ->
folds.gather.sh): solution.ensemble (the blend of --blend, default every model),
solution.report and solution.submit, which only read the folds' files. Both are plain bash:

    jobid=$(sbatch --parsable folds.sbatch) && sbatch --dependency=afterok:$jobid folds.gather.sh
    for k in 0 1 2; do SLURM_ARRAY_TASK_ID=$k bash folds.sbatch; done && bash folds.gather.sh   # no Slurm

run: the commands on this machine, --jobs at a time, each a subprocess whose output goes to
its fold's train.log; the console shows one progress bar (folds done of planned, time left),
one line per finished fold with its held-out score, and for a failed fold its log and the
log's last lines. The other folds go on; the exit status is 1 if any fold failed. Each
process gets --threads cores/jobs; with --device cuda each parallel slot its own GPU
(CUDA_VISIBLE_DEVICES: slot i takes GPU i mod the number of GPUs, counted by torch or
`nvidia-smi -L`, or given by --gpus / $GPUS; an existing CUDA_VISIBLE_DEVICES list is what
the slots share). Ctrl-C or SIGTERM interrupts every running fold (SIGINT, then SIGKILL after
--grace seconds) and exits 130/143. Rerunning resumes: train_fold skips finished folds (they
count as done; a fold finished with other settings fails, naming what changed) and resumes
interrupted ones from their last.pt.

--gpus-per-fold G > 1 trains each fold on G GPUs with torchrun (`python -m
torch.distributed.run --standalone --nproc-per-node G`; see solution/distributed.py).
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from solution.errors import DataError
from solution.listing import add_test_listing_option

REPO = Path(__file__).resolve().parent.parent
# train_fold flags that solution.jobs sets itself: after `--` they would contradict the plan.
OWN_FLAGS = ("--model", "--fold", "--data", "--work", "--name", "--device", "--threads")
TAIL_LINES = 20


@dataclass(frozen=True)
class Job:
    model: str
    fold: int
    argv: tuple          # the whole command, interpreter first
    fold_dir: Path       # WORK/<release>/runs/<model>/fold<k>

    @property
    def log(self) -> Path:
        return self.fold_dir / "train.log"

    @property
    def metrics(self) -> Path:
        from solution.runs import FoldFiles

        return FoldFiles(self.fold_dir).metrics

    @property
    def label(self) -> str:
        return f"{self.model} fold {self.fold}"

    @property
    def command(self) -> str:
        return shlex.join(self.argv)


# ------------------------------------------------------------------ the plan

def split_argv(argv: list[str]) -> tuple[list[str], list[str]]:
    """(solution.jobs' own arguments, train_fold flags after the first `--`)."""
    if "--" in argv:
        i = argv.index("--")
        return argv[:i], argv[i + 1:]
    return argv, []


def check_extra(extra: list[str]) -> None:
    for token in extra:
        flag = token.split("=", 1)[0]
        if flag in OWN_FLAGS:
            hint = ("solution.jobs names every run after its model" if flag == "--name" else
                    "give it to solution.jobs itself, before --" if flag in ("--device", "--threads") else
                    "solution.jobs writes one command per model and fold")
            raise DataError(f"{flag} after --: {hint}")


def planned_folds(rw, data, folds: int | None) -> list[int]:
    """0..folds-1; without --folds, the folds of the release's fold file."""
    from solution.runs import read_folds

    try:
        table, _ = read_folds(rw, data)
    except DataError:
        if folds is None:
            raise
        return list(range(folds))
    have = sorted(int(f) for f in set(table["fold"]) if int(f) >= 0)
    if folds is None:
        return have
    if have != list(range(folds)):
        print(f"[jobs] warning: --folds {folds}, but {rw.folds_csv} has folds {have}", file=sys.stderr)
    return list(range(folds))


def set_keys(extra: list[str]) -> list[str]:
    """The setting names of the `--set KEY=VALUE` (or `--set=KEY=VALUE`) flags among train_fold flags."""
    values = [extra[i + 1] for i, token in enumerate(extra[:-1]) if token == "--set"]
    values += [token.split("=", 1)[1] for token in extra if token.startswith("--set=")]
    return [value.partition("=")[0].strip() for value in values]


def read_label_delays(path: Path, folds: list[int], extra: list[str], assignment: str | None = None) -> dict[int, float]:
    """--label-delays FILE -> {fold: label delay} for every planned fold, from FILE's by_fold
    (solution.delay's delay.json: each fold's delay chosen on its training videos alone), when
    they were chosen for the fold file whose digest is `assignment` (delays chosen on other
    folds may have seen a fold's held-out videos)."""
    from solution import fileio

    if any(key in ("label_delay", "train.label_delay") for key in set_keys(extra)):
        raise DataError(f"--label-delays {path} and --set label_delay after --: both were given; give one "
                        "(each fold its own delay from the file, or the --set delay for every fold)")
    if not Path(path).is_file():
        raise DataError(f"--label-delays {path}: no such file; python -m solution.delay writes it "
                        "(WORK/<track>-<fingerprint>/delay.json)")
    info = fileio.read_json(path, "label delay file", "run python -m solution.delay again")
    by_fold = info.get("by_fold") if isinstance(info, dict) else None
    if not isinstance(by_fold, dict):
        raise DataError(f"{path}: no by_fold table (fold -> label delay), damaged or written by an older "
                        "solution.delay; run python -m solution.delay again")
    if assignment is not None and info.get("fold_assignment") not in (None, assignment):
        raise DataError(f"{path}: its delays were chosen for other folds than the fold file's (remade since?); run "
                        "python -m solution.delay again")
    missing = [k for k in folds if str(k) not in by_fold]
    if missing:
        raise DataError(f"{path}: no label delay for fold(s) {missing} (it has fold(s) {', '.join(sorted(by_fold))}); "
                        "run python -m solution.delay again on this fold file")
    delays = {}
    for k in folds:
        value = by_fold[str(k)]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
            raise DataError(f"{path}: fold {k}'s label delay {value!r} is not a number of seconds >= 0; "
                            "run python -m solution.delay again")
        delays[k] = float(value)
    return delays


def fold_command(python: str, model: str, fold: int, data: Path, work: Path, device: str | None,
                 threads: int | None, gpus_per_fold: int, extra: list[str]) -> tuple:
    head = [python]
    if gpus_per_fold > 1:
        head += ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(gpus_per_fold)]
    argv = head + ["-m", "solution.train_fold", "--model", model, "--fold", str(fold), "--data", str(data),
                   "--work", str(work)]
    if device:
        argv += ["--device", device]
    if threads:
        argv += ["--threads", str(threads)]
    return tuple(argv + list(extra))


def plan(args, extra: list[str], threads: int | None) -> tuple[list[Job], object, Path, Path]:
    """Every (model, fold) as a Job; the release's work folder; the absolute data and work paths."""
    from solution.runs import release_work

    check_extra(extra)
    models = [m for m in args.models.split(",") if m]
    if not models:
        raise DataError("--models names no model")
    if len(set(models)) != len(models):
        raise DataError(f"--models names a model twice: {args.models}")
    from solution.models import model_names  # imports torch: only once the cheap checks passed

    unknown = [m for m in models if m not in model_names()]
    if unknown:
        raise DataError(f"unknown model(s) {unknown}; known: {model_names()}")
    if not Path(args.data).is_dir():
        raise DataError(f"--data {args.data} is not a folder")
    data, work = Path(args.data).resolve(), Path(args.work).resolve()
    rw = release_work(work, data)
    folds = planned_folds(rw, data, args.folds)
    if not folds:
        raise DataError(f"{rw.folds_csv}: no fold to train")
    delays = {}
    if args.label_delays:
        from solution.runs import folds_digest, read_folds

        delays = read_label_delays(args.label_delays, folds, extra, folds_digest(read_folds(rw, data)[0]))

    def own_extra(k: int) -> list[str]:
        return extra + (["--set", f"label_delay={delays[k]}"] if k in delays else [])

    jobs = [Job(m, k, fold_command(args.python, m, k, data, work, args.device, threads, args.gpus_per_fold,
                                   own_extra(k)), rw.fold(m, k))
            for m in models for k in folds]
    return jobs, rw, data, work


def device_for(args) -> str | None:
    """--device, or cuda when GPUs are asked for."""
    return args.device or ("cuda" if args.gpus_per_fold else None)


# ------------------------------------------------------------------ GPUs

def count_nvidia_smi(text: str) -> int:
    """GPUs in the output of `nvidia-smi -L` (one 'GPU i: ...' line each)."""
    return sum(1 for line in text.splitlines() if line.strip().startswith("GPU "))


def detect_gpus() -> int:
    """GPUs this process sees: torch.cuda.device_count(), else the lines of `nvidia-smi -L`."""
    try:
        import torch

        count = torch.cuda.device_count()
        if count:
            return count
    except Exception:  # a broken CUDA install: ask the driver instead
        pass
    try:
        done = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return 0
    return count_nvidia_smi(done.stdout) if done.returncode == 0 else 0


def gpu_ids(count: int | None, visible: str | None, detect=None) -> list[str]:
    """The GPUs the slots share: the CUDA_VISIBLE_DEVICES list when one is set (its first
    `count` when given), else 0..count-1 (count detected when None)."""
    if visible is not None and visible.strip():
        ids = [v.strip() for v in visible.split(",") if v.strip()]
        return ids[:count] if count else ids
    return [str(i) for i in range((detect or detect_gpus)() if count is None else count)]


def gpus_for_slot(slot: int, ids: list[str], per_slot: int = 1) -> list[str]:
    """The GPUs of parallel slot `slot`: slot i takes GPU i mod len(ids) (with per_slot GPUs a
    slot, the per_slot GPUs from i*per_slot on, wrapping around)."""
    if not ids:
        raise ValueError("no GPU to assign")
    return [ids[(slot * per_slot + j) % len(ids)] for j in range(per_slot)]


def slot_environment(slot: int, device: str | None, ids: list[str], per_slot: int = 1) -> dict:
    """Environment variables of a process started in `slot`: its GPUs on `--device cuda`
    (a pinned cuda:N, or the CPU, leaves CUDA_VISIBLE_DEVICES as it is)."""
    if device != "cuda":
        return {}
    return {"CUDA_VISIBLE_DEVICES": ",".join(gpus_for_slot(slot, ids, per_slot))}


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


# ------------------------------------------------------------------ running here

def tail(path: Path, start: int = 0, lines: int = TAIL_LINES) -> list[str]:
    """The last lines of a log from byte `start` on (a progress bar's redraws: its last state)."""
    try:
        with open(path, "rb") as f:
            f.seek(start)
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return []
    return [line.rsplit("\r", 1)[-1] for line in text.rstrip("\n").split("\n")][-lines:] if text.strip() else []


def read_metrics(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def finished_line(job: Job, earlier: bool) -> str:
    metrics = read_metrics(job.metrics)
    if metrics is None or "held_score" not in metrics:
        return f"[jobs] {job.label}: done (no readable {job.metrics})"
    when = "trained earlier" if earlier else f"{metrics.get('seconds', 0):.0f} s"
    return f"[jobs] {job.label}: held-out {metrics.get('metric', 'score')} {metrics['held_score']:.4f} ({when})"


class _Running:
    def __init__(self, job: Job, slot: int, process, log_file, start: int, earlier: bool):
        self.job, self.slot, self.process, self.log_file, self.start, self.earlier = (
            job, slot, process, log_file, start, earlier)


def child_environment(extra: dict) -> dict:
    env = dict(os.environ)
    paths = env.get("PYTHONPATH", "").split(os.pathsep) if env.get("PYTHONPATH") else []
    if str(REPO) not in paths:
        env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + paths)
    env["PYTHONUNBUFFERED"] = "1"  # the log follows the fold as it trains
    env.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # no model-loading bars in the logs
    env.update(extra)
    return env


class _Folds:
    """The folds of one run_jobs call: waiting, running (by slot) and failed, with the console's
    progress bar; starts them, and reaps the finished."""

    def __init__(self, jobs: list[Job], done_before: set, bar, env_for_slot, out, err):
        self.done_before, self.bar, self.env_for_slot, self.out, self.err = done_before, bar, env_for_slot, out, err
        # Folds finished earlier first: they are quick no-ops, and a changed setting shows at once.
        self.pending = [j for j in jobs if j in done_before] + [j for j in jobs if j not in done_before]
        self.running: dict[int, _Running] = {}
        self.failed: list[tuple[Job, str]] = []
        self.live = hasattr(err, "isatty") and err.isatty()

    def run(self, slots: int, stop: list, poll: float) -> None:
        """Until every fold has finished, or a signal arrived (in `stop`)."""
        last_refresh = time.time()
        while (self.pending or self.running) and not stop:
            while self.pending and len(self.running) < slots and not stop:
                free = min(set(range(slots)) - set(self.running))
                self.start(self.pending.pop(0), free)
                self.status()
            if self.reap():
                self.status()
            elif self.live and time.time() - last_refresh >= 1.0:
                self.bar.refresh()
                last_refresh = time.time()
            time.sleep(poll)

    def status(self) -> None:
        self.bar.set_postfix_str(f"{len(self.running)} running" + (f", {len(self.failed)} failed" if self.failed else ""),
                                 refresh=False)
        if self.live:  # in a log file, the bar prints only as folds finish (at most every 10 s)
            self.bar.refresh()

    def write(self, text: str, stream) -> None:
        self.bar.write(text, file=stream)
        stream.flush()

    def start(self, job: Job, slot: int) -> None:
        job.log.parent.mkdir(parents=True, exist_ok=True)
        log_file = open(job.log, "ab")
        offset = log_file.tell()
        extra = self.env_for_slot(slot)
        where = f" (CUDA_VISIBLE_DEVICES={extra['CUDA_VISIBLE_DEVICES']})" if "CUDA_VISIBLE_DEVICES" in extra else ""
        log_file.write(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} solution.jobs slot {slot}{where}: "
                       f"{job.command}\n".encode())
        log_file.flush()
        try:
            process = subprocess.Popen(job.argv, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                                       cwd=REPO, env=child_environment(extra), start_new_session=True)
        except OSError as exc:
            log_file.write(f"cannot start: {exc}\n".encode())
            log_file.close()
            self.finish_failed(job, offset, f"could not start: {exc}", job in self.done_before)
            return
        self.running[slot] = _Running(job, slot, process, log_file, offset, job in self.done_before)

    def finish_failed(self, job: Job, offset: int, why: str, earlier: bool) -> None:
        self.failed.append((job, why))
        if earlier:  # counted as done at the start; it is not (initial too: the rate counts new folds only)
            self.bar.n -= 1
            self.bar.initial -= 1
        lines = "\n".join("    | " + line for line in tail(job.log, offset))
        self.write(f"[jobs] FAILED {job.label} ({why}); log: {job.log}; its last lines:\n{lines}", self.err)

    def reap(self) -> bool:
        """Close the folds whose process has ended; True when there was one."""
        any_done = False
        for slot, r in list(self.running.items()):
            code = r.process.poll()
            if code is None:
                continue
            any_done = True
            del self.running[slot]
            r.log_file.close()
            if code == 0:
                if not r.earlier:
                    self.bar.update(1)
                self.write(finished_line(r.job, r.earlier), self.out)
            else:
                self.finish_failed(r.job, r.start, f"exit {code}" if code > 0 else f"killed by signal {-code}",
                                   r.earlier)
        return any_done


def run_jobs(jobs: list[Job], slots: int, env_for_slot=lambda slot: {}, grace: float = 30.0,
             out=None, err=None, poll: float = 0.25) -> int:
    """Run the jobs, `slots` at a time; 0 when every one succeeded, 1 when any failed (after
    the others finished), 128+signal when interrupted."""
    from solution.progress import progress

    out, err = out or sys.stdout, err or sys.stderr
    slots = max(1, min(slots, len(jobs)))
    done_before = {job for job in jobs if job.metrics.is_file()}
    started = time.time()
    stop: list[int] = []
    handlers = _catch_signals(stop)
    bar = progress(total=len(jobs), initial=len(done_before), desc="folds", unit="fold", file=err)
    folds = _Folds(jobs, done_before, bar, env_for_slot, out, err)
    try:
        folds.status()
        folds.run(slots, stop, poll)
        if stop:
            return _interrupt(folds.running, stop, grace, bar, folds.write, err, folds.pending)
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        bar.close()
    total = time.time() - started
    if folds.failed:
        print(f"[jobs] {len(jobs) - len(folds.failed)} of {len(jobs)} folds done in {total:.0f} s; "
              f"{len(folds.failed)} failed: " + ", ".join(f"{job.label} (log: {job.log})" for job, _ in folds.failed),
              file=err, flush=True)
        return 1
    print(f"[jobs] {len(jobs)} of {len(jobs)} folds done in {total:.0f} s", file=out, flush=True)
    return 0


def _catch_signals(stop: list) -> dict:
    """On the main thread, SIGINT and SIGTERM only append to `stop`, so that the folds are
    stopped in order (_interrupt); returns the handlers they replace."""
    def on_signal(signum, frame):
        stop.append(signum)

    handlers = {}
    if _main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            handlers[sig] = signal.signal(sig, on_signal)
    return handlers


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _interrupt(running: dict, stop: list, grace: float, bar, write, err, pending) -> int:
    """Stop every running fold: SIGINT to its process group (Python unwinds, temporary files
    are removed; last.pt is written atomically each epoch), SIGKILL after `grace` seconds or
    at a second signal."""
    signum = stop[0]
    name = signal.Signals(signum).name
    write(f"[jobs] {name}: stopping {len(running)} running fold(s) "
          f"({', '.join(r.job.label for r in running.values()) or 'none'}); "
          f"{len(pending)} not started. Run the same command again to resume them.", err)
    seen = len(stop)
    for r in running.values():
        _signal_group(r.process, signal.SIGINT)
    deadline = time.time() + grace
    while any(r.process.poll() is None for r in running.values()):
        if time.time() > deadline or len(stop) > seen:
            for r in running.values():
                if r.process.poll() is None:
                    _signal_group(r.process, signal.SIGKILL)
            for r in running.values():
                r.process.wait()
            break
        time.sleep(0.1)
    for r in running.values():
        r.log_file.write(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} solution.jobs: stopped ({name}); "
                         f"run again to resume\n".encode())
        r.log_file.close()
        write(f"[jobs] {r.job.label}: interrupted (log: {r.job.log})", err)
    return 128 + signum


def _signal_group(process, sig) -> None:
    try:
        os.killpg(process.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


# ------------------------------------------------------------------ Slurm

def job_exports(track: str) -> str:
    """The scripts' `export TRACK=... [TEST_LISTING=...]` line, so the tasks read the release as
    the jobs were planned wherever they run: `track` (a release holding several tracks is
    otherwise read as its first), and the test listing when one was named ($TEST_LISTING or
    --test-listing)."""
    from solution.listing import TEST_LISTING_ENV
    from solution.tracks.base import TRACK_ENV

    pairs = [(TRACK_ENV, track)]
    listing = os.environ.get(TEST_LISTING_ENV, "").strip()
    if listing:
        pairs.append((TEST_LISTING_ENV, listing))
    return "export " + " ".join(f"{name}={shlex.quote(value)}" for name, value in pairs) + "\n"


def sbatch_script(jobs: list[Job], rw, options: dict, generated_by: str, gather: Path) -> str:
    """A job-array script: task k runs jobs[k] (line k+1 of `solution.jobs list`), its output
    appended to the fold's train.log."""
    last = len(jobs) - 1
    array = f"0-{last}" + (f"%{options['max_parallel']}" if options.get("max_parallel") else "")
    head = ["#!/usr/bin/env bash", f"#SBATCH --job-name={options['job_name']}", f"#SBATCH --array={array}",
            "#SBATCH --ntasks=1", f"#SBATCH --output={rw.root / 'slurm' / '%x-%A_%a.out'}"]
    head += _sbatch_resources(options)
    script = "\n".join(head) + f"""
#
# Written by: {generated_by}
# One array task per (model, fold): task k runs line k+1 of `python -m solution.jobs list` with the
# same flags (the arms of the case below, in order), appending its output to the fold's train.log.
# A task run again skips a finished fold and resumes an interrupted one from its last.pt.
#
#   submit:        jobid=$(sbatch --parsable {shlex.quote(str(options['out']))}) && sbatch --dependency=afterok:$jobid {shlex.quote(str(gather))}
#   without Slurm: for k in $(seq 0 {last}); do SLURM_ARRAY_TASK_ID=$k bash {shlex.quote(str(options['out']))}; done && bash {shlex.quote(str(gather))}
set -euo pipefail
cd {shlex.quote(str(REPO))}
export PYTHONPATH={shlex.quote(str(REPO))}"${{PYTHONPATH:+:$PYTHONPATH}}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1 HF_HUB_DISABLE_PROGRESS_BARS=1
{job_exports(rw.track.name)}
task="${{SLURM_ARRAY_TASK_ID:-}}"
case "$task" in
"""
    for k, job in enumerate(jobs):
        script += (f"  {k}) name={shlex.quote(job.label)}; log={shlex.quote(str(job.log))}\n"
                   f"     set -- {job.command} ;;\n")
    script += f"""  *) echo "SLURM_ARRAY_TASK_ID must be one of 0-{last} (one task per model and fold), got '$task'" >&2; exit 2 ;;
esac
mkdir -p "$(dirname "$log")"
echo "=== $(date '+%Y-%m-%d %H:%M:%S') slurm job ${{SLURM_ARRAY_JOB_ID:-none}} task $task on $(hostname)${{CUDA_VISIBLE_DEVICES:+ (CUDA_VISIBLE_DEVICES=$CUDA_VISIBLE_DEVICES)}}: $*" >> "$log"
if "$@" >> "$log" 2>&1; then
  echo "[task $task] $name: done; log: $log"
else
  status=$?
  echo "[task $task] $name: FAILED (exit $status); log: $log; its last lines:" >&2
  tail -n {TAIL_LINES} "$log" | sed 's/^/    | /' >&2
  exit "$status"
fi
"""
    return script


def _sbatch_resources(options: dict) -> list[str]:
    lines = []
    for key, flag in (("partition", "partition"), ("time", "time"), ("cpus_per_task", "cpus-per-task"),
                      ("gpus_per_fold", "gpus-per-task"), ("mem", "mem")):
        if options.get(key):
            lines.append(f"#SBATCH --{flag}={options[key]}")
    return lines + [f"#SBATCH {line}" for line in options.get("sbatch", [])]


def gather_commands(python: str, data: Path, work: Path, rw, runs: list[str], blend: list[str],
                    submissions: Path) -> list[str]:
    """The stage after every fold: the blend, the report, the submission zip (each reads only
    the folds' files). The last two use $NAME, set by the script."""
    from solution.predictions import prediction_filename

    track = rw.track.name
    pred = rw.predictions / prediction_filename(rw.track, "test")
    q = shlex.join
    return [
        q([python, "-m", "solution.ensemble", "--data", str(data), "--work", str(work), "--runs", ",".join(blend)]),
        q([python, "-m", "solution.report", "--data", str(data), "--work", str(work), "--runs", ",".join(runs)]),
        f'NAME={shlex.quote("+".join(blend))}-"$(date +%Y%m%d-%H%M%S)"',
        q([python, "-m", "solution.submit", "--track", track, "--pred", str(pred), "--data", str(data),
           "--out-dir", str(submissions)]) + ' --name "$NAME"',
        q([python, "-m", "solution.submit", "--check"]) + f' {shlex.quote(str(submissions))}/"$NAME".zip '
        + q(["--data", str(data), "--track", track]),
    ]


def gather_script(commands: list[str], rw, options: dict, generated_by: str, array_script: Path) -> str:
    head = ["#!/usr/bin/env bash", f"#SBATCH --job-name={options['job_name']}-gather", "#SBATCH --ntasks=1",
            f"#SBATCH --output={rw.root / 'slurm' / '%x-%j.out'}"]
    head += [f"#SBATCH --{k.replace('_', '-')}={options[k]}" for k in ("partition", "time") if options.get(k)]
    head += [f"#SBATCH {line}" for line in options.get("sbatch", [])]
    done = (f'echo "done: the report in" {shlex.quote(str(rw.root / "report"))} "and the submission"'
            f' {shlex.quote(str(options["submissions"]))}/"$NAME.zip"')
    return "\n".join(head) + f"""
#
# Written by: {generated_by}
# The gather stage of {array_script}, once all of its tasks have finished: the blend, the report
# and the submission zip. It reads only the folds' files (oof.csv, test.csv, metrics.json).
#   sbatch --dependency=afterok:<the array's job id> {shlex.quote(str(options['gather']))}    or    bash {shlex.quote(str(options['gather']))}
set -euo pipefail
cd {shlex.quote(str(REPO))}
export PYTHONPATH={shlex.quote(str(REPO))}"${{PYTHONPATH:+:$PYTHONPATH}}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
{job_exports(rw.track.name)}""" + "\n".join(commands + [done]) + "\n"


def gather_path(out: Path) -> Path:
    return out.with_name((out.name.rsplit(".", 1)[0] if "." in out.name else out.name) + ".gather.sh")


# ------------------------------------------------------------------ command line

def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m solution.jobs", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    sub = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data", type=Path, required=True, help="the release")
    common.add_argument("--work", type=Path, required=True, help="the work folder (features, folds, runs)")
    common.add_argument("--models", required=True, help="comma list of models, e.g. dual_stage,foalnet,linear")
    common.add_argument("--folds", type=int, help="folds 0..K-1 of every model (default: those of the fold file)")
    common.add_argument("--device", help="train_fold's --device (cpu, cuda, cuda:N); default cpu, "
                        "or cuda with --gpus-per-fold")
    common.add_argument("--gpus-per-fold", type=int, default=0, metavar="G",
                        help="GPUs per fold; more than 1 trains each fold with torchrun on G processes")
    common.add_argument("--label-delays", type=Path, metavar="FILE",
                        help="solution.delay's delay.json: fold k is trained with --set label_delay=<its by_fold "
                        "delay>, chosen on its training videos alone (not with --set label_delay after --)")
    common.add_argument("--python", default=sys.executable, help="the interpreter of the commands (default: this one)")
    add_test_listing_option(common)
    after = " Flags after -- go to every python -m solution.train_fold (e.g. -- --config run.toml --set epochs=30)."
    lister = sub.add_parser("list", parents=[common], help="print one train_fold command per (model, fold)",
                            description="Print one shell-quoted train_fold command per (model, fold)." + after)
    lister.add_argument("--threads", type=int, help="train_fold's --threads (default: torch's)")
    batch = sub.add_parser("sbatch", parents=[common], help="write a Slurm job-array script and its gather script",
                           description="Write a Slurm job-array script (task k: line k+1 of `list`) and its "
                           "gather script (blend, report, submission)." + after)
    batch.add_argument("--out", type=Path, required=True, help="the array script (its gather script goes beside it)")
    batch.add_argument("--blend", help="comma list of the models the submission blends (default: every model)")
    batch.add_argument("--submissions", type=Path, default=REPO / "submissions", help="where the zip goes")
    batch.add_argument("--job-name", default="abaw-folds")
    batch.add_argument("--partition")
    batch.add_argument("--time", help="time limit of one fold, e.g. 04:00:00")
    batch.add_argument("--cpus-per-task", type=int, help="also train_fold's --threads")
    batch.add_argument("--gpus-per-task", type=int, dest="gpus_per_fold", default=argparse.SUPPRESS, metavar="G",
                       help="GPUs per task: the same as --gpus-per-fold")
    batch.add_argument("--mem", help="memory per fold, e.g. 16G")
    batch.add_argument("--max-parallel", type=int, help="at most this many tasks at once (--array=0-N%%M)")
    batch.add_argument("--sbatch", action="append", default=[], metavar="OPTION",
                       help="another #SBATCH line, e.g. --sbatch=--account=abc (repeatable)")
    runner = sub.add_parser("run", parents=[common], help="run the commands here, N at a time",
                            description="Run the commands here, --jobs at a time, each fold's output in its "
                            "train.log, one progress bar on the console." + after)
    runner.add_argument("--jobs", type=int, default=cores(), help="folds at a time (default: cores)")
    runner.add_argument("--threads", type=int, help="torch threads per fold (default: cores / jobs)")
    runner.add_argument("--gpus", type=int, default=int(os.environ["GPUS"]) if os.environ.get("GPUS", "").isdigit() else None,
                        help="GPUs the slots share with --device cuda (default: $GPUS, else the GPUs found)")
    runner.add_argument("--grace", type=float, default=30.0,
                        help="seconds an interrupted fold gets to stop before it is killed")
    return parser


def main(argv=None) -> int:
    own, extra = split_argv(list(sys.argv[1:] if argv is None else argv))
    args = _parser().parse_args(own)
    args.device = device_for(args)
    try:
        if args.command == "list":
            jobs, rw, *_ = plan(args, extra, args.threads)
            prefix = job_exports(rw.track.name).strip().replace("export ", "env ", 1)
            for job in jobs:
                print(f"{prefix} {job.command}")
            return 0
        if args.command == "sbatch":
            return _sbatch(args, extra, own)
        return _run(args, extra)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _sbatch(args, extra, own) -> int:
    threads = args.cpus_per_task // max(1, args.gpus_per_fold) if args.cpus_per_task else None
    jobs, rw, data, work = plan(args, extra, max(1, threads) if threads is not None else None)
    models = list(dict.fromkeys(j.model for j in jobs))
    blend = [m for m in (args.blend or ",".join(models)).split(",") if m]
    if not set(blend) <= set(models):
        raise DataError(f"--blend {args.blend}: not among --models {','.join(models)}")
    out = args.out
    gather = gather_path(out)
    options = {**vars(args), "gather": gather, "submissions": args.submissions.resolve()}
    generated_by = "python -m solution.jobs " + shlex.join(own + (["--"] + extra if extra else []))
    (rw.root / "slurm").mkdir(parents=True, exist_ok=True)  # Slurm does not create its output folder
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(sbatch_script(jobs, rw, options, generated_by, gather))
    commands = gather_commands(args.python, data, work, rw, models, blend, options["submissions"])
    gather.write_text(gather_script(commands, rw, options, generated_by, out))
    print(f"[jobs] wrote {out} ({len(jobs)} array tasks: {', '.join(models)} x folds "
          f"{sorted({j.fold for j in jobs})}) and {gather} (blend of {','.join(blend)}, report, submission)")
    print(f"  submit:        jobid=$(sbatch --parsable {shlex.quote(str(out))}) && "
          f"sbatch --dependency=afterok:$jobid {shlex.quote(str(gather))}")
    print(f"  without Slurm: for k in $(seq 0 {len(jobs) - 1}); do SLURM_ARRAY_TASK_ID=$k bash {shlex.quote(str(out))}; "
          f"done && bash {shlex.quote(str(gather))}")
    return 0


def _run(args, extra) -> int:
    if args.jobs < 1:
        raise DataError(f"--jobs must be at least 1, got {args.jobs}")
    per_slot = max(1, args.gpus_per_fold)
    threads = args.threads or max(1, cores() // (args.jobs * per_slot))
    jobs, rw, _, _ = plan(args, extra, threads)
    from solution.runs import read_folds

    read_folds(rw)  # no fold file: say so once, not once per fold
    ids: list[str] = []
    if args.device == "cuda":
        ids = gpu_ids(args.gpus, os.environ.get("CUDA_VISIBLE_DEVICES"))
        if not ids:
            raise DataError("--device cuda, but no GPU found (torch.cuda.device_count() and nvidia-smi -L see "
                            "none); give --gpus N (or GPUS=N) if they are there")
    slots = min(args.jobs, len(jobs))
    models = list(dict.fromkeys(j.model for j in jobs))
    earlier = sum(j.metrics.is_file() for j in jobs)
    gpus = f", GPUs {','.join(ids)} shared by slot" if ids else ""
    print(f"[jobs] {len(jobs)} folds ({', '.join(models)} x {len(jobs) // len(models)}), {slots} at a time, "
          f"{threads} thread(s) each{gpus}" + (f"; {earlier} finished earlier" if earlier else "")
          + f"; each fold's output: {rw.runs}/<model>/fold<k>/train.log", flush=True)
    return run_jobs(jobs, slots, lambda slot: slot_environment(slot, args.device, ids, per_slot), args.grace)


if __name__ == "__main__":
    sys.exit(main())
