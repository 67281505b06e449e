"""A GPU check, ready before a GPU is: everything a GPU changes, checked in minutes on one.

    bash bench/gpu_check.sh                       # the same, in the project's venv
    python bench/gpu_check.py [--device cuda:1] [--keep work/gpu-check] [--json]
    python bench/gpu_check.py --device cpu --quick   # the check of the check, on any machine

On a machine with CUDA, in this order (each command a child process, from the repository root):

  tests     the tests that are skipped without CUDA (each test in tests/ under a skipif whose
            condition mentions cuda, found by reading the files), run with pytest; a failure,
            or a skip, is a failure of the check.
  folds     a tiny synthetic EMI release (40 videos, 8 subjects, 3 s at 8 fps, 64 px), its
            features (extracted with --device) and 2 folds; fold 0 of every model (dual_stage,
            foalnet, rcma, linear; epochs=3, seeds=1) trained on the GPU (--precision bf16
            where torch.cuda.is_bf16_supported(), else fp16: what --precision auto picks) and
            on the CPU (fp32): both held-out scores and their difference, and how far apart the
            two runs' held-out predictions are (largest difference, correlation; both runs start
            from the same weights, and at these settings the scores are near chance, so the
            predictions show what the device changed better than the scores do).
  train     bench/train_speed.py --device cuda at the organizers' shape (batch 32, visual
            160x768, audio 400x768, text 1x384): training videos/s and peak GPU memory
            (torch.cuda.max_memory_allocated) per model.
  features  bench/features.py --device cuda on 10 videos of the tiny release: the extractors
            that run on the GPU (minilm, and a ViT-B/16 through timm with random weights, the
            width of the organizers' ViT features), frames or sentences per second.

Output (stdout): one JSON line per result ("bench": "gpu_check", "check": tests, fold, train
or features, and the machine), a last one with "check": "summary", the status (ok or failed)
and every failure; then Markdown tables unless --json. Progress on stderr. The exit status
is 1 when anything failed: a command that fails, a test failed or skipped, a score that is
not a number, a model without a speed or a peak, an extractor that cannot load, or a
held-out score difference beyond --max-diff (by default the difference is only reported:
three epochs on 20 training videos move with the arithmetic's rounding).

Without CUDA (torch sees no GPU) it prints one JSON line, "status": "no_gpu", with the
reason and what it would have checked, and exits 0.

--device cpu runs every step but the tests with the CPU in the GPU's place (fp32; the two
folds then give the same score): it checks the check itself where no GPU is. --quick (with
it) shrinks the train shape (batch 4, visual 16x64, audio 40x64) and the features to 3 videos.
"""
from __future__ import annotations

import argparse
import ast
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, child_env, emit, json_lines, machine_info, markdown_table, progress, run_child  # noqa: E402

BENCH = Path(__file__).resolve().parent
MODELS = ("dual_stage", "foalnet", "rcma", "linear")
RELEASE = ["--track", "emi", "--videos", "40", "--subjects", "8", "--seconds", "3", "--fps", "8", "--size", "64"]
FOLD_SETTINGS = ["--set", "epochs=3", "--set", "seeds=1"]
TRAIN_SHAPE = ["--batch", "32", "--visual", "160x768", "--audio", "400x768", "--text", "1x384",
               "--steps", "10", "--warmup", "3", "--max-seconds", "15"]
TRAIN_QUICK = ["--batch", "4", "--visual", "16x64", "--audio", "40x64", "--text", "1x32", "--steps", "2", "--warmup", "1"]
GPU_EXTRACTORS = "minilm,timm:vit_base_patch16_224?weights=random"
STEPS = ("tests", "folds", "train", "features")


# ------------------------------------------------------------------ what is checked

