"""Training throughput and peak memory of every registered model at a fixed shape (forward, backward, AdamW step), and how step time grows with sequence length and batch size.

    python bench/train_speed.py                              # every model, EMI shape, 2 threads
    python bench/train_speed.py --model dual_stage,rcma --threads 1
    python bench/train_speed.py --sweep                      # + lengths 40,80,160,320 at batch 32, batches 8,16,32,64 at length 160
    python bench/train_speed.py --lengths 40,80 --batches 8 --steps 3 --json
    python bench/train_speed.py --rjcma                      # RCMA at the public RJCMA shape, frames/s
    python bench/train_speed.py --model rcma --level frame --batch 12 --visual 300x512 --audio 300x128 --text 300x768
    python bench/train_speed.py --fold-cost                  # + what one fold of each model costs at the organizers' size

The default shape is the organizers' EMI features: batch 32, visual 160 x 768 (ViT at 5 Hz over
32 s), audio 400 x 768 (wav2vec2 resampled to 12.5 Hz), text 1 x 384 (one MiniLM vector).
Every video of the batch is full length (no padding), inputs are random: the speed of the
arithmetic, not of the data loading (bench/fold_memory.py measures a whole fold). A model that
trains on one shared time grid (rcma) gets every timed stream on that grid: by default at the
visual length (160 steps: the 10 Hz shared grid over a 16 s clip, the audio resampled to it as
the data layer does); --shared-steps 400 puts it at the audio's length instead.

Memory. Every measurement (a model at one shape) runs in its own child process, so its peak
resident memory is its own: peak_rss_mb is the child's ru_maxrss (from wait4), the whole
process (Python, torch, the random batch, the model, activations, optimizer state);
rss_base_mb is its resident memory just before the model is built, so the difference is
what the model and its training step add. On CUDA (--device cuda) the child also reports
torch.cuda.max_memory_allocated as peak_cuda_mb.

Sweep. --lengths scales the time axis: the face stream gets L steps, and every other timed
stream (the audio; text when it is timed) keeps its ratio to the face stream of the fixed
shape (L=160 -> audio 400), at the fixed --batch; --batches varies the batch at the fixed
shape. A point equal to the fixed shape is measured once and reported as both.

--rjcma reproduces the public RCMA implementation's shape (praveena2j/RJCMA, first commit):
frame-level, batch 12, windows of 300 frames, inputs 512/128/768 (face/voice/text), TCN
channels 512/128/512, 4 levels, kernel 5, two recursions, one output. That code's fusion
network trains at 1,057 frames/s at this shape with Adam on 2 CPU threads with torch 2.14.1.

--fold-cost turns each model's videos/s at the fixed shape into the time of one fold of a
release of --fold-videos labelled videos (default 12,700, the EMI release) in --fold-k folds,
with each model's default seeds, inner split, patience, refit and contrastive stage-1 epochs,
and --best-epoch as the epoch its early stopping settles on (an assumption: printed with the
result). Per seed: the inner-split run (stage 1, then best + patience epochs on the fit videos,
the inner split scored every epoch at a third of a training step's cost), the refit (stage 1
and best epochs on every training video) where the model refits, and the held-out and test
videos predicted. Data loading is not included.

Output (stdout): one JSON line per model at the fixed shape ("bench": "train": videos/s, or
frames/s for frame-level, ms per step, CPU ms per step, peak MB, the shape, parameters) and one
per sweep point ("bench": "sweep", "axis": "length" or "batch"), each with the machine; then
Markdown tables unless --json. Progress on stderr. Other processes on the same cores lower the
speeds (ms_per_step) but not the memory; cpu_ms_per_step (the process's CPU time per step, all
threads) suffers less from them.
"""
from __future__ import annotations

import argparse
import ast
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, emit, machine_info, progress, render, rss_mb, run_child  # noqa: E402

sys.path.insert(0, str(ROOT))
RJCMA_CONFIG = {"rcma": {"channels": "512,128,512", "tcn_levels": 4, "tcn_kernel": 5, "recursions": 2}}
MODALITIES = ("visual", "audio", "text")


def parse_shape(text: str) -> tuple[int, int]:
    try:
        steps, dim = text.lower().split("x")
        return int(steps), int(dim)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a shape is STEPSxDIM, e.g. 160x768; got {text!r}") from None


