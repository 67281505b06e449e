"""End-to-end time of the default run: `bash run_all.sh` in a scratch folder, each stage's seconds and the total.

    python bench/end_to_end.py                        # the default EMI demo run (about 10 min on 2 cores)
    python bench/end_to_end.py --quick                # a tiny release, 2 folds, the linear model (a check)
    python bench/end_to_end.py --env JOBS=1 --env MODELS=rcma --keep --scratch /tmp/e2e

run_all.sh runs with WORK_DIR and SUBMISSIONS_DIR inside the scratch folder (a new temporary
folder unless --scratch), so ./work and ./submissions are never touched; the scratch folder
is deleted afterwards unless --keep. Every other run_all.sh variable (TRACK, MODELS, JOBS,
DEVICE, ...) comes from the environment or --env, so this is the exact run a user gets.

Stage times are parsed from the lines run_all.sh prints ("== 2/7 features ..." and
"   (stage 2/7 took 41 s)", "done: ... (all stages: N s)"; any number of stages). If none are
found (a changed run_all.sh), the JSON-lines stages file it writes in the scratch work folder
(WORK/<track>-<fingerprint>/stages.jsonl: {"stage": "2/7 features ...", "seconds": 41, ...})
is read instead; failing both, only the wall-clock total is reported. The venv check before stage 1 is
outside run_all.sh's stage times but inside wall_s.

--quick first makes a tiny EMI release with solution.synth (32 videos of 2 s; timed apart as
synth_s, since it replaces stage 1) and runs run_all.sh on it with DATA_DIR, FOLDS=2,
MODELS=linear, no baseline, 2 epochs, one seed: every stage runs, in well under 2 minutes.

Output (stdout): one JSON line ("bench": "end_to_end": the stages with their seconds, total_s,
wall_s, peak_rss_mb: the largest resident memory of any one process of the run, the settings
and the machine), then a Markdown table unless --json. run_all.sh's own lines go to stderr
(only its stage lines unless --verbose; its last lines always when it fails).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, emit, machine_info, progress, render  # noqa: E402

# The run_all.sh variables recorded with the result when they are set.
RUN_VARIABLES = ("TRACK", "DATA_DIR", "CONFIG", "MODELS", "BASELINE", "FOLDS", "JOBS", "SCHEME", "LABEL_DELAY",
                 "DEVICE", "SEED", "FEATURE_ARGS", "TRAIN_ARGS", "VENV_DIR")
QUICK_SYNTH = ["--track", "emi", "--videos", "32", "--subjects", "8", "--seconds", "2"]
QUICK_ENV = {"FOLDS": "2", "MODELS": "linear", "BASELINE": "", "TRAIN_ARGS": "--set epochs=2 --set seeds=1"}
HEAD = re.compile(r"^== (\d+/\d+) (.*)$")
TOOK = re.compile(r"^\s*\(stage (\d+/\d+) took (\d+(?:\.\d+)?) s\)")
DONE = re.compile(r"^done: .*\(all stages: (\d+(?:\.\d+)?) s\)")


def stage_name(text: str, scratch: Path) -> str:
    """A stage's title without the scratch paths in it."""
    text = re.sub(r"\s*\(logs: .*\)$", "", text)
    text = text.split(" -> ")[0]
    return text.replace(str(scratch), "$SCRATCH").strip()


def stages_from_file(scratch: Path) -> tuple[list[dict], float | None]:
    """Stages (and the total, if a line gives it) from a JSON-lines stages file anywhere in the
    scratch folder, when run_all.sh wrote one: objects with a stage name and seconds, whatever
    the exact keys."""
    out, total = [], None
    for path in sorted(scratch.rglob("*stage*.json*")):
        try:
            lines = path.read_text().splitlines()
        except OSError:
            continue
        for line in lines:
            try:
                item = json.loads(line)
            except json.JSONDecodeError:
                continue
            if not isinstance(item, dict):
                continue
            seconds = next((item[k] for k in ("seconds", "took_s", "duration_s", "elapsed_s", "s", "took")
                            if isinstance(item.get(k), (int, float))), None)
            name = next((str(item[k]) for k in ("stage", "name", "title") if k in item), None)
            if seconds is not None and name is not None and name.strip().lower() in ("total", "all", "all stages"):
                total = seconds
            elif seconds is not None and name is not None:
                number, _, title = name.partition(" ")
                out.append({"stage": number if "/" in number else "", "name": stage_name(title or name, scratch),
                            "seconds": seconds})
        if out:
            return out, total
    return [], None