def cuda_tests(tests_dir: Path = ROOT / "tests") -> list[str]:
    """pytest ids of the tests that skip without CUDA: a test function (or a Test* class's
    method) decorated with a skipif whose text mentions cuda, or every test of a module whose
    `pytestmark` is such a skipif. Read from the source, without importing it."""
    found = []
    for path in sorted(tests_dir.glob("test_*.py")):
        tree = ast.parse(path.read_text(), str(path))
        rel = path.relative_to(ROOT).as_posix()

        def on_cuda(node) -> bool:
            text = ast.unparse(node).lower()
            return "skipif" in text and "cuda" in text

        if any(isinstance(n, ast.Assign) and any(getattr(t, "id", "") == "pytestmark" for t in n.targets)
               and on_cuda(n.value) for n in tree.body):
            found.append(rel)
            continue
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test"):
                if any(on_cuda(d) for d in node.decorator_list):
                    found.append(f"{rel}::{node.name}")
            elif isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
                if any(on_cuda(d) for d in node.decorator_list):
                    found.append(f"{rel}::{node.name}")
                    continue
                found += [f"{rel}::{node.name}::{m.name}" for m in node.body
                          if isinstance(m, (ast.FunctionDef, ast.AsyncFunctionDef)) and m.name.startswith("test")
                          and any(on_cuda(d) for d in m.decorator_list)]
    return found


def plan(args, precision: str) -> dict:
    """What the check runs, as the no-GPU line reports it."""
    return {
        "tests": cuda_tests(),
        "folds": {"release": "python -m solution.synth " + " ".join(RELEASE), "folds": 2, "fold": 0,
                  "models": args.models, "settings": "epochs=3 seeds=1", "gpu_precision": precision,
                  "against": "the same fold on the CPU (fp32): both held-out scores and their difference"},
        "train": {"script": "bench/train_speed.py", "shape": " ".join(TRAIN_QUICK if args.quick else TRAIN_SHAPE),
                  "reports": "videos/s and peak GPU memory per model"},
        "features": {"script": "bench/features.py", "extractors": GPU_EXTRACTORS.split(","),
                     "videos": 3 if args.quick else 10},
    }


# ------------------------------------------------------------------ the steps

class Check:
    """Collects the records and the failures; prints each record as it comes."""

    def __init__(self, device: str, max_diff: float | None = None):
        self.device = device
        self.max_diff = max_diff
        self.machine = machine_info(None, device)
        self.records: list[dict] = []
        self.failures: list[str] = []

    def report(self, check: str, record: dict, failure: str | None = None) -> None:
        record = {"bench": "gpu_check", "check": check, **record, "machine": self.machine}
        if failure:
            record["error"] = failure
            self.failures.append(f"{check}: {failure}")
            progress(f"FAILED {check}: {failure.splitlines()[0]}")
        emit(record)
        self.records.append(record)


def script_records(args: list[str], label: str) -> tuple[int, list[dict], str]:
    """A bench script's exit status, its JSON lines, and its last lines; its progress (stderr)
    passes through."""
    done = subprocess.run([sys.executable, *args], cwd=ROOT, env=child_env(), stdout=subprocess.PIPE, text=True,
                          errors="replace")
    progress(f"{label}: exit {done.returncode}")
    return done.returncode, json_lines(done.stdout), "\n".join(done.stdout.splitlines()[-10:])


def check_tests(check: Check, scratch: Path) -> None:
    ids = cuda_tests()
    if not ids:
        check.report("tests", {"tests": []}, "no test in tests/ is skipped without CUDA: nothing to run "
                                             "(were they renamed, or their skipif changed?)")
        return
    progress(f"tests: {len(ids)} test(s) that need CUDA: {' '.join(ids)}")
    junit = scratch / "cuda-tests.xml"
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "pytest", *ids, "-q", "-rs", "-p", "no:cacheprovider",
                           f"--junitxml={junit}"], cwd=ROOT, env=child_env(), capture_output=True, text=True,
                          errors="replace")
    record = {"tests": ids, "seconds": round(time.perf_counter() - started, 1)}
    try:
        suites = ET.parse(junit).getroot()
        suites = [suites] if suites.tag == "testsuite" else list(suites.iter("testsuite"))
        counts = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")}
    except (OSError, ET.ParseError) as exc:
        check.report("tests", record, f"pytest wrote no readable report ({exc}); exit {done.returncode}:\n"
                     + "\n".join((done.stdout + done.stderr).splitlines()[-30:]))
        return
    record.update(ran=counts["tests"], failed=counts["failures"] + counts["errors"], skipped=counts["skipped"])
    tail = "\n".join(done.stdout.splitlines()[-30:])
    if done.returncode != 0 or record["failed"]:
        check.report("tests", record, f"pytest exit {done.returncode}, {record['failed']} failed:\n{tail}")
    elif record["skipped"]:
        check.report("tests", record, f"{record['skipped']} test(s) skipped on a machine with CUDA:\n{tail}")
    else:
        check.report("tests", record)