def int_list(text: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"a comma list of whole numbers, e.g. 40,80,160; got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"a comma list of positive whole numbers; got {text!r}")
    return values


# ------------------------------------------------------------------ one measurement (in a child)

def make_batch(spec, batch: int, shapes: dict, seed: int = 0) -> dict:
    import numpy as np
    import torch

    rng = np.random.default_rng(seed)
    out = {"keys": [f"{i:05d}" for i in range(batch)]}
    for m in spec.modalities:
        steps, dim = shapes[m]
        out[m] = torch.from_numpy(rng.normal(size=(batch, steps, dim)).astype(np.float32))
        out[f"{m}_mask"] = torch.ones(batch, steps, dtype=torch.bool)
        out[f"{m}_quality"] = torch.ones(batch, steps)
    out["present"] = torch.ones(batch, len(spec.modalities), dtype=torch.bool)
    width = max(s.stop for s in spec.cue_slices.values())
    out["cues"] = torch.from_numpy(rng.uniform(size=(batch, width)).astype(np.float32))
    if spec.level == "frame":
        frames = shapes["visual"][0]
        out["frame_mask"] = torch.ones(batch, frames, dtype=torch.bool)
        out["target_mask"] = torch.ones(batch, frames, dtype=torch.bool)
        out["target"] = torch.from_numpy(rng.uniform(spec.low, spec.high, (batch, frames, spec.n_targets)).astype(np.float32))
    else:
        out["target"] = torch.from_numpy(rng.uniform(spec.low, spec.high, (batch, spec.n_targets)).astype(np.float32))
    return out


def measure(name: str, spec, config: dict, batch: dict, steps: int, warmup: int, phase: str | None,
            device: str = "cpu", max_seconds: float = 0.0) -> dict:
    """Median wall and CPU time of a training step; timed steps stop early once `max_seconds`
    of them have run (at least two)."""
    import numpy as np
    import torch

    from solution.metrics import make_loss
    from solution.models import create_model

    torch.manual_seed(0)
    model = create_model(name, spec, config).to(device)
    model.train()
    batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
    opt = torch.optim.AdamW(model.param_groups(1e-3), lr=1e-3)
    loss_fn = make_loss("ccc")
    phase = phase or [p.name for p in model.phases(type("T", (), {"epochs": 1, "lr": 1e-3})())][-1]
    cuda = device.startswith("cuda")
    times, cpu_times = [], []
    for step in range(warmup + steps):
        if cuda:
            torch.cuda.synchronize()
        start, cpu_start = time.perf_counter(), time.process_time()
        loss = model.phase_loss(phase, batch, loss_fn)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if cuda:
            torch.cuda.synchronize()
        if step >= warmup:
            times.append(time.perf_counter() - start)
            cpu_times.append(time.process_time() - cpu_start)
            if max_seconds and len(times) >= 2 and sum(times) > max_seconds:
                break
    per_step = float(np.median(times))
    n = len(batch["keys"])
    out = {"model": name, "level": spec.level, "ms_per_step": round(1000 * per_step, 1),
           "cpu_ms_per_step": round(1000 * float(np.median(cpu_times)), 1), "steps_timed": len(times),
           "batch": n, "parameters": sum(p.numel() for p in model.parameters())}
    if spec.level == "frame":
        out["frames_per_s"] = round(n * batch["frame_mask"].shape[1] / per_step, 1)
    else:
        out["videos_per_s"] = round(n / per_step, 1)
    return out


def child(job: dict) -> dict:
    """One model at one shape; run as `train_speed.py --child JSON` in its own process."""
    import torch

    from solution.data import cue_slices
    from solution.models import InputSpec, model_class
    from solution.tracks import EMI, VA

    torch.set_num_threads(job["threads"])
    device = job["device"]
    if device.startswith("cuda"):
        torch.cuda.init()
        torch.cuda.reset_peak_memory_stats(device)
    name, level, shapes = job["model"], job["level"], {m: tuple(s) for m, s in job["shapes"].items()}
    track = EMI if level == "video" else VA
    if model_class(name).train_defaults.get("grid") == "shared" and level == "video":
        # A model that trains on one time grid gets every timed stream on it: by default at the
        # face stream's length (the 10 Hz shared grid over the same clip), or --shared-steps.
        on_grid = job["shared_steps"] or shapes["visual"][0]
        shapes = {m: (on_grid if m != "text" or steps > 1 else steps, dim) for m, (steps, dim) in shapes.items()}
    spec = InputSpec(MODALITIES, {m: shapes[m][1] for m in MODALITIES}, cue_slices(MODALITIES),
                     job["n_targets"] or track.dim, track.low, track.high, level,
                     extra={"text_timed": shapes["text"][0] > 1})
    batch = make_batch(spec, job["batch"], shapes)
    base = rss_mb()
    result = measure(name, spec, job["config"], batch, job["steps"], job["warmup"], None, device, job["max_seconds"])
    result.update(shape={m: list(s) for m, s in shapes.items()}, rss_base_mb=round(base or 0, 1),
                  torch=torch.__version__, threads=job["threads"], device=device, config=job["config"])
    if device.startswith("cuda"):
        result["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated(device) / 2 ** 20, 1)
    return result


def run_point(job: dict) -> dict:
    """A measurement in a child process, with the child's peak resident memory."""
    measured = run_child([str(Path(__file__).resolve()), "--child", json.dumps(job)], label=f"{job['model']}",
                         sample=False)
    result = None
    for line in reversed(measured["lines"]):
        if line.startswith("{"):
            result = json.loads(line)
            break
    if result is None:
        raise RuntimeError("the child printed no result:\n" + "\n".join(measured["lines"][-20:]))
    result["peak_rss_mb"] = measured["peak_rss_mb"]
    result["wall_s"] = measured["seconds"]
    return result


# ------------------------------------------------------------------ the plan

def scaled(shapes: dict, length: int) -> dict:
    """The fixed shape with the face stream at `length` steps and every other timed stream
    scaled by the same factor (one-step streams, e.g. one text vector, stay one step)."""
    factor = length / shapes["visual"][0]
    return {m: (length if m == "visual" else steps if steps == 1 else max(1, round(steps * factor)), dim)
            for m, (steps, dim) in shapes.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python bench/train_speed.py", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--model", default="", help="comma list of registered models (default: every one)")
    parser.add_argument("--level", choices=("video", "frame"), default="video", help="video-level (EMI) or frame-level (VA) shape")
    parser.add_argument("--batch", type=int, default=32, help="videos (or windows) per step (default 32)")
    parser.add_argument("--visual", type=parse_shape, default=(160, 768), help="STEPSxDIM of the face stream (default 160x768)")
    parser.add_argument("--audio", type=parse_shape, default=(400, 768), help="STEPSxDIM of the voice stream (default 400x768)")
    parser.add_argument("--text", type=parse_shape, default=(1, 384), help="STEPSxDIM of the text stream (default 1x384)")
    parser.add_argument("--set", action="append", default=[], metavar="MODEL.KEY=VALUE",
                        help="a model setting, e.g. rcma.recursions=1 (repeatable; values as Python literals)")
    parser.add_argument("--shared-steps", type=int, default=0,
                        help="steps of the shared time grid for models that train on one (default: the visual steps)")
    parser.add_argument("--rjcma", action="store_true", help="RCMA at the public RJCMA shape (overrides the shape flags)")
    parser.add_argument("--sweep", action="store_true",
                        help="also the sweep: --lengths 40,80,160,320 and --batches 8,16,32,64 unless given")
    parser.add_argument("--lengths", type=int_list, default=None, metavar="L,L",
                        help="face-stream lengths to time at the fixed --batch (implies the sweep)")
    parser.add_argument("--batches", type=int_list, default=None, metavar="B,B",
                        help="batch sizes to time at the fixed shape (implies the sweep)")
    parser.add_argument("--sweep-models", default="", metavar="MODEL,MODEL",
                        help="sweep only these of the measured models (default: every one)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps; the median is reported (default 10)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (default 3)")
    parser.add_argument("--max-seconds", type=float, default=0.0,
                        help="stop a point's timed steps once they took this long, after at least two (default: no limit)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default cpu)")
    parser.add_argument("--fold-cost", action="store_true",
                        help="also estimate one fold of each model at --fold-videos labelled videos (see above)")
    parser.add_argument("--fold-videos", type=int, default=12_700, help="labelled videos of the release (default 12,700)")
    parser.add_argument("--fold-test", type=int, default=4_000, help="test videos predicted by each fold (default 4,000)")
    parser.add_argument("--fold-k", type=int, default=5, help="folds (default 5)")
    parser.add_argument("--best-epoch", type=int, default=20,
                        help="the epoch early stopping settles on, assumed for --fold-cost (default 20)")
    parser.add_argument("--json", action="store_true", help="JSON lines only, no Markdown tables after them")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(json.loads(args.child))), flush=True)
        return 0

    import torch

    from solution.models import model_class, model_names

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: torch {torch.__version__} sees no CUDA device here")
    if min(args.steps, args.threads, args.batch) < 1 or args.warmup < 0:
        parser.error("--steps, --threads and --batch must be at least 1, --warmup at least 0")

    configs: dict[str, dict] = {}
    if args.rjcma:
        names, level, batch_size = ["rcma"], "frame", 12
        shapes = {"visual": (300, 512), "audio": (300, 128), "text": (300, 768)}
        configs = {k: dict(v) for k, v in RJCMA_CONFIG.items()}
        n_targets = 1
    else:
        names = [m for m in args.model.split(",") if m] or model_names()
        level, batch_size = args.level, args.batch
        shapes = {"visual": args.visual, "audio": args.audio, "text": args.text}
        n_targets = None
    for name in names:
        try:
            model_class(name)
        except ValueError as exc:
            parser.error(str(exc))
    for item in args.set:
        try:
            key, value = item.split("=", 1)
            model, field = key.split(".", 1)
        except ValueError:
            parser.error(f"--set takes MODEL.KEY=VALUE, got {item!r}")
        try:
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            pass
        configs.setdefault(model, {})[field] = value
    lengths, batches = args.lengths, args.batches
    if args.sweep:
        lengths = lengths or [40, 80, 160, 320]
        batches = batches or [8, 16, 32, 64]
    lengths, batches = lengths or [], batches or []
    fixed = (batch_size, shapes["visual"][0])
    # Every (batch, length) point, each measured once, and which records it feeds.
    points: dict[tuple, list[tuple]] = {fixed: [("train", None)]}
    for length in lengths:
        points.setdefault((batch_size, length), []).append(("sweep", "length"))
    for b in batches:
        points.setdefault((b, shapes["visual"][0]), []).append(("sweep", "batch"))
    order = sorted(points, key=lambda p: (p != fixed, p[0] * p[1]))
    names = [n for n in names if level in model_class(n).levels]
    swept = [m for m in args.sweep_models.split(",") if m] or names
    for name in swept:
        if name not in names:
            parser.error(f"--sweep-models {name}: not among the measured models {names}")
    plans = {name: order if name in swept else [fixed] for name in names}
    records, started = [], time.perf_counter()
    total, done = sum(len(p) for p in plans.values()), 0
    for name in names:
        for point in plans[name]:
            b, length = point
            done += 1
            job = {"model": name, "level": level, "batch": b, "shapes": scaled(shapes, length),
                   "config": configs.get(name, {}), "n_targets": n_targets, "shared_steps": args.shared_steps,
                   "steps": args.steps, "warmup": args.warmup, "max_seconds": args.max_seconds,
                   "threads": args.threads, "device": args.device}
            progress(f"train_speed {done}/{total}: {name} batch {b} length {length} "
                     f"({time.perf_counter() - started:.0f} s so far)")
            try:
                result = run_point(job)
            except RuntimeError as exc:
                last = [line for line in str(exc).splitlines() if line.strip()][-1]
                result = {"model": name, "batch": b, "shape": job["shapes"], "error": last[:500],
                          "details": str(exc)[-2000:]}
                progress(f"  failed: {last}")
            for kind, axis in points[point] if name in swept else [("train", None)]:
                record = {"bench": kind, **({"axis": axis, "length": length} if axis else {}), **result,
                          "machine": {**machine_info(args.threads, args.device)}}
                if kind == "train" and args.rjcma:
                    record["rjcma"] = True
                emit(record)
                records.append(record)
    if args.fold_cost:
        for record in [r for r in records if r["bench"] == "train" and "videos_per_s" in r]:
            cost = fold_cost(record, args)
            emit(cost)
            if not args.json:
                print(f"one fold of {cost['model']} at {cost['videos']:,} labelled videos ({cost['folds']} folds): "
                      f"{cost['hours']:.1f} h at {cost['videos_per_s']:g} videos/s ({cost['assumed']})", flush=True)
    if not args.json:
        print("\n" + render(records), flush=True)
    return 1 if any("error" in r for r in records) else 0


