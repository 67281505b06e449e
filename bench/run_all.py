"""Every benchmark of bench/ at the settings of bench/README.md's tables, one results file, Markdown tables at the end.

    bash bench/run.sh                          # full: about 18 min on an idle 2-core machine (see below)
    bash bench/run.sh --quick                  # tiny settings, about 2 min: checks that every script works
    bash bench/run.sh --out bench/results/mine.jsonl --skip end_to_end
    python bench/run_all.py --from bench/results/2025-01-01-120000.jsonl   # only print the tables of a results file

Steps, in this order (each a child process; its JSON lines are echoed on stdout and appended
to --out as they come, so a stopped run keeps what it measured):

  train       bench/train_speed.py: each model at the EMI shape (batch 32, visual 160x768, audio
              400x768, text 1x384; 2 threads): videos/s, ms/step, peak MB, each in its own
              process; and the sweep: lengths 40,80,160,320 at batch 32 and batches 8,16,32,64 at
              length 160. Per point 2 warm-up steps, then the median of 15 timed steps
              (fewer if they take over 20 s, at least 2).
  end_to_end  bench/end_to_end.py: `bash run_all.sh` (the default EMI demo) in a scratch folder,
              each stage's seconds and the total.
  features    bench/features.py: each default extractor's throughput on 20 videos of the demo
              release the end-to-end run made (or --features-data, or work/demo-emi when the
              end-to-end run is skipped).

Full mode measured on 2026-12-01 (Intel Xeon, 2 cores, idle; bench/reference/): train and sweep
292 s, end-to-end 757 s, features 16 s: about 18 min in all. Other processes on the
cores make every number but the memory worse, the training steps many times so (torch's
threads spin-wait for cores others hold); each JSON line records the load average when it
was measured. Measure on a quiet machine.

--quick: models at visual 16x64 / audio 40x64, batch 4, the sweep on the linear model only,
the end-to-end run on a tiny release (bench/end_to_end.py --quick), features of 3 videos.

Results: --out (default bench/results/<date>-<time>[-quick].jsonl; bench/results/ is not in
git), its first line the run (mode, commit, machine), then every measurement; the Markdown
tables go to stdout at the end and next to the results file (.md).
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, child_env, json_lines, machine_info, missing_data, progress, render  # noqa: E402

BENCH = Path(__file__).resolve().parent
STEPS = ("train", "end_to_end", "features")
FULL = {
    "train": ["--sweep", "--steps", "15", "--warmup", "2", "--max-seconds", "20", "--threads", "2"],
    "end_to_end": [],
    "features": ["--videos", "20"],
}
QUICK = {
    "train": ["--visual", "16x64", "--audio", "40x64", "--text", "1x32", "--batch", "4", "--lengths", "8,16",
              "--batches", "2,4", "--sweep-models", "linear", "--steps", "2", "--warmup", "1", "--threads", "2"],
    "end_to_end": ["--quick"],
    "features": ["--videos", "3"],
}


def git_state() -> dict:
    """The commit measured, read-only (nothing is changed)."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                                timeout=20).stdout.strip() or None
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                                    capture_output=True, text=True, timeout=20).stdout.strip())
        return {"commit": commit, "dirty": dirty}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


class Results:
    """Records, echoed on stdout and appended to the results file as they come."""

    def __init__(self, path: Path):
        self.path, self.records = path, []
        path.parent.mkdir(parents=True, exist_ok=True)
        self.handle = open(path, "a")

    def add(self, record: dict) -> None:
        line = json.dumps(record)
        print(line, flush=True)
        self.handle.write(line + "\n")
        self.handle.flush()
        self.records.append(record)


def run_step(step: str, script: str, flags: list[str], results: Results) -> tuple[int, list[dict]]:
    """A bench script with --json; its stdout's JSON lines become records, its stderr shows."""
    command = [sys.executable, str(BENCH / script), *flags, "--json"]
    progress(f"run_all: {step}: python bench/{script} {' '.join(flags)} --json")
    started = time.perf_counter()
    child = subprocess.Popen(command, cwd=ROOT, env=child_env(), stdout=subprocess.PIPE, text=True,
                             errors="replace")
    got, other = [], []
    for line in child.stdout:
        records = json_lines(line)
        if records:
            for record in records:
                results.add(record)
                got.append(record)
        elif line.strip():
            other.append(line.rstrip())
    code = child.wait()
    progress(f"run_all: {step} took {time.perf_counter() - started:.0f} s (exit {code})")
    if code != 0 and not got:
        results.add({"bench": step, "error": f"bench/{script} exited {code} without results"
                     + (": " + " | ".join(other[-5:]) if other else " (its messages are above, on stderr)")})
    return code, got