def check_folds(check: Check, scratch: Path, models: list[str], precision: str) -> Path | None:
    """The tiny release, its features and folds, and fold 0 of each model on both devices.
    Returns the release (for the features step), or None when it could not be made."""
    from solution.runs import release_work

    data, work = scratch / "release", scratch / "work"
    workers = str(max(1, min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)))
    setup = [("synth", ["-m", "solution.synth", *RELEASE, "--out", str(data), "--seed", "0"]),
             ("features", ["-m", "solution.features", "--data", str(data), "--work", str(work),
                           "--device", check.device, "--workers", workers]),
             ("folds", ["-m", "solution.folds", "--data", str(data), "--work", str(work), "--k", "2"])]
    for label, command in setup:
        progress(f"folds: {label}")
        try:
            run_child(command, label=label, sample=False)
        except RuntimeError as exc:
            check.report("fold", {"stage": label}, str(exc))
            return None
    rw = release_work(work, data)
    sides = {"gpu": (check.device, precision), "cpu": ("cpu", "fp32")}
    for model in models:
        record = {"model": model, "device": check.device, "precision": precision, "metric": rw.track.metric}
        failure = None
        for side, (device, side_precision) in sides.items():
            name = f"{model}-{side}"
            progress(f"folds: {model} fold 0 on {device} ({side_precision})")
            try:
                run = run_child(["-m", "solution.train_fold", "--model", model, "--fold", "0", "--data", str(data),
                                 "--work", str(work), *FOLD_SETTINGS, "--name", name, "--device", device,
                                 "--precision", side_precision], label=name, sample=False)
                metrics = json.loads(rw.fold_files(name, 0).metrics.read_text())
                score = float(metrics["held_score"])
            except (RuntimeError, OSError, ValueError, KeyError) as exc:
                failure = f"{model} on {device}: {exc}"
                break
            record[f"held_score_{side}"] = round(score, 6)
            record[f"seconds_{side}"] = run["seconds"]
            if not math.isfinite(score):
                failure = f"{model} on {device}: held-out score {score}"
        if failure is None:
            record["difference"] = round(record["held_score_gpu"] - record["held_score_cpu"], 6)
            record.update(agreement(rw, f"{model}-gpu", f"{model}-cpu"))
            limit = check.max_diff
            if limit is not None and abs(record["difference"]) > limit:
                failure = (f"{model}: held-out {record['metric']} {record['held_score_gpu']:.4f} on {check.device}, "
                           f"{record['held_score_cpu']:.4f} on the CPU: differ by more than --max-diff {limit}")
        check.report("fold", record, failure)
    return data


def agreement(rw, run_a: str, run_b: str) -> dict:
    """How close two runs' held-out predictions are, value by value: the two scores are of
    three epochs on 20 videos, near chance, so their difference says little; the predictions
    themselves (the same initial weights on both devices) show what the device changed."""
    import numpy as np

    from solution.predictions import read_predictions

    try:
        a, b = (read_predictions(rw.fold_files(run, 0).oof, rw.track) for run in (run_a, run_b))
        keys = sorted(set(a) & set(b))
        x = np.concatenate([np.ravel(a[k]) for k in keys]).astype(np.float64)
        y = np.concatenate([np.ravel(b[k]) for k in keys]).astype(np.float64)
    except Exception as exc:  # noqa: BLE001 - informative only; the scores are the check
        return {"oof_agreement_error": f"{type(exc).__name__}: {exc}"}
    corr = float(np.corrcoef(x, y)[0, 1]) if x.std() > 0 and y.std() > 0 else None
    return {"oof_max_abs_diff": round(float(np.abs(x - y).max()), 6),
            "oof_correlation": None if corr is None else round(corr, 6)}