def fold_cost(record: dict, args) -> dict:
    """--fold-cost: one fold's training time from the model's measured videos/s at the fixed
    shape and its default schedule (module docstring)."""
    from solution.config import TrainConfig
    from solution.models import model_class

    cls = model_class(record["model"])
    train = {**{f: getattr(TrainConfig, f) for f in ("seeds", "patience", "inner_fraction", "refit")},
             **{k: v for k, v in cls.train_defaults.items() if k in ("seeds", "patience", "inner_fraction", "refit")}}
    defaults = cls.Config()
    stage1 = getattr(defaults, "stage1_epochs", 0) if getattr(defaults, "stage1", False) else 0
    vps = record["videos_per_s"]
    training = args.fold_videos * (1 - 1 / args.fold_k)
    fit, inner = training * (1 - train["inner_fraction"]), training * train["inner_fraction"]
    chosen = (stage1 + args.best_epoch + train["patience"]) * fit / vps \
        + (args.best_epoch + train["patience"]) * inner / (3 * vps)
    refit = (stage1 + args.best_epoch) * training / vps if train["refit"] else 0.0
    predict = (args.fold_videos / args.fold_k + args.fold_test) / (3 * vps)
    seconds = train["seeds"] * (chosen + refit + predict)
    return {"bench": "fold_cost", "model": record["model"], "videos": args.fold_videos, "folds": args.fold_k,
            "videos_per_s": vps, "hours": round(seconds / 3600, 2),
            "assumed": f"{train['seeds']} seeds, best epoch {args.best_epoch}, patience {train['patience']}"
                       + (f", {stage1} stage-1 epochs" if stage1 else "") + (", refit" if train["refit"] else ""),
            "machine": record["machine"]}


if __name__ == "__main__":
    sys.exit(main())
