"""The track guard: every output of the pipeline on small EMI and VA releases, one sha256 each.

    python bench/track_guard.py --root /tmp/guard-before > before.json
    python bench/track_guard.py --root /tmp/guard-after  > after.json
    python bench/track_guard.py --compare before.json after.json     # exit 1 when a hash differs

For a change that must not change behaviour (issue 31's track refactor): run it before and
after, and diff. Each track's release is written by `python -m solution.synth` (the test
suite's small sizes, seed 7), then every stage runs as run_all.sh runs it, each as its own
process from this checkout: the preflight (`solution.inspect`, summary and --json), features,
folds, the label delay (frame-level tracks), every model (dual_stage, foalnet, rcma, linear)
on 2 folds with few epochs, one seed and one thread (solution.jobs run), the blend
(solution.ensemble), the submission zips (EMI csv; VA single file and per-video) and their
--check, solution.predict_mean, solution.evaluate of the blend and of the mean against the
hidden test labels, solution.report, and solution.predict of the test set from the saved
checkpoints and blend.

Printed: {"<track>/<file>": sha256} for every file of the release, the work folder (features,
folds, delay, runs, blend, report, predictions) and the submissions, plus each command's
deterministic console output (`<track>/stdout/...`). Same seeds and threads give the same
numbers on the CPU, so two runs of one commit print the same hashes. What is not
deterministic by nature is left out, by rule:
  - wall times, CPU times, dates, the host and the git commit (the keys at, seconds,
    cpu_seconds, host, commit, dirty and fold_seconds of metrics.json, report.json and the
    seeds' predictions.pkl; the ledger's time, commit and pred path);
  - train.log (timings on every line), summary.md and solution.report's console table (stage
    and fold times; report.json has the same scores);
  - identities.json's keys (inode and modification time of each input; its values are kept);
  - the absolute location of the guard's folder, replaced by <ROOT> in every text file;
  - .npz cache entries, .pt checkpoints and .pkl pickles are hashed by what they hold (arrays
    and tensors by dtype, shape and bytes): the npz container stamps the time, and torch.save
    writes a random serialization id into every checkpoint.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SMALL = {  # tests/conftest.py's SMALL_EMI and SMALL_VA
    "emi": ["--videos", "60", "--subjects", "12", "--seconds", "3", "--fps", "10", "--size", "64",
            "--label-noise", "0.06"],
    "va": ["--videos", "8", "--seconds", "8", "--fps", "10", "--size", "64", "--other-fps", "12",
           "--long-seconds", "30"],
}
MODELS = ("dual_stage", "foalnet", "rcma", "linear")
FAST = ["--set", "epochs=4", "--set", "patience=2", "--set", "batch_size=16", "--set", "seeds=1",
        "--set", "model.dual_stage.stage1_epochs=1", "--set", "model.dual_stage.dim=32", "--set", "model.foalnet.dim=32",
        "--set", "model.rcma.head_dim=32"]
VOLATILE = {"at", "seconds", "cpu_seconds", "host", "commit", "dirty", "fold_seconds"}
LEDGER_VOLATILE = {"time", "commit", "pred"}
SKIP_NAMES = {"train.log", "summary.md", "stages.jsonl"}


def run(args: list[str], out: Path | None = None, ok=(0,)) -> str:
    """One stage, as its own process from this checkout; its console output kept in `out`."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
    env.pop("TEST_LISTING", None)
    env.pop("VA_ANNOTATION_FIT", None)
    print("[guard] " + " ".join(args), file=sys.stderr, flush=True)
    done = subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True)
    if done.returncode not in ok:
        raise SystemExit(f"[guard] failed ({done.returncode}): {' '.join(args)}\n{done.stdout[-3000:]}\n"
                         f"{done.stderr[-3000:]}")
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(done.stdout)
    return done.stdout


def pipeline(track: str, root: Path) -> None:
    data, work, subs, stdout = root / track / "release", root / track / "work", root / track / "subs", \
        root / track / "stdout"
    frame_level = track == "va"  # the guard's own table of what it runs, not the code under test
    ext = "txt" if frame_level else "csv"
    hidden = data / ("private/VA_Estimation_Challenge/Test_Set" if frame_level else "private/test_labels.csv")
    run(["-m", "solution.synth", "--track", track, "--out", str(data), "--seed", "7", "--workers", "2", *SMALL[track]])
    run(["-m", "solution.inspect", str(data)], stdout / "inspect.txt")
    run(["-m", "solution.inspect", str(data), "--json", "--folds", "2"], stdout / "inspect.json")
    run(["-m", "solution.features", "--data", str(data), "--work", str(work), "--workers", "2"])
    run(["-m", "solution.folds", "--data", str(data), "--work", str(work), "--k", "2"])
    release_work = Path(run(["-m", "solution.runs", "--data", str(data), "--work", str(work)]).strip())
    delays = []
    if frame_level:
        run(["-m", "solution.delay", "--data", str(data), "--work", str(work)])
        delays = ["--label-delays", str(release_work / "delay.json")]
    run(["-m", "solution.jobs", "run", "--data", str(data), "--work", str(work), "--models", ",".join(MODELS),
         "--folds", "2", "--jobs", "2", "--threads", "1", *delays, "--", *FAST])
    run(["-m", "solution.ensemble", "--data", str(data), "--work", str(work), "--runs", ",".join(MODELS[:3])],
        stdout / "ensemble.txt")
    pred = release_work / "predictions" / f"test.{ext}"
    formats = [("single", []), ("per-video", ["--va-format", "per-video"])] if frame_level else [("csv", [])]
    for name, extra in formats:
        run(["-m", "solution.submit", "--track", track, "--pred", str(pred), "--data", str(data), "--out-dir",
             str(subs), "--name", f"blend-{name}", *extra])
        run(["-m", "solution.submit", "--check", str(subs / f"blend-{name}.zip"), "--data", str(data)],
            stdout / f"check-{name}.txt")
    mean = root / track / "mean" / f"test.{ext}"
    run(["-m", "solution.predict_mean", "--track", track, "--data", str(data), "--out", str(mean)],
        stdout / "predict_mean.txt")
    for name, path in (("blend", pred), ("mean", mean)):
        run(["-m", "solution.evaluate", "--track", track, "--pred", str(path), "--labels", str(hidden),
             "--json", str(root / track / "evaluate" / f"{name}.json")], stdout / f"evaluate-{name}.txt")
    run(["-m", "solution.report", "--data", str(data), "--work", str(work), "--runs", ",".join(MODELS),
         "--out", str(root / track / "report")])  # its console table ends with each run's seconds: report.json stands for it
    run(["-m", "solution.predict", "--train-data", str(data), "--work", str(work), "--out-dir", str(subs),
         "--name", "predict", "--pred-dir", str(root / track / "predict"), "--threads", "1"])