def check_train(check: Check, quick: bool, models: list[str]) -> None:
    shape = TRAIN_QUICK if quick else TRAIN_SHAPE
    progress(f"train: bench/train_speed.py --device {check.device} {' '.join(shape)}")
    code, records, tail = script_records([str(BENCH / "train_speed.py"), "--device", check.device, "--json",
                                          "--model", ",".join(models), *shape], "train_speed")
    seen = set()
    for r in (r for r in records if r.get("bench") == "train"):
        seen.add(r.get("model"))
        keep = {k: r.get(k) for k in ("model", "videos_per_s", "ms_per_step", "peak_cuda_mb", "peak_rss_mb",
                                      "batch", "shape", "parameters")}
        failure = r.get("error")
        if failure is None and not r.get("videos_per_s"):
            failure = "no speed measured"
        if failure is None and check.device.startswith("cuda") and not r.get("peak_cuda_mb"):
            failure = "no peak GPU memory measured"
        check.report("train", keep, failure and f"{r.get('model')}: {failure}")
    missing = [m for m in models if m not in seen]
    if missing or (code != 0 and not any("error" in r for r in check.records if r["check"] == "train")):
        check.report("train", {"models": missing}, f"bench/train_speed.py exit {code}, no result for {missing}:\n{tail}")


def check_features(check: Check, data: Path, quick: bool) -> None:
    videos = "3" if quick else "10"
    progress(f"features: bench/features.py --device {check.device} --extractors {GPU_EXTRACTORS} --videos {videos}")
    code, records, tail = script_records([str(BENCH / "features.py"), "--data", str(data), "--data-label",
                                          "tiny synthetic EMI release", "--videos", videos, "--extractors",
                                          GPU_EXTRACTORS, "--device", check.device, "--json"], "features")
    if not records:
        check.report("features", {}, f"bench/features.py exit {code} and no result:\n{tail}")
        return
    for r in records:
        keep = {k: r[k] for k in ("extractor", "modality", "throughput", "unit", "seconds", "load_s", "videos")
                if k in r}
        check.report("features", keep, r.get("error") and f"{r.get('extractor')}: {r['error']}")


# ------------------------------------------------------------------ output

def tables(records: list[dict]) -> str:
    parts = []
    folds = [r for r in records if r["check"] == "fold" and "model" in r]
    if folds:
        metric = folds[0].get("metric", "")
        rows = [[r["model"], r.get("precision"), _f(r.get("held_score_gpu")), _f(r.get("held_score_cpu")),
                 _f(r.get("difference")), _f(r.get("oof_max_abs_diff")), _f(r.get("oof_correlation")),
                 "" if "error" not in r else r["error"].splitlines()[0][:80]] for r in folds]
        parts.append(f"Fold 0 of the tiny release, held-out {metric} on {folds[0]['device']} and on the CPU, and how "
                     "far apart the two runs' held-out predictions are:\n\n"
                     + markdown_table(["model", "precision", folds[0]["device"], "cpu", "difference",
                                       "max abs diff", "correlation", "error"], rows, "llrrrrrl"))
    train = [r for r in records if r["check"] == "train" and "model" in r]
    if train:
        rows = [[r["model"], _f(r.get("videos_per_s"), 1), _f(r.get("ms_per_step"), 1), _f(r.get("peak_cuda_mb"), 0),
                 _f(r.get("peak_rss_mb"), 0)] for r in train]
        shape = ", ".join(f"{m} {x[0]}x{x[1]}" for m, x in (train[0].get("shape") or {}).items())
        parts.append(f"Training (forward, backward, AdamW) at batch {train[0].get('batch')} ({shape}):\n\n"
                     + markdown_table(["model", "videos/s", "ms/step", "peak GPU MB", "peak process MB"], rows))
    feats = [r for r in records if r["check"] == "features" and "extractor" in r]
    if feats:
        rows = [[r["extractor"], _f(r.get("throughput"), 1), r.get("unit", r.get("error", "")[:60]),
                 _f(r.get("load_s"), 2)] for r in feats]
        parts.append("Feature extraction:\n\n" + markdown_table(["extractor", "throughput", "unit", "load s"], rows,
                                                                "lrlr"))
    return "\n\n".join(parts)