def run(env_overrides: dict, scratch: Path, verbose: bool) -> dict:
    env = {**os.environ, **env_overrides, "WORK_DIR": str(scratch / "work"),
           "SUBMISSIONS_DIR": str(scratch / "submissions")}
    env.pop("PREDICT_DATA", None)  # a run that predicts instead of training is not this benchmark
    started = time.perf_counter()
    child = subprocess.Popen(["bash", str(ROOT / "run_all.sh")], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, errors="replace")
    heads, stages, total, tail = {}, [], None, []
    for raw in child.stdout:
        for line in raw.replace("\r", "\n").splitlines():
            if not line.strip():
                continue
            tail = (tail + [line])[-40:]
            head, took, done = HEAD.match(line), TOOK.match(line), DONE.match(line)
            if head:
                heads[head.group(1)] = head.group(2)
                progress(f"end_to_end {time.perf_counter() - started:6.0f} s: stage {head.group(1)} "
                         f"{stage_name(head.group(2), scratch)}")
            elif took:
                number = took.group(1)
                stages.append({"stage": number, "name": stage_name(heads.get(number, ""), scratch),
                               "seconds": float(took.group(2))})
            elif done:
                total = float(done.group(1))
            elif verbose:
                print(f"  | {line}", file=sys.stderr, flush=True)
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = code = os.waitstatus_to_exitcode(status)
    child.stdout.close()
    wall = time.perf_counter() - started
    source = "printed"
    if not stages:
        stages, from_file = stages_from_file(scratch)
        total = total if total is not None else from_file
        source = "stages file" if stages else "wall clock only"
    if code != 0:
        progress(f"end_to_end: run_all.sh failed (exit {code}); its last lines:\n" + "\n".join(tail))
    if total is None and stages and code == 0:
        total = sum(s["seconds"] for s in stages)
    whole = lambda x: int(x) if isinstance(x, float) and x.is_integer() else x  # noqa: E731 - bash counts whole seconds
    for s in stages:
        s["seconds"] = whole(s["seconds"])
    total = whole(total)
    return {"stages": stages, "total_s": total, "wall_s": round(wall, 1), "exit": code, "stage_source": source,
            "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
            **({"last_lines": tail[-15:]} if code != 0 else {})}


def env_pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not re.fullmatch(r"[A-Z_][A-Z0-9_]*", key):
        raise argparse.ArgumentTypeError(f"--env takes NAME=VALUE, e.g. JOBS=1; got {text!r}")
    if key in ("WORK_DIR", "SUBMISSIONS_DIR"):
        raise argparse.ArgumentTypeError(f"{key} is the scratch folder's; choose it with --scratch")
    return key, value


def main(argv=None) -> int:
    summary, _, details = __doc__.partition("\n\n")
    parser = argparse.ArgumentParser(prog="python bench/end_to_end.py", description=summary, epilog=details,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scratch", type=Path, default=None,
                        help="folder for WORK_DIR and SUBMISSIONS_DIR (must be new or empty; default: a new "
                             "temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder (its demo data, features, runs)")
    parser.add_argument("--quick", action="store_true", help="a tiny release and model: checks that every stage runs")
    parser.add_argument("--env", type=env_pair, action="append", default=[], metavar="NAME=VALUE",
                        help="a run_all.sh variable for this run (repeatable), e.g. JOBS=1")
    parser.add_argument("--verbose", action="store_true", help="echo every line run_all.sh prints (on stderr)")
    parser.add_argument("--json", action="store_true", help="the JSON line only, no Markdown table after it")
    args = parser.parse_args(argv)
    if not (ROOT / "run_all.sh").is_file():
        sys.exit(f"{ROOT / 'run_all.sh'} not found: run this from a checkout of the harness")
    if args.scratch is None:
        scratch = Path(tempfile.mkdtemp(prefix="abaw-bench-e2e-"))
    else:
        scratch = args.scratch.resolve()
        if scratch.exists() and any(scratch.iterdir()):
            sys.exit(f"--scratch {args.scratch} is not empty: the run must start without features or runs")
        scratch.mkdir(parents=True, exist_ok=True)
    overrides = dict(args.env)
    result = {"bench": "end_to_end", "mode": "quick" if args.quick else "default"}
    try:
        if args.quick:
            data = scratch / "data"
            progress(f"end_to_end --quick: a tiny release in {data}")
            started = time.perf_counter()
            made = subprocess.run([sys.executable, "-m", "solution.synth", *QUICK_SYNTH, "--out", str(data)],
                                  cwd=ROOT, capture_output=True, text=True,
                                  env={**os.environ, "PYTHONPATH": str(ROOT)})
            if made.returncode != 0:
                sys.exit("solution.synth failed:\n" + (made.stdout + made.stderr)[-3000:])
            result["synth_s"] = round(time.perf_counter() - started, 1)
            overrides = {**QUICK_ENV, "DATA_DIR": str(data), **overrides}
        settings = {k: v for k, v in {**{k: os.environ[k] for k in RUN_VARIABLES if k in os.environ},
                                      **overrides}.items()}
        result["settings"] = {k: v.replace(str(scratch), "$SCRATCH") for k, v in settings.items()}
        progress(f"end_to_end: bash run_all.sh with WORK_DIR={scratch / 'work'}"
                 + "".join(f" {k}={v!r}" for k, v in overrides.items()))
        result.update(run(overrides, scratch, args.verbose))
        data_dir = Path(overrides.get("DATA_DIR") or os.environ.get("DATA_DIR") or
                        scratch / "work" / f"demo-{overrides.get('TRACK', os.environ.get('TRACK', 'emi'))}")
        result["data_dir"] = str(data_dir) if args.keep else None
        jobs = int(overrides.get("JOBS", os.environ.get("JOBS", os.cpu_count() or 1)) or 1)
        result["machine"] = machine_info(max(1, (os.cpu_count() or 1) // jobs),
                                         overrides.get("DEVICE", os.environ.get("DEVICE", "cpu")))
        result["machine"]["jobs"] = jobs
    finally:
        if args.keep:
            progress(f"end_to_end: kept {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    emit(result)
    if not args.json:
        print("\n" + render([result]), flush=True)
    return 0 if result["exit"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