def main(argv=None) -> int:
    summary, _, details = __doc__.partition("\n\n")
    parser = argparse.ArgumentParser(prog="bash bench/run.sh", description=summary,
                                     epilog=details, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny settings (about 2 min): checks the scripts work")
    parser.add_argument("--out", type=Path, default=None,
                        help="results file, JSON lines (default bench/results/<date>-<time>[-quick].jsonl); "
                             "appended to if it exists")
    parser.add_argument("--skip", default="", metavar="STEP,STEP", help=f"steps to leave out, of {','.join(STEPS)}")
    parser.add_argument("--features-data", type=Path, default=None,
                        help="release for the features step (default: the end-to-end run's demo release, "
                             "else work/demo-emi)")
    parser.add_argument("--keep", action="store_true", help="keep the end-to-end run's scratch folder")
    parser.add_argument("--from", dest="source", type=Path, default=None, metavar="RESULTS.jsonl",
                        help="run nothing: print the Markdown tables of an earlier results file")
    args = parser.parse_args(argv)
    if args.source is not None:
        if not args.source.is_file():
            sys.exit(f"{args.source}: no such results file")
        print(render(json_lines(args.source.read_text())))
        return 0
    skip = {s for s in args.skip.split(",") if s}
    unknown = skip - set(STEPS)
    if unknown:
        parser.error(f"--skip {','.join(sorted(unknown))}: the steps are {','.join(STEPS)}")
    if args.features_data is not None and not args.features_data.is_dir():
        sys.exit(missing_data(args.features_data, "emi", "--features-data"))
    mode = "quick" if args.quick else "full"
    settings = QUICK if args.quick else FULL
    out = args.out or BENCH / "results" / f"{datetime.now():%Y-%m-%d-%H%M%S}{'-quick' if args.quick else ''}.jsonl"
    results = Results(out)
    started = time.perf_counter()
    progress(f"run_all: {mode} mode; results -> {out}"
             + ("" if args.quick else "; about 18 min on an idle 2-core machine"))
    results.add({"bench": "run", "mode": mode, "started": datetime.now().isoformat(timespec="seconds"),
                 "steps": [s for s in STEPS if s not in skip], **git_state(), "machine": machine_info()})
    failed = []
    scratch = Path(tempfile.mkdtemp(prefix="abaw-bench-e2e-")) if "end_to_end" not in skip else None
    try:
        if "train" not in skip:
            code, _ = run_step("train", "train_speed.py", settings["train"], results)
            failed += ["train"] if code else []
        e2e_data = None
        if scratch is not None:
            code, got = run_step("end_to_end", "end_to_end.py",
                                 settings["end_to_end"] + ["--scratch", str(scratch), "--keep"], results)
            failed += ["end_to_end"] if code else []
            e2e_data = next((Path(r["data_dir"]) for r in got if r.get("data_dir")), None)
        if "features" not in skip:
            data = args.features_data or (e2e_data if e2e_data and e2e_data.is_dir() else None) \
                or ROOT / "work" / "demo-emi"
            if data.is_dir():
                label = ["--data-label", f"{data.name} (made by the end-to-end run)"] if data == e2e_data else []
                code, _ = run_step("features", "features.py", settings["features"] + ["--data", str(data)] + label,
                                   results)
                failed += ["features"] if code else []
            else:
                results.add({"bench": "features", "error": missing_data(data, "emi", "--features-data")})
                failed.append("features")
    finally:
        if scratch is not None:
            if args.keep:
                progress(f"run_all: kept the end-to-end scratch folder {scratch}")
            else:
                shutil.rmtree(scratch, ignore_errors=True)
    results.add({"bench": "run_end", "mode": mode, "seconds": round(time.perf_counter() - started, 1),
                 "failed": failed})
    results.handle.close()
    tables = render(results.records)
    out.with_suffix(".md").write_text(tables + "\n")
    print("\n" + tables, flush=True)
    progress(f"run_all: {mode} run took {time.perf_counter() - started:.0f} s; results in {out}, "
             f"tables in {out.with_suffix('.md')}" + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