def _f(value, digits: int = 4) -> str:
    return "–" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python bench/gpu_check.py", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--device", default="cuda", help="the GPU to check, cuda or cuda:N; cpu checks the check "
                                                         "(default cuda)")
    parser.add_argument("--precision", choices=("auto", "bf16", "fp16", "fp32"), default="auto",
                        help="of the GPU folds (auto: bf16 where the GPU has it, else fp16; fp32 on the CPU)")
    parser.add_argument("--models", default=",".join(MODELS), help="comma list of models (default: all four)")
    parser.add_argument("--skip", default="", metavar="STEP,STEP", help=f"steps to leave out, of {', '.join(STEPS)}")
    parser.add_argument("--max-diff", type=float, default=None, metavar="D",
                        help="fail when a model's GPU and CPU held-out scores differ by more than D "
                             "(default: report the difference only)")
    parser.add_argument("--quick", action="store_true", help="a small train shape and 3 videos of features")
    parser.add_argument("--keep", type=Path, metavar="DIR",
                        help="write the tiny release, its work and the reports here and keep them "
                             "(default: a temporary folder, removed at the end)")
    parser.add_argument("--json", action="store_true", help="JSON lines only, no Markdown tables after them")
    args = parser.parse_args(argv)
    args.models = [m for m in args.models.split(",") if m]
    skip = {s for s in args.skip.split(",") if s}
    if skip - set(STEPS):
        parser.error(f"--skip: unknown step(s) {sorted(skip - set(STEPS))}; the steps are {', '.join(STEPS)}")
    unknown = sorted(set(args.models) - set(MODELS))
    if unknown or not args.models:
        parser.error(f"--models: {unknown or 'none given'}; the models are {', '.join(MODELS)}")
    if args.max_diff is not None and args.max_diff < 0:
        parser.error("--max-diff must be 0 or more")
    if not (args.device == "cpu" or args.device == "cuda" or args.device.startswith("cuda:")):
        parser.error(f"--device: cuda, cuda:N or cpu, not {args.device!r}")

    import torch

    cuda = args.device.startswith("cuda")
    if cuda:
        index = int(args.device.split(":", 1)[1]) if ":" in args.device else 0
        if not torch.cuda.is_available() or torch.cuda.device_count() <= index:
            reason = (f"torch {torch.__version__} (CUDA build {torch.version.cuda or 'none'}) sees "
                      + (f"{torch.cuda.device_count()} CUDA device(s), not {args.device}" if torch.cuda.is_available()
                         else "no CUDA device"))
            emit({"bench": "gpu_check", "check": "summary", "status": "no_gpu",
                  "message": f"no GPU found: {reason}; nothing was checked", "device": args.device,
                  "would_check": plan(args, "bf16 where the GPU has it, else fp16"), "machine": machine_info()})
            return 0
        precision = args.precision
        if precision == "auto":
            precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    else:
        precision = "fp32"
        skip.add("tests")  # they skip without CUDA: nothing to check
    if "tests" in skip and cuda:
        progress("tests: skipped (--skip)")

    sys.path.insert(0, str(ROOT))
    started = time.perf_counter()
    check = Check(args.device, args.max_diff)
    scratch = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="gpu-check-"))
    scratch.mkdir(parents=True, exist_ok=True)
    progress(f"checking {args.device} ({check.machine.get('gpu') or 'CPU'}), precision {precision}; "
             f"scratch folder {scratch}")
    try:
        if "tests" not in skip:
            check_tests(check, scratch)
        data = None
        if "folds" not in skip or "features" not in skip:
            if "folds" in skip:  # the features step still needs the release
                try:
                    run_child(["-m", "solution.synth", *RELEASE, "--out", str(scratch / "release"), "--seed", "0"],
                              label="synth", sample=False)
                    data = scratch / "release"
                except RuntimeError as exc:
                    check.report("features", {"stage": "synth"}, str(exc))
            else:
                data = check_folds(check, scratch, args.models, precision)
        if "train" not in skip:
            check_train(check, args.quick, args.models)
        if "features" not in skip and data is not None:
            check_features(check, data, args.quick)
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
    emit({"bench": "gpu_check", "check": "summary", "status": "failed" if check.failures else "ok",
          "failures": check.failures, "device": args.device, "precision": precision, "skipped_steps": sorted(skip),
          "seconds": round(time.perf_counter() - started, 1), "machine": check.machine})
    if not args.json:
        print("\n" + tables(check.records), flush=True)
    return 1 if check.failures else 0


if __name__ == "__main__":
    sys.exit(main())
