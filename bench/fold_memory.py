"""Peak memory of one training fold as the release grows (features-only EMI releases of 1,000 and 8,000 videos).

    python bench/fold_memory.py                                  # 1,000 and 8,000 labelled videos, dual_stage
    python bench/fold_memory.py --sizes 500,2000 --model dual_stage,linear --keep
    python bench/fold_memory.py --sizes 8000 --scratch /big/disk --reuse --verbose

For each size, a features-only EMI release is written with numpy (no media: the split CSVs,
vit/<id>.pkl and wav2vec2/<id>.pkl float32 arrays of (frames, --dim), values random but
correlated with the video's label, so training has something to learn), and then, each in
its own child process: the features stage (organizer streams only), the folds (--k 5), and
fold 0 of each --model with few epochs. A child's peak resident memory (wait4's ru_maxrss:
the largest of the child's and its descendants' peaks, not their sum) and wall time are
measured; videos/s is the release's videos (labelled and test) over the stage's wall time.
Wall times suffer when other processes share the cores (torch's OpenMP threads spin-wait);
the memory does not. solution.synth is not used: it renders
videos and is far too slow for thousands of them.

Output: one JSON line per size (`{"size": ..., "stages": {...}}`) and, per model, a final
JSON line with the ratio of the largest size's training peak to the smallest's; the goal is
below 1.5 (training reads the features cache on demand, so memory should grow with the
batch and the LRU budget `cache_mb`, not with the release). --verbose also prints every
child log line with the child's resident memory when it was written.

Disk: a video of S seconds takes S x (vit fps + 50) x dim x 4 bytes twice (pickles and the
cache); at the defaults (3 s, vit at 10 fps, 768-d) about 1.1 MB, so 8,000 videos need
about 9 GB. Each size's folder is deleted once measured unless --keep; the run refuses to
start a size when the scratch disk lacks room for it.
"""
from __future__ import annotations

import argparse
import json
import pickle
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_info, run_child  # noqa: E402

TARGETS = ("Admiration", "Amusement", "Determination", "Empathic Pain", "Excitement", "Joy")
WAV2VEC2_RATE = 50.0  # frames a second (20 ms hop); the harness assumes this rate for organizer:wav2vec2


# ------------------------------------------------------------------ the synthetic release

def release_bytes(videos: int, seconds: float, vit_fps: float, dim: int) -> int:
    """Disk a release of `videos` needs: the pickles plus their cache entries."""
    return int(2 * videos * seconds * (vit_fps + WAV2VEC2_RATE) * dim * 4 * 1.02)


def write_release(out: Path, labelled: int, test: int, dim: int, seconds: float, vit_fps: float,
                  seed: int) -> dict:
    """A features-only EMI release in `out`; returns what was written."""
    rng = np.random.default_rng(seed)
    total = labelled + test
    ids = np.arange(1, total + 1)
    labels = np.clip(rng.beta(0.9, 2.2, size=(total, len(TARGETS))), 0, 1).astype(np.float32)
    # A fixed direction per target and stream: a frame's features are its video's label along
    # these directions plus unit noise, so a probe (and a trained model) finds the labels.
    directions = {kind: rng.standard_normal((len(TARGETS), dim)).astype(np.float32) * 0.6
                  for kind in ("vit", "wav2vec2")}
    durations = rng.uniform(0.7 * seconds, 1.3 * seconds, total)
    for kind in ("vit", "wav2vec2"):
        (out / kind).mkdir(parents=True, exist_ok=True)
    frames = 0
    for i, vid in enumerate(ids):
        name = f"{vid:05d}"
        for kind, rate in (("vit", vit_fps), ("wav2vec2", WAV2VEC2_RATE)):
            n = max(2, int(round(durations[i] * rate)))
            feats = rng.standard_normal((n, dim), dtype=np.float32)
            feats += (labels[i] - 0.3) @ directions[kind]
            with open(out / kind / f"{name}.pkl", "wb") as handle:
                pickle.dump(feats, handle, protocol=4)
            frames += n
    order = rng.permutation(labelled)
    cut = int(round(0.8 * labelled))
    for split, rows in (("train", np.sort(order[:cut])), ("valid", np.sort(order[cut:]))):
        with open(out / f"{split}_split.csv", "w") as handle:
            handle.write("Filename," + ",".join(TARGETS) + "\n")
            for r in rows:
                handle.write(f"{ids[r]:05d}," + ",".join(f"{v:.4f}" for v in labels[r]) + "\n")
    with open(out / "test_split.csv", "w") as handle:
        handle.write("Filename\n" + "".join(f"{vid:05d}\n" for vid in ids[labelled:]))
    return {"labelled": labelled, "test": test, "frames": frames,
            "mean_seconds": round(float(durations.mean()), 2)}


