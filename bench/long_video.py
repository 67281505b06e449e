"""Peak memory and time of feature extraction and inference on a long VA video against a short one.

    python bench/long_video.py [--data work/demo-va] [--models dual_stage,foalnet,rcma,linear]

On the VA demo (run `TRACK=va bash run_all.sh` or `python -m solution.synth --track va --out
work/demo-va` first) the first video is several minutes long. Each measurement runs in its
own process, so its peak resident memory (ru_maxrss) is its own: the default extractors on
that one video (faces a chunk at a time, then the voice), and each model predicting that one
video in overlapping windows (untrained weights: memory and time do not depend on them).
The shortest labelled video is measured the same way for comparison: bounded memory means
the long video's peak is close to the short one's although it has many times the frames.
Prints one JSON line per measurement, then a table. Extraction writes to a scratch folder.
"""
from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, machine_info  # noqa: E402

sys.path.insert(0, str(ROOT))


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports kB


def child_features(data: Path, key: str, work: Path) -> dict:
    from solution import extraction, features
    from solution.faces import resolve_detector
    from solution.layouts import detect_track, release_videos

    track = detect_track(data)
    source = next(s for s in release_videos(track, data) if s.vid == key)
    specs = {"visual": [features.DEFAULTS["visual"]], "audio": [features.DEFAULTS["audio"]]}
    plan = extraction.Plan(work, specs, 5.0, resolve_detector("auto", source.crops is not None), 112, None, "cpu", 32,
                         False, False, threads=1)
    start = time.perf_counter()
    extraction.run(plan, [source])
    return {"wall_s": round(time.perf_counter() - start, 2)}


def child_predict(data: Path, work: Path, key: str, model_name: str) -> dict:
    import torch

    from solution.config import TrainConfig
    from solution.data import Normalizer, VideoStore, cue_slices
    from solution.layouts import open_release, release_videos
    from solution.models import InputSpec, create_model, model_class
    from solution.train_fold import model_context
    from solution.inference import frame_counts_to_predict, predict

    torch.set_num_threads(1)
    release = open_release("va", data)
    sources = {s.vid: s for s in release_videos("va", data)}
    cls = model_class(model_name)
    cfg = TrainConfig(**getattr(cls, "train_defaults", {}))
    store = VideoStore.from_cache(work, release, {key: sources[key]}, cfg,
                                  frame_counts=frame_counts_to_predict(release, [key] if key in release.test_keys() else []))
    store.set_normalizer(Normalizer.fit(store, [key]))
    spec = InputSpec(store.modalities, store.dims, cue_slices(store.modalities), release.track.dim, release.track.low,
                     release.track.high, release.track.level, extra={"text_timed": store.text_timed})
    config = cls.Config()
    labelled = {key: release.video_targets(key)} if key in release.labelled_keys() else {}
    extra, side = cls.prepare(config, model_context(store, release.track, [key], cfg, labelled, "cpu"))
    spec.extra.update(extra)
    model = create_model(model_name, spec, {})
    model.attach(side)
    start = time.perf_counter()
    preds, _ = predict(model, store, [key], "cpu")
    return {"wall_s": round(time.perf_counter() - start, 2), "predicted_frames": int(len(preds[key]))}


def measure(args: list[str]) -> dict:
    done = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"measurement {args} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    summary, _, details = __doc__.partition("\n\n")
    parser = argparse.ArgumentParser(description=summary, epilog=details,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT / "work" / "demo-va", help="a VA release (default work/demo-va)")
    parser.add_argument("--work", type=Path, default=ROOT / "work",
                        help="the work folder holding its features, for inference (default work/)")
    parser.add_argument("--models", default="dual_stage,foalnet,rcma,linear", help="models to run inference with")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        kind, *rest = args.child
        out = child_features(Path(rest[0]), rest[1], Path(rest[2])) if kind == "features" else \
            child_predict(Path(rest[0]), Path(rest[1]), rest[2], rest[3])
        print(json.dumps({**out, "peak_mb": round(peak_mb(), 1)}))
        return 0

    from solution.layouts import open_release

    if not args.data.is_dir():
        sys.exit(f"{args.data} not found: run `TRACK=va bash run_all.sh` (or python -m solution.synth --track va) first")
    release = open_release("va", args.data)
    labelled = sorted(release.labelled_keys())
    frames = {k: len(release.video_targets(k)) for k in labelled}
    videos = {"short": min(frames, key=frames.get), "long": max(frames, key=frames.get)}
    print(f"# {platform.processor() or platform.machine()}, {platform.system()}, python {platform.python_version()}; "
          f"one process per measurement, one torch thread")
    rows = []
    machine = machine_info(1)
    for size, key in videos.items():
        seconds = round(frames[key] / release.video_fps(key), 1)
        with tempfile.TemporaryDirectory() as scratch:
            row = {"stage": "features (hog + egemaps)", "video": key, "size": size, "frames": frames[key],
                   "seconds": seconds, **measure(["features", str(args.data), key, scratch]), "machine": machine}
        print(json.dumps(row))
        rows.append(row)
        for model in [m for m in args.models.split(",") if m]:
            row = {"stage": f"inference {model}", "video": key, "size": size, "frames": frames[key], "seconds": seconds,
                   **measure(["predict", str(args.data), str(args.work), key, model]), "machine": machine}
            print(json.dumps(row))
            rows.append(row)
    print(f"\n{'stage':<28}{'video':<8}{'frames':>8}{'peak MB':>10}{'wall s':>9}")
    for row in rows:
        print(f"{row['stage']:<28}{row['size']:<8}{row['frames']:>8}{row['peak_mb']:>10.0f}{row['wall_s']:>9.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