# ------------------------------------------------------------------ hashing

def _text(data: bytes, root: Path) -> bytes:
    return data.replace(str(root).encode(), b"<ROOT>")


def _without(obj, keys: set):
    if isinstance(obj, dict):
        return {k: _without(v, keys) for k, v in obj.items() if k not in keys}
    if isinstance(obj, list):
        return [_without(v, keys) for v in obj]
    return obj


def _feed(sha, obj, root: Path) -> None:
    """A loaded object into `sha`, canonically: dicts by sorted key (VOLATILE keys left out),
    arrays and tensors by dtype, shape and bytes, text with <ROOT> for the guard's folder."""
    import numpy as np
    import torch

    if isinstance(obj, dict):
        sha.update(b"{")
        for key in sorted(obj, key=repr):
            if key not in VOLATILE:
                sha.update(repr(key).encode())
                _feed(sha, obj[key], root)
        sha.update(b"}")
    elif isinstance(obj, (list, tuple)):
        sha.update(b"[")
        for value in obj:
            _feed(sha, value, root)
        sha.update(b"]")
    elif torch.is_tensor(obj):
        _feed(sha, obj.detach().cpu().float().numpy() if obj.dtype == torch.bfloat16 else obj.detach().cpu().numpy(),
              root)
    elif isinstance(obj, np.ndarray) and obj.dtype.kind in "US":
        sha.update(f"text|{obj.shape}|".encode() + _text(repr(obj.tolist()).encode(), root))  # width varies with paths
    elif isinstance(obj, np.ndarray):
        sha.update(f"{obj.dtype}|{obj.shape}|".encode() + np.ascontiguousarray(obj).tobytes())
    else:
        sha.update(_text(repr(obj).encode(), root))


def digest(path: Path, root: Path) -> str | None:
    """The file's sha256 after the rules of the docstring; None for a file left out."""
    if path.name in SKIP_NAMES:
        return None
    raw = path.read_bytes()
    if path.suffix in (".npz", ".pt", ".pkl"):
        import numpy as np
        import torch

        sha = hashlib.sha256()
        if path.suffix == ".npz":
            with np.load(io.BytesIO(raw), allow_pickle=False) as arrays:
                _feed(sha, {name: arrays[name] for name in arrays.files}, root)
        elif path.suffix == ".pt":
            _feed(sha, torch.load(io.BytesIO(raw), map_location="cpu", weights_only=False), root)
        else:
            _feed(sha, pickle.loads(raw), root)
        return sha.hexdigest()
    if path.name == "identities.json":
        raw = json.dumps(sorted(json.loads(raw).values())).encode()
    elif path.suffix == ".json":
        raw = json.dumps(_without(json.loads(_text(raw, root)), VOLATILE), sort_keys=True).encode()
    elif path.name == "ledger.csv":
        rows = list(csv.DictReader(io.StringIO(raw.decode())))
        raw = json.dumps([_without(r, LEDGER_VOLATILE) for r in rows], sort_keys=True).encode()
    elif path.suffix in (".csv", ".txt", ".md", ".jsonl", ".sh"):
        raw = _text(raw, root)
    return hashlib.sha256(raw).hexdigest()


def hashes(root: Path) -> dict[str, str]:
    out = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        value = digest(path, root)
        if value is not None:
            out[str(path.relative_to(root))] = value
    return out


def compare(before: Path, after: Path) -> int:
    a, b = json.loads(before.read_text()), json.loads(after.read_text())
    only_a, only_b = sorted(set(a) - set(b)), sorted(set(b) - set(a))
    differ = sorted(k for k in set(a) & set(b) if a[k] != b[k])
    for label, keys in (("only before", only_a), ("only after", only_b), ("differ", differ)):
        for key in keys:
            print(f"{label}: {key}")
    print(f"[guard] {len(set(a) & set(b)) - len(differ)} of {len(set(a) | set(b))} files identical; "
          f"{len(differ)} differ, {len(only_a)} only before, {len(only_b)} only after")
    return 1 if (only_a or only_b or differ) else 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python bench/track_guard.py", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--root", type=Path, help="the guard's folder (emptied first): releases, work, zips")
    parser.add_argument("--tracks", default="emi,va", help="comma list of tracks (default emi,va)")
    parser.add_argument("--compare", nargs=2, type=Path, metavar=("BEFORE", "AFTER"),
                        help="compare two printed JSON documents instead of running")
    args = parser.parse_args(argv)
    if args.compare:
        return compare(*args.compare)
    if args.root is None:
        parser.error("--root is required (or --compare)")
    root = args.root.resolve()
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    for track in args.tracks.split(","):
        pipeline(track, root)
    print(json.dumps(hashes(root), indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