# ------------------------------------------------------------------ measuring a child
# run_child (a child's wall time, peak RSS from wait4, sampled RSS) lives in bench/_common.py.


def timeline(samples: list[tuple[float, float]], points: int = 12) -> list[list[float]]:
    """A few (seconds, MB) points of the sampled RSS, for --verbose."""
    if not samples:
        return []
    step = max(1, len(samples) // points)
    return [[round(t, 1), round(r)] for t, r in samples[::step]]


# ------------------------------------------------------------------ one size

def measure(size: int, args, scratch: Path) -> dict:
    base = scratch / f"emi-{size}"
    data, work = base / "data", base / "work"
    total = size + args.test_videos
    result = {"size": size, "test_videos": args.test_videos, "dim": args.dim, "seconds_per_video": args.seconds,
              "vit_fps": args.vit_fps, "stages": {}}
    if args.reuse and (base / "release.json").is_file():
        result["release"] = json.loads((base / "release.json").read_text())
        result["release"]["reused"] = True
    else:
        if base.exists():
            raise SystemExit(f"{base} exists: delete it, pass --reuse, or choose another --scratch")
        need = release_bytes(total, args.seconds, args.vit_fps, args.dim)
        free = shutil.disk_usage(scratch).free
        if need > free - 2 ** 30:
            raise SystemExit(f"{scratch}: {free / 2**30:.1f} GB free, a release of {total} videos needs about "
                             f"{need / 2**30:.1f} GB; pass --scratch on a larger disk, or smaller --seconds/--vit-fps")
        started = time.perf_counter()
        info = write_release(data, size, args.test_videos, args.dim, args.seconds, args.vit_fps, args.seed)
        info["write_seconds"] = round(time.perf_counter() - started, 1)
        (base / "release.json").write_text(json.dumps(info))
        result["release"] = info
    result["release"]["disk_gb"] = round(sum(p.stat().st_size for p in data.rglob("*") if p.is_file()) / 2**30, 2)

    stages = [("features", ["-m", "solution.features", "--data", str(data), "--work", str(work), "--visual", "none",
                            "--audio", "none", "--text", "none", "--organizer", "auto",
                            "--workers", str(args.feature_workers)]),
              ("folds", ["-m", "solution.folds", "--data", str(data), "--work", str(work), "--k", "5"])]
    for model in args.model.split(","):
        name = f"fold_memory_{model}"
        for old in work.glob(f"*/runs/{name}"):
            shutil.rmtree(old)  # a kept release measured again trains again
        sets = ["--set", f"epochs={args.epochs}", "--set", "seeds=1", "--set", "model.dual_stage.stage1_epochs=1"]
        for item in args.set:
            sets += ["--set", item]
        stages.append((f"train:{model}", ["-m", "solution.train_fold", "--model", model, "--fold", "0", "--data",
                                          str(data), "--work", str(work), "--name", name, "--threads",
                                          str(args.threads), *sets]))
    try:
        for label, child_args in stages:
            result["stages"][label] = run_stage(label, child_args, size, total, work, args)
    finally:
        if args.keep:
            result["kept"] = str(base)
        else:
            shutil.rmtree(base, ignore_errors=True)
    return result


def run_stage(label: str, child_args: list[str], size: int, total: int, work: Path, args) -> dict:
    """One child stage measured: seconds, peak RSS, videos/s (and the held-out score of a training run)."""
    measured = run_child(child_args, args.verbose, f"{size}:{label}")
    samples = measured.pop("samples")
    measured.pop("lines")
    measured["videos_per_s"] = round(total / max(measured["seconds"], 1e-9), 1)
    if args.verbose:
        measured["rss_timeline"] = timeline(samples)
    if label.startswith("train:"):
        metrics = next(work.glob(f"*/runs/fold_memory_{label[6:]}/fold0/metrics.json"), None)
        if metrics is not None:
            m = json.loads(metrics.read_text())
            measured.update(held_score=round(m["held_score"], 4), train_videos=m["train_videos"],
                            held_videos=m["held_videos"])
    return measured


def sizes(text: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--sizes takes a comma list of whole numbers, got {text!r}") from None
    if not values or min(values) < 20:
        raise argparse.ArgumentTypeError("--sizes: every size must be at least 20 labelled videos (5 folds)")
    return values


def main(argv=None) -> int:
    summary, _, details = __doc__.partition("\n\n")
    parser = argparse.ArgumentParser(prog="python bench/fold_memory.py", description=summary,
                                     epilog=details, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=sizes, default=[1000, 8000], metavar="N,N",
                        help="labelled videos of each release, comma list (default 1000,8000)")
    parser.add_argument("--test-videos", type=int, default=20, help="unlabelled test videos added to each release (default 20)")
    parser.add_argument("--dim", type=int, default=768, help="width of the vit and wav2vec2 stand-ins (default 768)")
    parser.add_argument("--seconds", type=float, default=3.0,
                        help="mean video length in seconds; lengths vary by +-30%% (default 3)")
    parser.add_argument("--vit-fps", type=float, default=10.0,
                        help="vit frames a second (wav2vec2 is always 50 a second; default 10)")
    parser.add_argument("--model", default="dual_stage",
                        help="model(s) to train one fold of, comma list (default dual_stage; e.g. dual_stage,linear)")
    parser.add_argument("--epochs", type=int, default=2, help="training epochs (dual_stage adds 1 stage-1 epoch; default 2)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the training child (default 2)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="extra training setting passed to train_fold (repeatable), e.g. cache_mb=64")
    parser.add_argument("--feature-workers", type=int, default=1,
                        help="processes of the features stage (default 1, so its peak is one process's)")
    parser.add_argument("--scratch", type=Path, default=Path("/tmp/fold_memory"),
                        help="where releases and work folders are written (default /tmp/fold_memory)")
    parser.add_argument("--keep", action="store_true", help="keep each size's release and work folder")
    parser.add_argument("--reuse", action="store_true",
                        help="reuse a release kept by an earlier --keep run in --scratch (features then find their cache)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic labels and features (default 0)")
    parser.add_argument("--verbose", action="store_true",
                        help="print every child log line with the child's resident memory, and an RSS timeline")
    args = parser.parse_args(argv)
    args.scratch.mkdir(parents=True, exist_ok=True)
    print(json.dumps({"bench": "fold_memory", "machine": machine_info(args.threads), "sizes": args.sizes,
                      "model": args.model, "epochs": args.epochs,
                      "threads": args.threads, "scratch": str(args.scratch)}), flush=True)
    results = []
    try:
        for size in args.sizes:
            result = measure(size, args, args.scratch)
            results.append(result)
            print(json.dumps(result), flush=True)
    except RuntimeError as exc:  # a stage failed; its last lines are in the message
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        if not args.keep:
            try:
                args.scratch.rmdir()  # only when empty: never someone else's files
            except OSError:
                pass
    if len(results) > 1:
        small, large = min(results, key=lambda r: r["size"]), max(results, key=lambda r: r["size"])
        for label in [s for s in large["stages"] if s.startswith("train:") or s == "features"]:
            ratio = large["stages"][label]["peak_rss_mb"] / small["stages"][label]["peak_rss_mb"]
            line = {"stage": label, "sizes": [small["size"], large["size"]],
                    "peak_rss_mb": [small["stages"][label]["peak_rss_mb"], large["stages"][label]["peak_rss_mb"]],
                    "ratio": round(ratio, 3)}
            if label.startswith("train:"):
                line.update(goal="< 1.5", ok=ratio < 1.5)
            print(json.dumps(line), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
